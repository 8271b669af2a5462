// Per-process state that only the process can report (injected) or /proc shows.
import * as fs from 'fs';
import { RemoteSyscalls, SYS, PR, isErr } from '../inject';
import { readProc } from '../proc/read';
import { EngineError } from '../errors';

export interface SigAction {
  handler: bigint;
  flags: bigint;
  restorer: bigint;
  mask: bigint;
}

export interface ITimer {
  isec: number;
  iusec: number;
  vsec: number;
  vusec: number;
}

const SIGEV_THREAD_ID = 4;

export interface PosixTimer {
  id: number;
  signo: number;
  notify: number;
  notifyTid: number;
  clock: number;
  sivalPtr: bigint;
  overrun: number;
  isec: number;
  insec: number;
  vsec: number;
  vnsec: number;
}

export interface ProcessInside {
  sigactions: SigAction[];
  itimers: { real: ITimer; virt: ITimer; prof: ITimer };
  posixTimers: PosixTimer[];
  brk: bigint;
  childSubreaper: boolean;
  dumpable: number;
  thpDisabled: boolean;
}

const SIGKILL = 9;
const SIGSTOP = 19;
export const NSIG = 64;

/** /proc/PID/timers: ID, signal, notify and clock of each POSIX timer (no expiry times). */
export function parseTimers(text: string): Omit<PosixTimer, 'overrun' | 'isec' | 'insec' | 'vsec' | 'vnsec'>[] {
  const out: Omit<PosixTimer, 'overrun' | 'isec' | 'insec' | 'vsec' | 'vnsec'>[] = [];
  let cur: Partial<PosixTimer> | undefined;
  // SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD as the kernel names them
  const notifyKinds: Record<string, number> = { signal: 0, none: 1, thread: 2 };
  for (const line of text.split('\n')) {
    const [k, ...rest] = line.split(':');
    const v = rest.join(':').trim();
    if (k === 'ID') {
      cur = { id: Number(v) };
      out.push(cur as PosixTimer);
    } else if (cur && k === 'signal') {
      const [signo, ptr] = v.split('/');
      cur.signo = Number(signo);
      cur.sivalPtr = BigInt('0x' + (ptr || '0'));
    } else if (cur && k === 'notify') {
      // "<how>/<tid|pid>.<n>": the kernel prints SIGEV_THREAD_ID as "tid" beside the kind
      // (glibc's SIGEV_THREAD timers are "signal/tid.<its helper thread>")
      const [kind, target = ''] = v.split('/');
      const byTid = target.startsWith('tid.');
      cur.notify = (notifyKinds[kind] ?? 0) | (byTid ? SIGEV_THREAD_ID : 0);
      cur.notifyTid = byTid ? Number(target.slice(4)) || 0 : 0;
    } else if (cur && k === 'ClockID') {
      cur.clock = Number(v);
    }
  }
  return out;
}

export function readProcessInside(remote: RemoteSyscalls, pid: number): ProcessInside {
  const s = remote.scratch();
  const calls = [] as { nr: number; args: (number | bigint)[] }[];
  const sigs: number[] = [];
  for (let sig = 1; sig <= NSIG; sig++) {
    if (sig === SIGKILL || sig === SIGSTOP) continue;
    calls.push({ nr: SYS.rt_sigaction, args: [sig, 0, s + BigInt(sigs.length * 32), 8] });
    sigs.push(sig);
  }
  const itimerAt = s + 2048n;
  for (let w = 0; w < 3; w++) calls.push({ nr: SYS.getitimer, args: [w, itimerAt + BigInt(w * 32)] });
  const subreaperAt = s + 2200n;
  calls.push({ nr: SYS.brk, args: [0] });
  calls.push({ nr: SYS.prctl, args: [PR.GET_CHILD_SUBREAPER, subreaperAt] });
  calls.push({ nr: SYS.prctl, args: [PR.GET_DUMPABLE] });
  calls.push({ nr: SYS.prctl, args: [PR.GET_THP_DISABLE] });
  const timerDefs = parseTimers(fs.existsSync(`/proc/${pid}/timers`) ? readProc(pid, 'timers') : '');
  const timerAt = s + 4096n;
  timerDefs.forEach((t, i) => {
    calls.push({ nr: SYS.timer_gettime, args: [t.id, timerAt + BigInt(i * 32)] });
    calls.push({ nr: SYS.timer_getoverrun, args: [t.id] });
  });
  const res = remote.run(pid, calls);
  for (let i = 0; i < sigs.length + 3; i++)
    if (isErr(res[i])) throw new EngineError(`task ${pid}: injected ${i < sigs.length ? 'rt_sigaction' : 'getitimer'} failed (errno ${-res[i]})`);
  const mem = remote.read(s, 4096 + 32 * timerDefs.length);
  const sigactions = sigs.map((_, i) => ({
    handler: mem.readBigUInt64LE(i * 32),
    flags: mem.readBigUInt64LE(i * 32 + 8),
    restorer: mem.readBigUInt64LE(i * 32 + 16),
    mask: mem.readBigUInt64LE(i * 32 + 24),
  }));
  const itimer = (w: number): ITimer => {
    const o = 2048 + w * 32;
    return {
      isec: Number(mem.readBigInt64LE(o)), iusec: Number(mem.readBigInt64LE(o + 8)),
      vsec: Number(mem.readBigInt64LE(o + 16)), vusec: Number(mem.readBigInt64LE(o + 24)),
    };
  };
  const base = sigs.length + 3;
  const posixTimers: PosixTimer[] = timerDefs.map((t, i) => {
    const o = 4096 + i * 32;
    const overrun = res[base + 4 + i * 2 + 1];
    return {
      ...t,
      overrun: isErr(overrun) ? 0 : Number(overrun),
      isec: Number(mem.readBigInt64LE(o)), insec: Number(mem.readBigInt64LE(o + 8)),
      vsec: Number(mem.readBigInt64LE(o + 16)), vnsec: Number(mem.readBigInt64LE(o + 24)),
    };
  });
  return {
    sigactions,
    itimers: { real: itimer(0), virt: itimer(1), prof: itimer(2) },
    posixTimers,
    brk: res[base],
    childSubreaper: mem.readInt32LE(2200) !== 0,
    dumpable: Number(res[base + 2]),
    thpDisabled: res[base + 3] === 1n,
  };
}
