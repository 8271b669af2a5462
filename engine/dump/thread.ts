// Per-thread state: what ptrace reads from outside (taken for every thread before the first
// injection, which would change registers) and what only the thread itself can tell.
import type { Tracer } from '../../native';
import { NT_PRSTATUS, NT_X86_XSTATE, isNativeError } from '../../native';
import { parseGpRegs, GpRegs, TLS_SLOTS } from '../arch/x86_64';
import { RemoteSyscalls, SYS, PR, isErr } from '../inject';
import { EngineError } from '../errors';

export interface ThreadRegs {
  tid: number;
  gp: GpRegs;
  xstate: Buffer;
  sigmask: bigint;
  rseq?: { pointer: bigint; size: number; signature: number };
  /** raw 128-byte siginfo_t of signals queued to this thread */
  pendingPrivate: Buffer[];
  /** struct user_desc of the GDT TLS slots 12..14 */
  tls: Buffer[];
}

export interface ThreadInside {
  sas: { sp: bigint; size: bigint; flags: number };
  clearTidAddr: bigint;
  robustList: { head: bigint; len: number };
  pdeathSig: number;
  secureBits: number;
}

export function readThreadRegs(tracer: Tracer, tid: number): ThreadRegs {
  const gp = parseGpRegs(tracer.getRegset(tid, NT_PRSTATUS));
  const xstate = tracer.getRegset(tid, NT_X86_XSTATE);
  const sigmask = tracer.getSigmask(tid);
  let rseq: ThreadRegs['rseq'];
  try {
    const c = tracer.getRseqConfig(tid);
    if (c.pointer !== 0n) rseq = { pointer: c.pointer, size: c.size, signature: c.signature };
  } catch (e) {
    if (!(isNativeError(e) && (e.code === 'EIO' || e.code === 'EINVAL'))) throw e;
  }
  const tls = TLS_SLOTS.map((i) => tracer.getThreadArea(tid, i));
  return { tid, gp, xstate, sigmask, rseq, pendingPrivate: tracer.peekSiginfo(tid, false), tls };
}

/** One injected batch per thread; out-parameters land in the process's scratch page. */
export function readThreadInside(remote: RemoteSyscalls, tid: number): ThreadInside {
  const s = remote.scratch();
  const sasAt = s, tidAddrAt = s + 64n, robustAt = s + 128n, robustLenAt = s + 136n, pdeathAt = s + 192n;
  const res = remote.run(tid, [
    { nr: SYS.sigaltstack, args: [0, sasAt] },
    { nr: SYS.prctl, args: [PR.GET_TID_ADDRESS, tidAddrAt] },
    { nr: SYS.get_robust_list, args: [0, robustAt, robustLenAt] },
    { nr: SYS.prctl, args: [PR.GET_PDEATHSIG, pdeathAt] },
    { nr: SYS.prctl, args: [PR.GET_SECUREBITS] },
  ]);
  const names = ['sigaltstack', 'prctl(PR_GET_TID_ADDRESS)', 'get_robust_list', 'prctl(PR_GET_PDEATHSIG)', 'prctl(PR_GET_SECUREBITS)'];
  res.forEach((r, i) => {
    if (isErr(r)) throw new EngineError(`thread ${tid}: injected ${names[i]} failed (errno ${-r})`);
  });
  const mem = remote.read(s, 256);
  return {
    sas: { sp: mem.readBigUInt64LE(0), flags: mem.readInt32LE(8), size: mem.readBigUInt64LE(16) },
    clearTidAddr: mem.readBigUInt64LE(64),
    robustList: { head: mem.readBigUInt64LE(128), len: Number(mem.readBigUInt64LE(136)) },
    pdeathSig: mem.readInt32LE(192),
    secureBits: Number(res[4]),
  };
}
