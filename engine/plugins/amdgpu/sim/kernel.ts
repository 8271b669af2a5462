// The simulated kernel: processes with fd tables and VMAs, device nodes, and the amdgpu DRM
// driver at the ioctl boundary (spec §7.3). ioctl arguments arrive as the same marshalled bytes
// the real ioctl gets; pointer fields are resolved through a per-call user address space, so a
// wrong offset or size in structs.ts fails here as it would on hardware.
import { SysError, DeviceSys, FileStat, KfdNode, RenderNode, S_IFCHR, makedev, major, minor, O_ACCMODE, O_RDWR, O_RDONLY } from '../backend';
import {
  IoctlArg, iocFields, NR, SIZE, IOC_READ, PAGE, DOMAIN_MASK, VM, VM_VALID_MAP, VA_OP, GEM_OP, LIST_FLAG_IS_IMPORT, DRM_CLOEXEC, DRM_RDWR,
  DRM_MAJOR, CREATE, readGemVa, writeListEntry, writeVmEntry, uapiToPte,
} from '../structs';
import { SimDevice, SimBo, SimDmaBuf, SimDrmFile, SimOpenFile, SimProcess, SimMapping, pages } from './model';
import { SimKfd } from './kfd';

export interface SimSwitches {
  /** the kernel has AMDGPU_GEM_LIST_HANDLES (old kernels: EINVAL) */
  listHandles: boolean;
  /** GEM_OP has GET_MAPPING_INFO (old kernels: EINVAL) */
  mappingInfo: boolean;
  /** DRM_IOCTL_GEM_CHANGE_HANDLE: present, missing (old kernel) or disabled (drm_invalid_op) */
  changeHandle: 'ok' | 'missing' | 'disabled';
  /** GET_MAPPING_INFO reports uapi flags or hardware PTE bits (D5) */
  vmFlags: 'uapi' | 'pte';
  /** LIST_HANDLES fails once with EAGAIN (handle table changed under it) */
  listHandlesRaceOnce: boolean;
  /** /dev/kfd exists (ROCm compute) */
  kfd: boolean;
}

export interface SimFault {
  /** ioctl name (a key of NR) or 'mmap' */
  op: keyof typeof NR | 'mmap' | 'open';
  errno: string;
  /** let this many matching calls succeed first */
  skip?: number;
  /** fail this many times (default 1) */
  times?: number;
  /** only calls made by this process */
  pid?: number;
}

export interface SimDeviceSpec {
  minor: number;
  gpuId: number;
  /** a non-amdgpu render node (for "not mine" tests) */
  driver?: string;
}

export const KFD_MAJOR = 236;
const RESERVED_BOTTOM = 2n << 20n;
const HOLE_START = 0x0000_8000_0000_0000n;
const HOLE_END = 0xffff_8000_0000_0000n;
const U64 = (1n << 64n) - 1n;

let kernels = 0;

export class SimKernel {
  readonly devices = new Map<number, SimDevice>();
  readonly procs = new Map<number, SimProcess>();
  readonly switches: SimSwitches;
  readonly faults: SimFault[] = [];
  readonly kfd: SimKfd;
  /** every close a process made of an fd it did not get from its own open/dup/ioctl (D2 detector) */
  readonly foreignCloses: { pid: number; fd: number }[] = [];
  private created = new Map<number, Set<number>>();

  constructor(devices: SimDeviceSpec[], switches: Partial<SimSwitches> = {}) {
    // offsets differ between kernels, so a restore always has to translate CPU mappings
    const base = 0x1_0000_0000n + BigInt(++kernels) * 0x100_0000n * PAGE;
    for (const d of devices) this.devices.set(d.minor, new SimDevice(d.minor, d.gpuId, base + BigInt(d.minor) * 0x10_0000n * PAGE, d.driver ?? 'amdgpu'));
    this.switches = { listHandles: true, mappingInfo: true, changeHandle: 'ok', vmFlags: 'uapi', listHandlesRaceOnce: false, kfd: false, ...switches };
    this.kfd = new SimKfd(this);
    this.kfd.enabled = this.switches.kfd;
  }

  spawn(pid: number): SimProcess {
    if (this.procs.has(pid)) throw new Error(`sim: pid ${pid} exists`);
    const p = new SimProcess(pid);
    this.procs.set(pid, p);
    this.created.set(pid, new Set());
    return p;
  }

  proc(pid: number): SimProcess {
    const p = this.procs.get(pid);
    if (!p) throw new SysError('ESRCH', `sim: no process ${pid}`);
    return p;
  }

  /** process exit: every fd and mapping goes */
  exit(pid: number): void {
    const p = this.proc(pid);
    for (const fd of [...p.fds.keys()]) p.closeFd(fd);
    for (const v of p.vmas.splice(0)) { v.bo.unref(); v.file.unref(); }
    this.procs.delete(pid);
  }

  /** the DeviceSys of process pid (what the plugin uses when it runs there) */
  sys(pid: number): DeviceSys {
    return new SimSys(this, pid);
  }

  // ---- process-level helpers (the simulated applications and the engine core use these) ----

  track(pid: number, fd: number): number {
    this.created.get(pid)?.add(fd);
    return fd;
  }

  open(pid: number, path: string, flags: number): number {
    this.fault('open', pid);
    const p = this.proc(pid);
    const m = /^\/dev\/dri\/renderD(\d+)$/.exec(path.replace(/\/+/g, '/'));
    const acc = flags & O_ACCMODE;
    if (m) {
      const dev = this.devices.get(Number(m[1]));
      if (!dev) throw new SysError('ENOENT', `open ${path}`);
      return this.track(pid, p.install(new SimOpenFile('drm', `/dev/dri/renderD${dev.minor}`, acc, new SimDrmFile(dev)), true));
    }
    if (path === '/dev/kfd') return this.track(pid, p.install(this.kfd.openFile(pid), true));
    throw new SysError('ENOENT', `open ${path}`);
  }

  close(pid: number, fd: number): void {
    const p = this.proc(pid);
    if (!this.created.get(pid)?.has(fd)) this.foreignCloses.push({ pid, fd });
    this.created.get(pid)?.delete(fd);
    if (!p.closeFd(fd)) throw new SysError('EBADF', `close ${fd}`);
  }

  dup(pid: number, fd: number, at?: number): number {
    const p = this.proc(pid);
    const e = p.fds.get(fd);
    if (!e) throw new SysError('EBADF', `dup ${fd}`);
    return this.track(pid, p.install(e.file, true, at));
  }

  /** pidfd_getfd: an fd in `into` on the same open file description as pid's fd */
  getfd(pid: number, fd: number, into: number): number {
    const e = this.proc(pid).fds.get(fd);
    if (!e) throw new SysError('EBADF', `pidfd_getfd ${pid}/${fd}`);
    return this.track(into, this.proc(into).install(e.file, true));
  }

  /** moves an fd from one process to a number in another (SCM_RIGHTS + dup2 + close) */
  give(from: number, fd: number, to: number, at: number, cloexec = false): void {
    const e = this.proc(from).fds.get(fd);
    if (!e) throw new SysError('EBADF', `give ${from}/${fd}`);
    const p = this.proc(to);
    p.install(e.file, cloexec, at);
    this.track(to, at);
  }

  file(pid: number, fd: number): SimOpenFile {
    const e = this.proc(pid).fds.get(fd);
    if (!e) throw new SysError('EBADF', `fd ${fd} of ${pid}`);
    return e.file;
  }

  /** mmap(addr, len, fd, pgoff): only BOs the file holds a handle for (or a dma-buf's own BO) */
  mmap(pid: number, fd: number, start: bigint, length: bigint, pgoff: bigint): void {
    this.mmapFile(pid, this.file(pid, fd), start, length, pgoff);
  }

  /** mmap of an open file the caller got elsewhere (the restore core maps through the plugin's fd) */
  mmapFile(pid: number, f: SimOpenFile, start: bigint, length: bigint, pgoff: bigint): void {
    this.fault('mmap', pid);
    const { bo, boOffset } = this.mappable(f, pgoff, length);
    const p = this.proc(pid);
    if (p.vmas.some((v) => v.start < start + length && start < v.end)) throw new SysError('EEXIST', `mmap at 0x${start.toString(16)}`);
    bo.ref();
    f.ref();
    p.vmas.push({ start, end: start + length, pgoff, file: f, bo, boOffset });
    p.vmas.sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  munmap(pid: number, start: bigint): void {
    const p = this.proc(pid);
    const i = p.vmas.findIndex((v) => v.start === start);
    if (i < 0) throw new SysError('EINVAL', `munmap 0x${start.toString(16)}`);
    const [v] = p.vmas.splice(i, 1);
    v.bo.unref();
    v.file.unref();
  }

  mappable(f: SimOpenFile, pgoff: bigint, length: bigint): { bo: SimBo; boOffset: bigint } {
    if (f.dmabuf) {
      const bo = f.dmabuf.bo;
      if (pgoff + length > bo.size) throw new SysError('EINVAL', 'mmap past the end of a dma-buf');
      return { bo, boOffset: pgoff };
    }
    if (f.kind === 'kfd') return this.kfd.mappable(f, pgoff, length);
    if (!f.drm) throw new SysError('ENODEV', `mmap of ${f.path}`);
    for (const bo of f.drm.device.bos) {
      if (bo.mmapOffset === undefined || pgoff < bo.mmapOffset || pgoff >= bo.mmapOffset + bo.size) continue;
      if (f.drm.handleOf(bo) === undefined && !f.drm.mmapAllowed.has(bo)) throw new SysError('EACCES', `mmap: the file holds no handle for the BO at offset 0x${pgoff.toString(16)}`);
      if (pgoff + length > bo.mmapOffset + bo.size) throw new SysError('EINVAL', 'mmap past the end of a BO');
      return { bo, boOffset: pgoff - bo.mmapOffset };
    }
    throw new SysError('EINVAL', `mmap: no BO at offset 0x${pgoff.toString(16)}`);
  }

  /** bytes seen through a CPU mapping of the process (reads the BO live) */
  readVm(pid: number, addr: bigint, length: number): Buffer {
    const v = this.proc(pid).vmas.find((x) => x.start <= addr && addr + BigInt(length) <= x.end);
    if (!v) throw new SysError('EFAULT', `read 0x${addr.toString(16)}`);
    const o = Number(v.boOffset + (addr - v.start));
    return Buffer.from(v.bo.identity.contents.subarray(o, o + length));
  }

  writeVm(pid: number, addr: bigint, data: Uint8Array): void {
    const v = this.proc(pid).vmas.find((x) => x.start <= addr && addr + BigInt(data.length) <= x.end);
    if (!v) throw new SysError('EFAULT', `write 0x${addr.toString(16)}`);
    v.bo.identity.contents.set(data, Number(v.boOffset + (addr - v.start)));
  }

  fault(op: SimFault['op'], pid: number): void {
    for (const f of this.faults) {
      if (f.op !== op || (f.pid !== undefined && f.pid !== pid)) continue;
      if ((f.skip ?? 0) > 0) { f.skip!--; continue; }
      if ((f.times ?? 1) <= 0) continue;
      f.times = (f.times ?? 1) - 1;
      throw new SysError(f.errno, `${op} (injected)`);
    }
  }

  /** every live GEM object (for leak checks) */
  liveBos(): SimBo[] {
    return [...this.devices.values()].flatMap((d) => [...d.bos]);
  }

  // ---- the driver ----

  ioctl(pid: number, fd: number, req: number, a: IoctlArg): number {
    const f = this.file(pid, fd);
    const { dir, type, nr, size } = iocFields(req);
    const name = (Object.keys(NR) as (keyof typeof NR)[]).find((k) => NR[k] === nr && (type === 'K') === k.startsWith('KFD_'));
    if (name) this.fault(name, pid);
    // user memory: each pointer field gets an address that maps to its buffer
    const uaccess = new UserMemory();
    a.ptrs.forEach((p, i) => a.buf.writeBigUInt64LE(uaccess.map(p.target, i), p.at));
    if (type === 'K') {
      if (f.kind !== 'kfd') throw new SysError('ENOTTY', `ioctl 0x${req.toString(16)} on ${f.path}`);
      return this.kfd.ioctl(pid, f, nr, size, dir, a.buf, uaccess);
    }
    if (type !== 'd' || f.kind !== 'drm') throw new SysError('ENOTTY', `ioctl 0x${req.toString(16)} on ${f.path}`);
    const drm = f.drm!;
    // the DRM core copies the caller's size and zero-fills up to the kernel's struct
    const need: Record<number, number> = {
      [NR.GEM_LIST_HANDLES]: SIZE.LIST_HANDLES, [NR.GEM_OP]: SIZE.GEM_OP_OLD, [NR.GEM_MMAP]: SIZE.GEM_MMAP, [NR.GEM_CREATE]: SIZE.GEM_CREATE,
      [NR.GEM_VA]: SIZE.GEM_VA_OLD, [NR.GEM_CHANGE_HANDLE]: SIZE.CHANGE_HANDLE, [NR.PRIME_HANDLE_TO_FD]: SIZE.PRIME,
      [NR.PRIME_FD_TO_HANDLE]: SIZE.PRIME, [NR.GEM_CLOSE]: SIZE.GEM_CLOSE,
    };
    if (need[nr] === undefined) throw new SysError('EINVAL', `unknown DRM ioctl nr 0x${nr.toString(16)}`);
    if (size !== a.buf.length) throw new SysError('EFAULT', `ioctl size ${size} but the argument has ${a.buf.length} bytes`);
    const k = Buffer.alloc(Math.max(size, 64));
    a.buf.copy(k, 0, 0, size);
    const r = this.drmIoctl(pid, drm, nr, k, uaccess, size);
    if (dir & IOC_READ) k.copy(a.buf, 0, 0, size);
    return r;
  }

  private bo(drm: SimDrmFile, h: number, errno = 'ENOENT'): SimBo {
    const bo = drm.handles.get(h);
    if (!bo) throw new SysError(errno, `no GEM handle ${h}`);
    return bo;
  }

  private drmIoctl(pid: number, drm: SimDrmFile, nr: number, k: Buffer, u: UserMemory, size: number): number {
    const sw = this.switches;
    switch (nr) {
      case NR.GEM_LIST_HANDLES: {
        if (!sw.listHandles) throw new SysError('EINVAL', 'GEM_LIST_HANDLES: not in this kernel');
        if (k.readUInt32LE(12) !== 0) throw new SysError('EINVAL', 'GEM_LIST_HANDLES: padding');
        const cap = k.readUInt32LE(8);
        const hs = [...drm.handles.keys()].sort((a, b) => a - b);
        if (cap < hs.length) { k.writeUInt32LE(hs.length, 8); return 0; }
        if (sw.listHandlesRaceOnce) { sw.listHandlesRaceOnce = false; throw new SysError('EAGAIN', 'GEM_LIST_HANDLES: handles changed'); }
        const out = Buffer.alloc(hs.length * SIZE.LIST_ENTRY);
        hs.forEach((h, i) => {
          const bo = drm.handles.get(h)!;
          writeListEntry(out, i * SIZE.LIST_ENTRY, {
            handle: h, flags: bo.importAttach ? LIST_FLAG_IS_IMPORT : 0, size: bo.size, preferredDomains: bo.preferredDomains,
            allocFlags: bo.allocFlags, alignment: bo.pageAlignment, // pages, whatever the uapi comment says (D14)
          });
        });
        u.write(k.readBigUInt64LE(0), out);
        k.writeUInt32LE(hs.length, 8);
        return 0;
      }
      case NR.GEM_OP: {
        const h = k.readUInt32LE(0), op = k.readUInt32LE(4);
        if (op === GEM_OP.GET_GEM_CREATE_INFO) {
          const bo = this.bo(drm, h);
          const out = Buffer.alloc(SIZE.GEM_CREATE_IN);
          out.writeBigUInt64LE(bo.size, 0);
          out.writeBigUInt64LE(bo.pageAlignment * PAGE, 8);
          out.writeBigUInt64LE(bo.preferredDomains, 16);
          out.writeBigUInt64LE(bo.allocFlags, 24);
          u.write(k.readBigUInt64LE(8), out);
          return 0;
        }
        if (op !== GEM_OP.GET_MAPPING_INFO || !sw.mappingInfo || size < SIZE.GEM_OP) throw new SysError('EINVAL', `GEM_OP: op ${op} not supported`);
        if (k.readUInt32LE(20) !== 0) throw new SysError('EINVAL', 'GEM_OP: padding');
        const bo = this.bo(drm, h);
        const maps = drm.vm.get(bo) ?? [];
        const cap = k.readUInt32LE(16);
        if (maps.length > 0 && maps.length <= cap) {
          const out = Buffer.alloc(maps.length * SIZE.VM_ENTRY);
          maps.forEach((m, i) => writeVmEntry(out, i * SIZE.VM_ENTRY, {
            addr: m.startPage * PAGE, size: (m.lastPage - m.startPage + 1n) * PAGE, offset: m.offset, flags: m.flags,
          }));
          u.write(k.readBigUInt64LE(8), out);
        }
        k.writeUInt32LE(maps.length, 16);
        return 0;
      }
      case NR.GEM_MMAP: {
        const bo = this.bo(drm, k.readUInt32LE(0));
        if (bo.isUserptr || bo.allocFlags & CREATE.NO_CPU_ACCESS) throw new SysError('EPERM', 'GEM_MMAP: no CPU access to this BO');
        if (bo.mmapOffset === undefined) {
          bo.mmapOffset = drm.device.nextOffset;
          drm.device.nextOffset += pages(bo.size) * PAGE;
        }
        k.writeBigUInt64LE(bo.mmapOffset, 0);
        return 0;
      }
      case NR.GEM_CREATE: {
        const size = k.readBigUInt64LE(0), align = k.readBigUInt64LE(8), domains = k.readBigUInt64LE(16), flags = k.readBigUInt64LE(24);
        if (size === 0n || domains & ~BigInt(DOMAIN_MASK) || !domains) throw new SysError('EINVAL', 'GEM_CREATE: size or domains');
        const rounded = pages(size) * PAGE;
        const alignPages = pages(align > PAGE ? align : PAGE);
        const bo = new SimBo(drm.device, rounded, alignPages, domains, flags, new Uint8Array(Number(rounded)));
        const h = drm.lowestFree();
        bo.ref();
        drm.handles.set(h, bo);
        k.fill(0, 0, 8);
        k.writeUInt32LE(h, 0);
        return 0;
      }
      case NR.GEM_VA: {
        const v = readGemVa(k);
        if (v.operation === VA_OP.UNMAP) {
          const bo = this.bo(drm, v.handle);
          const maps = drm.vm.get(bo) ?? [];
          const i = maps.findIndex((m) => m.startPage * PAGE === v.va);
          if (i < 0) throw new SysError('ENOENT', `GEM_VA UNMAP: nothing at 0x${v.va.toString(16)}`);
          maps.splice(i, 1);
          return 0;
        }
        if (v.operation !== VA_OP.MAP) throw new SysError('EINVAL', `GEM_VA: operation ${v.operation}`);
        const prt = (v.flags & VM.PAGE_PRT) !== 0;
        if (prt ? v.flags & ~(VM.PAGE_PRT | VM.DELAY_UPDATE) : v.flags & ~VM_VALID_MAP) throw new SysError('EINVAL', `GEM_VA: flags 0x${v.flags.toString(16)}`);
        if (v.va < RESERVED_BOTTOM || (v.va >= HOLE_START && v.va < HOLE_END)) throw new SysError('EINVAL', `GEM_VA: address 0x${v.va.toString(16)} reserved`);
        if (v.va % PAGE || v.offset % PAGE || v.size % PAGE || v.size === 0n || v.va + v.size > U64) throw new SysError('EINVAL', 'GEM_VA: alignment');
        const bo = this.bo(drm, v.handle);
        if (v.offset + v.size > bo.size) throw new SysError('EINVAL', 'GEM_VA: range past the BO');
        const start = v.va / PAGE, last = start + v.size / PAGE - 1n;
        for (const ms of drm.vm.values()) for (const m of ms)
          if (m.startPage <= last && start <= m.lastPage) throw new SysError('EINVAL', `GEM_VA: 0x${v.va.toString(16)} overlaps a mapping`);
        const flags = sw.vmFlags === 'pte' ? uapiToPte(v.flags) : BigInt(v.flags);
        const m: SimMapping = { startPage: start, lastPage: last, offset: v.offset, flags };
        if (!drm.vm.has(bo)) drm.vm.set(bo, []);
        drm.vm.get(bo)!.push(m);
        return 0;
      }
      case NR.GEM_CHANGE_HANDLE: {
        if (sw.changeHandle !== 'ok') throw new SysError('EINVAL', 'GEM_CHANGE_HANDLE: not supported by this kernel');
        const h = k.readUInt32LE(0), nh = k.readUInt32LE(4);
        if (nh > 0x7fffffff || nh === 0) throw new SysError('EINVAL', `GEM_CHANGE_HANDLE: new handle ${nh}`);
        const bo = this.bo(drm, h);
        if (h === nh) return 0;
        if (drm.handles.has(nh)) throw new SysError('ENOSPC', `GEM_CHANGE_HANDLE: handle ${nh} in use`);
        drm.handles.delete(h);
        drm.handles.set(nh, bo);
        for (const [d, hh] of drm.prime) if (hh === h) drm.prime.set(d, nh);
        return 0;
      }
      case NR.PRIME_HANDLE_TO_FD: {
        const h = k.readUInt32LE(0), flags = k.readUInt32LE(4);
        if (flags & ~(DRM_CLOEXEC | DRM_RDWR)) throw new SysError('EINVAL', `PRIME_HANDLE_TO_FD: flags 0x${flags.toString(16)}`);
        const bo = this.bo(drm, h);
        // an imported object re-exports the dma-buf it came from
        let d = bo.importAttach ?? bo.dmaBuf;
        if (!d) { d = new SimDmaBuf(bo, flags & DRM_RDWR ? O_RDWR : O_RDONLY); bo.dmaBuf = d; }
        if (!drm.prime.has(d)) { d.ref(); drm.prime.set(d, h); }
        const file = this.dmabufFile(d);
        const fd = this.track(pid, this.proc(pid).install(file, (flags & DRM_CLOEXEC) !== 0));
        k.writeInt32LE(fd, 8);
        return 0;
      }
      case NR.PRIME_FD_TO_HANDLE: {
        const f = this.proc(pid).fds.get(k.readInt32LE(8))?.file;
        if (!f) throw new SysError('EBADF', 'PRIME_FD_TO_HANDLE: bad fd');
        if (!f.dmabuf) throw new SysError('EINVAL', 'PRIME_FD_TO_HANDLE: not a dma-buf');
        const d = f.dmabuf;
        const cached = drm.prime.get(d);
        if (cached !== undefined) { k.writeUInt32LE(cached, 0); return 0; }
        let bo: SimBo;
        if (d.bo.device === drm.device && !d.bo.freed) {
          bo = d.bo; // same device: the same GEM object, no attachment
          const have = drm.handleOf(bo);
          if (have !== undefined) { d.ref(); drm.prime.set(d, have); k.writeUInt32LE(have, 0); return 0; }
        } else {
          bo = new SimBo(drm.device, d.bo.size, 1n, BigInt(2 /* GTT */), 0n, d.bo.contents);
          d.ref();
          bo.importAttach = d;
        }
        const h = drm.lowestFree();
        bo.ref();
        drm.handles.set(h, bo);
        d.ref();
        drm.prime.set(d, h);
        k.writeUInt32LE(h, 0);
        return 0;
      }
      case NR.GEM_CLOSE: {
        const h = k.readUInt32LE(0);
        if (!drm.handles.has(h)) throw new SysError('EINVAL', `GEM_CLOSE: no handle ${h}`);
        drm.dropHandle(h);
        return 0;
      }
    }
    throw new SysError('EINVAL', `DRM ioctl 0x${nr.toString(16)}`);
  }

  private dmabufFiles = new WeakMap<SimDmaBuf, SimOpenFile>();

  /** a new fd in pid on the dma-buf's file */
  installDmabuf(pid: number, d: SimDmaBuf, cloexec: boolean): number {
    return this.track(pid, this.proc(pid).install(this.dmabufFile(d), cloexec));
  }

  /** a dma-buf has one struct file; every fd on it shares it */
  private dmabufFile(d: SimDmaBuf): SimOpenFile {
    let f = this.dmabufFiles.get(d);
    if (!f || f.refs <= 0) {
      f = new SimOpenFile('dmabuf', '/dmabuf:', d.accessMode, undefined, d);
      this.dmabufFiles.set(d, f);
    }
    return f;
  }

  stat(path: string): FileStat | undefined {
    const m = /^\/dev\/dri\/renderD(\d+)$/.exec(path.replace(/\/+/g, '/'));
    if (m && this.devices.has(Number(m[1]))) return { mode: S_IFCHR | 0o666, rdev: makedev(DRM_MAJOR, Number(m[1])), ino: 100 + Number(m[1]) };
    if (path === '/dev/kfd' && this.kfd.enabled) return { mode: S_IFCHR | 0o666, rdev: makedev(KFD_MAJOR, 0), ino: 99 };
    return undefined;
  }

  fstat(f: SimOpenFile): FileStat {
    if (f.drm) return { mode: S_IFCHR | 0o666, rdev: makedev(DRM_MAJOR, f.drm.device.minor), ino: 100 + f.drm.device.minor };
    if (f.kind === 'kfd') return { mode: S_IFCHR | 0o666, rdev: makedev(KFD_MAJOR, 0), ino: 99 };
    return { mode: 0o100600, rdev: 0, ino: f.ino };
  }

  driverOf(rdev: number): string | undefined {
    if (major(rdev) === DRM_MAJOR) return this.devices.get(minor(rdev))?.driver;
    if (major(rdev) === KFD_MAJOR) return 'kfd';
    return undefined;
  }
}

/** the user address space of one ioctl call: pointer value -> caller's buffer */
export class UserMemory {
  private regions: { addr: bigint; buf: Buffer }[] = [];
  map(buf: Buffer, i: number): bigint {
    const addr = 0x7e00_0000_0000n + BigInt(i) * 0x1_0000_0000n;
    this.regions.push({ addr, buf });
    return addr;
  }
  private find(addr: bigint, len: number): { buf: Buffer; o: number } {
    for (const r of this.regions)
      if (addr >= r.addr && addr + BigInt(len) <= r.addr + BigInt(r.buf.length)) return { buf: r.buf, o: Number(addr - r.addr) };
    throw new SysError('EFAULT', `bad user address 0x${addr.toString(16)} (+${len})`);
  }
  write(addr: bigint, data: Buffer): void {
    if (!data.length) return;
    const { buf, o } = this.find(addr, data.length);
    data.copy(buf, o);
  }
  read(addr: bigint, len: number): Buffer {
    if (!len) return Buffer.alloc(0);
    const { buf, o } = this.find(addr, len);
    return Buffer.from(buf.subarray(o, o + len));
  }
}

/** DeviceSys of one simulated process */
export class SimSys implements DeviceSys {
  constructor(private k: SimKernel, readonly pid: number) {}
  ioctl(fd: number, req: number, arg: IoctlArg): number {
    return this.k.ioctl(this.pid, fd, req, arg);
  }
  open(path: string, flags: number): number {
    return this.k.open(this.pid, path, flags);
  }
  close(fd: number): void {
    this.k.close(this.pid, fd);
  }
  dup(fd: number): number {
    return this.k.dup(this.pid, fd);
  }
  fstat(fd: number): FileStat {
    return this.k.fstat(this.k.file(this.pid, fd));
  }
  stat(path: string): FileStat | undefined {
    return this.k.stat(path);
  }
  fdLink(fd: number): string {
    return this.k.file(this.pid, fd).path;
  }
  accessMode(fd: number): number {
    return this.k.file(this.pid, fd).accessMode;
  }
  driverOf(rdev: number): string | undefined {
    return this.k.driverOf(rdev);
  }
  kfdNodes(): KfdNode[] {
    return this.k.kfd.nodes();
  }
  renderNodes(): RenderNode[] {
    return [...this.k.devices.values()].filter((d) => d.driver === 'amdgpu').map((d) => ({ path: `/dev/dri/renderD${d.minor}`, minor: d.minor, gpuId: d.gpuId }));
  }
  readMapped(fd: number, offset: bigint, length: number): Buffer {
    this.k.fault('mmap', this.pid);
    const { bo, boOffset } = this.k.mappable(this.k.file(this.pid, fd), offset, BigInt(length));
    const o = Number(boOffset);
    return Buffer.from(bo.identity.contents.subarray(o, o + length));
  }
  writeMapped(fd: number, offset: bigint, data: Uint8Array): void {
    this.k.fault('mmap', this.pid);
    const f = this.k.file(this.pid, fd);
    if (f.accessMode === O_RDONLY && f.kind === 'dmabuf') throw new SysError('EACCES', 'mmap PROT_WRITE of a read-only dma-buf');
    const { bo, boOffset } = this.k.mappable(f, offset, BigInt(data.length));
    bo.identity.contents.set(data, Number(boOffset));
  }
}
