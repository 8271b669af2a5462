// Freezing a process tree. When the tree has a cgroup v2 of its own (every task of the cgroup
// subtree belongs to the tree), the cgroup freezer stops it atomically, every thread is seized
// and interrupted while frozen, and the cgroup is thawed again: the threads are then held by
// ptrace alone. Otherwise ptrace alone: seize and interrupt every thread, re-listing threads and
// children until no new task appears (the tree cannot fork once all are stopped).
// ENGINE_FREEZE=ptrace|cgroup forces one method (cgroup: fail when it is not usable).
import * as fs from 'fs';
import * as path from 'path';
import { Tracer, PTRACE_EVENT_STOP, PTRACE_O_SUSPEND_SECCOMP, isNativeError } from '../native';
import { listChildren, listThreads } from './proc/tree';
import { readMountinfo } from './proc/mountinfo';
import { readStat } from './proc/stat';
import { EngineError, UnsupportedError } from './errors';
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
  /** threads that had a SIGTRAP on its way to them while stopping (it cannot be saved) */
  sigtrapsCaught: Set<number>;
  /** the signal of each thread's interrupt stop: SIGTRAP, or the stop signal of a group stop */
  stopSignals: Map<number, number>;
  seized: Set<number>;
  /** how the tree was stopped, and the cgroup frozen for it */
  method: 'cgroup' | 'ptrace';
  cgroup?: string;
  /** how long one task may take to stop (criu --timeout) */
  timeoutMs: number;
}

const SIGTRAP = 5;
const SIGSTOP = 19;
const SIGTSTP = 20;
const SIGTTIN = 21;
const SIGTTOU = 22;
const GROUP_STOP_SIGNALS = new Set([SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU]);

/** an exec while seized then stops at an event, not with a SIGTRAP that looks like a real one */
const PTRACE_O_TRACEEXEC = 0x10;

function seizeOne(tracer: Tracer, tid: number, opts: number): boolean {
  try {
    tracer.seize(tid, opts | PTRACE_O_TRACEEXEC);
    tracer.interrupt(tid);
    return true;
  } catch (e) {
    if (isNativeError(e) && e.code === 'ESRCH') return false; // exited meanwhile
    if (isNativeError(e) && e.code === 'EPERM') {
      // a task on its way out cannot be seized either: it is a zombie (or gone) at the next scan
      if (exiting(tid)) return false;
      // a task another process traces (a debugger, its own parent) cannot be seized by us
      const by = tracerOf(tid);
      if (by) throw new UnsupportedError(`task ${tid}: traced by process ${by} (TracerPid); traced tasks cannot be dumped`);
      throw new EngineError(`permission denied: cannot trace task ${tid} (ptrace: ${e.message})`, 'EPERM');
    }
    throw e;
  }
}

const PF_EXITING = 0x4;

/** Is the thread exiting (PF_EXITING, a zombie, or gone)? */
function exiting(tid: number): boolean {
  let st: string;
  try {
    st = fs.readFileSync(`/proc/${tid}/stat`, 'utf8');
  } catch {
    return true;
  }
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  // fields after the comm: state is the 3rd of stat, flags the 9th
  return f[0] === 'Z' || f[0] === 'X' || (Number(f[6]) & PF_EXITING) !== 0;
}

/** Waits (briefly) for an exiting process to be a zombie or gone; which it is. */
function settledExit(pid: number): 'Z' | 'gone' {
  const until = Date.now() + 2000;
  for (;;) {
    try {
      if (readStat(pid).state === 'Z') return 'Z';
    } catch {
      return 'gone';
    }
    if (Date.now() > until) throw new EngineError(`task ${pid} is exiting and cannot be seized, and has not exited`, 'EAGAIN');
    Atomics.wait(sleepCell, 0, 0, 5);
  }
}

/** TracerPid of a thread (0: not traced, or gone). */
function tracerOf(tid: number): number {
  try {
    return Number(/^TracerPid:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${tid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** Waits until tid reports its interrupt stop. Returns false when the thread exited. */
function waitForStop(tracer: Tracer, tid: number, tree: FrozenTree): boolean {
  for (;;) {
    let st;
    try {
      st = tracer.wait(tid, tree.timeoutMs);
    } catch (e) {
      if (isNativeError(e) && e.code === 'ECHILD') return false;
      throw e;
    }
    if (st.exited || st.signaled) return false;
    if (!st.stopped) continue;
    if (st.event === PTRACE_EVENT_STOP) {
      tree.stopSignals.set(tid, st.stopSig);
      return true;
    }
    if (st.event !== 0) {
      tracer.cont(tid, 0); // e.g. an exit or clone event racing with the interrupt
      continue;
    }
    // A signal-delivery stop came first: the signal arrived between the seize and the interrupt.
    // An ordinary one is delivered now, as it would have been a moment earlier (the interrupt
    // stop follows once the task is in its handler). SIGTRAP (see kinds/sigtrap) and the stop
    // signals are held back and given again at detach; a dump that kills the tree refuses them.
    if (st.stopSig === SIGTRAP || GROUP_STOP_SIGNALS.has(st.stopSig)) {
      if (st.stopSig === SIGTRAP) tree.sigtrapsCaught.add(tid);
      if (st.stopSig !== SIGTRAP || !tree.pendingStopSignals.has(tid)) tree.pendingStopSignals.set(tid, st.stopSig);
      tracer.cont(tid, 0);
      continue;
    }
    tracer.cont(tid, st.stopSig);
  }
}

/**
 * Stops every thread of the tree under root. On failure (or when check() throws, e.g. on an
 * interruption) every thread seized so far is detached again before the error propagates.
 */
export function freezeTree(tracer: Tracer, root: number, log: Log, check: () => void = () => {}, timeoutMs = 5000): FrozenTree {
  const tree: FrozenTree = {
    root, processes: [], pendingStopSignals: new Map(), sigtrapsCaught: new Set(), stopSignals: new Map(), seized: new Set(), method: 'ptrace', timeoutMs,
  };
  const want = process.env.ENGINE_FREEZE ?? 'auto';
  try {
    const cg = want === 'ptrace' ? { reason: 'ENGINE_FREEZE=ptrace' } : ownCgroup(root);
    if (cg.dir && cgroupFreeze(tracer, tree, cg.dir, check)) {
      tree.method = 'cgroup';
      tree.cgroup = cg.dir;
    } else {
      const why = cg.reason ?? `the tree of ${root} changed while its cgroup ${cg.dir} froze`;
      if (want === 'cgroup') throw new EngineError(`cannot use the cgroup freezer: ${why}`);
      log.debug(`cgroup freezer not used: ${why}`);
      ptraceLoop(tracer, tree, check);
    }
  } catch (e) {
    thawTree(tracer, tree);
    throw e;
  }
  log.debug(`frozen ${tree.processes.length} processes, ${tree.seized.size} threads (${tree.method}${tree.cgroup ? ` ${tree.cgroup}` : ''})`);
  return tree;
}

/** The cgroup2 mount point of this mount namespace, if any. */
function cgroup2Mount(): string | undefined {
  return readMountinfo().find((m) => m.fstype === 'cgroup2')?.point;
}

/** Processes of a cgroup and of every cgroup below it. */
function cgroupMembers(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    let procs: string[];
    try {
      procs = fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOTSUP' && (e as NodeJS.ErrnoException).code !== 'EOPNOTSUPP') throw e;
      // a threaded cgroup lists threads only: their processes
      procs = fs.readFileSync(path.join(d, 'cgroup.threads'), 'utf8').split('\n').filter(Boolean).map((tid) => {
        try {
          return /^Tgid:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${tid}/status`, 'utf8'))?.[1] ?? tid;
        } catch {
          return ''; // exited
        }
      });
    }
    for (const p of procs) if (p) out.push(Number(p));
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(dir);
  return out;
}

/** Processes of the tree under root as they are now (racy unless frozen). */
function treeProcesses(root: number): Set<number> {
  const seen = new Set<number>();
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    try {
      queue.push(...listChildren(pid));
    } catch {
      /* exited */
    }
  }
  return seen;
}

/** The v2 cgroup that holds exactly the tree under root (and nothing else), or why there is none. */
export function ownCgroup(root: number): { dir?: string; reason?: string } {
  const mnt = cgroup2Mount();
  if (!mnt) return { reason: 'no cgroup2 mount' };
  let rel: string | undefined;
  try {
    rel = /^0::(.*)$/m.exec(fs.readFileSync(`/proc/${root}/cgroup`, 'utf8'))?.[1];
  } catch {
    return { reason: `task ${root} is gone` };
  }
  if (!rel || rel === '/') return { reason: `task ${root} is in the root cgroup` };
  const dir = path.join(mnt, rel);
  let frozen: string;
  try {
    frozen = fs.readFileSync(path.join(dir, 'cgroup.freeze'), 'utf8').trim();
  } catch {
    return { reason: `${dir} has no cgroup.freeze` };
  }
  if (frozen !== '0') return { reason: `${dir} is frozen already` };
  const tree = treeProcesses(root);
  const outside = cgroupMembers(dir).filter((p) => !tree.has(p));
  if (outside.length) return { reason: `${dir} also holds task ${outside[0]}, which is not in the tree` };
  return { dir };
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function setFreeze(dir: string, on: boolean): void {
  fs.writeFileSync(path.join(dir, 'cgroup.freeze'), on ? '1' : '0');
}

/**
 * Freezes dir, seizes and interrupts every thread of the tree, thaws, and waits for each
 * thread's interrupt stop. Returns false (nothing seized, cgroup thawed) when the cgroup
 * turned out to hold a task outside the tree.
 */
function cgroupFreeze(tracer: Tracer, tree: FrozenTree, dir: string, check: () => void): boolean {
  setFreeze(dir, true);
  try {
    const until = Date.now() + tree.timeoutMs;
    while (!/^frozen 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'))) {
      if (Date.now() > until) throw new EngineError(`cgroup ${dir} did not freeze within ${tree.timeoutMs / 1000} s`);
      check();
      Atomics.wait(sleepCell, 0, 0, 0.05);
    }
    check();
    // frozen: the tree cannot change; it must still be all the cgroup holds
    const procs = treeProcesses(tree.root);
    if (cgroupMembers(dir).some((p) => !procs.has(p))) return false;
    const first = readStat(tree.root);
    if (first.state === 'Z') throw new EngineError(`task ${tree.root} is a zombie; nothing to dump`);
    for (const pid of procs) {
      let st;
      try {
        st = pid === tree.root ? first : readStat(pid);
      } catch {
        continue;
      }
      const proc: FrozenProcess = { pid, ppid: st.ppid, state: st.state, tids: [] };
      tree.processes.push(proc);
      if (proc.state === 'Z') continue;
      let tids: number[] = [];
      try {
        tids = listThreads(pid);
      } catch {
        tids = [];
      }
      for (const tid of [pid, ...tids.filter((t) => t !== pid)]) {
        if (!tids.includes(tid)) continue;
        if (seizeOne(tracer, tid, PTRACE_O_SUSPEND_SECCOMP)) {
          tree.seized.add(tid);
          proc.tids.push(tid);
        }
      }
      // none of its threads could be seized: it was on its way out, a zombie by now (or gone)
      if (!proc.tids.length) {
        if (settledExit(pid) === 'Z') proc.state = 'Z';
        else tree.processes.pop();
      }
    }
  } finally {
    setFreeze(dir, false);
  }
  for (const proc of tree.processes) {
    proc.tids = proc.tids.filter((tid) => {
      if (waitForStop(tracer, tid, tree)) return true;
      tree.seized.delete(tid);
      return false;
    });
    proc.tids.sort((a, b) => (a === proc.pid ? -1 : b === proc.pid ? 1 : a - b));
  }
  return true;
}

function ptraceLoop(tracer: Tracer, tree: FrozenTree, check: () => void): void {
  const root = tree.root;
  const byPid = new Map<number, FrozenProcess>();
  let first = readStat(root);
  if (first.state === 'Z') throw new EngineError(`task ${root} is a zombie; nothing to dump`);
  for (let round = 0; ; round++) {
    check();
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
        // none of its threads could be seized: it was on its way out, a zombie by now (or gone)
        if (!proc.tids.length) {
          const now = settledExit(pid);
          if (now === 'Z') proc.state = 'Z';
          else {
            tree.processes.splice(tree.processes.indexOf(proc), 1);
            byPid.delete(pid);
          }
          changed = true;
        }
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
