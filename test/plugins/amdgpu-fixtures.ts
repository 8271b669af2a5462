// The fixture sets under fixtures/amdgpu/, made by the simulator harness (the plugin's dump on a
// simulated driver, CRIU's core images as the engine writes them). Regenerate with
//   npx tsx test/plugins/amdgpu-fixtures.ts
// The builders are shared with the test that reads the sets back through crit.
import * as fs from 'fs';
import * as path from 'path';
import { SimKernel } from '../../engine/plugins/amdgpu/sim/kernel';
import { simDump } from '../../engine/plugins/amdgpu/sim/harness';
import { App, DEV, ROOT, VRAM, GTT, CPU, sendFd } from './sim-app';

export const FIXTURES = path.join(ROOT, 'fixtures', 'amdgpu');
const KiB = 1024n;

/** one process, one render fd, three BOs (VRAM, GTT, CPU) with contents, GPU- and CPU-mapped */
export function renderNode(k: SimKernel): number[] {
  const a = new App(k, 100);
  const fd = a.open();
  [[VRAM, 16n * KiB], [GTT, 8n * KiB], [CPU, 4n * KiB]].forEach(([dom, size], i) => {
    const h = a.create(fd, size as bigint, dom as number);
    a.fill(fd, h, size as bigint, i + 1);
    const va = 0x10_0000_0000n + BigInt(i) * 0x1000_0000n;
    a.map(fd, h, va, size as bigint);
    a.cpuMap(fd, h, va, size as bigint);
  });
  return [100];
}

/** two processes share a VRAM BO (exported by A, imported by B at another handle); A keeps the dma-buf fd open */
export function dmabufPair(k: SimKernel): number[] {
  const a = new App(k, 100), b = new App(k, 200);
  const fa = a.open(), fb = b.open();
  b.create(fb, 4n * KiB, GTT); // B's handle 1 is its own
  const h = a.create(fa, 8n * KiB, VRAM);
  a.fill(fa, h, 8n * KiB, 7);
  a.map(fa, h, 0x20_0000_0000n, 8n * KiB);
  const d = a.export(fa, h);
  const db = sendFd(k, 100, d, 200);
  const hb = b.import(fb, db);
  b.close(db);
  b.map(fb, hb, 0x30_0000_0000n, 8n * KiB);
  return [100, 200];
}

export const SETS: Record<string, (k: SimKernel) => number[]> = { 'render-node': renderNode, 'dmabuf-pair': dmabufPair };

export function make(name: string, dir = path.join(FIXTURES, name)): string {
  fs.rmSync(dir, { recursive: true, force: true });
  const k = new SimKernel([DEV()]);
  simDump(k, SETS[name](k), dir);
  return dir;
}

if (require.main === module) for (const n of Object.keys(SETS)) console.log(make(n));
