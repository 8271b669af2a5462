// The XSAVE image <-> regset mapping, both ways, without a process: every component the image
// carries (x87/SSE legacy area, AVX upper halves, AVX-512 opmask/ZMM_Hi256/Hi16_ZMM) lands at
// its standard-format offset and comes back out of it, and xstate_bv says which are live.
import { describe, it, expect } from 'vitest';
import { fpregsEntry, XSAVE_AVX512, AVX_OFFSET } from '../../engine/arch/x86_64';
import { xsaveBuffer } from '../../engine/restore/regs';

const SIZE = 2696; // standard-format XSAVE size with AVX-512 (and PKRU) on x86-64

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

describe('XSAVE state', () => {
  it('dump reads every component at its offset and restore writes it back byte for byte', () => {
    const regs = pattern(SIZE, 7);
    regs.fill(0, 416, 512); // the legacy area's reserved tail is not state
    regs.fill(0, 512, 576);
    regs.writeBigUInt64LE(0xe7n, 512); // x87, SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM live
    regs.fill(0, 960, 1088); // MPX (not carried)
    regs.fill(0, 2176, SIZE); // PKRU and beyond (not carried)
    const entry = fpregsEntry(regs);
    expect(entry.xsave.ymmh_space).toHaveLength(64);
    for (const c of XSAVE_AVX512) expect(entry.xsave[c.field]).toHaveLength(c.count);
    expect(entry.xsave.opmask_reg[0]).toBe(regs.readBigUInt64LE(1088));
    const back = xsaveBuffer(Buffer.alloc(SIZE), entry);
    // mxcsr_mask and the x87 tag word are written as-is; the whole image-carried state must match
    expect(back.subarray(0, 416).equals(regs.subarray(0, 416))).toBe(true);
    expect(back.readBigUInt64LE(512)).toBe(0xe7n);
    expect(back.subarray(AVX_OFFSET, AVX_OFFSET + 256).equals(regs.subarray(AVX_OFFSET, AVX_OFFSET + 256))).toBe(true);
    expect(back.subarray(1088, 2688).equals(regs.subarray(1088, 2688))).toBe(true);
  });

  it('components absent from the image start in their init state (bit cleared), not as stale values', () => {
    const regs = pattern(SIZE, 3);
    regs.writeBigUInt64LE(0xe7n, 512);
    const entry = fpregsEntry(regs);
    delete entry.xsave.hi16_zmm;
    const back = xsaveBuffer(Buffer.alloc(SIZE), entry);
    expect(back.readBigUInt64LE(512)).toBe(0x67n);
  });

  it('a short regset (no AVX-512 on this CPU) drops those components from the image', () => {
    const regs = pattern(832, 5);
    regs.writeBigUInt64LE(0x7n, 512);
    const entry = fpregsEntry(regs);
    for (const c of XSAVE_AVX512) expect(entry.xsave[c.field]).toBeUndefined();
  });
});
