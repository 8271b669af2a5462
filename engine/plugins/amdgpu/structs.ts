// The amdgpu/DRM/KFD ioctl ABI (x86-64, little-endian): request numbers, struct layouts and
// their marshalling. The one place these bytes are defined: the real backend and the simulator
// both go through it, so a layout mistake shows up in the simulator tests.

export const IOC_WRITE = 1;
export const IOC_READ = 2;

export function ioc(dir: number, type: string, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type.charCodeAt(0) << 8) | nr) >>> 0;
}

export interface IocFields { dir: number; type: string; nr: number; size: number }

export function iocFields(req: number): IocFields {
  return { dir: (req >>> 30) & 3, type: String.fromCharCode((req >>> 8) & 0xff), nr: req & 0xff, size: (req >>> 16) & 0x3fff };
}

const RW = IOC_READ | IOC_WRITE;
/** arg sizes of the HEAD headers; the kernel accepts other sizes (it zero-fills), so the simulator checks minimums */
export const SIZE = {
  LIST_HANDLES: 16, LIST_ENTRY: 40, GEM_OP: 24, GEM_OP_OLD: 16, VM_ENTRY: 32, GEM_MMAP: 8, GEM_CREATE: 32, GEM_CREATE_IN: 32,
  GEM_VA: 64, GEM_VA_OLD: 40, CHANGE_HANDLE: 8, PRIME: 12, GEM_CLOSE: 8, KFD_VERSION: 8, KFD_CRIU: 56,
  KFD_DEVICE_BUCKET: 16, KFD_BO_BUCKET: 48,
} as const;

export const NR = {
  GEM_CLOSE: 0x09, PRIME_HANDLE_TO_FD: 0x2d, PRIME_FD_TO_HANDLE: 0x2e, GEM_CHANGE_HANDLE: 0xd2,
  GEM_CREATE: 0x40, GEM_MMAP: 0x41, GEM_VA: 0x48, GEM_OP: 0x50, GEM_LIST_HANDLES: 0x59,
  KFD_GET_VERSION: 0x01, KFD_CRIU_OP: 0x22,
} as const;

export const REQ = {
  GEM_LIST_HANDLES: ioc(RW, 'd', NR.GEM_LIST_HANDLES, SIZE.LIST_HANDLES), // 0xC0106459
  GEM_OP: ioc(RW, 'd', NR.GEM_OP, SIZE.GEM_OP), // 0xC0186450
  GEM_MMAP: ioc(RW, 'd', NR.GEM_MMAP, SIZE.GEM_MMAP), // 0xC0086441
  GEM_CREATE: ioc(RW, 'd', NR.GEM_CREATE, SIZE.GEM_CREATE), // 0xC0206440
  GEM_VA: ioc(IOC_WRITE, 'd', NR.GEM_VA, SIZE.GEM_VA), // 0x40406448
  GEM_CHANGE_HANDLE: ioc(RW, 'd', NR.GEM_CHANGE_HANDLE, SIZE.CHANGE_HANDLE), // 0xC00864D2
  PRIME_HANDLE_TO_FD: ioc(RW, 'd', NR.PRIME_HANDLE_TO_FD, SIZE.PRIME), // 0xC00C642D
  PRIME_FD_TO_HANDLE: ioc(RW, 'd', NR.PRIME_FD_TO_HANDLE, SIZE.PRIME), // 0xC00C642E
  GEM_CLOSE: ioc(IOC_WRITE, 'd', NR.GEM_CLOSE, SIZE.GEM_CLOSE), // 0x40086409
  KFD_GET_VERSION: ioc(IOC_READ, 'K', NR.KFD_GET_VERSION, SIZE.KFD_VERSION), // 0x80084B01
  KFD_CRIU_OP: ioc(RW, 'K', NR.KFD_CRIU_OP, SIZE.KFD_CRIU), // 0xC0384B22
} as const;

export const DOMAIN = { CPU: 0x1, GTT: 0x2, VRAM: 0x4, GDS: 0x8, GWS: 0x10, OA: 0x20, DOORBELL: 0x40, MMIO_REMAP: 0x80 } as const;
export const DOMAIN_MASK = 0xff;
/** domains whose contents live in memory the plugin saves */
export const CONTENT_DOMAINS = DOMAIN.CPU | DOMAIN.GTT | DOMAIN.VRAM;

export const CREATE = { CPU_ACCESS_REQUIRED: 1n << 0n, NO_CPU_ACCESS: 1n << 1n, CPU_GTT_USWC: 1n << 2n, VRAM_CLEARED: 1n << 3n } as const;

export const VM = {
  DELAY_UPDATE: 1 << 0, PAGE_READABLE: 1 << 1, PAGE_WRITEABLE: 1 << 2, PAGE_EXECUTABLE: 1 << 3, PAGE_PRT: 1 << 4,
  MTYPE_MASK: 0xf << 5, PAGE_NOALLOC: 1 << 9,
} as const;
/** flags GEM_VA MAP accepts besides PRT */
export const VM_VALID_MAP = VM.DELAY_UPDATE | VM.PAGE_READABLE | VM.PAGE_WRITEABLE | VM.PAGE_EXECUTABLE | VM.MTYPE_MASK | VM.PAGE_NOALLOC;

/** hardware PTE bits that GET_MAPPING_INFO may report instead of uapi flags (spec §3.4, D5) */
export const PTE = { EXECUTABLE: 1n << 4n, READABLE: 1n << 5n, WRITEABLE: 1n << 6n, PRT: 1n << 51n, NOALLOC: 1n << 58n } as const;

export const VA_OP = { MAP: 1, UNMAP: 2, CLEAR: 3, REPLACE: 4 } as const;
export const GEM_OP = { GET_GEM_CREATE_INFO: 0, SET_PLACEMENT: 1, GET_MAPPING_INFO: 2 } as const;
export const LIST_FLAG_IS_IMPORT = 1;
export const DRM_CLOEXEC = 0o2000000;
export const DRM_RDWR = 2;
export const DRM_MAJOR = 226;
export const PAGE = 4096n;

/** uapi VM flags from PTE bits (MTYPE is family-specific and not translated: confirm on hardware) */
export function pteToUapi(pte: bigint): number {
  let f = 0;
  if (pte & PTE.READABLE) f |= VM.PAGE_READABLE;
  if (pte & PTE.WRITEABLE) f |= VM.PAGE_WRITEABLE;
  if (pte & PTE.EXECUTABLE) f |= VM.PAGE_EXECUTABLE;
  if (pte & PTE.PRT) f |= VM.PAGE_PRT;
  if (pte & PTE.NOALLOC) f |= VM.PAGE_NOALLOC;
  return f;
}

export function uapiToPte(f: number): bigint {
  let p = 0n;
  if (f & VM.PAGE_READABLE) p |= PTE.READABLE;
  if (f & VM.PAGE_WRITEABLE) p |= PTE.WRITEABLE;
  if (f & VM.PAGE_EXECUTABLE) p |= PTE.EXECUTABLE;
  if (f & VM.PAGE_PRT) p |= PTE.PRT;
  if (f & VM.PAGE_NOALLOC) p |= PTE.NOALLOC;
  return p;
}

/** An ioctl argument: the struct bytes and the buffers its pointer fields (u64 at `at`) refer to. */
export interface IoctlArg {
  buf: Buffer;
  ptrs: { at: number; target: Buffer }[];
}

const arg = (size: number, ptrs: IoctlArg['ptrs'] = []): IoctlArg => ({ buf: Buffer.alloc(size), ptrs });

// ---- DRM_IOCTL_AMDGPU_GEM_LIST_HANDLES ----

export interface ListEntry { handle: number; flags: number; size: bigint; preferredDomains: bigint; allocFlags: bigint; alignment: bigint }

export function listHandlesArg(capacity: number): IoctlArg {
  const entries = Buffer.alloc(capacity * SIZE.LIST_ENTRY);
  const a = arg(SIZE.LIST_HANDLES, [{ at: 0, target: entries }]);
  a.buf.writeUInt32LE(capacity, 8);
  return a;
}

/** count reported by the kernel, and the entries when they fitted */
export function listHandlesResult(a: IoctlArg, capacity: number): { count: number; entries?: ListEntry[] } {
  const count = a.buf.readUInt32LE(8);
  if (count > capacity) return { count };
  const e = a.ptrs[0].target;
  return { count, entries: Array.from({ length: count }, (_, i) => readListEntry(e, i * SIZE.LIST_ENTRY)) };
}

export function readListEntry(b: Buffer, o: number): ListEntry {
  return {
    handle: b.readUInt32LE(o), flags: b.readUInt32LE(o + 4), size: b.readBigUInt64LE(o + 8),
    preferredDomains: b.readBigUInt64LE(o + 16), allocFlags: b.readBigUInt64LE(o + 24), alignment: b.readBigUInt64LE(o + 32),
  };
}

export function writeListEntry(b: Buffer, o: number, e: ListEntry): void {
  b.writeUInt32LE(e.handle, o);
  b.writeUInt32LE(e.flags, o + 4);
  b.writeBigUInt64LE(e.size, o + 8);
  b.writeBigUInt64LE(e.preferredDomains, o + 16);
  b.writeBigUInt64LE(e.allocFlags, o + 24);
  b.writeBigUInt64LE(e.alignment, o + 32);
}

// ---- DRM_IOCTL_AMDGPU_GEM_OP ----

export interface VmEntry { addr: bigint; size: bigint; offset: bigint; flags: bigint }

export function mappingInfoArg(handle: number, capacity: number): IoctlArg {
  const entries = Buffer.alloc(capacity * SIZE.VM_ENTRY);
  const a = arg(SIZE.GEM_OP, [{ at: 8, target: entries }]);
  a.buf.writeUInt32LE(handle, 0);
  a.buf.writeUInt32LE(GEM_OP.GET_MAPPING_INFO, 4);
  a.buf.writeUInt32LE(capacity, 16);
  return a;
}

export function mappingInfoResult(a: IoctlArg, capacity: number): { count: number; entries?: VmEntry[] } {
  const count = a.buf.readUInt32LE(16);
  if (count > capacity) return { count };
  const e = a.ptrs[0].target;
  return { count, entries: Array.from({ length: count }, (_, i) => readVmEntry(e, i * SIZE.VM_ENTRY)) };
}

export function readVmEntry(b: Buffer, o: number): VmEntry {
  return { addr: b.readBigUInt64LE(o), size: b.readBigUInt64LE(o + 8), offset: b.readBigUInt64LE(o + 16), flags: b.readBigUInt64LE(o + 24) };
}

export function writeVmEntry(b: Buffer, o: number, e: VmEntry): void {
  b.writeBigUInt64LE(e.addr, o);
  b.writeBigUInt64LE(e.size, o + 8);
  b.writeBigUInt64LE(e.offset, o + 16);
  b.writeBigUInt64LE(e.flags, o + 24);
}

export interface CreateInfo { size: bigint; alignment: bigint; domains: bigint; flags: bigint }

export function createInfoArg(handle: number): IoctlArg {
  const a = arg(SIZE.GEM_OP, [{ at: 8, target: Buffer.alloc(SIZE.GEM_CREATE_IN) }]);
  a.buf.writeUInt32LE(handle, 0);
  a.buf.writeUInt32LE(GEM_OP.GET_GEM_CREATE_INFO, 4);
  return a;
}

export function createInfoResult(a: IoctlArg): CreateInfo {
  const b = a.ptrs[0].target;
  return { size: b.readBigUInt64LE(0), alignment: b.readBigUInt64LE(8), domains: b.readBigUInt64LE(16), flags: b.readBigUInt64LE(24) };
}

// ---- GEM_MMAP, GEM_CREATE, GEM_VA, CHANGE_HANDLE, PRIME, GEM_CLOSE ----

export function gemMmapArg(handle: number): IoctlArg {
  const a = arg(SIZE.GEM_MMAP);
  a.buf.writeUInt32LE(handle, 0);
  return a;
}
export const gemMmapResult = (a: IoctlArg): bigint => a.buf.readBigUInt64LE(0);

export function gemCreateArg(c: CreateInfo): IoctlArg {
  const a = arg(SIZE.GEM_CREATE);
  a.buf.writeBigUInt64LE(c.size, 0);
  a.buf.writeBigUInt64LE(c.alignment, 8);
  a.buf.writeBigUInt64LE(c.domains, 16);
  a.buf.writeBigUInt64LE(c.flags, 24);
  return a;
}
export const gemCreateResult = (a: IoctlArg): number => a.buf.readUInt32LE(0);

export interface GemVa { handle: number; operation: number; flags: number; va: bigint; offset: bigint; size: bigint }

export function gemVaArg(v: GemVa): IoctlArg {
  const a = arg(SIZE.GEM_VA);
  a.buf.writeUInt32LE(v.handle, 0);
  a.buf.writeUInt32LE(v.operation, 8);
  a.buf.writeUInt32LE(v.flags >>> 0, 12);
  a.buf.writeBigUInt64LE(v.va, 16);
  a.buf.writeBigUInt64LE(v.offset, 24);
  a.buf.writeBigUInt64LE(v.size, 32);
  return a;
}

export function readGemVa(b: Buffer): GemVa {
  return { handle: b.readUInt32LE(0), operation: b.readUInt32LE(8), flags: b.readUInt32LE(12), va: b.readBigUInt64LE(16), offset: b.readBigUInt64LE(24), size: b.readBigUInt64LE(32) };
}

export function changeHandleArg(handle: number, newHandle: number): IoctlArg {
  const a = arg(SIZE.CHANGE_HANDLE);
  a.buf.writeUInt32LE(handle, 0);
  a.buf.writeUInt32LE(newHandle >>> 0, 4);
  return a;
}

export function primeArg(handle: number, flags: number, fd = -1): IoctlArg {
  const a = arg(SIZE.PRIME);
  a.buf.writeUInt32LE(handle, 0);
  a.buf.writeUInt32LE(flags >>> 0, 4);
  a.buf.writeInt32LE(fd, 8);
  return a;
}
export const primeFdResult = (a: IoctlArg): number => a.buf.readInt32LE(8);
export const primeHandleResult = (a: IoctlArg): number => a.buf.readUInt32LE(0);

export function gemCloseArg(handle: number): IoctlArg {
  const a = arg(SIZE.GEM_CLOSE);
  a.buf.writeUInt32LE(handle, 0);
  return a;
}

// ---- KFD (kfd_ioctl.h) ----

export const KFD_OP = { PROCESS_INFO: 0, CHECKPOINT: 1, UNPAUSE: 2, RESTORE: 3, RESUME: 4 } as const;
export const KFD_ALLOC = { VRAM: 1 << 0, GTT: 1 << 1, USERPTR: 1 << 2, DOORBELL: 1 << 3, MMIO_REMAP: 1 << 4 } as const;
export const KFD_INVALID_FD = 0xffffffff;

export function kfdVersionArg(): IoctlArg {
  return arg(SIZE.KFD_VERSION);
}
export const kfdVersionResult = (a: IoctlArg) => ({ major: a.buf.readUInt32LE(0), minor: a.buf.readUInt32LE(4) });

export interface KfdCriuArgs {
  numDevices: number; numBos: number; numObjects: number; privDataSize: bigint; pid: number; op: number;
}

export interface KfdDeviceBucket { userGpuId: number; actualGpuId: number; drmFd: number }
export interface KfdBoBucket { addr: bigint; size: bigint; offset: bigint; restoredOffset: bigint; gpuId: number; allocFlags: number; dmabufFd: number }

/** a CRIU_OP argument with room for the buckets and the private blob (zero counts: no buffers) */
export function kfdCriuArg(op: number, c: Partial<KfdCriuArgs>, devices: KfdDeviceBucket[] | number = 0, bos: KfdBoBucket[] | number = 0, priv?: Buffer): IoctlArg {
  const nd = typeof devices === 'number' ? devices : devices.length;
  const nb = typeof bos === 'number' ? bos : bos.length;
  const devBuf = Buffer.alloc(nd * SIZE.KFD_DEVICE_BUCKET);
  const boBuf = Buffer.alloc(nb * SIZE.KFD_BO_BUCKET);
  const privBuf = priv ?? Buffer.alloc(Number(c.privDataSize ?? 0n));
  if (typeof devices !== 'number') devices.forEach((d, i) => writeDeviceBucket(devBuf, i * SIZE.KFD_DEVICE_BUCKET, d));
  if (typeof bos !== 'number') bos.forEach((b, i) => writeBoBucket(boBuf, i * SIZE.KFD_BO_BUCKET, b));
  const a = arg(SIZE.KFD_CRIU, [{ at: 0, target: devBuf }, { at: 8, target: boBuf }, { at: 16, target: privBuf }]);
  a.buf.writeBigUInt64LE(BigInt(privBuf.length), 24);
  a.buf.writeUInt32LE(nd, 32);
  a.buf.writeUInt32LE(nb, 36);
  a.buf.writeUInt32LE(c.numObjects ?? 0, 40);
  a.buf.writeUInt32LE(c.pid ?? 0, 44);
  a.buf.writeUInt32LE(op, 48);
  return a;
}

export function readKfdCriu(b: Buffer): KfdCriuArgs & { devicesPtr: bigint; bosPtr: bigint; privPtr: bigint } {
  return {
    devicesPtr: b.readBigUInt64LE(0), bosPtr: b.readBigUInt64LE(8), privPtr: b.readBigUInt64LE(16), privDataSize: b.readBigUInt64LE(24),
    numDevices: b.readUInt32LE(32), numBos: b.readUInt32LE(36), numObjects: b.readUInt32LE(40), pid: b.readUInt32LE(44), op: b.readUInt32LE(48),
  };
}

export function writeDeviceBucket(b: Buffer, o: number, d: KfdDeviceBucket): void {
  b.writeUInt32LE(d.userGpuId, o);
  b.writeUInt32LE(d.actualGpuId, o + 4);
  b.writeUInt32LE(d.drmFd >>> 0, o + 8);
}
export function readDeviceBucket(b: Buffer, o: number): KfdDeviceBucket {
  return { userGpuId: b.readUInt32LE(o), actualGpuId: b.readUInt32LE(o + 4), drmFd: b.readInt32LE(o + 8) };
}
export function writeBoBucket(b: Buffer, o: number, x: KfdBoBucket): void {
  b.writeBigUInt64LE(x.addr, o);
  b.writeBigUInt64LE(x.size, o + 8);
  b.writeBigUInt64LE(x.offset, o + 16);
  b.writeBigUInt64LE(x.restoredOffset, o + 24);
  b.writeUInt32LE(x.gpuId, o + 32);
  b.writeUInt32LE(x.allocFlags >>> 0, o + 36);
  b.writeUInt32LE(x.dmabufFd >>> 0, o + 40);
}
export function readBoBucket(b: Buffer, o: number): KfdBoBucket {
  return {
    addr: b.readBigUInt64LE(o), size: b.readBigUInt64LE(o + 8), offset: b.readBigUInt64LE(o + 16), restoredOffset: b.readBigUInt64LE(o + 24),
    gpuId: b.readUInt32LE(o + 32), allocFlags: b.readUInt32LE(o + 36), dmabufFd: b.readInt32LE(o + 40),
  };
}
