// Freezing a process tree with ptrace alone: seize and interrupt every thread, re-listing
// threads and children until no new task appears (the tree cannot fork once all are stopped).
import { Tracer, PTRACE_EVENT_STOP, PTRACE_O_SUSPEND_SECCOMP, isNativeError } from '../native';
import { listChildren, listThreads } from './proc/tree';
import { readStat } from './proc/stat';
import { EngineError } from './errors';
import type { Log } from './log';

export interface FrozenProcess {
  pid: number;
  ppid: number;
  /** stat state before seizing: 'Z' zombie, 'T' stopped, else running/sleeping */
  state: string;
  /** thread ids, leader first (empty for a zombie) */
  tids: number[];
}

export interface FrozenTree {
  root: number;
  /** processes in discovery order (parents before children) */
  processes: FrozenProcess[];
  /** signals consumed while stopping, re-delivered at detach */
  pendingStopSignals: Map<number, number>;
  seized: Set<number>;
}

const SIGTRAP = 5;
const SIGSTOP = 19;
const SIGTSTP = 20;
const SIGTTIN = 21;
const SIGTTOU = 22;
const GROUP_STOP_SIGNALS = new Set([SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]);

function seizeOne(tracer: Tracer, tid: number, opts: number): boolean {
  try {
    tracer.seize(tid, opts);
    tracer.interrupt(tid);
    return true;
  } catch (e) {
    if (isNativeError(e) && e.code === 'ESRCH') return false; // exited meanwhile
    if (isNativeError(e) && e.code === 'EPERM') throw new EngineError(`permission denied: cannot trace task ${tid} (ptrace: ${e.message})`, 'EPERM');
    throw e;
  }
}

/** Waits until tid reports its interrupt stop. Returns false when the thread exited. */
function waitForStop(tracer: Tracer, tid: number, tree: FrozenTree): boolean {
  for (;;) {
    let st;
    try {
      st = tracer.wait(tid, 5000);
    } catch (e) {
      if (isNativeError(e) && e.code === 'ECHILD') return false;
      throw e;
    }
    if (st.exited || st.signaled) return false;
    if (!st.stopped) continue;
    if (st.event === PTRACE_EVENT_STOP) return true;
    if (st.event !== 0) {
      tracer.cont(tid, 0); // e.g. an exit or clone event racing with the interrupt
      continue;
    }
    // A signal-delivery stop came first: hold the signal back and deliver it at detach.
    if (st.stopSig !== SIGTRAP || !tree.pendingStopSignals.has(tid)) tree.pendingStopSignals.set(tid, st.stopSig);
    tracer.cont(tid, 0);
  }
}

export function freezeTree(tracer: Tracer, root: number, log: Log): FrozenTree {
  const tree: FrozenTree = { root, processes: [], pendingStopSignals: new Map(), seized: new Set() };
  const byPid = new Map<number, FrozenProcess>();
  let first = readStat(root);
  if (first.state === 'Z') throw new EngineError(`task ${root} is a zombie; nothing to dump`);
  for (let round = 0; ; round++) {
    let changed = false;
    const queue = [root];
    const seenThisRound = new Set<number>();
    while (queue.length) {
      const pid = queue.shift()!;
      if (seenThisRound.has(pid)) continue;
      seenThisRound.add(pid);
      let proc = byPid.get(pid);
      if (!proc) {
        let st;
        try {
          st = pid === root && round === 0 ? first : readStat(pid);
        } catch {
          continue; // gone before we saw it
        }
        proc = { pid, ppid: st.ppid, state: st.state, tids: [] };
        byPid.set(pid, proc);
        tree.processes.push(proc);
        changed = true;
      }
      if (proc.state !== 'Z') {
        let tids: number[] = [];
        try {
          tids = listThreads(pid);
        } catch {
          tids = [];
        }
        const ordered = [pid, ...tids.filter((t) => t !== pid)];
        for (const tid of ordered) {
          if (tree.seized.has(tid)) continue;
          if (!tids.includes(tid)) continue;
          // a seccomp filter would also filter our injected syscalls
          if (seizeOne(tracer, tid, PTRACE_O_SUSPEND_SECCOMP)) {
            tree.seized.add(tid);
            if (!waitForStop(tracer, tid, tree)) {
              tree.seized.delete(tid);
              continue;
            }
            proc.tids.push(tid);
            changed = true;
          }
        }
        proc.tids.sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
      }
      try {
        for (const c of listChildren(pid)) queue.push(c);
      } catch {
        /* zombie leader without task dir entries */
      }
    }
    if (!changed) break;
    if (round > 100) throw new EngineError(`task tree of ${root} keeps changing; cannot freeze it`);
    first = readStat(root);
  }
  log.debug(`frozen ${tree.processes.length} processes, ${tree.seized.size} threads`);
  return tree;
}

/** Detaches every seized thread; group-stopped tasks stay stopped, held-back signals are delivered. */
export function thawTree(tracer: Tracer, tree: FrozenTree): void {
  for (const tid of tree.seized) {
    const sig = tree.pendingStopSignals.get(tid) ?? 0;
    try {
      tracer.detach(tid, GROUP_STOP_SIGNALS.has(sig) ? 0 : sig);
    } catch {
      /* already gone */
    }
    if (GROUP_STOP_SIGNALS.has(sig)) {
      try {
        process.kill(tid, sig);
      } catch {
        /* gone */
      }
    }
  }
  tree.seized.clear();
}
