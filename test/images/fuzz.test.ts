// A fixed-seed run of the fuzz harness (bench/fuzz): a few thousand mutated images, JSON
// documents and damaged sets through decode, encode and check / x / xray / diff, in this
// process and through the same functions the crit command runs. Every input must end in a
// clean result or a clean located error; nothing may be an internal error, slow, or an
// encoded image that does not read back the same.
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'fs';
import { loadPool, Fuzzer, scratchDir } from '../../bench/fuzz/core';

const scratch = scratchDir('test');
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe('fuzz harness, seed 1', () => {
  it('5,000 iterations: no failures', () => {
    const pool = loadPool(scratch);
    expect(pool.images.length).toBeGreaterThan(20);
    const fz = new Fuzzer(pool, scratch, 1);
    try {
      for (let i = 0; i < 5000; i++) fz.iteration(i);
    } finally {
      fz.close();
    }
    const c = fz.counts;
    // the run really exercised every path
    expect(c.decodeInputs).toBeGreaterThan(1500);
    expect(c.decodedOk).toBeGreaterThan(200);
    expect(c.encodeInputs).toBeGreaterThan(300);
    expect(c.encodedOk).toBeGreaterThan(50);
    expect(c.setOps).toBeGreaterThan(40);
    expect(c.errors).toBeGreaterThan(1000);
    expect(fz.failures.map((f) => `iteration ${f.iteration}: ${f.signature}: ${f.message}`)).toEqual([]);
  });
});
