// rseq critical sections at dump. A thread stopped inside one would have it aborted by the kernel
// on its way back to user space (a stop is a preemption): its ip moved to the section's abort
// handler and rseq->rseq_cs cleared. The engine's injected syscalls return to user space at the
// vDSO, outside the section, so the kernel would only clear rseq_cs and the thread would finish
// the section unprotected, live (--leave-running) and after restore. So the abort is done here,
// as the kernel does it, before the first injection. (The registration itself is rseq_entry in
// the core image, written by dump/core.ts and set again at restore.)
import { native, Tracer, NT_PRSTATUS } from '../../native';
import { UnsupportedError } from '../errors';
import { GP_REG_NAMES } from '../arch/x86_64';
import type { ThreadRegs } from '../dump/thread';

/** offsetof(struct rseq, rseq_cs) */
const RSEQ_CS_OFFSET = 8n;

/** If `t` is inside its rseq critical section: abort it (ip := abort_ip, rseq_cs := 0), in the live thread and in `t`. */
export function abortCriticalSection(tracer: Tracer, pid: number, t: ThreadRegs): void {
  if (!t.rseq) return;
  const n = native();
  const word = Buffer.alloc(8);
  n.readMemory(pid, t.rseq.pointer + RSEQ_CS_OFFSET, word);
  const csAddr = word.readBigUInt64LE(0);
  if (csAddr === 0n) return;
  // struct rseq_cs: u32 version, u32 flags, u64 start_ip, u64 post_commit_offset, u64 abort_ip
  const cs = Buffer.alloc(32);
  n.readMemory(pid, csAddr, cs);
  const start = cs.readBigUInt64LE(8), len = cs.readBigUInt64LE(16), abort = cs.readBigUInt64LE(24);
  const ip = t.gp.ip;
  if (ip < start || ip >= start + len) return; // outside: the kernel only clears rseq_cs, which is harmless
  if (cs.readUInt32LE(4)) throw new UnsupportedError(`thread ${t.tid}: inside an rseq critical section with flags 0x${cs.readUInt32LE(4).toString(16)} (deprecated no-restart flags)`);
  const sig = Buffer.alloc(4);
  n.readMemory(pid, abort - 4n, sig);
  if (sig.readUInt32LE(0) !== t.rseq.signature)
    throw new UnsupportedError(`thread ${t.tid}: inside an rseq critical section whose abort handler lacks the rseq signature (the kernel would kill it)`);
  t.gp.ip = abort;
  const regs = Buffer.alloc(GP_REG_NAMES.length * 8);
  GP_REG_NAMES.forEach((name, i) => regs.writeBigUInt64LE(t.gp[name], i * 8));
  tracer.setRegset(t.tid, NT_PRSTATUS, regs);
  n.writeMemory(pid, t.rseq.pointer + RSEQ_CS_OFFSET, Buffer.alloc(8));
}
