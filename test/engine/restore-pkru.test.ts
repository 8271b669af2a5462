// The protection-key rights register (PKRU, XSAVE component 9, at the offset CPUID gives this
// CPU) is dumped as CRIU 4.2 records it and comes back with its value; a set that says the
// register was in use but lacks its value is refused.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../native';
import { loadImage, writeImage } from '../../images/files';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine } from './helpers';

const HAS_PKU = IS_ROOT && /\bospke\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
if (!HAS_PKU) console.warn('SKIPPING PKRU tests: needs root and a CPU with protection keys (ospke)');

describe.skipIf(!HAS_PKU)('PKRU', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('pkru');
    target = startTarget(compile('pkru', work), [], work);
    await target.waitFor(/ready pkru=0x5a5a5a50\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('is dumped as xsave.pkru with the value the program set', () => {
    const x = decode(path.join(dir, `core-${target.pid}.img`))[0].thread_info.fpregs.xsave;
    expect(x.pkru).toEqual([0x5a5a5a50, 0]);
    expect(BigInt(x.xstate_bv) & (1n << 9n)).toBe(1n << 9n);
    expect(native().cpuid(0xd, 9)[0]).toBe(8); // its size, wherever this CPU puts it
  });

  it('is refused when the image says it was in use but does not hold it', () => {
    const bad = path.join(work, 'bad');
    fs.cpSync(dir, bad, { recursive: true });
    const core = path.join(bad, `core-${target.pid}.img`);
    const img = loadImage(core);
    delete img.entries[0].msg.thread_info.fpregs.xsave.pkru;
    writeImage(core, img.magic, img.entries.map((e) => ({ msg: e.msg })));
    const r = runEngine(['restore', '-D', bad, '-d']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/xsave\.pkru: xstate_bv says the protection-key register is in use/);
  });

  it('comes back with its value', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL.*)\n/);
    expect(target.output()).toMatch(/\nPASS\n$/);
  });
});
