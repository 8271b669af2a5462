// Simulated applications: what a ROCm/Mesa process does to a render node, through the same
// marshalled ioctls the plugin uses.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { SimKernel } from '../../engine/plugins/amdgpu/sim/kernel';
import type { SimKfdBo } from '../../engine/plugins/amdgpu/sim/kfd';
import * as S from '../../engine/plugins/amdgpu/structs';
import { O_RDWR } from '../../engine/plugins/amdgpu/backend';

export const ROOT = path.resolve(__dirname, '..', '..');
export const DEV = (minor = 128, gpuId = 0x1000 + minor) => ({ minor, gpuId });

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `amdgpu-${tag}-`));
}

export class App {
  constructor(readonly k: SimKernel, readonly pid: number) {
    if (!k.procs.has(pid)) k.spawn(pid);
  }
  private sys() {
    return this.k.sys(this.pid);
  }
  open(minor = 128): number {
    return this.k.open(this.pid, `/dev/dri/renderD${minor}`, O_RDWR);
  }
  create(fd: number, size: bigint, domains: number, flags = 0n, alignment = 4096n): number {
    const a = S.gemCreateArg({ size, alignment, domains: BigInt(domains), flags });
    this.sys().ioctl(fd, S.REQ.GEM_CREATE, a);
    return S.gemCreateResult(a);
  }
  offset(fd: number, h: number): bigint {
    const a = S.gemMmapArg(h);
    this.sys().ioctl(fd, S.REQ.GEM_MMAP, a);
    return S.gemMmapResult(a);
  }
  /** a recognisable pattern, different per seed */
  fill(fd: number, h: number, size: bigint, seed: number): void {
    const data = Buffer.alloc(Number(size));
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
    this.sys().writeMapped(fd, this.offset(fd, h), data);
  }
  /** contents of a BO without CPU access (a test's back door) */
  poke(fd: number, h: number, seed: number): void {
    const bo = this.k.file(this.pid, fd).drm!.handles.get(h)!;
    for (let i = 0; i < bo.contents.length; i++) bo.contents[i] = (i + seed) & 0xff;
  }
  map(fd: number, h: number, va: bigint, size: bigint, offset = 0n, flags = S.VM.PAGE_READABLE | S.VM.PAGE_WRITEABLE): void {
    this.sys().ioctl(fd, S.REQ.GEM_VA, S.gemVaArg({ handle: h, operation: S.VA_OP.MAP, flags, va, offset, size }));
  }
  cpuMap(fd: number, h: number, addr: bigint, length: bigint, boOffset = 0n): void {
    this.k.mmap(this.pid, fd, addr, length, this.offset(fd, h) + boOffset);
  }
  export(fd: number, h: number, flags = S.DRM_CLOEXEC | S.DRM_RDWR): number {
    const a = S.primeArg(h, flags);
    this.sys().ioctl(fd, S.REQ.PRIME_HANDLE_TO_FD, a);
    return S.primeFdResult(a);
  }
  import(fd: number, dmabufFd: number): number {
    const a = S.primeArg(0, 0, dmabufFd);
    this.sys().ioctl(fd, S.REQ.PRIME_FD_TO_HANDLE, a);
    return S.primeHandleResult(a);
  }
  closeHandle(fd: number, h: number): void {
    this.sys().ioctl(fd, S.REQ.GEM_CLOSE, S.gemCloseArg(h));
  }
  close(fd: number): void {
    this.k.close(this.pid, fd);
  }
  // ---- ROCm: /dev/kfd ----
  openKfd(): number {
    return this.k.open(this.pid, '/dev/kfd', O_RDWR);
  }
  acquireVm(kfdFd: number, drmFd: number): void {
    this.k.kfd.acquireVm(this.pid, kfdFd, drmFd);
  }
  /** a KFD BO with a recognisable pattern (doorbells too: they are memory the process sees) */
  kfdAlloc(kfdFd: number, gpuId: number, size: bigint, flags: number, addr: bigint, seed: number): SimKfdBo {
    const b = this.k.kfd.alloc(this.pid, kfdFd, gpuId, size, flags, addr);
    for (let i = 0; i < b.bo.contents.length; i++) b.bo.contents[i] = (i * 7 + seed * 13 + (i >> 12)) & 0xff;
    return b;
  }
  kfdExport(b: SimKfdBo): number {
    return this.k.kfd.exportDmabuf(this.pid, b);
  }
}

/** hands an fd to another simulated process (SCM_RIGHTS) */
export function sendFd(k: SimKernel, from: number, fd: number, to: number): number {
  const p = k.proc(to);
  let at = 0;
  while (p.fds.has(at)) at++;
  k.give(from, fd, to, at);
  return at;
}

export function crit(...args: string[]): string {
  return execFileSync(process.execPath, [path.join(ROOT, 'bin', 'crit.js'), ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
}

export const MiB = 1n << 20n;
export const VRAM = S.DOMAIN.VRAM, GTT = S.DOMAIN.GTT, CPU = S.DOMAIN.CPU;
