// The architecture-neutral notes of a core file (64-bit layouts): NT_PRSTATUS around the
// arch's registers, NT_PRPSINFO, NT_SIGINFO, NT_AUXV and NT_FILE, filled from a task's images.
import type { Msg } from '../codec';
import type { Task } from '../imageset';
import { Note, NT_PRSTATUS, NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE } from './elf';
import { Arch, PR_REG } from './arch';

const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));

/** Bit (signo-1) for every signal queued in a signal_queue_entry (siginfo starts with si_signo). */
export function pendingMask(q: Msg | undefined): bigint {
  let m = 0n;
  for (const s of q?.signals ?? []) {
    const raw: Uint8Array | undefined = s.siginfo;
    if (!raw || raw.length < 4) continue;
    const signo = Buffer.from(raw.buffer, raw.byteOffset, 4).readInt32LE(0);
    if (signo >= 1 && signo <= 64) m |= 1n << BigInt(signo - 1);
  }
  return m;
}

export interface ThreadState {
  tid: number;
  core: Msg;
  file: string;
}

export function prstatus(arch: Arch, task: Task, t: ThreadState, blocked: bigint): Note {
  const b = Buffer.alloc(arch.prstatusSize);
  // pr_info and pr_cursig stay zero: no signal is being delivered in a checkpoint
  b.writeBigUInt64LE(pendingMask(t.core.thread_core?.signals_p), 16); // pr_sigpend
  b.writeBigUInt64LE(BigInt.asUintN(64, blocked), 24); // pr_sighold
  b.writeInt32LE(t.tid, 32);
  b.writeInt32LE(task.ppid, 36);
  b.writeInt32LE(task.pgid, 40);
  b.writeInt32LE(task.sid, 44);
  // pr_utime .. pr_cstime (48..111): CRIU does not record CPU times
  const regs = arch.gregs(t.core, t.file);
  regs.copy(b, PR_REG);
  b.writeInt32LE(1, PR_REG + regs.length); // pr_fpvalid
  return { name: 'CORE', type: NT_PRSTATUS, desc: b };
}

/** CRIU's task states (1 alive, 2 dead, 3 stopped, 6 zombie) as the kernel's pr_state index. */
function prState(state: number): number {
  if (state === 3) return 3; // T
  if (state === 2 || state === 6) return 4; // Z
  return 0; // R: CRIU does not tell running from sleeping
}

export interface PsInfo {
  task: Task;
  core: Msg;
  uid: number;
  gid: number;
  /** argv as read from the dumped memory (NULs included) */
  args: Uint8Array;
}

export function prpsinfo(p: PsInfo): Note {
  const b = Buffer.alloc(136);
  const st = prState(Number(p.core.tc?.task_state ?? 1));
  b[0] = st;
  b[1] = 'RSDTZW'.charCodeAt(st);
  b[2] = st === 4 ? 1 : 0;
  b.writeInt8(Math.max(-128, Math.min(127, Number(p.core.thread_core?.sched_nice ?? 0))), 3);
  b.writeBigUInt64LE(big(p.core.tc?.flags), 8);
  b.writeUInt32LE(p.uid >>> 0, 16);
  b.writeUInt32LE(p.gid >>> 0, 20);
  b.writeInt32LE(p.task.pid, 24);
  b.writeInt32LE(p.task.ppid, 28);
  b.writeInt32LE(p.task.pgid, 32);
  b.writeInt32LE(p.task.sid, 36);
  const comm = Buffer.from(String(p.core.tc?.comm ?? ''), 'utf8').subarray(0, 15);
  comm.copy(b, 40);
  // pr_psargs: at most 79 bytes of the argument area, NULs turned into spaces, as the kernel does
  const args = Buffer.from(p.args.subarray(0, 79));
  for (let i = 0; i < args.length; i++) if (args[i] === 0) args[i] = 0x20;
  args.copy(b, 56);
  return { name: 'CORE', type: NT_PRPSINFO, desc: b };
}

/** The signal that "caused" the dump: none, so an all-zero siginfo_t. */
export function siginfo(): Note {
  return { name: 'CORE', type: NT_SIGINFO, desc: Buffer.alloc(128) };
}

/** mm_saved_auxv as (type, value) pairs up to and including AT_NULL. */
export function auxv(saved: unknown[] | undefined): Note {
  const words: bigint[] = [];
  const v = saved ?? [];
  for (let i = 0; i + 1 < v.length; i += 2) {
    if (big(v[i]) === 0n) break;
    words.push(big(v[i]), big(v[i + 1]));
  }
  words.push(0n, 0n);
  const b = Buffer.alloc(words.length * 8);
  words.forEach((w, i) => b.writeBigUInt64LE(BigInt.asUintN(64, w), i * 8));
  return { name: 'CORE', type: NT_AUXV, desc: b };
}

export interface MappedFile {
  start: bigint;
  end: bigint;
  /** offset in the file, in bytes */
  pgoff: bigint;
  name: string;
}

/** NT_FILE: count, page size, (start, end, offset in pages) per mapping, then the names. */
export function fileNote(files: MappedFile[], pageSize: number): Note {
  const names = files.map((f) => Buffer.from(f.name + '\0', 'utf8'));
  const head = 16 + files.length * 24;
  const b = Buffer.alloc(head + names.reduce((n, x) => n + x.length, 0));
  b.writeBigUInt64LE(BigInt(files.length), 0);
  b.writeBigUInt64LE(BigInt(pageSize), 8);
  files.forEach((f, i) => {
    b.writeBigUInt64LE(f.start, 16 + i * 24);
    b.writeBigUInt64LE(f.end, 24 + i * 24);
    b.writeBigUInt64LE(f.pgoff / BigInt(pageSize), 32 + i * 24);
  });
  let at = head;
  for (const n of names) { n.copy(b, at); at += n.length; }
  return { name: 'CORE', type: NT_FILE, desc: b };
}
