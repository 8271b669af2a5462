// Group-stopped tasks and their stop signal (task_core.stop_signo), both halves. A task stopped by
// SIGTSTP, SIGTTIN or SIGTTOU reports that signal to its parent (waitpid WUNTRACED, waitid
// WSTOPPED): restoring it stopped by SIGSTOP would change what the parent sees. Dump: the signal
// comes from the thread's interrupt stop (a seized task in a group stop reports the stop signal,
// a running one SIGTRAP), which also says whether the task is stopped at all at the moment it
// was frozen. Restore: the same signal is sent to the restored task before it is let go, so the
// kernel stops it again and records that signal for its parent. Such a signal takes effect only
// with the default action and outside an orphaned process group (else the kernel runs the
// handler, or discards it); either case is refused before the tree may run.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { EngineError, UnsupportedError } from '../errors';
import { big, num, ImageError, TaskImage, TASK_STOPPED } from '../restore/imageset';
import type { Proc } from '../restore/context';

export const SIGSTOP = 19;
const SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22;
const NAMES: Record<number, string> = { [SIGSTOP]: 'SIGSTOP', [SIGTSTP]: 'SIGTSTP', [SIGTTIN]: 'SIGTTIN', [SIGTTOU]: 'SIGTTOU' };
const isStopSignal = (s: number | undefined): s is number => s !== undefined && NAMES[s] !== undefined;

/** Position of a signal's entry in task_core.sigactions (SIGKILL and SIGSTOP have none). */
const actionIndex = (sig: number) => sig - 1 - (sig > 9 ? 1 : 0) - (sig > SIGSTOP ? 1 : 0);

export interface StopState {
  stopped: boolean;
  /** task_core.stop_signo */
  signo?: number;
}

/**
 * Dump half: stopped or not, and by which signal, from the interrupt stops of the process's
 * threads (leader first); handlers: the process's sigaction handlers in sigactions order.
 */
export function dumpStopState(pid: number, tids: number[], stopSignals: ReadonlyMap<number, number>, handlers: bigint[]): StopState {
  const seen = tids.map((t) => stopSignals.get(t)).find((s) => s !== undefined);
  if (!isStopSignal(seen)) return { stopped: false };
  if (seen !== SIGSTOP && handlers[actionIndex(seen)] !== 0n)
    throw new UnsupportedError(`task ${pid}: stopped by ${NAMES[seen]}, for which it now has a handler or SIG_IGN; the stop could not be restored`);
  return { stopped: true, signo: seen };
}

/** The signal that leaves a restored task stopped as dumped (0: it runs). */
export function finalStopSignal(t: TaskImage, leaveStopped: boolean | undefined): number {
  if (leaveStopped) return SIGSTOP;
  if (t.state !== TASK_STOPPED) return 0;
  const s = num(t.leader.tc.stop_signo);
  return isStopSignal(s) ? s : SIGSTOP; // CRIU before stop_signo: SIGSTOP
}

/** Restore half, before anything exists: the stop signal must be one the kernel would act on. */
export function checkStopSignal(t: TaskImage): void {
  if (t.state !== TASK_STOPPED || t.leader.tc.stop_signo === undefined) return;
  const s = num(t.leader.tc.stop_signo);
  const image = `core-${t.pid}.img`;
  if (!isStopSignal(s)) throw new ImageError(image, 'tc.stop_signo', `${s} is not a stop signal`);
  if (s === SIGSTOP) return;
  const act = ((t.leader.tc.sigactions ?? []) as Msg[])[actionIndex(s)];
  if (act && big(act.sigaction) !== 0n) throw new ImageError(image, `tc.sigactions[${actionIndex(s)}]`, `stopped by ${NAMES[s]}, which has a handler or SIG_IGN: sending it again would not stop the task`);
}

/** "pgrp sid ppid state" of a host PID (undefined when gone). */
function statOf(pid: number): { state: string; ppid: number; pgrp: number; sid: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), sid: Number(f[3]) };
  } catch {
    return undefined;
  }
}

/**
 * Refuses (before the tree runs) a SIGTSTP/SIGTTIN/SIGTTOU stop the kernel would discard: the
 * process group of the task is orphaned here (no member has a parent in another group of the
 * same session), as the kernel tests it when the signal is taken.
 */
export function refuseDiscardedStops(procs: Proc[], leaveStopped: boolean | undefined): void {
  for (const p of procs) {
    const sig = finalStopSignal(p.img, leaveStopped);
    if (!sig || sig === SIGSTOP) continue;
    const me = statOf(p.host);
    if (!me) continue;
    let anchored = false;
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const m = statOf(Number(e));
      if (!m || m.pgrp !== me.pgrp || m.state === 'Z' || m.ppid <= 1) continue;
      const parent = statOf(m.ppid);
      if (parent && parent.pgrp !== me.pgrp && parent.sid === m.sid) {
        anchored = true;
        break;
      }
    }
    if (!anchored)
      throw new EngineError(`task ${p.img.pid}: stopped by ${NAMES[sig]}, but its process group ${p.img.pgid} is orphaned here; the kernel would discard the signal and the task would run`);
  }
}
