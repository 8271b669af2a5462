// Per-architecture register notes of a core file, from a thread's core-<tid>.img. Layouts are
// the kernel's: struct elf_prstatus with the arch's elf_gregset_t, the FP register set as
// PTRACE_GETREGSET returns it, and (x86-64) the XSAVE area in the standard, non-compacted format.
import type { Msg } from '../codec';
import { Note, EM_X86_64, EM_AARCH64, NT_FPREGSET, NT_X86_XSTATE, NT_ARM_TLS } from './elf';

export class CoredumpError extends Error {}

export interface Arch {
  name: 'x86_64' | 'aarch64';
  machine: number;
  /** sizeof(struct elf_prstatus) */
  prstatusSize: number;
  /** the general registers (elf_gregset_t), placed at pr_reg */
  gregs(core: Msg, file: string): Buffer;
  /** the notes after NT_PRSTATUS for one thread, in the kernel's regset order */
  regsets(core: Msg, file: string): Note[];
}

/** Offset of pr_reg in struct elf_prstatus (the same on every 64-bit arch). */
export const PR_REG = 112;

const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));

function need(v: Msg | undefined, file: string, what: string): Msg {
  if (!v) throw new CoredumpError(`${file}: entry 0 has no ${what}`);
  return v;
}

function u64s(vals: unknown[] | undefined, count: number, b: Buffer, at: number): void {
  for (let i = 0; i < count; i++) b.writeBigUInt64LE(BigInt.asUintN(64, big(vals?.[i])), at + i * 8);
}

function u32s(vals: unknown[] | undefined, count: number, b: Buffer, at: number): void {
  for (let i = 0; i < count; i++) b.writeUInt32LE(Number(big(vals?.[i]) & 0xffffffffn), at + i * 4);
}

// user_regs_struct order, which is also user_x86_regs_entry's field order
const X86_GREGS = ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'] as const;

/** The 512-byte FXSAVE image (user_i387_struct); bytes 416..511 are left zero. */
function fxsave(fp: Msg): Buffer {
  const b = Buffer.alloc(512);
  b.writeUInt16LE(Number(fp.cwd) & 0xffff, 0);
  b.writeUInt16LE(Number(fp.swd) & 0xffff, 2);
  b.writeUInt16LE(Number(fp.twd) & 0xffff, 4);
  b.writeUInt16LE(Number(fp.fop) & 0xffff, 6);
  b.writeBigUInt64LE(big(fp.rip), 8);
  b.writeBigUInt64LE(big(fp.rdp), 16);
  b.writeUInt32LE(Number(fp.mxcsr) >>> 0, 24);
  b.writeUInt32LE(Number(fp.mxcsr_mask) >>> 0, 28);
  u32s(fp.st_space, 32, b, 32);
  u32s(fp.xmm_space, 64, b, 160);
  return b;
}

/**
 * XSAVE components the image can carry, at their standard-format offsets (CPUID leaf 0xD on
 * Intel; gdb assumes this layout for these sizes). `words` counts the image's array elements.
 */
const XSTATE_PARTS = [
  { bit: 2, field: 'ymmh_space', offset: 576, words: 64, width: 4 },
  { bit: 3, field: 'bndreg_state', offset: 960, words: 8, width: 8 },
  { bit: 4, field: 'bndcsr_state', offset: 1024, words: 2, width: 8 },
  { bit: 5, field: 'opmask_reg', offset: 1088, words: 8, width: 8 },
  { bit: 6, field: 'zmm_upper', offset: 1152, words: 64, width: 8 },
  { bit: 7, field: 'hi16_zmm', offset: 1664, words: 128, width: 8 },
  { bit: 9, field: 'pkru', offset: 2688, words: 2, width: 4 },
] as const;
/** where the kernel puts XCR0 in the NT_X86_XSTATE note: the FXSAVE area's software bytes */
const XCR0_OFFSET = 464;

/**
 * NT_X86_XSTATE: the legacy area, the header and every component the image holds. XCR0 names
 * exactly those components and the area ends after the last one; xstate_bv keeps only their bits,
 * so a component the image does not carry reads as being in its initial state.
 */
export function x86Xstate(fp: Msg): Buffer | undefined {
  const xs: Msg | undefined = fp.xsave;
  if (!xs) return undefined;
  let xcr0 = 3n; // x87 and SSE are always there
  let size = 576;
  for (const p of XSTATE_PARTS) {
    const v = xs[p.field] as unknown[] | undefined;
    if (!v?.length) continue;
    xcr0 |= 1n << BigInt(p.bit);
    size = Math.max(size, p.offset + p.words * p.width);
  }
  // AVX-512 or PKRU put the area at its full standard size, the one gdb knows for them
  if (xcr0 & 0x2e0n) size = xcr0 & 0x200n ? 2696 : Math.max(size, 2688);
  const b = Buffer.alloc(size);
  fxsave(fp).copy(b, 0);
  b.writeBigUInt64LE(xcr0, XCR0_OFFSET);
  b.writeBigUInt64LE(big(xs.xstate_bv) & xcr0, 512);
  for (const p of XSTATE_PARTS) {
    const v = xs[p.field] as unknown[] | undefined;
    if (!v?.length) continue;
    if (p.width === 4) u32s(v, p.words, b, p.offset);
    else u64s(v, p.words, b, p.offset);
  }
  return b;
}

const x86_64: Arch = {
  name: 'x86_64',
  machine: EM_X86_64,
  prstatusSize: 336,
  gregs(core, file) {
    const ti = need(core.thread_info, file, 'thread_info (x86 registers)');
    const g = need(ti.gpregs, file, 'thread_info.gpregs');
    if (Number(g.mode ?? 1) === 2) throw new CoredumpError(`${file}: a 32-bit (compat mode) task; crit coredump writes 64-bit cores only`);
    const b = Buffer.alloc(X86_GREGS.length * 8);
    X86_GREGS.forEach((n, i) => b.writeBigUInt64LE(BigInt.asUintN(64, big(g[n])), i * 8));
    return b;
  },
  regsets(core, file) {
    const fp = need(core.thread_info?.fpregs, file, 'thread_info.fpregs');
    const notes: Note[] = [{ name: 'CORE', type: NT_FPREGSET, desc: fxsave(fp) }];
    const xs = x86Xstate(fp);
    if (xs) notes.push({ name: 'LINUX', type: NT_X86_XSTATE, desc: xs });
    return notes;
  },
};

const aarch64: Arch = {
  name: 'aarch64',
  machine: EM_AARCH64,
  prstatusSize: 392,
  gregs(core, file) {
    const g = need(need(core.ti_aarch64, file, 'ti_aarch64 (aarch64 registers)').gpregs, file, 'ti_aarch64.gpregs');
    // struct user_pt_regs: x0..x30, sp, pc, pstate
    const b = Buffer.alloc(34 * 8);
    u64s(g.regs, 31, b, 0);
    b.writeBigUInt64LE(big(g.sp), 248);
    b.writeBigUInt64LE(big(g.pc), 256);
    b.writeBigUInt64LE(big(g.pstate), 264);
    return b;
  },
  regsets(core, file) {
    const ti = need(core.ti_aarch64, file, 'ti_aarch64 (aarch64 registers)');
    const fp = need(ti.fpsimd, file, 'ti_aarch64.fpsimd');
    // struct user_fpsimd_state: 32 128-bit vregs (low word first), fpsr, fpcr, 8 reserved bytes
    const f = Buffer.alloc(528);
    u64s(fp.vregs, 64, f, 0);
    f.writeUInt32LE(Number(fp.fpsr) >>> 0, 512);
    f.writeUInt32LE(Number(fp.fpcr) >>> 0, 516);
    const tls = Buffer.alloc(8);
    tls.writeBigUInt64LE(big(ti.tls));
    return [{ name: 'CORE', type: NT_FPREGSET, desc: f }, { name: 'LINUX', type: NT_ARM_TLS, desc: tls }];
  },
};

const MARCH = ['UNKNOWN', 'X86_64', 'ARM', 'AARCH64', 'PPC64', 'S390', 'MIPS', 'LOONGARCH64', 'RISCV64'];

/** The architecture a core image says it was dumped on (never the host's). */
export function archOf(core: Msg, file: string): Arch {
  const m = Number(core.mtype);
  if (m === 1) return x86_64;
  if (m === 3) return aarch64;
  throw new CoredumpError(`${file}: entry 0 mtype ${MARCH[m] ?? m}: crit coredump writes x86_64 and aarch64 cores only`);
}
