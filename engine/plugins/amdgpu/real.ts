// DeviceSys over the real kernel, for the day this meets an AMD GPU. Plain ioctls go through the
// addon's generic ioctl; those whose struct carries user pointers (LIST_HANDLES, GEM_OP, KFD
// CRIU_OP) through ioctlPointers, which patches the buffers' addresses in for the call; BO
// contents through mmapCopy (mmap of the drm fd at the BO's fake offset, copy, munmap).
import * as fs from 'fs';
import * as path from 'path';
import { native, isNativeError } from '../../../native';
import { DeviceSys, FileStat, KfdNode, RenderNode, SysError, O_ACCMODE, major, minor } from './backend';
import type { IoctlArg } from './structs';

const F_GETFL = 3, F_DUPFD_CLOEXEC = 1030;

function sysCall<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isNativeError(e)) throw new SysError(e.code, what);
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new SysError(code, what);
    throw e;
  }
}

export class RealSys implements DeviceSys {
  ioctl(fd: number, req: number, arg: IoctlArg): number {
    const what = `ioctl 0x${req.toString(16)}`;
    if (!arg.ptrs.length) return sysCall(what, () => native().ioctl(fd, req, arg.buf));
    return sysCall(what, () => native().ioctlPointers(fd, req, arg.buf, arg.ptrs));
  }

  open(p: string, flags: number): number {
    return sysCall(`open ${p}`, () => fs.openSync(p, flags));
  }

  close(fd: number): void {
    sysCall(`close ${fd}`, () => fs.closeSync(fd));
  }

  dup(fd: number): number {
    return sysCall(`dup ${fd}`, () => native().fcntl(fd, F_DUPFD_CLOEXEC, 0));
  }

  fstat(fd: number): FileStat {
    const st = sysCall(`fstat ${fd}`, () => fs.fstatSync(fd));
    return { mode: st.mode, rdev: st.rdev, ino: st.ino };
  }

  stat(p: string): FileStat | undefined {
    try {
      const st = fs.statSync(p);
      return { mode: st.mode, rdev: st.rdev, ino: st.ino };
    } catch {
      return undefined;
    }
  }

  fdLink(fd: number): string {
    return sysCall(`readlink fd ${fd}`, () => fs.readlinkSync(`/proc/self/fd/${fd}`));
  }

  accessMode(fd: number): number {
    return sysCall(`fcntl(F_GETFL) ${fd}`, () => native().fcntl(fd, F_GETFL)) & O_ACCMODE;
  }

  driverOf(rdev: number): string | undefined {
    try {
      return path.basename(fs.readlinkSync(`/sys/dev/char/${major(rdev)}:${minor(rdev)}/device/driver`));
    } catch {
      return undefined;
    }
  }

  renderNodes(): RenderNode[] {
    let names: string[];
    try {
      names = fs.readdirSync('/dev/dri').filter((n) => /^renderD\d+$/.test(n));
    } catch {
      return [];
    }
    const gpuIds = kfdGpuIds();
    const out: RenderNode[] = [];
    for (const n of names) {
      const st = this.stat(`/dev/dri/${n}`);
      if (!st || this.driverOf(st.rdev) !== 'amdgpu') continue;
      const m = minor(st.rdev);
      out.push({ path: `/dev/dri/${n}`, minor: m, gpuId: gpuIds.get(m) ?? 0 });
    }
    return out.sort((a, b) => a.minor - b.minor);
  }

  kfdNodes(): KfdNode[] {
    return kfdTopology();
  }

  readMapped(fd: number, offset: bigint, length: number): Buffer {
    const b = Buffer.alloc(length);
    sysCall(`mmap fd ${fd} at 0x${offset.toString(16)}`, () => native().mmapCopy(fd, offset, length, b, false));
    return b;
  }

  writeMapped(fd: number, offset: bigint, data: Uint8Array): void {
    sysCall(`mmap fd ${fd} at 0x${offset.toString(16)}`, () => native().mmapCopy(fd, offset, data.length, data, true));
  }
}

/** the KFD topology from sysfs: properties, VRAM (heap types 1 and 2) and io links per node */
export function kfdTopology(dir = '/sys/class/kfd/kfd/topology/nodes'): KfdNode[] {
  let nodes: string[];
  try {
    nodes = fs.readdirSync(dir).filter((n) => /^\d+$/.test(n));
  } catch {
    return [];
  }
  const props = (file: string): Record<string, bigint> => {
    const out: Record<string, bigint> = {};
    for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
      const m = /^(\w+)\s+(\d+)$/.exec(l.trim());
      if (m) out[m[1]] = BigInt(m[2]);
    }
    return out;
  };
  const sub = (n: string, kind: string) => {
    try { return fs.readdirSync(path.join(dir, n, kind)).map((k) => props(path.join(dir, n, kind, k, 'properties'))); } catch { return []; }
  };
  return nodes.sort((a, b) => Number(a) - Number(b)).map((n) => {
    const p = props(path.join(dir, n, 'properties'));
    let vram = 0n;
    for (const b of sub(n, 'mem_banks')) if (b.heap_type === 1n || b.heap_type === 2n) vram += b.size_in_bytes ?? 0n;
    p.vram_size = vram;
    const gpuId = Number(fs.readFileSync(path.join(dir, n, 'gpu_id'), 'utf8').trim() || 0);
    return { nodeId: Number(n), gpuId, props: p, ioLinks: sub(n, 'io_links').map((l) => ({ type: Number(l.type ?? 0n), nodeTo: Number(l.node_to ?? 0n) })) };
  });
}

/** KFD topology: render minor -> gpu_id (nodes without a GPU have gpu_id 0) */
function kfdGpuIds(): Map<number, number> {
  const m = new Map<number, number>();
  const dir = '/sys/class/kfd/kfd/topology/nodes';
  let nodes: string[] = [];
  try {
    nodes = fs.readdirSync(dir);
  } catch {
    return m;
  }
  for (const n of nodes) {
    try {
      const gpu = Number(fs.readFileSync(path.join(dir, n, 'gpu_id'), 'utf8').trim());
      const props = fs.readFileSync(path.join(dir, n, 'properties'), 'utf8');
      const r = /^drm_render_minor\s+(\d+)$/m.exec(props);
      if (gpu && r) m.set(Number(r[1]), gpu);
    } catch {
      /* a node without these files */
    }
  }
  return m;
}

/** an amdgpu render node is present: the plugin is worth loading */
export function amdgpuPresent(): boolean {
  return new RealSys().renderNodes().length > 0;
}
