// Failure injection (spec §7.5) and the defects of spec §6: each failure gives a specific error
// at once (never a hang, a crash or a silent success), and a failed restore leaves nothing.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { SimKernel, SimSwitches } from '../../engine/plugins/amdgpu/sim/kernel';
import { simDump, simRestore, ENGINE_PID } from '../../engine/plugins/amdgpu/sim/harness';
import { readMessage, writeMessage } from '../../engine/plugins/amdgpu/images';
import { NOT_MINE, Plugin } from '../../engine/plugins/host';
import { App, DEV, tmpDir, MiB, VRAM, GTT, sendFd } from './sim-app';

/** A owns a VRAM BO (handle 2) and a GTT one (3), B imports the VRAM one (its handle 1) */
function shared(k: SimKernel): number[] {
  const a = new App(k, 100), b = new App(k, 200);
  const fa = a.open(), fb = b.open();
  const gone = a.create(fa, 4096n, GTT); // handle 1, closed below: restore must move handles
  const h = a.create(fa, MiB, VRAM);
  a.fill(fa, h, MiB, 1);
  a.map(fa, h, 0x10_0000_0000n, MiB);
  const g = a.create(fa, MiB, GTT);
  a.fill(fa, g, MiB, 2);
  const d = a.export(fa, h);
  const db = sendFd(k, 100, d, 200);
  a.close(d);
  b.import(fb, db);
  b.close(db);
  a.closeHandle(fa, gone);
  return [100, 200];
}

function dumped(sw: Partial<SimSwitches> = {}): string {
  const k = new SimKernel([DEV()], sw);
  const pids = shared(k);
  const dir = tmpDir('f');
  simDump(k, pids, dir);
  return dir;
}

/** restore must fail with `re`, fast, leaving no task, BO or engine fd behind */
function failsCleanly(dir: string, re: RegExp, sw: Partial<SimSwitches> = {}, setup?: (k: SimKernel) => void, order?: number[]): void {
  const k = new SimKernel([DEV()], sw);
  setup?.(k);
  const t0 = Date.now();
  expect(() => simRestore(k, dir, { order })).toThrow(re);
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(k.liveBos()).toEqual([]);
  expect([...k.procs.keys()]).toEqual([ENGINE_PID]);
  expect(k.proc(ENGINE_PID).fds.size).toBe(0);
}

describe('amdgpu restore: failure injection', () => {
  it('the exporter never comes (its buffer is unknown): bounded error, importer first or last (D8)', () => {
    const dir = dumped();
    const name = 'amdgpu-renderD-2.img';
    const rd = readMessage(dir, name)!;
    rd.bo_entries[0].buffer_id = 999n;
    writeMessage(dir, name, 'AMDGPU_RENDER_NODE', rd);
    failsCleanly(dir, /task 200 fd 0 \(file id 2\) waits for a buffer no task will provide/, {}, undefined, [200, 100]);
    failsCleanly(dir, /waits for a buffer no task will provide/, {}, undefined, [100, 200]);
  });

  it('a contents file missing (D6), truncated or empty (D3), or with a wrong header (D10)', () => {
    for (const [how, re] of [
      ['rm', /amdgpu-drm-pages-1-128-0001\.img: file: missing \(contents of buffer handle 3\)/],
      ['truncate', /amdgpu-drm-pages-1-128-0001\.img: size: truncated: buffer handle 3 has 1048576 bytes, the file holds 1048000/],
      ['empty', /amdgpu-drm-pages-1-128-0001\.img: size: truncated length header \(0 of 8 bytes\)/],
      ['header', /header says 5 bytes, buffer handle 3 has 1048576/],
    ] as const) {
      const dir = dumped();
      const f = path.join(dir, 'amdgpu-drm-pages-1-128-0001.img');
      if (how === 'rm') fs.rmSync(f);
      if (how === 'truncate') fs.truncateSync(f, 8 + 1048000);
      if (how === 'empty') fs.truncateSync(f, 0);
      if (how === 'header') { const b = fs.readFileSync(f); b.writeBigUInt64LE(5n, 0); fs.writeFileSync(f, b); }
      failsCleanly(dir, re);
    }
  });

  it('metadata: truncated, corrupt, counts that disagree, a required field missing (old image)', () => {
    const cases: [(dir: string) => void, RegExp][] = [
      [(d) => fs.truncateSync(path.join(d, 'amdgpu-renderD-1.img'), 20), /amdgpu-renderD-1\.img: message: unreadable: .*truncated/],
      [(d) => { const f = path.join(d, 'amdgpu-renderD-1.img'); const b = fs.readFileSync(f); b.fill(0xff, 12, 30); fs.writeFileSync(f, b); }, /amdgpu-renderD-1\.img: message: unreadable/],
      [(d) => { const rd = readMessage(d, 'amdgpu-renderD-1.img')!; rd.num_of_bos = 3; writeMessage(d, 'amdgpu-renderD-1.img', 'AMDGPU_RENDER_NODE', rd); }, /num_of_bos: says 3, bo_entries holds 2/],
      [(d) => { const rd = readMessage(d, 'amdgpu-renderD-1.img')!; rd.bo_entries[0].num_of_vms = 0; writeMessage(d, 'amdgpu-renderD-1.img', 'AMDGPU_RENDER_NODE', rd); }, /bo_entries\[0\]\.num_of_vms: says 0, vm_entries holds 1/],
      [(d) => {
        // a pre-seed image: criu_render_node held only gpu_id
        const f = path.join(d, 'amdgpu-renderD-1.img');
        fs.writeFileSync(f, Buffer.from([3, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x81, 0x20]));
      }, /amdgpu-renderD-1\.img: message: unreadable: .*missing required field/],
    ];
    for (const [damage, re] of cases) {
      const dir = dumped();
      damage(dir);
      failsCleanly(dir, re);
    }
  });

  it('handle collision at CHANGE_HANDLE (injected ENOSPC), GEM_VA refused, mmap refused', () => {
    const dir = dumped();
    failsCleanly(dir, /GEM_CHANGE_HANDLE 1 -> 2: ENOSPC: handle 2 is already in use/, {}, (k) => k.faults.push({ op: 'GEM_CHANGE_HANDLE', errno: 'ENOSPC' }));
    failsCleanly(dir, /GEM_VA MAP of handle 2 at 0x1000000000 .*: EINVAL/, {}, (k) => k.faults.push({ op: 'GEM_VA', errno: 'EINVAL' }));
    failsCleanly(dir, /mmap \(injected\): EIO|EIO/, {}, (k) => k.faults.push({ op: 'mmap', errno: 'EIO', skip: 1 }));
    failsCleanly(dir, /PRIME_FD_TO_HANDLE: ENOMEM/, {}, (k) => k.faults.push({ op: 'PRIME_FD_TO_HANDLE', errno: 'ENOMEM' }));
  });

  it('old kernels: CHANGE_HANDLE missing or disabled is a clear refusal', () => {
    const dir = dumped();
    failsCleanly(dir, /no usable DRM_IOCTL_GEM_CHANGE_HANDLE \(missing or disabled\)/, { changeHandle: 'missing' });
    failsCleanly(dir, /no usable DRM_IOCTL_GEM_CHANGE_HANDLE/, { changeHandle: 'disabled' });
  });
});

describe('amdgpu dump: refusals and what it does not do', () => {
  function dumpFails(sw: Partial<SimSwitches>, re: RegExp, build: (k: SimKernel) => number[] = shared, faults: SimSwitches extends never ? never : Parameters<SimKernel['faults']['push']>[0][] = []): void {
    const k = new SimKernel([DEV()], sw);
    const pids = build(k);
    k.faults.push(...faults);
    const dir = tmpDir('d');
    expect(() => simDump(k, pids, dir)).toThrow(re);
    expect(k.proc(ENGINE_PID).fds.size).toBe(0); // private files and drained fds closed
    expect(k.foreignCloses).toEqual([]);
  }

  it('no LIST_HANDLES (D19) or no GET_MAPPING_INFO: refused, never an empty image', () => {
    dumpFails({ listHandles: false }, /the kernel has no AMDGPU_GEM_LIST_HANDLES/);
    dumpFails({ mappingInfo: false }, /no AMDGPU_GEM_OP_GET_MAPPING_INFO/);
  });

  it('LIST_HANDLES racing (EAGAIN once) is retried', () => {
    const k = new SimKernel([DEV()], { listHandlesRaceOnce: true });
    const pids = shared(k);
    simDump(k, pids, tmpDir('race'));
    expect(k.switches.listHandlesRaceOnce).toBe(false);
  });

  it('a copy error is reported, not swallowed (D3)', () => {
    dumpFails({}, /mmap \(injected\): EIO/, shared, [{ op: 'mmap', errno: 'EIO', skip: 1 }]);
  });

  it('a VRAM BO without CPU access is refused by name (contents need SDMA), not a GEM_MMAP failure (D13)', () => {
    dumpFails({}, /buffer handle 1 \(1048576 bytes\) has no CPU access .* SDMA copy path, which is not implemented/, (k) => {
      const a = new App(k, 100);
      const fd = a.open();
      a.create(fd, MiB, VRAM, 2n);
      return [100];
    });
  });

  it('a render node of another driver is not claimed (D17): the next plugin is asked, then the core refuses', () => {
    const k = new SimKernel([DEV(128), { minor: 129, gpuId: 0, driver: 'i915' }]);
    const a = new App(k, 100);
    a.open(129);
    const asked: number[] = [];
    const spy: Plugin = { name: 'spy', hooks: { DUMP_EXT_FILE: (x) => { asked.push(x.id); return NOT_MINE; } } };
    expect(() => simDump(k, [100], tmpDir('i915'), { before: [spy] })).toThrow(/task 100 fd 0: can't dump file \/dev\/dri\/renderD129 of that type/);
    expect(asked).toEqual([1]);
  });

  it('a process without KFD dumps and restores (D20), and the inventory names the plugin', () => {
    const k = new SimKernel([DEV()]);
    const pids = shared(k);
    const dir = tmpDir('inv');
    const host = simDump(k, pids, dir);
    expect(host.inventoryEntry()).toEqual({ plugins: ['amdgpu_plugin'] });
  });
});
