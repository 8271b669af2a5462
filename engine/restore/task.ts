// Process- and thread-wide state, all set by the task itself (injected): cwd/root/umask,
// signal handlers, itimers, rlimits, threads with their TIDs and per-thread registrations,
// POSIX timers with their ids, pending signals, creds.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { parseLimits } from '../dump/core';
import { EngineError } from '../errors';
import type { Ctx, Proc } from './context';
import { big, num, ImageError, fownOf, seccompPlan } from './imageset';
import { Call, errnoName } from './remote';
import { native, NT_PRSTATUS, PTRACE_O_TRACECLONE, PTRACE_O_EXITKILL, PTRACE_O_SUSPEND_SECCOMP } from '../../native';

const PTRACE_O_TRACEFORK = 0x2;
import { waitNewTask } from './tree';
import { inDeadProcDir } from '../kinds/deadproc';
import {
  NR, CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD, CLONE_SYSVSEM, PR_SET_NAME,
  PR_SET_CHILD_SUBREAPER, PR_SET_THP_DISABLE, PR_TIMER_CREATE_RESTORE_IDS, PTRACE_EVENT_CLONE, cloneArgs,
  i32, u64s,
} from './sys';

export function restoreFs(ctx: Ctx, p: Proc): void {
  const fsImg = p.img.fs!;
  const r = p.remote;
  r.reset();
  const name = (id: unknown) => ctx.set.files.get(num(id))!.reg.name as string;
  const root = name(fsImg.root_id);
  // both paths are the engine's view: the cwd first (it may lie outside the new root), then the root
  const steps: [unknown, Call][] = [[fsImg.cwd_id, { nr: NR.chdir, args: [r.cstr(name(fsImg.cwd_id))], what: `chdir(${name(fsImg.cwd_id)})` }]];
  if (root !== '/') steps.push([fsImg.root_id, { nr: NR.chroot, args: [r.cstr(root)], what: `chroot(${root})` }]);
  const umask: Call = { nr: NR.umask, args: [num(fsImg.umask)], what: 'umask' };
  if (!steps.some(([id]) => ctx.deadProcs.has(num(id)))) {
    r.run(p.host, [...steps.map(([, c]) => c), umask]);
    return;
  }
  // a dead process's /proc directory: entered while a helper holds its PID (kinds/deadproc);
  // each path is put in the scratch area again (making the helper uses it)
  for (const [id, call] of steps) {
    const again = () => {
      r.reset();
      r.run(p.host, [{ ...call, args: [r.cstr(name(id))] }]);
    };
    const dead = ctx.deadProcs.get(num(id));
    if (dead === undefined) again();
    else inDeadProcDir(ctx, p, dead, ctx.forkHelper, again);
  }
  r.reset();
  r.run(p.host, [umask]);
}

const SIGKILL = 9, SIGSTOP = 19;

export function restoreSignalsAndLimits(p: Proc): void {
  const tc = p.img.leader.tc;
  const r = p.remote;
  r.reset();
  const calls: Call[] = [];
  const acts = (tc.sigactions ?? []) as Msg[];
  // what the stub has now: a default action it already has costs no injected call
  const status = fs.readFileSync(`/proc/${p.host}/status`, 'utf8');
  const mask = (k: string) => BigInt('0x' + (new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(status)?.[1] ?? 'ffffffffffffffff'));
  const notDefault = mask('SigIgn') | mask('SigCgt');
  const limitsNow = parseLimits(fs.readFileSync(`/proc/${p.host}/limits`, 'utf8'));
  let i = 0;
  for (let sig = 1; sig <= 64 && i < acts.length; sig++) {
    if (sig === SIGKILL || sig === SIGSTOP) continue;
    const a = acts[i++];
    const isDefault = !big(a.sigaction) && !big(a.flags) && !big(a.restorer) && !big(a.mask);
    if (isDefault && !((notDefault >> BigInt(sig - 1)) & 1n)) continue;
    const buf = u64s(big(a.sigaction), big(a.flags), big(a.restorer), big(a.mask));
    calls.push({ nr: NR.rt_sigaction, args: [sig, r.put(buf), 0, 8], what: `rt_sigaction(${sig})` });
  }
  const timers = tc.timers ?? {};
  (['real', 'virt', 'prof'] as const).forEach((k, which) => {
    const t = timers[k];
    if (!t) return;
    let vusec = big(t.vusec);
    // caught at its expiry: still armed when it has an interval
    if (!big(t.vsec) && !vusec && (big(t.isec) || big(t.iusec))) vusec = 1n;
    if (!big(t.vsec) && !vusec) return;
    calls.push({ nr: NR.setitimer, args: [which, r.put(u64s(big(t.isec), big(t.iusec), big(t.vsec), vusec)), 0], what: `setitimer(${k})` });
  });
  ((tc.rlimits?.rlimits ?? []) as Msg[]).forEach((l, res) => {
    const now = limitsNow[res];
    if (now && now[0] === big(l.cur) && now[1] === big(l.max)) return;
    calls.push({ nr: NR.prlimit64, args: [0, res, r.put(u64s(big(l.cur), big(l.max))), 0], what: `prlimit(${res})` });
  });
  if (tc.child_subreaper) calls.push({ nr: NR.prctl, args: [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0], what: 'prctl(PR_SET_CHILD_SUBREAPER)' });
  if (p.img.mm?.thp_disabled) calls.push({ nr: NR.prctl, args: [PR_SET_THP_DISABLE, 1, 0, 0, 0], what: 'prctl(PR_SET_THP_DISABLE)' });
  if (num(tc.personality)) calls.push({ nr: 135, args: [num(tc.personality)], what: 'personality' });
  r.run(p.host, calls);
}

export function createThreads(ctx: Ctx, p: Proc): void {
  const flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
  const r = p.remote;
  for (const vtid of p.img.threads) {
    if (vtid === p.img.pid) continue;
    r.reset();
    const tidAt = r.put(i32(vtid));
    const argsAt = r.put(cloneArgs(flags, 0, tidAt));
    const out = ctx.tracer.inject(p.host, r.gadget, [{ nr: NR.clone3, args: [argsAt, 88] }], { timeoutMs: 10_000 });
    const res = out.results[0];
    if (res < 0n && res > -4096n) {
      const why = res === -17n ? 'TID in use' : `errno ${-res}`;
      throw new EngineError(`task ${p.img.pid}: cannot create thread ${vtid}: ${why}`);
    }
    const k = out.events.indexOf(PTRACE_EVENT_CLONE);
    if (k < 0) throw new EngineError(`task ${p.img.pid}: thread ${vtid} was not traced`);
    const host = Number(out.eventMsgs[k]);
    p.tids.set(vtid, host);
    waitNewTask(ctx, host);
  }
}

/** tid address, robust list, rseq, sigaltstack, name: each thread for itself (the pdeath signal comes after the creds, kinds/pdeath). */
export function restoreThreadState(p: Proc): void {
  const r = p.remote;
  for (const [vtid, host] of p.tids) {
    const core = p.img.cores.get(vtid)!;
    const tc = core.thread_core ?? {};
    r.reset();
    const calls: Call[] = [{ nr: NR.set_tid_address, args: [big(core.thread_info.clear_tid_addr)], what: 'set_tid_address' }];
    if (num(tc.futex_rla_len)) calls.push({ nr: NR.set_robust_list, args: [big(tc.futex_rla), num(tc.futex_rla_len)], what: 'set_robust_list' });
    const rs = tc.rseq_entry;
    if (rs && big(rs.rseq_abi_pointer)) calls.push({ nr: NR.rseq, args: [big(rs.rseq_abi_pointer), num(rs.rseq_abi_size), 0, num(rs.signature)], what: `rseq (thread ${vtid})` });
    if (tc.sas) {
      const ss = Buffer.alloc(24);
      ss.writeBigUInt64LE(big(tc.sas.ss_sp), 0);
      ss.writeInt32LE(num(tc.sas.ss_flags) & ~1 /* SS_ONSTACK is state, not a setting */, 8);
      ss.writeBigUInt64LE(big(tc.sas.ss_size), 16);
      calls.push({ nr: NR.sigaltstack, args: [r.put(ss), 0], what: `sigaltstack (thread ${vtid})` });
    }
    const comm = (tc.comm ?? (vtid === p.img.pid ? p.img.leader.tc.comm : undefined)) as string | undefined;
    if (comm !== undefined) calls.push({ nr: NR.prctl, args: [PR_SET_NAME, r.put(Buffer.from(comm.slice(0, 15) + '\0')), 0, 0, 0], what: 'prctl(PR_SET_NAME)' });
    r.run(host, calls);
  }
}

export function restorePosixTimers(p: Proc): void {
  const timers = (p.img.leader.tc.timers?.posix ?? []) as Msg[];
  if (!timers.length) return;
  const r = p.remote;
  r.reset();
  const calls: Call[] = [{ nr: NR.prctl, args: [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0], what: 'prctl(PR_TIMER_CREATE_RESTORE_IDS)' }];
  const idAt: bigint[] = [];
  for (const t of timers) {
    const ev = Buffer.alloc(64);
    ev.writeBigUInt64LE(big(t.sival_ptr), 0);
    ev.writeInt32LE(num(t.si_signo), 8);
    ev.writeInt32LE(num(t.it_sigev_notify), 12);
    ev.writeInt32LE(num(t.notify_thread_id), 16);
    const at = r.put(i32(num(t.it_id)));
    idAt.push(at);
    calls.push({ nr: NR.timer_create, args: [num(t.clock_id), r.put(ev), at], what: `timer_create(id ${t.it_id})` });
    let vsec = big(t.vsec), vnsec = big(t.vnsec);
    // a periodic timer whose signal was pending reports 0 left: it is still running
    if (!vsec && !vnsec && (big(t.isec) || big(t.insec))) vnsec = 1n;
    if (vsec || vnsec)
      calls.push({ nr: NR.timer_settime, args: [num(t.it_id), 0, r.put(u64s(big(t.isec), big(t.insec), vsec, vnsec)), 0], what: `timer_settime(id ${t.it_id})` });
  }
  calls.push({ nr: NR.prctl, args: [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0], what: 'prctl(PR_TIMER_CREATE_RESTORE_IDS off)' });
  r.run(p.host, calls);
  timers.forEach((t, i) => {
    const got = r.read(idAt[i], 4).readInt32LE(0);
    if (got !== num(t.it_id)) throw new ImageError(`core-${p.img.pid}.img`, 'tc.timers.posix', `timer ${t.it_id} came back as ${got}`);
  });
}

/** Signals that were pending at dump time, queued again by the task to itself. */
export function requeueSignals(p: Proc): void {
  const r = p.remote;
  r.reset();
  const calls: Call[] = [];
  const info = (m: Msg) => Buffer.from(m.siginfo as Uint8Array);
  const SI_TIMER = -2;
  for (const s of (p.img.leader.tc.signals_s?.signals ?? []) as Msg[]) {
    const b = info(s);
    // a POSIX timer's own signal: the restored timer (armed to fire at once) sends it again; a
    // copy queued here would stand in for it and the timer would never be re-armed
    if (b.readInt32LE(8) === SI_TIMER) continue;
    calls.push({ nr: 129 /* rt_sigqueueinfo */, args: [p.img.pid, b.readInt32LE(0), r.put(b)], what: 'rt_sigqueueinfo' });
  }
  for (const vtid of p.tids.keys()) {
    for (const s of (p.img.cores.get(vtid)!.thread_core?.signals_p?.signals ?? []) as Msg[]) {
      const b = info(s);
      if (b.readInt32LE(8) === SI_TIMER) continue;
      calls.push({ nr: NR.rt_tgsigqueueinfo, args: [p.img.pid, vtid, b.readInt32LE(0), r.put(b)], what: 'rt_tgsigqueueinfo' });
    }
  }
  r.run(p.host, calls);
}

const NR_SET_THREAD_AREA_32 = 243, NR_SECCOMP = 317;
const PROT_RWX = 7, MAP_PRIVATE_ANON_32BIT = 0x02 | 0x20 | 0x40;
const RBX_OFFSET = 5 * 8;

/** struct user_desc of a thread_info.tls entry */
function userDesc(t: Msg): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(num(t.entry_number) >>> 0, 0);
  b.writeUInt32LE(num(t.base_addr) >>> 0, 4);
  b.writeUInt32LE(num(t.limit) >>> 0, 8);
  const bits = (t.seg_32bit ? 1 : 0) | (t.contents_l ? 2 : 0) | (t.contents_h ? 4 : 0) | (t.read_exec_only ? 8 : 0)
    | (t.limit_in_pages ? 16 : 0) | (t.seg_not_present ? 32 : 0) | (t.usable ? 64 : 0);
  b.writeUInt32LE(bits, 12);
  return b;
}

/**
 * GDT TLS slots: set_thread_area exists only as a 32-bit call here, so each thread runs `int 0x80`
 * from a page below 4 GiB that holds the instruction and the descriptor (ebx points at it).
 */
export function restoreTls(ctx: Ctx, p: Proc): void {
  const wanted = [...p.tids].map(([vtid, host]) => ({
    vtid, host, slots: ((p.img.cores.get(vtid)!.thread_info.tls ?? []) as Msg[]).filter((t) => !t.seg_not_present),
  })).filter((w) => w.slots.length);
  if (!wanted.length) return;
  const r = p.remote;
  const page = r.one(p.host, 'mmap(TLS page below 4 GiB)', NR.mmap, 0, 4096, PROT_RWX, MAP_PRIVATE_ANON_32BIT, -1, 0);
  if (page >= 1n << 32n) throw new EngineError(`task ${p.img.pid}: the TLS page landed above 4 GiB`);
  try {
    native().writeMemory(p.host, page, Buffer.from([0xcd, 0x80]));
    for (const w of wanted) {
      for (const t of w.slots) {
        native().writeMemory(p.host, page + 16n, userDesc(t));
        const regs = ctx.tracer.getRegset(w.host, NT_PRSTATUS);
        regs.writeBigUInt64LE(page + 16n, RBX_OFFSET);
        ctx.tracer.setRegset(w.host, NT_PRSTATUS, regs);
        const res = ctx.tracer.inject(w.host, page, [{ nr: NR_SET_THREAD_AREA_32 }]).results[0];
        r.calls++;
        if (res !== 0n) throw new EngineError(`task ${p.img.pid}: set_thread_area(slot ${t.entry_number}) of thread ${w.vtid} failed: ${errnoName(Number(-res))}`);
      }
    }
  } finally {
    r.one(p.host, 'munmap(TLS page)', NR.munmap, page, 4096);
  }
}

/** SIGIO owners: F_SETOWN_EX and F_SETSIG, once per open file, by a task holding it (PIDs as it sees them). */
export function restoreFown(ctx: Ctx, p: Proc, done: Set<number>): void {
  const r = p.remote;
  r.reset();
  const calls: Call[] = [];
  for (const e of p.img.fdinfo ?? []) {
    const id = num(e.id);
    if (done.has(id)) continue;
    const fown = fownOf(ctx.set.files.get(id)!);
    if (!fown || !num(fown.pid)) continue;
    done.add(id);
    const owner = Buffer.alloc(8);
    owner.writeInt32LE(num(fown.pid_type), 0);
    owner.writeInt32LE(num(fown.pid), 4);
    calls.push({ nr: NR.fcntl, args: [num(e.fd), F_SETOWN_EX, r.put(owner)], what: `fcntl(F_SETOWN_EX ${fown.pid}) on fd ${e.fd}` });
    if (num(fown.signum)) calls.push({ nr: NR.fcntl, args: [num(e.fd), F_SETSIG, num(fown.signum)], what: `fcntl(F_SETSIG) on fd ${e.fd}` });
  }
  r.run(p.host, calls);
}

const F_SETSIG = 10, F_SETOWN_EX = 15;
const PR_SET_NO_NEW_PRIVS = 38, CAP_SYS_ADMIN = 21;
const SECCOMP_SET_MODE_STRICT = 0, SECCOMP_SET_MODE_FILTER = 1, SECCOMP_FILTER_FLAG_TSYNC = 1;

/**
 * no_new_privs, then each thread's seccomp filters oldest first: the last injected calls that
 * matter. Injections after them (the scratch unmap) pass because seccomp is suspended for the tracer.
 */
export function restoreSeccomp(ctx: Ctx, p: Proc): void {
  const r = p.remote;
  const tc = (vtid: number) => p.img.cores.get(vtid)!.thread_core ?? {};
  const nnpOf = (vtid: number) => num(tc(vtid).creds?.no_new_privs) !== 0;
  const plan = seccompPlan(ctx.set, p.img);
  if (![...p.tids.keys()].some((v) => num(tc(v).seccomp_mode) || nnpOf(v))) return;
  if ([...p.tids.keys()].some((v) => num(tc(v).seccomp_mode)))
    for (const h of p.tids.values()) ctx.tracer.setOptions(h, PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL | PTRACE_O_SUSPEND_SECCOMP);
  const install = (vtid: number, positions: number[], tsync: boolean): Call[] =>
    positions.map((at, i) => {
      const f = ctx.set.seccomp[at];
      const code = Buffer.from(f.filter as Uint8Array);
      const prog = Buffer.alloc(16);
      prog.writeUInt16LE(code.length / 8, 0);
      prog.writeBigUInt64LE(r.put(code), 8);
      const flags = (num(f.flags) & ~SECCOMP_FILTER_FLAG_TSYNC) | (tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0);
      return { nr: NR_SECCOMP, args: [SECCOMP_SET_MODE_FILTER, flags, r.put(prog)], what: `seccomp filter ${i} of thread ${vtid}${tsync ? ' (shared by all threads, TSYNC)' : ''}` };
    });
  const prelude = (vtid: number): Call[] => {
    const creds = tc(vtid).creds;
    const capAdmin = creds ? ((((creds.cap_eff ?? [0]) as unknown[]).map(num)[0] >>> CAP_SYS_ADMIN) & 1) === 1 : true;
    // the kernel takes a filter from a task without CAP_SYS_ADMIN only under no_new_privs
    return nnpOf(vtid) || (num(tc(vtid).seccomp_mode) === 2 && !capAdmin) ? [{ nr: NR.prctl, args: [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0], what: 'prctl(PR_SET_NO_NEW_PRIVS)' }] : [];
  };
  // the filters every thread has: once, from the leader, with TSYNC (a nonzero return names a
  // thread it could not reach)
  const leader = p.img.pid;
  if (plan.common.length) {
    r.reset();
    const res = r.run(p.host, [...prelude(leader), ...install(leader, plan.common, true)]);
    const bad = res.find((v) => v > 0n);
    if (bad !== undefined) throw new EngineError(`task ${leader}: shared seccomp filters could not reach thread ${bad}`);
  }
  for (const [vtid, host] of p.tids) {
    const mode = num(tc(vtid).seccomp_mode);
    r.reset();
    const calls: Call[] = plan.common.length && vtid === leader ? [] : prelude(vtid);
    if (mode === 2) calls.push(...install(vtid, plan.own.get(vtid) ?? [], false));
    else if (mode === 1) calls.push({ nr: NR_SECCOMP, args: [SECCOMP_SET_MODE_STRICT, 0, 0], what: `seccomp strict mode of thread ${vtid}` });
    r.run(host, calls);
  }
}
