// x86-64 register sets: raw ptrace regsets -> CRIU's thread_info_x86 fields, and the
// syscall-restart fixup CRIU applies to the saved registers.
import { native } from '../../native';
import type { Msg } from '../../images/codec';

/** user_regs_struct order (NT_PRSTATUS); identical to user_x86_regs_entry's field order. */
export const GP_REG_NAMES = [
  'r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type GpRegName = (typeof GP_REG_NAMES)[number];
export type GpRegs = Record<GpRegName, bigint>;

export function parseGpRegs(buf: Buffer): GpRegs {
  if (buf.length < GP_REG_NAMES.length * 8) throw new Error(`NT_PRSTATUS is ${buf.length} bytes, expected 216`);
  const r = {} as GpRegs;
  GP_REG_NAMES.forEach((name, i) => {
    r[name] = buf.readBigUInt64LE(i * 8);
  });
  return r;
}

const ERESTARTSYS = 512n;
const ERESTARTNOINTR = 513n;
const ERESTARTNOHAND = 514n;
const ERESTART_RESTARTBLOCK = 516n;
const EINTR = 4n;
const U64 = (1n << 64n) - 1n;

/** rax as a signed value */
function signed(v: bigint): bigint {
  return v >= 1n << 63n ? v - (1n << 64n) : v;
}

/**
 * A thread stopped inside an interrupted syscall has rax = -ERESTART*. The restored thread
 * has no kernel context, so re-execute the syscall (rip back over `syscall`, rax = nr), or,
 * for restart_block syscalls whose state is gone, report EINTR.
 */
export function restartFixup(regs: GpRegs): GpRegs {
  if (signed(regs.orig_ax) < 0n) return regs;
  const ret = -signed(regs.ax);
  const out = { ...regs };
  if (ret === ERESTARTSYS || ret === ERESTARTNOINTR || ret === ERESTARTNOHAND) {
    out.ax = regs.orig_ax;
    out.ip = (regs.ip - 2n) & U64;
  } else if (ret === ERESTART_RESTARTBLOCK) {
    out.ax = (-EINTR) & U64;
  }
  return out;
}

export function gpRegsEntry(regs: GpRegs): Msg {
  const m: Msg = {};
  for (const n of GP_REG_NAMES) m[n] = regs[n];
  m.mode = 1; // NATIVE
  return m;
}

function u32s(buf: Buffer, off: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(buf.readUInt32LE(off + i * 4));
  return out;
}

/** XSAVE layout: legacy 512-byte FXSAVE area, then the header with xstate_bv, then components. */
export const XSAVE_HDR = 512;
export const AVX_OFFSET = 576;

/**
 * AVX-512 state in the image (opmask k0-k7, the upper halves of zmm0-15, zmm16-31) at the
 * offsets of the standard XSAVE format, which is what PTRACE_GETREGSET(NT_X86_XSTATE) returns.
 */
export const XSAVE_AVX512 = [
  { bit: 5, field: 'opmask_reg', offset: 1088, count: 8 },
  { bit: 6, field: 'zmm_upper', offset: 1152, count: 64 },
  { bit: 7, field: 'hi16_zmm', offset: 1664, count: 128 },
] as const;

/** XSAVE component 9: the protection-key rights register (4 bytes and 4 of padding) */
export const XFEATURE_PKRU = 9;
const offsets = new Map<number, number>();

/** Where XSAVE component `bit` sits in the standard (non-compacted) layout: CPUID 0xD. */
export function xsaveOffset(bit: number): number {
  let off = offsets.get(bit);
  if (off === undefined) {
    off = native().cpuid(0xd, bit)[1];
    offsets.set(bit, off);
  }
  return off;
}

function u64s(buf: Buffer, off: number, count: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) out.push(buf.readBigUInt64LE(off + i * 8));
  return out;
}

export function fpregsEntry(xstate: Buffer): Msg {
  const fx = xstate;
  const entry: Msg = {
    cwd: fx.readUInt16LE(0),
    swd: fx.readUInt16LE(2),
    twd: fx.readUInt16LE(4),
    fop: fx.readUInt16LE(6),
    rip: fx.readBigUInt64LE(8),
    rdp: fx.readBigUInt64LE(16),
    mxcsr: fx.readUInt32LE(24),
    mxcsr_mask: fx.readUInt32LE(28),
    st_space: u32s(fx, 32, 32),
    xmm_space: u32s(fx, 160, 64),
  };
  if (xstate.length > XSAVE_HDR) {
    const xsave: Msg = { xstate_bv: xstate.readBigUInt64LE(XSAVE_HDR) };
    if (xstate.length >= AVX_OFFSET + 256) xsave.ymmh_space = u32s(xstate, AVX_OFFSET, 64);
    // as CRIU does: every AVX-512 component the CPU has, whether or not it is in use
    for (const c of XSAVE_AVX512) if (xstate.length >= c.offset + c.count * 8) xsave[c.field] = u64s(xstate, c.offset, c.count);
    // PKRU as CRIU 4.2 records it: the register and its padding word, when the CPU has it
    if (native().xcr0() & (1n << BigInt(XFEATURE_PKRU))) {
      const off = xsaveOffset(XFEATURE_PKRU);
      if (off && xstate.length >= off + 8) xsave.pkru = [xstate.readUInt32LE(off), xstate.readUInt32LE(off + 4)];
    }
    // CRIU 4.2 always records the (here unsupported, zero) CET state
    xsave.cet = { cet: 0n, ssp: 0n };
    entry.xsave = xsave;
  }
  return entry;
}

/** The GDT entries a thread can set with set_thread_area (GDT_ENTRY_TLS_MIN..MAX). */
export const TLS_SLOTS = [12, 13, 14];

/** struct user_desc (PTRACE_GET_THREAD_AREA) -> user_desc_t; an unused slot reads as not present. */
export function tlsEntry(desc: Buffer): Msg {
  const bits = desc.readUInt32LE(12);
  return {
    entry_number: desc.readUInt32LE(0), base_addr: desc.readUInt32LE(4), limit: desc.readUInt32LE(8),
    seg_32bit: (bits & 1) !== 0, contents_h: (bits & 4) !== 0, contents_l: (bits & 2) !== 0,
    read_exec_only: (bits & 8) !== 0, limit_in_pages: (bits & 16) !== 0, seg_not_present: (bits & 32) !== 0,
    usable: (bits & 64) !== 0,
  };
}
