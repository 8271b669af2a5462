// The seam between the plugin and the kernel: one interface, two implementations (real.ts over
// the native addon, sim/ for tests). Calls act in the engine's own process, on its fds.
import type { IoctlArg } from './structs';

export const ERRNO: Record<string, number> = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16, EEXIST: 17,
  ENODEV: 19, EINVAL: 22, EMFILE: 24, ENOTTY: 25, ENOSPC: 28, ENOTSUP: 95, ETIMEDOUT: 110,
};

/** A failed system call: errno name, number and what was asked. */
export class SysError extends Error {
  constructor(public code: string, public what: string) {
    super(`${what}: ${code}`);
    this.name = 'SysError';
  }
  get errno(): number {
    return ERRNO[this.code] ?? 0;
  }
}

export const isSysError = (e: unknown, code?: string): e is SysError => e instanceof SysError && (code === undefined || e.code === code);

export interface FileStat {
  /** st_mode (type bits included) */
  mode: number;
  rdev: number;
  ino: number;
}

export const S_IFMT = 0o170000;
export const S_IFCHR = 0o020000;
export const major = (rdev: number): number => (rdev >>> 8) & 0xfff;
export const minor = (rdev: number): number => (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
export const makedev = (ma: number, mi: number): number => ((ma & 0xfff) << 8) | (mi & 0xff) | ((mi & 0xfff00) << 12);

export interface RenderNode {
  path: string;
  minor: number;
  /** the KFD gpu_id of the node (0 when there is no KFD topology entry) */
  gpuId: number;
}

/** a KFD topology node (/sys/class/kfd/kfd/topology/nodes/N): a CPU (gpuId 0) or a GPU */
export interface KfdNode {
  nodeId: number;
  gpuId: number;
  /** its `properties` file (name value lines), plus vram_size from its mem_banks */
  props: Record<string, bigint>;
  ioLinks: { type: number; nodeTo: number }[];
}

export interface DeviceSys {
  /** ioctl; returns the ioctl's value, throws SysError */
  ioctl(fd: number, req: number, arg: IoctlArg): number;
  open(path: string, flags: number): number;
  close(fd: number): void;
  /** a new fd (close-on-exec) on the same open file description */
  dup(fd: number): number;
  fstat(fd: number): FileStat;
  stat(path: string): FileStat | undefined;
  /** readlink(/proc/self/fd/N) */
  fdLink(fd: number): string;
  /** f_flags & O_ACCMODE */
  accessMode(fd: number): number;
  /** the kernel driver of a character device (e.g. 'amdgpu'), undefined when unknown */
  driverOf(rdev: number): string | undefined;
  /** amdgpu render nodes present on this machine */
  renderNodes(): RenderNode[];
  /** the KFD topology (empty without /dev/kfd) */
  kfdNodes(): KfdNode[];
  /** copy out of / into a shared mapping of fd at byte offset `offset` (mmap, copy, munmap) */
  readMapped(fd: number, offset: bigint, length: number): Buffer;
  writeMapped(fd: number, offset: bigint, data: Uint8Array): void;
}

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_CLOEXEC = 0o2000000;
