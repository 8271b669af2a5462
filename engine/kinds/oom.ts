// oom_score_adj of a process (shared by its threads), in CRIU's task_core.oom_score_adj.
// Restore writes it from the engine into /proc/PID/oom_score_adj: like a privileged write from
// inside, it also sets the process's floor (oom_score_adj_min, which no image keeps).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { readProc } from '../proc/read';
import { EngineError } from '../errors';
import type { Proc } from '../restore/context';
import { ImageError, num } from '../restore/imageset';

/** Dump half. */
export function readOomScoreAdj(pid: number): number {
  return Number(readProc(pid, 'oom_score_adj').trim());
}

/** Before any process exists. */
export function checkOomScoreAdj(image: string, tc: Msg): void {
  if (tc.oom_score_adj === undefined) return;
  const v = num(tc.oom_score_adj);
  if (v < -1000 || v > 1000) throw new ImageError(image, 'tc.oom_score_adj', `${v} is outside -1000..1000`);
}

/** Restore half. */
export function restoreOomScoreAdj(p: Proc): void {
  const tc = p.img.leader.tc;
  if (tc.oom_score_adj === undefined) return;
  const want = num(tc.oom_score_adj);
  const file = `/proc/${p.host}/oom_score_adj`;
  if (Number(fs.readFileSync(file, 'utf8').trim()) === want) return;
  try {
    fs.writeFileSync(file, String(want));
  } catch (e) {
    throw new EngineError(`task ${p.img.pid}: cannot set oom_score_adj ${want}: ${(e as Error).message}`, (e as NodeJS.ErrnoException).code);
  }
}
