// The process tree: stubs with the dumped PIDs (clone3 set_tid), parents before children,
// sessions and process groups as dumped (a group whose leader is gone: kinds/leaderless-pgrp),
// zombies exited with their status. A parent's memory is rebuilt before it forks its first
// child, so that the child starts with the parent's pages and keeps those it still shared
// copy-on-write (kinds/cow-memory); a child that shared its parent's fd table or fs struct is
// cloned with CLONE_FILES / CLONE_FS (kinds/shared-tables).
import * as fs from 'fs';
import { isNativeError } from '../../native';
import { EngineError } from '../errors';
import { Ctx, Proc, sleepMs } from './context';
import { TaskImage, TASK_ZOMBIE, TASK_DEAD } from './imageset';
import { Remote, errnoName, isErr } from './remote';
import { NR, SIGCHLD, SIGKILL, SIGSTOP, cloneArgs, i32, u64s, PTRACE_EVENT_FORK, PTRACE_EVENT_CLONE } from './sys';
import { findSyscallGadget } from '../inject';
import { readSmaps } from '../proc/maps';
import { rebuildMemory } from './memory';
import { cloneFlagsFor } from '../kinds/shared-tables';
import { makeGroupHelpers, endGroupHelpers } from '../kinds/leaderless-pgrp';

export const isZombie = (t: TaskImage): boolean => t.state === TASK_ZOMBIE || t.state === TASK_DEAD;

/** Parents before children (pstree order is usually so already). */
export function creationOrder(tasks: TaskImage[]): TaskImage[] {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  const out: TaskImage[] = [];
  const done = new Set<number>();
  const visit = (t: TaskImage) => {
    if (done.has(t.pid)) return;
    done.add(t.pid);
    const parent = byPid.get(t.ppid);
    if (parent) visit(parent);
    out.push(t);
  };
  tasks.forEach(visit);
  return out;
}

function pidWaitMs(ctx: Ctx): number {
  return ctx.opts.pidWaitMs ?? 10_000;
}

/** Retries fn while it reports EEXIST (the PID's old zombie not yet reaped). */
function whileTaken<T>(ctx: Ctx, pid: number, fn: () => T | 'EEXIST'): T {
  const until = Date.now() + pidWaitMs(ctx);
  for (;;) {
    const r = fn();
    if (r !== 'EEXIST') return r;
    if (Date.now() > until) throw new EngineError(`PID ${pid} is still in use after ${pidWaitMs(ctx) / 1000} s (${holder(pid) || 'held by a task this engine cannot see'})`, 'EEXIST');
    sleepMs(20);
  }
}

export function holder(pid: number): string {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || f[0] === 'X') return `held by an unreaped zombie "${comm}" whose parent is ${f[1]}`;
    return `held by the running process "${comm}"`;
  } catch {
    return ''; // gone meanwhile
  }
}

function newProc(ctx: Ctx, img: TaskImage, host: number): Proc {
  const p: Proc = { img, host, tids: new Map([[img.pid, host]]), remote: new Remote(ctx.tracer, host, img.pid) };
  ctx.procs.set(img.pid, p);
  return p;
}

/** Waits for the first stop of a task auto-attached at fork/clone. */
export function waitNewTask(ctx: Ctx, host: number): void {
  for (;;) {
    const st = ctx.tracer.wait(host, 5000);
    if (st.exited || st.signaled) throw new EngineError(`new task ${host} died before it could be restored`);
    if (st.stopped) return;
  }
}

/** Injected clone3 in parent creating a child with PID vpid; returns its host PID, or EEXIST. */
function forkChild(ctx: Ctx, parent: Proc, vpid: number, flags = 0, exitSignal = SIGCHLD): number | 'EEXIST' {
  const r = parent.remote;
  r.reset();
  const tidAt = r.put(i32(vpid));
  const argsAt = r.put(cloneArgs(flags, exitSignal, tidAt));
  const out = ctx.tracer.inject(parent.host, r.gadget, [{ nr: NR.clone3, args: [argsAt, 88] }], { timeoutMs: 10_000 });
  const res = out.results[0];
  if (isErr(res)) {
    if (res === -17n) return 'EEXIST';
    throw new EngineError(`task ${parent.img.pid}: clone3 of child ${vpid} failed: ${errnoName(Number(-res))}`);
  }
  // another exit signal than SIGCHLD makes it a clone child: reported as a clone event
  const i = out.events.indexOf(exitSignal === SIGCHLD ? PTRACE_EVENT_FORK : PTRACE_EVENT_CLONE);
  if (i < 0) throw new EngineError(`task ${parent.img.pid}: clone3 of child ${vpid} was not traced`);
  const host = Number(out.eventMsgs[i]);
  ctx.created.push(host);
  waitNewTask(ctx, host);
  return host;
}

/** A helper child of a task with a given PID (waiting while the PID is still taken). */
export function forkHelper(ctx: Ctx, parent: Proc, pid: number, exitSignal: number): number {
  return whileTaken(ctx, pid, () => forkChild(ctx, parent, pid, 0, exitSignal));
}

function spawnRoot(ctx: Ctx, root: TaskImage): number {
  const t = ctx.transport;
  if (ctx.opts.pidns) {
    const init = ctx.tracer.spawnStub({ newPidns: true, keepFd: t.stubFd, keepAs: t.number });
    ctx.created.push(init);
    ctx.init = init;
    const initProc: Proc = { img: root, host: init, tids: new Map(), remote: new Remote(ctx.tracer, init, 1) };
    prepareStub(ctx, initProc);
    return whileTaken(ctx, root.pid, () => forkChild(ctx, initProc, root.pid));
  }
  return whileTaken(ctx, root.pid, () => {
    try {
      const host = ctx.tracer.spawnStub({ pid: root.pid, keepFd: t.stubFd, keepAs: t.number });
      ctx.created.push(host);
      return host;
    } catch (e) {
      if (isNativeError(e) && e.code === 'EEXIST') return 'EEXIST';
      throw e;
    }
  });
}

/** Gadget and scratch of a fresh stub (children share the root stub's layout). */
function prepareStub(ctx: Ctx, p: Proc): void {
  const vmas = readSmaps(p.host);
  p.remote.gadget = findSyscallGadget(p.host, vmas);
  // a scratch area for the tree phase; the memory phase replaces it
  const res = ctx.tracer.inject(p.host, p.remote.gadget, [{ nr: NR.mmap, args: [0, 65536, 3, 0x22, -1, 0] }]).results[0];
  if (isErr(res)) throw new EngineError(`stub ${p.host}: mmap failed: ${errnoName(Number(-res))}`);
  p.remote.scratch = res;
  // the stub inherited the engine's signal dispositions; a zombie child needs SIGCHLD at default
  p.remote.run(p.host, [{ nr: NR.rt_sigaction, args: [SIGCHLD, p.remote.put(Buffer.alloc(32)), 0, 8], what: 'rt_sigaction(SIGCHLD)' }]);
}

export function buildTree(ctx: Ctx): void {
  const order = creationOrder(ctx.set.tasks);
  const root = order[0];
  const rootHost = spawnRoot(ctx, root);
  const rootProc = newProc(ctx, root, rootHost);
  ctx.cgroups?.enter(ctx, rootProc);
  prepareStub(ctx, rootProc);
  sessionOf(ctx, rootProc, true);
  // task -> the task whose restored memory it got by fork (the root: none, a stub of its own)
  const forkedFrom = new Map<number, TaskImage | undefined>([[root.pid, undefined]]);
  const rebuilt = new Set<number>();
  const memory = (p: Proc) => {
    if (rebuilt.has(p.img.pid)) return;
    rebuilt.add(p.img.pid);
    rebuildMemory(ctx, p, forkedFrom.get(p.img.pid));
    ctx.log.debug(`task ${p.img.pid}: memory rebuilt`);
  };
  for (const t of order.slice(1)) {
    const parent = ctx.procs.get(t.ppid);
    if (!parent) throw new EngineError(`pstree.img: task ${t.pid}: parent ${t.ppid} is not in the tree`);
    memory(parent);
    forkedFrom.set(t.pid, parent.img);
    const flags = isZombie(t) ? 0 : cloneFlagsFor(t, parent.img);
    const host = whileTaken(ctx, t.pid, () => forkChild(ctx, parent, t.pid, flags));
    const p = newProc(ctx, t, host);
    // into its cgroups before its memory is rebuilt (charged where it is allocated)
    ctx.cgroups?.enter(ctx, p);
    p.remote.gadget = parent.remote.gadget;
    p.remote.scratch = parent.remote.scratch; // inherited copy of the parent's scratch
    sessionOf(ctx, p, false);
  }
  // process groups: leaders first (a dead leader: its helper, kinds/leaderless-pgrp), then members
  const alive = order.map((t) => ctx.procs.get(t.pid)!);
  for (const p of alive) if (p.img.pgid === p.img.pid && p.img.sid !== p.img.pid) setpgid(p, 0);
  const helpers = makeGroupHelpers(ctx, (parent, pid, sig) => forkHelper(ctx, parent, pid, sig));
  for (const p of alive) if (p.img.pgid !== p.img.pid && (ctx.procs.has(p.img.pgid) || helpers.has(p.img.pgid))) setpgid(p, p.img.pgid);
  endGroupHelpers(ctx, helpers);
  for (const p of alive) if (isZombie(p.img)) makeZombie(ctx, p);
  for (const ppid of new Set(alive.filter((p) => isZombie(p.img)).map((p) => p.img.ppid))) dropChildSignal(ctx.procs.get(ppid)!);
  for (const p of alive) if (!isZombie(p.img)) memory(p);
}

function sessionOf(ctx: Ctx, p: Proc, isRoot: boolean): void {
  const t = p.img;
  if (t.sid === t.pid) {
    p.remote.one(p.host, 'setsid', NR.setsid);
    if (!isZombie(t)) ctx.ttys.takeControllingTerminal(p);
    return;
  }
  if (isRoot && !ctx.opts.shellJob && !ctx.opts.pidns)
    throw new EngineError(`pstree.img: task ${t.pid}: session ${t.sid} is outside the tree (use --shell-job)`);
}

function setpgid(p: Proc, pgid: number): void {
  p.remote.one(p.host, `setpgid(${pgid || p.img.pid})`, NR.setpgid, 0, pgid);
}

const NR_RT_SIGTIMEDWAIT = 128;

/**
 * The zombies' exits queued a SIGCHLD in their parent (a traced task ignores none): the task got
 * that signal before the dump, so it is taken off again. One pending at dump is in the image and
 * queued again later (requeueSignals).
 */
function dropChildSignal(p: Proc): void {
  const r = p.remote;
  r.reset();
  const set = r.put(u64s(1n << BigInt(SIGCHLD - 1)));
  const zero = r.put(Buffer.alloc(16));
  r.run(p.host, [{ nr: NR_RT_SIGTIMEDWAIT, args: [set, 0, zero, 8], what: 'rt_sigtimedwait(SIGCHLD)', mayFail: true }]);
}

/** Ends the stub with the dumped wait status; it stays a zombie of its restored parent. */
function makeZombie(ctx: Ctx, p: Proc): void {
  let status = p.img.exitCode;
  // our engine's dumps (TASK_ZOMBIE) kept the exit code only, CRIU keeps the wait status
  if (p.img.state === TASK_ZOMBIE && status < 256) status <<= 8;
  const sig = status & 0x7f;
  const comm = String(p.img.leader.tc.comm ?? '').slice(0, 15);
  p.remote.reset();
  p.remote.one(p.host, 'prctl(PR_SET_NAME)', NR.prctl, 15, p.remote.cstr(comm), 0, 0, 0);
  try {
    if (sig) {
      p.remote.run(p.host, [
        // SIGKILL and SIGSTOP always have their default action (and take no other)
        ...(sig === SIGKILL || sig === SIGSTOP ? [] : [{ nr: NR.rt_sigaction, args: [sig, p.remote.put(Buffer.alloc(32)), 0, 8], what: 'rt_sigaction' }]),
        { nr: NR.prlimit64, args: [0, 4, p.remote.put(Buffer.alloc(16)), 0], what: 'prlimit(RLIMIT_CORE)' },
        { nr: NR.kill, args: [p.img.pid, sig], what: `kill(${sig})` },
      ]);
      // pending while the injection blocked signals; delivered once it runs on
      ctx.tracer.cont(p.host, 0);
    } else {
      ctx.tracer.inject(p.host, p.remote.gadget, [{ nr: NR.exit_group, args: [(status >> 8) & 0xff] }]);
    }
  } catch (e) {
    if (!(isNativeError(e) && e.code === 'ESRCH')) throw e;
  }
  for (;;) {
    let st;
    try {
      st = ctx.tracer.wait(p.host, 5000);
    } catch (e) {
      if (isNativeError(e) && e.code === 'ECHILD') break; // the injection already saw it exit
      throw e;
    }
    if (st.exited || st.signaled) break;
    if (st.stopped) ctx.tracer.cont(p.host, st.stopSig === 5 ? 0 : st.stopSig);
  }
  ctx.procs.delete(p.img.pid);
  ctx.zombies.push(p.img.pid);
}
