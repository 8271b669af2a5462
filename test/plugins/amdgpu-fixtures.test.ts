// fixtures/amdgpu/: sets made by the simulator harness (test/plugins/amdgpu-fixtures.ts), read
// back through crit: `crit x DIR gpu` lists the handles, sizes, domains and GPU mappings the
// builders made, `crit xray DIR --gpu --bo N` shows the bytes they wrote, and each set still
// restores on the simulator to what was dumped.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { SimKernel } from '../../engine/plugins/amdgpu/sim/kernel';
import { simRestore } from '../../engine/plugins/amdgpu/sim/harness';
import { snapshot } from '../../engine/plugins/amdgpu/sim/oracle';
import { FIXTURES, SETS } from './amdgpu-fixtures';
import { DEV, ROOT, crit } from './sim-app';

/** App.fill's pattern, recomputed here */
const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + (i >> 12)) & 0xff));
/** the BO's bytes from `xray --raw`: exactly the bytes, nothing else on stdout */
function raw(set: string, bo: number, len: number): Buffer {
  const out = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'crit.js'), 'xray', path.join(FIXTURES, set), '--gpu', '--bo', String(bo), '--raw', '--len', String(len)], { maxBuffer: 1 << 24 });
  expect(out.length).toBe(len);
  return out;
}

describe('fixtures/amdgpu through crit', () => {
  it('render-node: three BOs with their handles, sizes, domains, mappings and contents', () => {
    const out = crit('x', path.join(FIXTURES, 'render-node'), 'gpu').split('\n');
    expect(out[0]).toBe('amdgpu-renderD-1.img: render node gpu 0x1080 renderD128, 3 buffer objects');
    const sizes = [16384, 8192, 4096], doms = ['VRAM', 'GTT', 'CPU'];
    for (let i = 0; i < 3; i++) {
      const va = (0x10_0000_0000n + BigInt(i) * 0x1000_0000n).toString(16);
      expect(out[1 + 2 * i]).toBe(`\t#${i} handle ${i + 1} size ${sizes[i]} domains ${doms[i]} addr 0x${va} -> amdgpu-drm-pages-1-128-${i.toString(16).padStart(4, '0')}.img`);
      expect(out[2 + 2 * i]).toBe(`\t\tva 0x${va} +0x${sizes[i].toString(16)} offset 0x0 flags 0x6`); // READABLE|WRITEABLE
      expect(raw('render-node', i, sizes[i]).equals(pattern(sizes[i], i + 1))).toBe(true);
    }
    const x = crit('xray', path.join(FIXTURES, 'render-node'), '--gpu', '--bo', '0', '--len', '32');
    expect(x).toContain('── amdgpu-renderD-1.img BO #0 handle 1 size 16384 VRAM ──');
    const hex = [...pattern(16, 1)].map((b) => b.toString(16).padStart(2, '0'));
    expect(x).toContain(`0000000000000000  ${hex.slice(0, 8).join(' ')}  ${hex.slice(8).join(' ')}`);
  });

  it('dmabuf-pair: the exporter owns the contents, the importer names the same buffer at its own handle, the fd is kept', () => {
    const dir = path.join(FIXTURES, 'dmabuf-pair');
    const out = crit('x', dir, 'gpu');
    expect(out).toContain('amdgpu-dmabuf_2.img: dmabuf, 1 buffer objects\n\t#0 handle 1 size 0 domains  addr 0x0 -> shared through the fd store');
    expect(out).toContain('amdgpu-renderD-1.img: render node gpu 0x1080 renderD128, 1 buffer objects\n\t#0 handle 1 size 8192 domains VRAM addr 0x2000000000 -> amdgpu-drm-pages-1-128-0000.img\n\t\tva 0x2000000000 +0x2000 offset 0x0 flags 0x6');
    expect(out).toContain('\t#1 handle 2 size 8192 domains VRAM addr 0x3000000000 (imported) -> imported: contents are the exporter\'s\n\t\tva 0x3000000000 +0x2000 offset 0x0 flags 0x6');
    expect(crit('xray', dir, '--gpu', '--bo', '0')).toContain('contents: shared through the fd store');
    expect(raw('dmabuf-pair', 1, 8192).equals(pattern(8192, 7))).toBe(true);
    const rd1 = JSON.parse(crit('decode', '-i', path.join(dir, 'amdgpu-renderD-1.img'))).entries[0];
    const rd3 = JSON.parse(crit('decode', '-i', path.join(dir, 'amdgpu-renderD-3.img'))).entries[0];
    const dmabuf = JSON.parse(crit('decode', '-i', path.join(dir, 'amdgpu-dmabuf_2.img'))).entries[0];
    expect(rd3.bo_entries[1].buffer_id).toBe(rd1.bo_entries[0].buffer_id);
    expect(rd3.bo_entries[0].buffer_id).not.toBe(rd1.bo_entries[0].buffer_id);
    expect(dmabuf.buffer_id).toBe(rd1.bo_entries[0].buffer_id);
  });

  it('each set restores on the simulator to what its builder made', () => {
    for (const [name, build] of Object.entries(SETS)) {
      const k = new SimKernel([DEV()]);
      const pids = build(k);
      const k2 = new SimKernel([DEV()]);
      simRestore(k2, path.join(FIXTURES, name));
      expect(snapshot(k2, pids), name).toEqual(snapshot(k, pids));
    }
  });
});
