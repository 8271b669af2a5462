// core-<tid>.img: per-thread registers and thread_core, plus task_core (tc) on the leader.
import type { Msg } from '../../images/codec';
import { fpregsEntry, gpRegsEntry, restartFixup, tlsEntry } from '../arch/x86_64';
import type { ThreadRegs, ThreadInside } from './thread';
import type { ProcessInside } from './process';
import { numField, Status } from '../proc/status';
import { credsEntry } from '../kinds/creds';
import { schedThreadCore, ThreadSched } from '../kinds/sched';
import { membarrierTaskCore } from '../kinds/membarrier';

export const TASK_ALIVE = 1, TASK_DEAD = 2, TASK_STOPPED = 3, TASK_ZOMBIE = 6;

export { credsEntry };

export interface ThreadFacts {
  regs: ThreadRegs;
  inside: ThreadInside;
  status: Status;
  comm: string;
  sched: ThreadSched;
  /** position of the thread's newest filter in seccomp.img */
  seccompFilter?: number;
}

function signalQueue(infos: Buffer[]): Msg {
  return infos.length ? { signals: infos.map((b) => ({ siginfo: new Uint8Array(b) })) } : {};
}

export function threadCore(t: ThreadFacts, isLeader: boolean, cgSet: number): Msg {
  const tc: Msg = {
    futex_rla: t.inside.robustList.head,
    futex_rla_len: t.inside.robustList.len,
    ...schedThreadCore(t.sched),
  };
  // the leader's mask lives in task_core.blk_sigset
  if (!isLeader) tc.blk_sigset = t.regs.sigmask;
  tc.sas = { ss_sp: t.inside.sas.sp, ss_size: t.inside.sas.size, ss_flags: t.inside.sas.flags };
  if (t.inside.pdeathSig) tc.pdeath_sig = t.inside.pdeathSig;
  tc.signals_p = signalQueue(t.regs.pendingPrivate);
  tc.creds = credsEntry(t.status, t.inside.secureBits);
  const seccomp = numField(t.status, 'Seccomp');
  if (seccomp) tc.seccomp_mode = seccomp;
  if (t.seccompFilter !== undefined) tc.seccomp_filter = t.seccompFilter;
  tc.comm = t.comm;
  if (t.regs.rseq) tc.rseq_entry = { rseq_abi_pointer: t.regs.rseq.pointer, rseq_abi_size: t.regs.rseq.size, signature: t.regs.rseq.signature };
  tc.cg_set = cgSet;
  return tc;
}

export function threadInfo(t: ThreadFacts): Msg {
  return {
    clear_tid_addr: t.inside.clearTidAddr,
    gpregs: gpRegsEntry(restartFixup(t.regs.gp)),
    fpregs: fpregsEntry(t.regs.xstate),
    tls: t.regs.tls.map(tlsEntry),
  };
}

export interface TaskFacts {
  state: number;
  exitCode: number;
  personality: number;
  flags: number;
  comm: string;
  rlimits: [bigint, bigint][];
  pendingShared: Buffer[];
  /** absent: the kernel has no audit loginuid */
  loginuid?: number;
  oomScoreAdj: number;
  membarrierMask: number;
  inside: ProcessInside;
}

export function taskCore(p: TaskFacts, leaderMask: bigint): Msg {
  const it = p.inside.itimers;
  const timers: Msg = { real: it.real, virt: it.virt, prof: it.prof };
  if (p.inside.posixTimers.length) {
    timers.posix = p.inside.posixTimers.map((t) => {
      const e: Msg = {
        it_id: t.id, clock_id: t.clock, si_signo: t.signo, it_sigev_notify: t.notify, sival_ptr: t.sivalPtr,
        overrun: t.overrun, isec: t.isec, insec: t.insec, vsec: t.vsec, vnsec: t.vnsec,
      };
      if (t.notify & 4 /* SIGEV_THREAD_ID */) e.notify_thread_id = t.notifyTid;
      return e;
    });
  }
  return {
    task_state: p.state,
    exit_code: p.exitCode,
    personality: p.personality,
    flags: p.flags,
    blk_sigset: leaderMask,
    comm: p.comm,
    timers,
    rlimits: { rlimits: p.rlimits.map(([cur, max]) => ({ cur, max })) },
    signals_s: signalQueue(p.pendingShared),
    loginuid: p.loginuid,
    oom_score_adj: p.oomScoreAdj,
    sigactions: p.inside.sigactions.map((a) => ({
      sigaction: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask, compat_sigaction: false,
    })),
    child_subreaper: p.inside.childSubreaper,
    ...membarrierTaskCore(p.membarrierMask),
  };
}

/**
 * A zombie has only a core image. As CRIU 4.2 writes it: task_state TASK_DEAD (CRIU's restore
 * takes every other state for a live task and then wants its ids) and exit_code the raw wait
 * status of /proc/PID/stat (exit code << 8, or the terminating signal in the low 7 bits).
 */
export function zombieCore(comm: string, waitStatus: number, personality: number, flags: number): Msg {
  return {
    mtype: 1,
    tc: { task_state: TASK_DEAD, exit_code: waitStatus, personality, flags, blk_sigset: 0n, comm },
  };
}

/** /proc/PID/limits -> [cur, max] per RLIMIT_* in kernel order ("unlimited" = 2^64-1). */
export function parseLimits(text: string): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  const inf = (1n << 64n) - 1n;
  for (const line of text.split('\n').slice(1)) {
    if (!line.trim()) continue;
    const cols = line.slice(26).trim().split(/\s+/);
    const v = (s: string) => (s === 'unlimited' ? inf : BigInt(s));
    out.push([v(cols[0]), v(cols[1])]);
  }
  return out;
}
