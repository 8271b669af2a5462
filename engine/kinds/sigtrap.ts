// SIGTRAP and the engine's own single-stepping, both halves. Every injected syscall ends in a
// single-step trap, a SIGTRAP the kernel forces on the task: a SIGTRAP already pending would be
// taken by that step (and lost), and forcing a SIGTRAP that the task ignores resets its
// disposition to SIG_DFL. (The injection leaves SIGTRAP unblocked for the same reason: forcing a
// blocked one resets a handler too.) So a task with a SIGTRAP pending or ignored is refused
// before anything is injected into it, as CRIU refuses a pending SIGTRAP; a handler for
// SIGTRAP is dumped and restored like any other.
import type { Msg } from '../../images/codec';
import { UnsupportedError } from '../errors';
import { readStatus, hexField } from '../proc/status';
import { big, ImageError, TaskImage } from '../restore/imageset';

const SIGTRAP = 5;
const BIT = 1n << BigInt(SIGTRAP - 1);
/** sa_entry index of SIGTRAP in task_core.sigactions (SIGKILL and SIGSTOP have none; both are above) */
const SIGACTION_INDEX = SIGTRAP - 1;
const SIG_IGN = 1n;

/**
 * Dump half, before the first injection into the process: refuses a SIGTRAP pending (for the
 * process or one of its threads), ignored, or caught on its way to a thread while freezing.
 */
export function refuseSigtrapHazards(pid: number, tids: number[], caughtWhileFreezing: ReadonlySet<number>): void {
  for (const tid of tids) {
    const who = tid === pid ? `task ${pid}` : `task ${pid} thread ${tid}`;
    if (caughtWhileFreezing.has(tid)) throw new UnsupportedError(`${who}: a SIGTRAP was being delivered when the tree was frozen; it cannot be saved`);
    const st = readStatus(pid, tid);
    if (hexField(st, 'SigPnd') & BIT) throw new UnsupportedError(`${who}: a SIGTRAP is pending; it cannot be dumped (the engine single-steps with SIGTRAP)`);
    if (tid !== pid) continue;
    if (hexField(st, 'ShdPnd') & BIT) throw new UnsupportedError(`${who}: a SIGTRAP is pending; it cannot be dumped (the engine single-steps with SIGTRAP)`);
    if (hexField(st, 'SigIgn') & BIT) throw new UnsupportedError(`${who}: SIGTRAP is ignored (SIG_IGN); the engine's single-stepping would reset it`);
  }
}

function hasSigtrap(queue: Msg | undefined): boolean {
  return ((queue?.signals ?? []) as Msg[]).some((s) => Buffer.from(s.siginfo as Uint8Array).readInt32LE(0) === SIGTRAP);
}

/** Restore half (before anything exists): the same states in an image set are refused. */
export function checkSigtrap(t: TaskImage): void {
  const tc = t.leader.tc;
  const image = `core-${t.pid}.img`;
  if (hasSigtrap(tc.signals_s)) throw new ImageError(image, 'tc.signals_s', 'a pending SIGTRAP is not restored (the engine single-steps with SIGTRAP)');
  for (const [tid, core] of t.cores)
    if (hasSigtrap(core.thread_core?.signals_p)) throw new ImageError(`core-${tid}.img`, 'thread_core.signals_p', 'a pending SIGTRAP is not restored (the engine single-steps with SIGTRAP)');
  const act = ((tc.sigactions ?? []) as Msg[])[SIGACTION_INDEX];
  if (act && big(act.sigaction) === SIG_IGN) throw new ImageError(image, `tc.sigactions[${SIGACTION_INDEX}].sigaction`, 'an ignored SIGTRAP is not restored (single-stepping would reset it)');
}
