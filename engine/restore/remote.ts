// Injected system calls into one restored process, with a scratch area at an address the
// engine picks (outside both the stub's and the dumped layout) and errors that name the call.
import * as os from 'os';
import { native, Tracer, InjectedCall } from '../../native';
import { EngineError } from '../errors';

const ERRNO_NAMES = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v as number, k]));

export function errnoName(e: number): string {
  return ERRNO_NAMES.get(e) ?? `errno ${e}`;
}

export const isErr = (r: bigint): boolean => r < 0n && r > -4096n;

export interface Call extends InjectedCall {
  /** what the call does, for error messages */
  what: string;
  /** return the error instead of failing */
  mayFail?: boolean;
}

export const SCRATCH_SIZE = 1n << 20n;

export class Remote {
  /** address of the vDSO `syscall` instruction; moves with the vDSO */
  gadget = 0n;
  scratch = 0n;
  private used = 0n;
  /** injected system calls so far (for statistics) */
  calls = 0;

  constructor(private tracer: Tracer, readonly host: number, readonly vpid: number) {}

  /** Runs calls in thread tid (host numbering); throws on the first unexpected error. */
  run(tid: number, calls: Call[], timeoutMs = 10_000): bigint[] {
    if (!calls.length) return [];
    const out = this.tracer.inject(tid, this.gadget, calls, { stopOnError: true, timeoutMs });
    this.calls += out.results.length;
    for (let i = 0; i < out.results.length; i++) {
      const r = out.results[i];
      if (isErr(r) && !calls[i].mayFail) throw new EngineError(`task ${this.vpid}: ${calls[i].what} failed: ${errnoName(Number(-r))}`, 'EINJECT');
    }
    // stopOnError stopped at an allowed failure: run the rest
    if (out.results.length < calls.length) return [...out.results, ...this.run(tid, calls.slice(out.results.length), timeoutMs)];
    return out.results;
  }

  one(tid: number, what: string, nr: number, ...args: (number | bigint)[]): bigint {
    return this.run(tid, [{ nr, args, what }])[0];
  }

  /** Copies bytes into the scratch area; returns their address (aligned to 16). */
  put(data: Uint8Array): bigint {
    const at = this.scratch + this.used;
    const len = BigInt(data.length);
    if (this.used + len > SCRATCH_SIZE) throw new EngineError(`task ${this.vpid}: scratch area exhausted`);
    if (data.length) native().writeMemory(this.host, at, data);
    this.used += (len + 15n) & ~15n;
    return at;
  }

  /** A zero-filled scratch slot. */
  alloc(len: number): bigint {
    return this.put(Buffer.alloc(len));
  }

  cstr(s: string): bigint {
    return this.put(Buffer.from(s + '\0'));
  }

  read(addr: bigint, len: number): Buffer {
    const b = Buffer.alloc(len);
    native().readMemory(this.host, addr, b);
    return b;
  }

  /** Forget earlier scratch contents (between independent batches). */
  reset(): void {
    this.used = 0n;
  }
}
