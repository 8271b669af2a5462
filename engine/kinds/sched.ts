// Scheduling of each thread: policy (with SCHED_RESET_ON_FORK, which /proc does not show), RT
// priority and nice, in CRIU's thread_core sched_policy / sched_prio / sched_nice. SCHED_DEADLINE
// parameters and utilization clamps have no field in the image: refused at dump.
// Restore sets them in each thread while the task is still privileged (before its creds), so a
// raised priority or a lowered nice needs no RLIMIT_RTPRIO / RLIMIT_NICE.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import type { RemoteSyscalls } from '../inject';
import { isErr } from '../inject';
import { readProc } from '../proc/read';
import { EngineError, UnsupportedError } from '../errors';
import type { Proc } from '../restore/context';
import type { Call } from '../restore/remote';
import { ImageError, num } from '../restore/imageset';

export const SCHED_RESET_ON_FORK = 0x40000000;
const SCHED_FIFO = 1, SCHED_RR = 2, SCHED_DEADLINE = 6;
const SCHED_FLAG_RESET_ON_FORK = 1;
const POLICY_NAMES: Record<number, string> = { 0: 'SCHED_OTHER', 1: 'SCHED_FIFO', 2: 'SCHED_RR', 3: 'SCHED_BATCH', 5: 'SCHED_IDLE', 6: 'SCHED_DEADLINE', 7: 'SCHED_EXT' };
/** policies whose whole state is policy, priority, nice and the reset-on-fork flag */
const RESTORABLE = new Set([0, 1, 2, 3, 5, 7]);
const NR_SCHED_SETATTR = 314, NR_SCHED_GETATTR = 315, NR_SETPRIORITY = 141, PRIO_PROCESS = 0;
/** struct sched_attr up to sched_util_max (SCHED_ATTR_SIZE_VER1) */
const ATTR_SIZE = 56;

export interface ThreadSched {
  /** as sched_getscheduler() returns it: the policy, ORed with SCHED_RESET_ON_FORK */
  policy: number;
  rtPrio: number;
  nice: number;
}

const isRt = (policy: number) => policy === SCHED_FIFO || policy === SCHED_RR;

/** policy, RT priority and nice of a thread as /proc/PID/task/TID/stat shows them */
function statSched(pid: number, tid: number): { policy: number; rtPrio: number; nice: number } {
  const text = readProc(pid, 'task', String(tid), 'stat');
  const f = text.slice(text.lastIndexOf(')') + 2).split(/\s+/);
  // fields 19 (nice), 40 (rt_priority), 41 (policy); f[0] is field 3
  return { nice: Number(f[16]), rtPrio: Number(f[37]), policy: Number(f[38]) };
}

/**
 * Dump half: sched_getattr injected in the thread (the reset-on-fork flag, deadline parameters
 * and clamps are visible only there); nice from /proc, since sched_getattr reports it only for
 * the fair policies while the kernel keeps it for RT threads too.
 */
export function readThreadSched(remote: RemoteSyscalls, pid: number, tid: number): ThreadSched {
  const at = remote.scratch();
  const res = remote.run(tid, [{ nr: NR_SCHED_GETATTR, args: [0, at, ATTR_SIZE, 0] }])[0];
  if (isErr(res)) throw new EngineError(`task ${pid} thread ${tid}: injected sched_getattr failed (errno ${-res})`);
  const a = remote.read(at, ATTR_SIZE);
  const policy = a.readUInt32LE(4);
  const flags = a.readBigUInt64LE(8);
  const who = `task ${pid} thread ${tid}`;
  if (policy === SCHED_DEADLINE)
    throw new UnsupportedError(`${who}: scheduling policy SCHED_DEADLINE (runtime ${a.readBigUInt64LE(24)} ns, deadline ${a.readBigUInt64LE(32)} ns, period ${a.readBigUInt64LE(40)} ns): the image has no fields for deadline parameters`);
  if (!RESTORABLE.has(policy)) throw new UnsupportedError(`${who}: unknown scheduling policy ${policy}`);
  // the clamps exist only with CONFIG_UCLAMP_TASK (which shows these sysctls); 0..1024 is the default
  if (fs.existsSync('/proc/sys/kernel/sched_util_clamp_max')) {
    const lo = a.readUInt32LE(48), hi = a.readUInt32LE(52);
    if (lo !== 0 || hi !== 1024) throw new UnsupportedError(`${who}: utilization clamp ${lo}..${hi} (sched_setattr SCHED_FLAG_UTIL_CLAMP): the image has no field for it`);
  }
  const st = statSched(pid, tid);
  return {
    policy: policy | (flags & BigInt(SCHED_FLAG_RESET_ON_FORK) ? SCHED_RESET_ON_FORK : 0),
    rtPrio: isRt(policy) ? a.readUInt32LE(20) : 0,
    nice: st.nice,
  };
}

/** The thread_core fields, as CRIU writes them (sched_prio only for the RT policies). */
export function schedThreadCore(s: ThreadSched): Msg {
  const tc: Msg = { sched_nice: s.nice, sched_policy: s.policy };
  if (isRt(s.policy & ~SCHED_RESET_ON_FORK)) tc.sched_prio = s.rtPrio;
  return tc;
}

/** Before any process exists: every thread's values are ones this kernel takes. */
export function checkSched(image: string, tc: Msg | undefined): void {
  if (tc?.sched_policy === undefined) return;
  const raw = num(tc.sched_policy);
  const policy = raw & ~SCHED_RESET_ON_FORK;
  if (!RESTORABLE.has(policy)) throw new ImageError(image, 'thread_core.sched_policy', `${POLICY_NAMES[policy] ?? `policy ${raw}`} is not restored`);
  const prio = num(tc.sched_prio);
  if (isRt(policy) ? prio < 1 || prio > 99 : prio !== 0) throw new ImageError(image, 'thread_core.sched_prio', `${prio} is not a priority of ${POLICY_NAMES[policy]}`);
  const nice = num(tc.sched_nice);
  if (nice < -20 || nice > 19) throw new ImageError(image, 'thread_core.sched_nice', `${nice} is outside -20..19`);
}

/** struct sched_attr (SCHED_ATTR_SIZE_VER0: no clamps) */
function schedAttr(policy: number, resetOnFork: boolean, nice: number, prio: number): Buffer {
  const b = Buffer.alloc(48);
  b.writeUInt32LE(48, 0);
  b.writeUInt32LE(policy, 4);
  b.writeBigUInt64LE(resetOnFork ? BigInt(SCHED_FLAG_RESET_ON_FORK) : 0n, 8);
  b.writeInt32LE(nice, 16);
  b.writeUInt32LE(prio, 20);
  return b;
}

/**
 * Restore half, in each thread once all threads exist: sched_setattr for policy, priority and
 * the reset-on-fork flag, then setpriority for the nice (sched_setattr leaves an RT thread's
 * nice alone). Checked against /proc afterwards.
 */
export function restoreSched(p: Proc): void {
  const r = p.remote;
  for (const [vtid, host] of p.tids) {
    const tc = p.img.cores.get(vtid)!.thread_core;
    if (tc?.sched_policy === undefined) continue; // not recorded: as CRIU, left as created
    const raw = num(tc.sched_policy);
    const policy = raw & ~SCHED_RESET_ON_FORK;
    const reset = (raw & SCHED_RESET_ON_FORK) !== 0;
    const prio = isRt(policy) ? num(tc.sched_prio) : 0;
    const nice = num(tc.sched_nice);
    const now = statSched(p.host, host);
    // a new task never has the reset-on-fork flag (fork clears it)
    if (!reset && now.policy === policy && now.rtPrio === prio && now.nice === nice) continue;
    r.reset();
    const calls: Call[] = [
      { nr: NR_SCHED_SETATTR, args: [0, r.put(schedAttr(policy, reset, nice, prio)), 0], what: `sched_setattr(${POLICY_NAMES[policy]}${reset ? '|SCHED_RESET_ON_FORK' : ''}, priority ${prio}) of thread ${vtid}` },
      { nr: NR_SETPRIORITY, args: [PRIO_PROCESS, 0, nice], what: `setpriority(${nice}) of thread ${vtid}` },
    ];
    r.run(host, calls);
    const got = statSched(p.host, host);
    if (got.policy !== policy || got.rtPrio !== prio || got.nice !== nice)
      throw new EngineError(`task ${p.img.pid} thread ${vtid}: scheduling came back as policy ${got.policy} priority ${got.rtPrio} nice ${got.nice}, not ${policy} ${prio} ${nice}`);
  }
}
