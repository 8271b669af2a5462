// Running syscalls inside a stopped task (no parasite): the tracer single-steps an existing
// `syscall` instruction of the task's vDSO (or of its own text, when it has none) with rewritten
// registers. Out-parameters go to a scratch page mapped by an injected mmap and unmapped again
// before /proc/PID/maps is read.
import { native, Tracer, InjectedCall } from '../native';
import type { Vma } from './proc/maps';
import { EngineError, UnsupportedError } from './errors';

export const SYS = {
  mmap: 9, munmap: 11, rt_sigaction: 13, getitimer: 36, getpriority: 140, prctl: 157, sigaltstack: 131,
  brk: 12, timer_gettime: 224, timer_getoverrun: 225, get_robust_list: 274, getpid: 39,
} as const;

export const PR = {
  GET_PDEATHSIG: 2, GET_DUMPABLE: 3, GET_SECUREBITS: 27, GET_CHILD_SUBREAPER: 37, GET_TID_ADDRESS: 40,
  GET_THP_DISABLE: 42,
} as const;

const SCRATCH_SIZE = 16384;

const SYSCALL_INSN = Buffer.from([0x0f, 0x05]);
const GADGET_CHUNK = 1 << 20;

/** Offset of the first `syscall` instruction bytes in [start, end) of the task's memory, if any. */
function scanForSyscall(pid: number, start: bigint, end: bigint): bigint | undefined {
  for (let at = start; at < end; ) {
    const len = Number(end - at < BigInt(GADGET_CHUNK) ? end - at : BigInt(GADGET_CHUNK));
    const buf = Buffer.alloc(len);
    let got: number;
    try {
      got = native().readMemory(pid, at, buf);
    } catch {
      return undefined; // not readable this way (a device's mapping, say)
    }
    const i = buf.subarray(0, got).indexOf(SYSCALL_INSN);
    if (i >= 0) return at + BigInt(i);
    if (got < 2) return undefined;
    at += BigInt(got - 1); // the two bytes may straddle the chunks
  }
  return undefined;
}

/**
 * Finds the address of a `syscall` (0f 05) instruction to step over: in the task's vDSO, or,
 * for a task that unmapped it, in another executable mapping of its own (file text first).
 * Single-stepping these bytes changes nothing in the mapping; [vsyscall] is never used (the
 * kernel emulates it and kills a task that enters it elsewhere than at its entry points).
 */
export function findSyscallGadget(pid: number, vmas: Vma[]): bigint {
  const vdso = vmas.find((v) => v.name === '[vdso]');
  if (vdso) {
    const at = scanForSyscall(pid, vdso.start, vdso.end);
    if (at === undefined) throw new EngineError(`task ${pid}: no syscall instruction in its vDSO`);
    return at;
  }
  const exec = vmas.filter((v) => v.exec && v.read && !v.name.startsWith('['));
  const rank = (v: Vma) => (v.name.startsWith('/') && !v.write ? 0 : 1);
  for (const v of [...exec].sort((a, b) => rank(a) - rank(b))) {
    const at = scanForSyscall(pid, v.start, v.end);
    if (at !== undefined) return at;
  }
  throw new UnsupportedError(`task ${pid} has no [vdso] and no syscall instruction in any of its readable executable mappings; cannot run syscalls in it`);
}

export class RemoteSyscalls {
  private scratchAddr: bigint | undefined;

  constructor(private tracer: Tracer, readonly pid: number, readonly gadget: bigint) {}

  /** Runs calls in thread tid; returns raw results (negative = -errno). */
  run(tid: number, calls: InjectedCall[]): bigint[] {
    const out = this.tracer.inject(tid, this.gadget, calls);
    if (out.signals.length) {
      // unblockable stop signals seen mid-step; put them back
      for (const s of out.signals) try { process.kill(tid, s); } catch { /* gone */ }
    }
    return out.results;
  }

  one(tid: number, nr: number, ...args: (number | bigint)[]): bigint {
    return this.run(tid, [{ nr, args }])[0];
  }

  /** The scratch page, mapped on first use. */
  scratch(): bigint {
    if (this.scratchAddr !== undefined) return this.scratchAddr;
    // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    const r = this.one(this.pid, SYS.mmap, 0, SCRATCH_SIZE, 3, 0x22, -1, 0);
    if (r < 0n && r > -4096n) throw new EngineError(`task ${this.pid}: injected mmap failed (errno ${-r})`);
    this.scratchAddr = r;
    return r;
  }

  read(addr: bigint, len: number): Buffer {
    const buf = Buffer.alloc(len);
    native().readMemory(this.pid, addr, buf);
    return buf;
  }

  /** Unmaps the scratch page; must run before the task's maps are read and before detach. */
  release(): void {
    if (this.scratchAddr === undefined) return;
    const addr = this.scratchAddr;
    this.scratchAddr = undefined;
    this.one(this.pid, SYS.munmap, addr, SCRATCH_SIZE);
  }
}

export function isErr(r: bigint): boolean {
  return r < 0n && r > -4096n;
}
