// The dumpable flag of a process (CRIU's mm.dumpable). The kernel resets it to fs.suid_dumpable
// on every credential change, so restore sets it after the task's creds. prctl sets 0 and 1;
// 2 (SUID_DUMP_ROOT) only ever comes from a credential change while fs.suid_dumpable is 2.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { EngineError, UnsupportedError } from '../errors';
import type { Proc } from '../restore/context';
import { ImageError, num } from '../restore/imageset';
import { NR, PR_SET_DUMPABLE } from '../restore/sys';

const PR_GET_DUMPABLE = 3, SUID_DUMP_ROOT = 2;

function suidDumpable(): number {
  return Number(fs.readFileSync('/proc/sys/fs/suid_dumpable', 'utf8').trim());
}

/** Dump half (the value itself is read with the other prctls in dump/process.ts). */
export function checkDumpable(pid: number, dumpable: number): void {
  if (dumpable === SUID_DUMP_ROOT && suidDumpable() !== SUID_DUMP_ROOT)
    throw new UnsupportedError(`task ${pid}: dumpable 2 (SUID_DUMP_ROOT) can only be restored while fs.suid_dumpable is 2, and it is ${suidDumpable()} here`);
}

/** Before any process exists. */
export function checkDumpableImage(image: string, mm: Msg): void {
  if (mm.dumpable === undefined) return;
  const v = num(mm.dumpable);
  if (v < 0 || v > 2) throw new ImageError(image, 'dumpable', `${v} is not a dumpable value`);
  if (v === SUID_DUMP_ROOT && suidDumpable() !== SUID_DUMP_ROOT)
    throw new ImageError(image, 'dumpable', `2 (SUID_DUMP_ROOT) needs fs.suid_dumpable 2, and it is ${suidDumpable()} here`);
}

/** Restore half: after every thread's creds. */
export function restoreDumpable(p: Proc): void {
  const mm = p.img.mm!;
  if (mm.dumpable === undefined) return;
  const want = num(mm.dumpable);
  const r = p.remote;
  const now = Number(r.one(p.host, 'prctl(PR_GET_DUMPABLE)', NR.prctl, PR_GET_DUMPABLE, 0, 0, 0, 0));
  if (now === want) return;
  if (want === SUID_DUMP_ROOT) throw new EngineError(`task ${p.img.pid}: dumpable is ${now} after its creds were set, and 2 (SUID_DUMP_ROOT) cannot be set directly`);
  r.one(p.host, `prctl(PR_SET_DUMPABLE, ${want})`, NR.prctl, PR_SET_DUMPABLE, want, 0, 0, 0);
}
