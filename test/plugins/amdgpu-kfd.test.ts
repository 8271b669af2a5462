// The KFD path (spec §5, S10 of §7.5) on the simulator: /dev/kfd state checkpointed with
// PROCESS_INFO/CHECKPOINT (queues paused only while dumping), amdgpu-kfd-<id>.img and
// amdgpu-pages-<id>-<gpu>.img written as CRIU names and frames them, restored with RESTORE and
// RESUME; KFD BOs imported into a render file keep their identity, in every restore order.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { SimKernel } from '../../engine/plugins/amdgpu/sim/kernel';
import { simDump, simRestore, ENGINE_PID } from '../../engine/plugins/amdgpu/sim/harness';
import { snapshot, hygiene } from '../../engine/plugins/amdgpu/sim/oracle';
import { readMessage, writeMessage } from '../../engine/plugins/amdgpu/images';
import { KFD_ALLOC } from '../../engine/plugins/amdgpu/structs';
import { App, DEV, tmpDir, MiB, VRAM, crit } from './sim-app';

const GPU = 0x1080;
const KFD = { kfd: true } as const;

/**
 * S10: one process with /dev/kfd and a render fd (the VM bound to it), KFD BOs in VRAM, GTT and a
 * doorbell; one VRAM KFD BO imported into the render file (so its handle there is the same
 * buffer), one not; a DRM-only BO too; CPU mappings of a KFD BO (render node) and the doorbell
 * (/dev/kfd, a 64-bit offset). kfdFirst picks the fd order.
 */
function s10(kfdFirst: boolean) {
  return (k: SimKernel): number[] => {
    const a = new App(k, 100);
    let kfd: number, drm: number;
    if (kfdFirst) { kfd = a.openKfd(); drm = a.open(); } else { drm = a.open(); kfd = a.openKfd(); }
    a.acquireVm(kfd, drm);
    const v1 = a.kfdAlloc(kfd, GPU, 2n * MiB, KFD_ALLOC.VRAM, 0x7000_0000_0000n, 1);
    a.kfdAlloc(kfd, GPU, MiB, KFD_ALLOC.GTT, 0x7000_1000_0000n, 2);
    const db = a.kfdAlloc(kfd, GPU, 8192n, KFD_ALLOC.DOORBELL, 0x7000_2000_0000n, 3);
    const v2 = a.kfdAlloc(kfd, GPU, MiB, KFD_ALLOC.VRAM, 0x7000_3000_0000n, 4);
    const d = a.kfdExport(v1);
    const h = a.import(drm, d); // handle 1 in the render file: the KFD buffer
    a.close(d);
    a.map(drm, h, 0x20_0000_0000n, 2n * MiB);
    const own = a.create(drm, MiB, VRAM);
    a.fill(drm, own, MiB, 9);
    k.mmap(100, drm, v2.addr, v2.size, v2.offset); // ROCm maps KFD BOs through the render node
    k.mmap(100, kfd, db.addr, db.size, db.offset); // and doorbells through /dev/kfd
    expect(db.offset >> 62n).toBe(3n);
    return [100];
  };
}

function roundTrip(build: (k: SimKernel) => number[], orders: { order?: number[]; seed?: number }[] = [{}]) {
  const k = new SimKernel([DEV(128, GPU)], KFD);
  const pids = build(k);
  const before = snapshot(k, pids);
  const dir = tmpDir('kfd');
  simDump(k, pids, dir);
  const after = snapshot(k, pids);
  expect(after).toEqual(before); // untouched, and running again (UNPAUSE)
  expect(Object.values(after.kfd).every((s) => !s.paused)).toBe(true);
  expect(k.proc(ENGINE_PID).fds.size).toBe(0);
  expect(k.foreignCloses).toEqual([]);
  for (const o of orders) {
    const k2 = new SimKernel([DEV(128, GPU)], KFD);
    simRestore(k2, dir, o);
    const got = snapshot(k2, pids);
    expect(got, JSON.stringify(o)).toEqual(after); // RESUME ran: not paused
    expect(hygiene(k2, pids)).toEqual([]);
    expect(k2.proc(ENGINE_PID).fds.size).toBe(0);
    expect(k2.foreignCloses).toEqual([]);
  }
  return { dir, k };
}

describe('amdgpu plugin, KFD path', () => {
  it('S10, /dev/kfd below the render fd: images named and framed as CRIU does, crit reads them', () => {
    const { dir } = roundTrip(s10(true), [{}, { seed: 1 }, { seed: 2 }]);
    const names = fs.readdirSync(dir).filter((n) => n.startsWith('amdgpu-')).sort();
    // the KFD buffer imported into the render file has its contents in the KFD pages file only
    expect(names).toEqual(['amdgpu-drm-pages-2-128-0001.img', 'amdgpu-kfd-1.img', 'amdgpu-pages-1-1080.img', 'amdgpu-renderD-2.img']);
    const pages = fs.readFileSync(path.join(dir, 'amdgpu-pages-1-1080.img'));
    expect(pages.readBigUInt64LE(0)).toBe(4n * MiB); // VRAM 2 MiB + GTT 1 MiB + VRAM 1 MiB, doorbell not
    expect(pages.length).toBe(8 + 4 * 1048576);
    const kfd = readMessage(dir, 'amdgpu-kfd-1.img')!;
    expect(Number(kfd.num_of_bos)).toBe(4);
    expect([Number(kfd.num_of_gpus), Number(kfd.num_of_cpus)]).toEqual([1, 1]);
    expect(kfd.bo_entries.map((b: Record<string, unknown>) => Number(b.alloc_flags))).toEqual([1, 2, 8, 1]);
    expect(BigInt(kfd.bo_entries[2].offset)).toBe((3n << 62n) | (BigInt(GPU) << 46n));
    const rd = readMessage(dir, 'amdgpu-renderD-2.img')!;
    expect(rd.bo_entries.map((b: Record<string, unknown>) => Number(b.is_import))).toEqual([1, 0]);
    expect(rd.bo_entries[0].buffer_id).toBe(kfd.bo_entries[0].buffer_id);
    const out = crit('x', dir, 'gpu');
    expect(out).toContain('amdgpu-kfd-1.img: kfd, 4 buffer objects');
    expect(out).toMatch(/#3 handle \d+ size 1048576 domains VRAM addr 0x700030000000 -> amdgpu-pages-1-1080\.img at byte 3145736/);
    for (const n of names.filter((x) => !x.includes('pages'))) expect(crit('decode', '-i', path.join(dir, n))).toContain('AMDGPU_');
  });

  it('S10, render fd below /dev/kfd: the render file waits for the KFD buffer it imports (every order)', () => {
    roundTrip(s10(false), [{}, ...[1, 2, 3, 4].map((seed) => ({ seed }))]);
  });

  it('two processes, each with its own KFD state on the same GPU', () => {
    roundTrip((k) => {
      for (const pid of [100, 200]) {
        const a = new App(k, pid);
        const kfd = a.openKfd(), drm = a.open();
        a.acquireVm(kfd, drm);
        a.kfdAlloc(kfd, GPU, MiB, KFD_ALLOC.VRAM, 0x7000_0000_0000n, pid);
      }
      return [100, 200];
    }, [{ order: [100, 200] }, { order: [200, 100] }, { seed: 7 }]);
  });
});

describe('every amdgpu plugin image through crit decode/encode', () => {
  it('kfd, renderD, dmabuf, pages and drm-pages files come back byte for byte, plain and pretty', () => {
    const { dir } = roundTrip(s10(true));
    const fixtures = path.join(__dirname, '..', '..', 'fixtures', 'amdgpu');
    const files = [
      ...fs.readdirSync(dir).map((n) => path.join(dir, n)),
      ...fs.readdirSync(fixtures).flatMap((set) => fs.readdirSync(path.join(fixtures, set)).map((n) => path.join(fixtures, set, n))),
    ].filter((f) => path.basename(f).startsWith('amdgpu-'));
    const kinds = new Set<string>();
    const work = tmpDir('recode');
    for (const f of files) {
      for (const pretty of [[], ['--pretty']]) {
        const json = path.join(work, 'x.json');
        crit('decode', ...pretty, '-i', f, '-o', json);
        kinds.add(JSON.parse(fs.readFileSync(json, 'utf8')).magic);
        // encode by the same file name, so the pseudo-magic of the plugin file is used
        const out = path.join(work, path.basename(f));
        crit('encode', '-i', json, '-o', out);
        expect(fs.readFileSync(out).equals(fs.readFileSync(f)), `${f} ${pretty}`).toBe(true);
      }
    }
    expect([...kinds].sort()).toEqual(['AMDGPU_DMABUF', 'AMDGPU_DRM_PAGES', 'AMDGPU_KFD', 'AMDGPU_PAGES', 'AMDGPU_RENDER_NODE']);
    fs.rmSync(work, { recursive: true, force: true });
  });
});

describe('amdgpu plugin, KFD refusals', () => {
  function dumped(): string {
    const k = new SimKernel([DEV(128, GPU)], KFD);
    const dir = tmpDir('kfdf');
    simDump(k, s10(true)(k), dir);
    return dir;
  }
  function fails(dir: string, re: RegExp, setup?: (k: SimKernel) => void, devs = [DEV(128, GPU)]): void {
    const k = new SimKernel(devs, KFD);
    setup?.(k);
    const t0 = Date.now();
    expect(() => simRestore(k, dir)).toThrow(re);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(k.liveBos()).toEqual([]);
    expect(k.proc(ENGINE_PID).fds.size).toBe(0);
  }

  it('KFD pages file missing or truncated; counts that disagree; old KFD interface; no such GPU', () => {
    let dir = dumped();
    fs.rmSync(path.join(dir, 'amdgpu-pages-1-1080.img'));
    fails(dir, /amdgpu-pages-1-1080\.img: file: missing \(contents of the VRAM\/GTT buffers of gpu 0x1080\)/);
    dir = dumped();
    fs.truncateSync(path.join(dir, 'amdgpu-pages-1-1080.img'), 8 + 4096);
    fails(dir, /amdgpu-pages-1-1080\.img: size: truncated: the VRAM\/GTT buffers of gpu 0x1080 has 4194304 bytes, the file holds 4096/);
    dir = dumped();
    const k = readMessage(dir, 'amdgpu-kfd-1.img')!;
    k.num_of_bos = 5n;
    writeMessage(dir, 'amdgpu-kfd-1.img', 'AMDGPU_KFD', k);
    fails(dir, /amdgpu-kfd-1\.img: num_of_bos: says 5, bo_entries holds 4/);
    dir = dumped();
    fails(dir, /KFD interface 1\.7; checkpoint needs 1\.8 or later/, (k2) => { k2.kfd.version = { major: 1, minor: 7 }; });
    fails(dir, /amdgpu-kfd-1\.img: device_entries: no GPU here like gpu 0x1080 \(renderD128, device 0x740f\)/, undefined, []);
  });

  it('a dump that fails after PROCESS_INFO leaves the process running (UNPAUSE), not paused', () => {
    const k = new SimKernel([DEV(128, GPU)], KFD);
    const pids = s10(true)(k);
    k.faults.push({ op: 'mmap', errno: 'EIO', pid: ENGINE_PID });
    expect(() => simDump(k, pids, tmpDir('kfdx'))).toThrow(/EIO/);
    expect(Object.values(snapshot(k, pids).kfd).map((s) => s.paused)).toEqual([false]);
    expect(k.proc(ENGINE_PID).fds.size).toBe(0);
  });
});
