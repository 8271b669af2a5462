// Spec §7.5 scenarios on the simulated driver: dump, restore on a fresh simulated machine, and
// compare everything (handles, sizes, domains, GPU mappings, contents, sharing, CPU mappings).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { SimKernel } from '../../engine/plugins/amdgpu/sim/kernel';
import { simDump, simRestore, ENGINE_PID } from '../../engine/plugins/amdgpu/sim/harness';
import { snapshot, hygiene } from '../../engine/plugins/amdgpu/sim/oracle';
import { App, DEV, tmpDir, MiB, VRAM, GTT, CPU, crit, sendFd } from './sim-app';

type Build = (k: SimKernel) => number[];

/** dump (checking the live tasks are untouched), restore in each order, compare */
function roundTrip(
  devs: ReturnType<typeof DEV>[], build: Build, orders?: (pids: number[]) => { order?: number[]; seed?: number }[], primeTouched = false,
): { dir: string; pids: number[] } {
  const k = new SimKernel(devs);
  const pids = build(k);
  const before = snapshot(k, pids, !primeTouched);
  const dir = tmpDir('s');
  simDump(k, pids, dir);
  // D4: the live process is only read (a BO without CPU access is identified by exporting it,
  // which adds a PRIME cache entry: the one documented side effect)
  expect(snapshot(k, pids, !primeTouched)).toEqual(before);
  expect(k.proc(ENGINE_PID).fds.size).toBe(0);
  expect(k.foreignCloses).toEqual([]);
  const want = snapshot(k, pids);
  for (const o of orders ? orders(pids) : [{}]) {
    const k2 = new SimKernel(devs);
    simRestore(k2, dir, o);
    expect(snapshot(k2, pids), JSON.stringify(o)).toEqual(want);
    expect(hygiene(k2, pids)).toEqual([]);
    expect(k2.proc(ENGINE_PID).fds.size).toBe(0); // the plugin kept nothing open
    expect(k2.foreignCloses).toEqual([]);
  }
  return { dir, pids };
}

const allOrders = (pids: number[]) => [
  { order: pids }, { order: [...pids].reverse() }, ...[1, 2, 3, 4, 5, 6].map((seed) => ({ seed })),
];

describe('amdgpu plugin on the simulator: scenarios', () => {
  it('S1: one process, BOs in VRAM/GTT/CPU, GPU- and CPU-mapped at CPU VA == GPU VA; images decode and list', () => {
    const { dir } = roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      [VRAM, GTT, CPU].forEach((dom, i) => {
        const h = a.create(fd, 2n * MiB, dom);
        a.fill(fd, h, 2n * MiB, i + 1);
        const va = 0x10_0000_0000n + BigInt(i) * 0x1000_0000n;
        a.map(fd, h, va, 2n * MiB);
        a.cpuMap(fd, h, va, 2n * MiB);
      });
      return [100];
    });
    const names = fs.readdirSync(dir).filter((n) => n.startsWith('amdgpu-')).sort();
    expect(names).toEqual(['amdgpu-drm-pages-1-128-0000.img', 'amdgpu-drm-pages-1-128-0001.img', 'amdgpu-drm-pages-1-128-0002.img', 'amdgpu-renderD-1.img']);
    for (const n of names) expect(crit('decode', '-i', path.join(dir, n))).toContain(n.includes('pages') ? 'AMDGPU_DRM_PAGES' : 'AMDGPU_RENDER_NODE');
    const out = crit('x', dir, 'gpu');
    expect(out).toContain('amdgpu-renderD-1.img: render node');
    expect(out).toMatch(/#2 handle 3 size 2097152 domains CPU/);
    const inv = JSON.parse(crit('decode', '-i', path.join(dir, 'inventory.img')));
    expect(inv.entries[0].plugins_entry.plugins).toEqual(['amdgpu_plugin']);
  });
});

describe('amdgpu plugin on the simulator: more scenarios', () => {
  it('S2: more than 8 BOs, one with more than 8 GPU mappings, partial mappings at offset != 0 (two-call probes)', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      for (let i = 0; i < 11; i++) {
        const h = a.create(fd, 64n * 1024n, i % 2 ? VRAM : GTT);
        a.fill(fd, h, 64n * 1024n, i);
        a.map(fd, h, 0x20_0000_0000n + BigInt(i) * 0x100000n, 64n * 1024n);
      }
      const big = a.create(fd, 1n * MiB, VRAM);
      a.fill(fd, big, MiB, 99);
      for (let j = 0; j < 12; j++) a.map(fd, big, 0x30_0000_0000n + BigInt(j) * 0x200000n, 0x10000n, BigInt(j) * 0x10000n, j % 2 ? 2 : 6);
      return [100];
    });
  });

  it('S3: CPU-mapped but not GPU-mapped, GPU-mapped twice, a CPU VMA over the second half (D11)', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      const h1 = a.create(fd, MiB, VRAM);
      a.fill(fd, h1, MiB, 1);
      a.cpuMap(fd, h1, 0x7f00_0000_0000n, MiB);
      const h2 = a.create(fd, MiB, GTT);
      a.fill(fd, h2, MiB, 2);
      a.map(fd, h2, 0x10_0000_0000n, MiB);
      a.map(fd, h2, 0x11_0000_0000n, MiB);
      a.cpuMap(fd, h2, 0x7f00_1000_0000n, MiB / 2n, MiB / 2n);
      const h3 = a.create(fd, MiB, VRAM); // neither mapped: its contents still count
      a.fill(fd, h3, MiB, 3);
      return [100];
    });
  });

  it('S4: a dma-buf fd held open, numbered below and above the render fd', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const placeholder = a.open(); // fd 0, closed below to leave a hole
      const fd = a.open();
      const h = a.create(fd, MiB, VRAM);
      a.fill(fd, h, MiB, 4);
      a.close(placeholder);
      const low = a.export(fd, h); // takes fd 0
      const h2 = a.create(fd, MiB, GTT);
      a.fill(fd, h2, MiB, 5);
      a.export(fd, h2); // above the render fd
      expect(low).toBe(0);
      return [100];
    }, allOrders);
  });

  it('S5 + S7: two processes share a BO (same device, different handles); every restore order, interleaved', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100), b = new App(k, 200);
      const fa = a.open(), fb = b.open();
      for (let i = 0; i < 2; i++) b.create(fb, 4096n * BigInt(i + 1), GTT); // B's handles 1,2 taken
      const h = a.create(fa, MiB, VRAM);
      a.fill(fa, h, MiB, 7);
      a.map(fa, h, 0x10_0000_0000n, MiB);
      const d = a.export(fa, h);
      const db = sendFd(k, 100, d, 200);
      a.close(d);
      const hb = b.import(fb, db);
      b.close(db);
      expect(hb).toBe(3);
      b.map(fb, hb, 0x40_0000_0000n, MiB);
      b.cpuMap(fb, hb, 0x40_0000_0000n, MiB);
      return [100, 200];
    }, allOrders);
  });

  it('S6: two processes, each with a private BO at handle 1: no aliasing (D1)', () => {
    roundTrip([DEV()], (k) => {
      for (const pid of [100, 200]) {
        const a = new App(k, pid);
        const fd = a.open();
        const h = a.create(fd, MiB, VRAM);
        a.fill(fd, h, MiB, pid);
      }
      return [100, 200];
    }, allOrders);
  });

  it('S8: cross-device import (IS_IMPORT): the importer follows its exporter', () => {
    roundTrip([DEV(128), DEV(129)], (k) => {
      const a = new App(k, 100);
      const f0 = a.open(128), f1 = a.open(129);
      const h = a.create(f0, MiB, VRAM);
      a.fill(f0, h, MiB, 8);
      const d = a.export(f0, h);
      const hi = a.import(f1, d);
      a.close(d);
      a.map(f1, hi, 0x10_0000_0000n, MiB);
      return [100];
    });
  });

  it('S9 and a BO imported into two files of one process: one restored file per original file (D7)', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const f1 = a.open(), f2 = a.open(), f3 = a.open();
      const h1 = a.create(f1, MiB, VRAM); // handle 1 in f1
      a.fill(f1, h1, MiB, 1);
      const h2 = a.create(f2, MiB, VRAM); // handle 1 in f2: a different buffer
      a.fill(f2, h2, MiB, 2);
      const d = a.export(f1, h1);
      a.import(f2, d); // f1's buffer at handle 2 in f2
      a.import(f3, d); // and at handle 1 in f3
      a.close(d);
      return [100];
    });
  });

  it('S11: a NO_CPU_ACCESS BO outside VRAM/GTT round-trips (GEM_MMAP EPERM is not fatal, D13)', () => {
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      a.create(fd, 4096n, 0x8 /* GDS */, 2n /* NO_CPU_ACCESS */);
      const h = a.create(fd, MiB, VRAM);
      a.fill(fd, h, MiB, 3);
      return [100];
    }, undefined, true);
  });

  it('S12: mappings packed from the lowest GPU address, where an SDMA helper would put its temporaries (D12)', () => {
    // CRIU's SDMA copies map temporary BOs into the target's own VM at addresses its allocator
    // picks; with the VM full there, GEM_VA fails. We copy through our own drm file and CPU
    // mappings, so the target's VM is never touched: the dump leaves it equal (roundTrip checks
    // the live snapshot) and the restore rebuilds exactly these mappings with their contents.
    roundTrip([DEV()], (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      let va = 2n * MiB; // the first address the VM allows
      for (let i = 0; i < 6; i++) {
        const h = a.create(fd, 2n * MiB, i % 2 ? GTT : VRAM);
        a.fill(fd, h, 2n * MiB, 20 + i);
        a.map(fd, h, va, 2n * MiB);
        va += 2n * MiB;
      }
      return [100];
    });
  });

  it('GPU remap: restored on a machine where the GPU is another render minor', () => {
    const k = new SimKernel([DEV(128, 0x77)]);
    const a = new App(k, 100);
    const fd = a.open();
    const h = a.create(fd, MiB, VRAM);
    a.fill(fd, h, MiB, 5);
    a.cpuMap(fd, h, 0x7f00_0000_0000n, MiB);
    const dir = tmpDir('remap');
    simDump(k, [100], dir);
    const k2 = new SimKernel([DEV(129, 0x77)]);
    simRestore(k2, dir);
    expect(k2.file(100, fd).path).toBe('/dev/dri/renderD129');
    expect(snapshot(k2, [100])).toEqual(snapshot(k, [100]));
  });

  it('VM flags reported as PTE bits (D5) are replayed as uapi flags', () => {
    const devs = [DEV()];
    const k = new SimKernel(devs, { vmFlags: 'pte' });
    const a = new App(k, 100);
    const fd = a.open();
    const h = a.create(fd, MiB, VRAM);
    a.map(fd, h, 0x10_0000_0000n, MiB, 0n, 2 | 4 | 8); // R|W|X: as PTE 0x70, which is an invalid uapi value
    const dir = tmpDir('pte');
    simDump(k, [100], dir);
    const k2 = new SimKernel(devs, { vmFlags: 'pte' });
    simRestore(k2, dir);
    expect(snapshot(k2, [100])).toEqual(snapshot(k, [100]));
  });
});
