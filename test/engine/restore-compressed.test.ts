// engine restore of a set whose pages crit compress stored LZ4-compressed (CRIU 2026 layout,
// both schemas): the restored counter has its memory patterns byte for byte and goes on counting.
import { describe, it, expect, afterAll } from 'vitest';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, lastCount, consecutive, until, gone, dumpOk, restoreOk, readMem, cleanUp, Target } from './helpers';
import { compressSet } from '../../images/memory/convert';
import { ImageSet } from '../../images/imageset';
import { loadMessages } from '../../images/files';
import { checkSet } from '../../images/query/check';

if (!IS_ROOT) console.warn(`SKIPPING compressed restore tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine restore of compressed sets', () => {
  const work = IS_ROOT ? tempDir('restore-lz4') : '';
  let target: Target | undefined;
  afterAll(() => cleanUp(target, work));

  for (const [label, opts] of [['G1 per page', { schema: 'g1' as const }], ['G2 64K blocks', { schema: 'g2' as const, blockBytes: 64 << 10 }]] as const) {
    it(`${label}: memory patterns back, the count goes on`, async () => {
      const exe = compile('counter', work);
      const t = (target = startTarget(exe, [path.join(work, `${label}.txt`), '20000', String(256 * 1024)], work));
      const m = await t.waitFor(/data=0x([0-9a-f]+) heap=0x([0-9a-f]+) heaplen=(\d+)/);
      const data = BigInt('0x' + m[1]);
      const heap = BigInt('0x' + m[2]);
      const heapLen = Number(m[3]);
      await t.waitFor(/count=3\n/);
      const plain = path.join(work, `${label}-plain`);
      dumpOk(t.pid, plain);
      const at = lastCount(t.output());
      await until(() => gone(t.pid), 'the dumped counter to be reaped');
      const dir = path.join(work, `${label}-lz4`);
      compressSet(plain, dir, opts);
      const s = new ImageSet(dir);
      expect(s.memory(t.pid).storage()[0].compressed).toBe(true);
      s.close();
      expect(restoreOk(dir)).toBe(t.pid);
      await t.waitFor(new RegExp(`count=${at + 3}\\n`));
      expect(consecutive(t.output())).toBe(true);
      const d = readMem(t.pid, data, 3 * 4096);
      for (let i = 0; i < d.length; i++) if (d[i] !== ((i * 7 + 1) & 0xff)) throw new Error(`data pattern differs at ${i}`);
      const h = readMem(t.pid, heap, heapLen);
      for (let i = 0; i < h.length; i++) if (h[i] !== (0xa5 ^ ((i >> 12) & 0xff))) throw new Error(`heap pattern differs at ${i}`);
      t.kill();
    });
  }

  it('engine dump --compress --compress-region 64K writes a compressed set that check finds clean and restore brings back', async () => {
    const exe = compile('counter', work);
    const t = (target = startTarget(exe, [path.join(work, 'direct.txt'), '20000', String(256 * 1024)], work));
    const m = await t.waitFor(/data=0x([0-9a-f]+) heap=0x([0-9a-f]+) heaplen=(\d+)/);
    await t.waitFor(/count=3\n/);
    const dir = path.join(work, 'direct');
    dumpOk(t.pid, dir, '--compress', '--compress-region', '64K');
    const at = lastCount(t.output());
    await until(() => gone(t.pid), 'the dumped counter to be reaped');
    const inv = loadMessages(path.join(dir, 'inventory.img'))[0];
    expect([inv.img_version, inv.compress, inv.compress_region_size]).toEqual([3, 2, 65536]);
    expect(checkSet(dir).problems.filter((p) => p.severity === 'error')).toEqual([]);
    expect(restoreOk(dir)).toBe(t.pid);
    await t.waitFor(new RegExp(`count=${at + 3}\\n`));
    const h = readMem(t.pid, BigInt('0x' + m[2]), Number(m[3]));
    for (let i = 0; i < h.length; i++) if (h[i] !== (0xa5 ^ ((i >> 12) & 0xff))) throw new Error(`heap pattern differs at ${i}`);
    t.kill();
  });
});
