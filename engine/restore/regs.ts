// Final per-thread CPU state: general registers (with fs_base/gs_base), the XSAVE area rebuilt
// from the image's legacy area, xstate_bv and AVX halves, and the blocked-signal mask.
import type { Msg } from '../../images/codec';
import { NT_PRSTATUS, NT_X86_XSTATE, Tracer } from '../../native';
import { GP_REG_NAMES, AVX_OFFSET, XSAVE_AVX512, XFEATURE_PKRU, xsaveOffset } from '../arch/x86_64';
import { big, num } from './imageset';

/** XSAVE components whose state the image carries: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM), PKRU */
export const IMAGE_XFEATURES = 0x2e7n;

export function gpRegsBuffer(gp: Msg): Buffer {
  const b = Buffer.alloc(GP_REG_NAMES.length * 8);
  GP_REG_NAMES.forEach((n, i) => b.writeBigUInt64LE(BigInt.asUintN(64, big(gp[n])), i * 8));
  return b;
}

/** The image's FPU state laid over this kernel's XSAVE buffer of the thread (sizes and sw bytes). */
export function xsaveBuffer(current: Buffer, fp: Msg): Buffer {
  const x = Buffer.from(current);
  x.writeUInt16LE(num(fp.cwd) & 0xffff, 0);
  x.writeUInt16LE(num(fp.swd) & 0xffff, 2);
  x.writeUInt16LE(num(fp.twd) & 0xffff, 4);
  x.writeUInt16LE(num(fp.fop) & 0xffff, 6);
  x.writeBigUInt64LE(BigInt.asUintN(64, big(fp.rip)), 8);
  x.writeBigUInt64LE(BigInt.asUintN(64, big(fp.rdp)), 16);
  x.writeUInt32LE(num(fp.mxcsr) >>> 0, 24);
  x.writeUInt32LE(num(fp.mxcsr_mask) >>> 0, 28);
  ((fp.st_space ?? []) as unknown[]).forEach((v, i) => x.writeUInt32LE(num(v) >>> 0, 32 + i * 4));
  ((fp.xmm_space ?? []) as unknown[]).forEach((v, i) => x.writeUInt32LE(num(v) >>> 0, 160 + i * 4));
  if (x.length <= 512) return x;
  x.fill(0, 512, Math.min(576, x.length)); // header: xcomp_bv and reserved must be zero
  let bv = 0x3n;
  const xs = fp.xsave;
  if (xs) {
    bv = big(xs.xstate_bv) & IMAGE_XFEATURES;
    const ymmh = (xs.ymmh_space ?? []) as unknown[];
    if (ymmh.length && x.length >= AVX_OFFSET + 256) ymmh.forEach((v, i) => x.writeUInt32LE(num(v) >>> 0, AVX_OFFSET + i * 4));
    else bv &= ~0x4n;
    for (const c of XSAVE_AVX512) {
      const vals = (xs[c.field] ?? []) as unknown[];
      if (vals.length === c.count && x.length >= c.offset + c.count * 8) vals.forEach((v, i) => x.writeBigUInt64LE(BigInt.asUintN(64, big(v)), c.offset + i * 8));
      else bv &= ~(1n << BigInt(c.bit)); // not in the image: the component starts in its init state
    }
    const pkru = (xs.pkru ?? []) as unknown[];
    const off = pkru.length ? xsaveOffset(XFEATURE_PKRU) : 0;
    if (pkru.length && off && x.length >= off + 8) pkru.slice(0, 2).forEach((v, i) => x.writeUInt32LE(num(v) >>> 0, off + i * 4));
    else bv &= ~(1n << BigInt(XFEATURE_PKRU));
  }
  x.writeBigUInt64LE(bv, 512);
  return x;
}

export function setThreadRegs(tracer: Tracer, host: number, core: Msg, leaderTc: Msg | undefined): void {
  const ti = core.thread_info;
  tracer.setRegset(host, NT_PRSTATUS, gpRegsBuffer(ti.gpregs));
  tracer.setRegset(host, NT_X86_XSTATE, xsaveBuffer(tracer.getRegset(host, NT_X86_XSTATE), ti.fpregs));
  const mask = core.thread_core?.blk_sigset ?? leaderTc?.blk_sigset ?? 0;
  tracer.setSigmask(host, BigInt.asUintN(64, big(mask)));
}
