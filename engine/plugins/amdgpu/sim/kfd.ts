// The /dev/kfd side of the simulator (spec §5.4): the KFD process state (devices bound to a drm
// file, BOs with alloc flags, an opaque private blob, paused or running), GET_VERSION and the
// CRIU_OP state machine (PROCESS_INFO, CHECKPOINT, UNPAUSE, RESTORE, RESUME) with the kernel's
// argument checks, and a fake topology. Simplification: the state belongs to the open file, not
// to current->mm as in the kernel (our plugin issues RESTORE from the engine's process; see
// the note in ../kfd.ts).
import { SysError, KfdNode, O_RDWR } from '../backend';
import {
  NR, SIZE, KFD_OP, KFD_ALLOC, KFD_INVALID_FD, DOMAIN, PAGE, readKfdCriu, readDeviceBucket, readBoBucket, writeDeviceBucket, writeBoBucket,
} from '../structs';
import { SimBo, SimDmaBuf, SimDrmFile, SimOpenFile, pages } from './model';
import type { SimKernel, UserMemory } from './kernel';

export interface SimKfdBo {
  addr: bigint;
  size: bigint;
  /** mmap offset: the BO's DRM fake offset (VRAM/GTT) or a /dev/kfd doorbell offset */
  offset: bigint;
  allocFlags: number;
  /** the device's actual gpu_id */
  gpuId: number;
  bo: SimBo;
}

export class SimKfdProcess {
  paused = false;
  /** user gpu_id as the process knows it -> the device and the drm file its VM is bound to */
  devices: { userGpuId: number; actualGpuId: number; drm: SimDrmFile }[] = [];
  bos: SimKfdBo[] = [];
  numObjects = 3;
  constructor(public pid: number) {}
}

const PRIV_MAGIC = 'SIMKFD1:';
const KFD_MMAP_TYPE_DOORBELL = 3n << 62n;
const KFD_GPU_ID_SHIFT = 46n;
const doorbellOffset = (gpuId: number) => KFD_MMAP_TYPE_DOORBELL | (BigInt(gpuId) << KFD_GPU_ID_SHIFT);

export class SimKfd {
  enabled = false;
  version = { major: 1, minor: 8 };
  private states = new Map<SimOpenFile, SimKfdProcess>();
  constructor(readonly kernel: SimKernel) {}

  openFile(pid: number): SimOpenFile {
    if (!this.enabled) throw new SysError('ENOENT', `open /dev/kfd (pid ${pid})`);
    const f = new SimOpenFile('kfd', '/dev/kfd', O_RDWR, undefined, undefined, { device: 0 });
    f.onRelease = () => this.release(f);
    return f;
  }

  stateOf(f: SimOpenFile): SimKfdProcess | undefined {
    return this.states.get(f);
  }

  private release(f: SimOpenFile): void {
    const st = this.states.get(f);
    if (!st) return;
    this.states.delete(f);
    for (const b of st.bos) b.bo.unref();
  }

  /** a CPU node and one node per amdgpu device */
  nodes(): KfdNode[] {
    if (!this.enabled) return [];
    const gpus = [...this.kernel.devices.values()].filter((d) => d.driver === 'amdgpu');
    return [
      { nodeId: 0, gpuId: 0, props: { cpu_cores_count: 16n }, ioLinks: gpus.map((_, i) => ({ type: 2, nodeTo: i + 1 })) },
      ...gpus.map((d, i) => ({
        nodeId: i + 1, gpuId: d.gpuId, ioLinks: [{ type: 2, nodeTo: 0 }],
        props: {
          simd_count: 256n, max_waves_per_simd: 8n, lds_size_in_kb: 64n, wave_front_size: 64n, array_count: 8n, simd_arrays_per_engine: 1n,
          cu_per_simd_array: 8n, simd_per_cu: 4n, vendor_id: 0x1002n, device_id: 0x740fn, drm_render_minor: BigInt(d.minor), num_sdma_engines: 2n,
          num_cp_queues: 24n, fw_version: 100n, sdma_fw_version: 50n, vram_size: 64n << 30n, mem_banks_count: 1n, io_links_count: 1n,
        },
      })),
    ];
  }

  // ---- what the ROCm thunk does with ioctls the plugin never issues (test set-up) ----

  private state(pid: number, fd: number): { f: SimOpenFile; st: SimKfdProcess } {
    const f = this.kernel.file(pid, fd);
    if (f.kind !== 'kfd') throw new SysError('ENOTTY', `fd ${fd} is not /dev/kfd`);
    let st = this.states.get(f);
    if (!st) this.states.set(f, (st = new SimKfdProcess(pid)));
    return { f, st };
  }

  /** AMDKFD_IOC_ACQUIRE_VM: the process's VM on a GPU is the one of this drm file */
  acquireVm(pid: number, kfdFd: number, drmFd: number): void {
    const { st } = this.state(pid, kfdFd);
    const drm = this.kernel.file(pid, drmFd).drm;
    if (!drm) throw new SysError('EINVAL', 'ACQUIRE_VM: not a drm file');
    if (st.devices.some((d) => d.actualGpuId === drm.device.gpuId)) throw new SysError('EBUSY', 'ACQUIRE_VM: already acquired');
    st.devices.push({ userGpuId: drm.device.gpuId, actualGpuId: drm.device.gpuId, drm });
  }

  /** AMDKFD_IOC_ALLOC_MEMORY_OF_GPU */
  alloc(pid: number, kfdFd: number, gpuId: number, size: bigint, allocFlags: number, addr: bigint): SimKfdBo {
    const { st } = this.state(pid, kfdFd);
    const dev = st.devices.find((d) => d.userGpuId === gpuId);
    if (!dev) throw new SysError('EINVAL', `ALLOC_MEMORY: no VM on gpu 0x${gpuId.toString(16)}`);
    const kbo = this.makeBo(dev.drm, dev.actualGpuId, addr, pages(size) * PAGE, allocFlags);
    st.bos.push(kbo);
    return kbo;
  }

  /** AMDKFD_IOC_EXPORT_DMABUF: a dma-buf fd on a KFD BO, in the calling process */
  exportDmabuf(pid: number, kbo: SimKfdBo): number {
    if (!(kbo.allocFlags & (KFD_ALLOC.VRAM | KFD_ALLOC.GTT))) throw new SysError('EINVAL', 'EXPORT_DMABUF: not a VRAM/GTT BO');
    return this.exportFd(pid, kbo.bo);
  }

  private makeBo(drm: SimDrmFile, actualGpuId: number, addr: bigint, size: bigint, flags: number): SimKfdBo {
    const dev = drm.device;
    const domain = flags & KFD_ALLOC.VRAM ? DOMAIN.VRAM : flags & KFD_ALLOC.GTT ? DOMAIN.GTT : flags & KFD_ALLOC.DOORBELL ? DOMAIN.DOORBELL : DOMAIN.CPU;
    const bo = new SimBo(dev, size, 1n, BigInt(domain), 0n, new Uint8Array(Number(size)));
    bo.ref();
    let offset: bigint;
    if (flags & (KFD_ALLOC.VRAM | KFD_ALLOC.GTT)) {
      bo.mmapOffset = dev.nextOffset;
      dev.nextOffset += size;
      offset = bo.mmapOffset;
      drm.mmapAllowed.add(bo);
    } else if (flags & KFD_ALLOC.DOORBELL) offset = doorbellOffset(actualGpuId);
    else offset = 0n;
    return { addr, size, offset, allocFlags: flags, gpuId: actualGpuId, bo };
  }

  private exportFd(pid: number, bo: SimBo): number {
    let d = bo.dmaBuf;
    if (!d) { d = new SimDmaBuf(bo, O_RDWR); bo.dmaBuf = d; }
    return this.kernel.installDmabuf(pid, d, true);
  }

  /** mmap through /dev/kfd: doorbells */
  mappable(f: SimOpenFile, pgoff: bigint, length: bigint): { bo: SimBo; boOffset: bigint } {
    const st = this.states.get(f);
    const kbo = st?.bos.find((b) => b.allocFlags & KFD_ALLOC.DOORBELL && pgoff >= b.offset && pgoff < b.offset + b.size);
    if (!kbo) throw new SysError('EINVAL', `mmap of /dev/kfd at 0x${pgoff.toString(16)}: no doorbell there`);
    if (pgoff + length > kbo.offset + kbo.size) throw new SysError('EINVAL', 'mmap past the end of a doorbell page');
    return { bo: kbo.bo, boOffset: pgoff - kbo.offset };
  }

  // ---- the ioctls ----

  ioctl(pid: number, f: SimOpenFile, nr: number, size: number, _dir: number, k: Buffer, u: UserMemory): number {
    if (nr === NR.KFD_GET_VERSION) {
      if (size < SIZE.KFD_VERSION) throw new SysError('EINVAL', 'GET_VERSION: size');
      k.writeUInt32LE(this.version.major, 0);
      k.writeUInt32LE(this.version.minor, 4);
      return 0;
    }
    if (nr !== NR.KFD_CRIU_OP) throw new SysError('ENOTTY', `KFD ioctl 0x${nr.toString(16)}`);
    if (size !== SIZE.KFD_CRIU || k.length < SIZE.KFD_CRIU) throw new SysError('EINVAL', 'CRIU_OP: argument size');
    const a = readKfdCriu(k);
    switch (a.op) {
      case KFD_OP.PROCESS_INFO: {
        const st = this.stateOf(f);
        if (!st) throw new SysError('EINVAL', 'PROCESS_INFO: no KFD process on this file');
        st.paused = true; // queues evicted until UNPAUSE
        k.writeUInt32LE(st.devices.length, 32);
        k.writeUInt32LE(st.bos.length, 36);
        k.writeUInt32LE(st.numObjects, 40);
        k.writeUInt32LE(st.pid, 44);
        k.writeBigUInt64LE(BigInt(this.priv(st).length), 24);
        return 0;
      }
      case KFD_OP.CHECKPOINT: {
        const st = this.stateOf(f);
        if (!st) throw new SysError('EINVAL', 'CHECKPOINT: no KFD process on this file');
        if (!st.paused) throw new SysError('EINVAL', 'CHECKPOINT: the process is not paused (PROCESS_INFO first)');
        const priv = this.priv(st);
        if (a.numDevices !== st.devices.length || a.numBos !== st.bos.length || a.privDataSize !== BigInt(priv.length))
          throw new SysError('EINVAL', 'CHECKPOINT: counts differ from PROCESS_INFO');
        const devs = Buffer.alloc(a.numDevices * SIZE.KFD_DEVICE_BUCKET);
        st.devices.forEach((d, i) => writeDeviceBucket(devs, i * SIZE.KFD_DEVICE_BUCKET, { userGpuId: d.userGpuId, actualGpuId: d.actualGpuId, drmFd: 0 }));
        const bos = Buffer.alloc(a.numBos * SIZE.KFD_BO_BUCKET);
        st.bos.forEach((b, i) => {
          const user = st.devices.find((d) => d.actualGpuId === b.gpuId)!.userGpuId;
          const fd = b.allocFlags & (KFD_ALLOC.VRAM | KFD_ALLOC.GTT) ? this.exportFd(pid, b.bo) : KFD_INVALID_FD;
          writeBoBucket(bos, i * SIZE.KFD_BO_BUCKET, { addr: b.addr, size: b.size, offset: b.offset, restoredOffset: 0n, gpuId: user, allocFlags: b.allocFlags, dmabufFd: fd });
        });
        u.write(a.devicesPtr, devs);
        u.write(a.bosPtr, bos);
        u.write(a.privPtr, priv);
        return 0;
      }
      case KFD_OP.UNPAUSE: {
        const st = this.stateOf(f);
        if (!st) throw new SysError('EINVAL', 'UNPAUSE: no KFD process on this file');
        st.paused = false;
        return 0;
      }
      case KFD_OP.RESTORE:
        return this.restore(pid, f, a, u);
      case KFD_OP.RESUME: {
        const st = [...this.states.values()].find((s) => s.pid === a.pid);
        if (!st) throw new SysError('ESRCH', `RESUME: no KFD process ${a.pid}`);
        st.paused = false;
        return 0;
      }
    }
    throw new SysError('EINVAL', `CRIU_OP: op ${a.op}`);
  }

  private priv(st: SimKfdProcess): Buffer {
    return Buffer.from(PRIV_MAGIC + JSON.stringify({ bos: st.bos.length, objects: st.numObjects }));
  }

  /** RESTORE: new BOs (new offsets, dma-buf fds for VRAM/GTT) on the devices the buckets name */
  private restore(pid: number, f: SimOpenFile, a: ReturnType<typeof readKfdCriu>, u: UserMemory): number {
    if (this.states.has(f)) throw new SysError('EINVAL', 'RESTORE: this file already has a KFD process');
    const priv = u.read(a.privPtr, Number(a.privDataSize)).toString('latin1');
    if (!priv.startsWith(PRIV_MAGIC)) throw new SysError('EINVAL', 'RESTORE: private data not from CHECKPOINT');
    let meta: { bos: number; objects: number };
    try { meta = JSON.parse(priv.slice(PRIV_MAGIC.length)); } catch { throw new SysError('EINVAL', 'RESTORE: private data corrupt'); }
    if (meta.bos !== a.numBos || meta.objects !== a.numObjects) throw new SysError('EINVAL', 'RESTORE: counts differ from the private data');
    const st = new SimKfdProcess(a.pid);
    st.numObjects = a.numObjects;
    const devs = u.read(a.devicesPtr, a.numDevices * SIZE.KFD_DEVICE_BUCKET);
    for (let i = 0; i < a.numDevices; i++) {
      const d = readDeviceBucket(devs, i * SIZE.KFD_DEVICE_BUCKET);
      const file = this.kernel.proc(pid).fds.get(d.drmFd)?.file;
      if (!file?.drm) throw new SysError('EINVAL', `RESTORE: device bucket ${i}: drm_fd ${d.drmFd} is not a render node`);
      if (file.drm.device.gpuId !== d.actualGpuId) throw new SysError('EINVAL', `RESTORE: device bucket ${i}: drm_fd is not gpu 0x${d.actualGpuId.toString(16)}`);
      st.devices.push({ userGpuId: d.userGpuId, actualGpuId: d.actualGpuId, drm: file.drm });
    }
    const bosBuf = u.read(a.bosPtr, a.numBos * SIZE.KFD_BO_BUCKET);
    const made: SimKfdBo[] = [];
    const fds: number[] = [];
    try {
      for (let i = 0; i < a.numBos; i++) {
        const b = readBoBucket(bosBuf, i * SIZE.KFD_BO_BUCKET);
        const dev = st.devices.find((d) => d.userGpuId === b.gpuId);
        if (!dev) throw new SysError('EINVAL', `RESTORE: bo bucket ${i}: gpu 0x${b.gpuId.toString(16)} has no device bucket`);
        if (b.size === 0n || b.size % PAGE) throw new SysError('EINVAL', `RESTORE: bo bucket ${i}: size`);
        const kbo = this.makeBo(dev.drm, dev.actualGpuId, b.addr, b.size, b.allocFlags);
        made.push(kbo);
        const fd = b.allocFlags & (KFD_ALLOC.VRAM | KFD_ALLOC.GTT) ? this.exportFd(pid, kbo.bo) : KFD_INVALID_FD;
        if (fd !== KFD_INVALID_FD) fds.push(fd);
        writeBoBucket(bosBuf, i * SIZE.KFD_BO_BUCKET, { ...b, restoredOffset: kbo.offset, dmabufFd: fd });
      }
    } catch (e) {
      for (const fd of fds) this.kernel.close(pid, fd);
      for (const m of made) m.bo.unref();
      throw e;
    }
    st.bos = made;
    st.paused = true; // until RESUME
    this.states.set(f, st);
    u.write(a.bosPtr, bosBuf);
    return 0;
  }
}
