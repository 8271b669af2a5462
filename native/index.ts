// Typed loader of the C++ addon (native/src). Thin syscall wrappers only; policy lives in engine/.
// Every failing call throws a NativeError carrying errno, its name (code) and the syscall.
import * as fs from 'fs';
import * as path from 'path';

export interface NativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).errno === 'number' && typeof (e as Partial<NativeError>).syscall === 'string';
}

export interface WaitStatus {
  pid: number;
  status: number;
  exited: boolean;
  exitCode: number;
  signaled: boolean;
  termSig: number;
  stopped: boolean;
  stopSig: number;
  /** PTRACE_EVENT_* of an event stop (status >> 16), 0 otherwise */
  event: number;
}

export interface RseqConfig {
  pointer: bigint;
  size: number;
  signature: number;
  flags: number;
}

export interface InjectedCall {
  nr: number;
  args?: (number | bigint)[];
}

export interface InjectOutcome {
  /** raw rax of each executed call; -4095..-1 is -errno */
  results: bigint[];
  /** stop signals seen mid-step (not delivered to the task) */
  signals: number[];
  /** ptrace events seen mid-step, and their event messages (e.g. a new tid for CLONE) */
  events: number[];
  eventMsgs: bigint[];
}

/** Owns one OS thread; every ptrace request of an engine must go through the same Tracer. */
export interface Tracer {
  seize(tid: number, options?: number | bigint): void;
  interrupt(tid: number): void;
  /** waitpid(tid, __WALL); throws ETIMEDOUT after timeoutMs (default: forever) */
  wait(tid: number, timeoutMs?: number): WaitStatus;
  setOptions(tid: number, options: number | bigint): void;
  cont(tid: number, sig?: number): void;
  listen(tid: number): void;
  detach(tid: number, sig?: number): void;
  getEventMsg(tid: number): bigint;
  /** NT_PRSTATUS = 1, NT_PRFPREG = 2, NT_X86_XSTATE = 0x202 */
  getRegset(tid: number, nt: number): Buffer;
  setRegset(tid: number, nt: number, data: Uint8Array): void;
  getSigmask(tid: number): bigint;
  setSigmask(tid: number, mask: bigint): void;
  getRseqConfig(tid: number): RseqConfig;
  peekSiginfo(tid: number, shared: boolean): Buffer[];
  getSeccompFilter(tid: number, index: number): Buffer | null;
  /** PTRACE_GET_THREAD_AREA: the 16-byte struct user_desc of GDT TLS slot `index` (12..14 on x86-64) */
  getThreadArea(tid: number, index: number): Buffer;
  /**
   * Runs syscalls in the stopped thread `tid` by single-stepping the `syscall` instruction at
   * `gadget` with rewritten registers; signals are blocked meanwhile; registers and sigmask are
   * restored afterwards.
   */
  inject(tid: number, gadget: bigint, calls: InjectedCall[], opts?: { stopOnError?: boolean; timeoutMs?: number }): InjectOutcome;
  /**
   * Forks and execs a stub from the tracer thread (clone3 with set_tid = pid, or as PID 1 of a
   * new PID namespace), stopped and traced (TRACECLONE|TRACEFORK|EXITKILL); keepFd is inherited
   * as keepAs. Returns its PID; EEXIST when the PID is taken.
   */
  spawnStub(opts: { pid?: number; newPidns?: boolean; keepFd?: number; keepAs?: number; timeoutMs?: number }): number;
  close(): void;
}

export interface PagemapScanOptions {
  categoryMask?: number | bigint;
  categoryInverted?: number | bigint;
  anyofMask?: number | bigint;
  returnMask?: number | bigint;
  flags?: number | bigint;
  maxPages?: number | bigint;
  maxRegions?: number;
}

export interface NativeAddon {
  Tracer: new () => Tracer;
  readMemory(pid: number, addr: bigint | number, buf: Uint8Array, offset?: number, length?: number): number;
  writeMemory(pid: number, addr: bigint | number, buf: Uint8Array): number;
  /** ranges: [addr, len, addr, len, ...]; returns bytes written to fd */
  copyMemoryToFd(pid: number, ranges: BigUint64Array, fd: number, chunkBytes?: number): number;
  pagemapScan(pagemapFd: number, start: bigint, end: bigint, opts?: PagemapScanOptions): { regions: BigUint64Array; walkEnd: bigint };
  preadU64(fd: number, offset: bigint | number, count: number): BigUint64Array;
  pread(fd: number, buf: Uint8Array, offset: bigint | number): number;
  pwrite(fd: number, buf: Uint8Array, offset: bigint | number): number;
  pidfdOpen(pid: number, flags?: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  kcmp(pid1: number, pid2: number, type: number, idx1: number | bigint, idx2: number | bigint): number;
  /** kcmp(KCMP_EPOLL_TFD): 0 when pid1's fd1 is the toff-th file pid2's epoll efd watches under fd number tfd */
  kcmpEpollTfd(pid1: number, pid2: number, fd1: number, efd: number, tfd: number, toff: number): number;
  tee(fdIn: number, fdOut: number, len: number, flags?: number): number;
  /** readlinkat(fd, ""): the target of the symlink an O_PATH|O_NOFOLLOW fd holds */
  readlinkFd(fd: number): string;
  /** linkat(src, dst, AT_SYMLINK_FOLLOW): a new name for the file a /proc/PID/fd link holds */
  linkFollow(src: string, dst: string): void;
  pipe2(flags?: number): [number, number];
  fcntl(fd: number, cmd: number, arg?: number): number;
  ioctl(fd: number, request: number | bigint, arg?: Uint8Array | number): number;
  close(fd: number): void;
  sendFds(sock: number, fds: number[], data?: Uint8Array): number;
  recvFds(sock: number, maxFds: number, maxBytes?: number): { fds: number[]; data: Buffer };
  netlinkQuery(protocol: number, request: Uint8Array): Buffer[];
  /** clock_gettime(clockid) in nanoseconds */
  clockGettime(clockid: number): bigint;
  /** socketpair(domain = AF_UNIX, type = SOCK_DGRAM) */
  socketPair(domain?: number, type?: number): [number, number];
  /** XCR0: the XSAVE features enabled for user state */
  xcr0(): bigint;
  /** CPUID leaf/subleaf: [eax, ebx, ecx, edx] */
  cpuid(leaf: number, subleaf: number): number[];
  /** prctl(PR_SET_CHILD_SUBREAPER) for the engine itself */
  setChildSubreaper(on: boolean): void;
  /** lseek(fd, offset, whence); SEEK_DATA = 3, SEEK_HOLE = 4 (ENXIO past the last data) */
  lseek(fd: number, offset: bigint | number, whence: number): bigint;
  /** mmap(2) in the engine itself; returns the address */
  mmap(addr: bigint | number, length: bigint | number, prot: number, flags: number, fd: number, offset: bigint | number): bigint;
  munmap(addr: bigint | number, length: bigint | number): void;
  /** getsockopt(fd, level, name) with a len-byte buffer (default 4); returns optlen bytes */
  getsockopt(fd: number, level: number, name: number, len?: number): Buffer;
  /** setsockopt with an int or a raw value */
  setsockopt(fd: number, level: number, name: number, value: number | Uint8Array): void;
  /** recvmsg; with MSG_PEEK nothing is consumed. SCM_RIGHTS fds in cmsgs belong to the caller. */
  recvmsg(fd: number, maxBytes: number, flags: number, maxControl?: number): {
    bytes: number; data: Buffer; msgFlags: number; cmsgs: { level: number; type: number; data: Buffer }[];
  };
  /** open_by_handle_at(mountFd, {type, handle}, flags) -> fd */
  openByHandleAt(mountFd: number, handleType: number, handle: Uint8Array, flags: number): number;
  /** fcntl(F_GETOWN_EX): type F_OWNER_TID 0 / PID 1 / PGRP 2, and the owner's id (0 = none) */
  getOwnerEx(fd: number): { type: number; pid: number };
  /** while on, SIGINT/SIGTERM/SIGHUP are only recorded (the engine cleans up, then exits) */
  interruptGuard(on: boolean): void;
  /** the first guarded signal received since the guard went on; 0 when none */
  interruptPending(): number;
  /** fsync of every fd, in parallel threads (one filesystem commit instead of one per file) */
  fsyncAll(fds: number[]): void;
  /** io_setup(nrEvents) in the engine itself: the new AIO context (its ring's address) */
  ioSetup(nrEvents: number): bigint;
  ioDestroy(ctx: bigint | number): void;
  /** io_getevents(ctx, minNr, nr) without waiting; the events are dropped, their number returned */
  ioGetevents(ctx: bigint | number, minNr: number, nr: number): number;
  /** mremap(2) in the engine itself; returns the new address */
  mremap(oldAddr: bigint | number, oldLength: bigint | number, newLength: bigint | number, flags: number, newAddr: bigint | number): bigint;
  /** memfd_create(name, flags): MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2 */
  memfdCreate(name: string, flags: number): number;
  /** mknod(2): a FIFO (S_IFIFO) or a device node */
  mknod(path: string, mode: number, major?: number, minor?: number): void;
  mount(source: string, target: string, fstype: string, flags?: number, data?: string): void;
  umount2(target: string, flags?: number): void;
  /** socket(AF_UNIX, type | SOCK_CLOEXEC, 0) */
  unixSocket(type: number): number;
  /** bind / connect to a unix address given as its raw sun_path bytes (abstract: leading NUL) */
  unixBind(fd: number, name: Uint8Array): void;
  unixConnect(fd: number, name: Uint8Array): void;
  listen(fd: number, backlog: number): void;
  /** sendmsg(fd, data, flags | MSG_NOSIGNAL) to a unix address, or to the connected peer without one; fds as SCM_RIGHTS */
  sendTo(fd: number, data: Uint8Array, name?: Uint8Array | null, flags?: number, fds?: number[]): number;
  shutdown(fd: number, how: number): void;
  /** socket(domain, type, protocol); the caller adds SOCK_CLOEXEC to type; made under fsuid/fsgid when given */
  socket(domain: number, type: number, protocol: number, fsuid?: number, fsgid?: number): number;
  /** bind / connect to a whole struct sockaddr given as bytes (sockaddr_in, sockaddr_in6, ...) */
  sockBind(fd: number, addr: Uint8Array): void;
  sockConnect(fd: number, addr: Uint8Array): void;
  /** getsockname: the struct sockaddr as bytes */
  sockName(fd: number): Buffer;
  /** poll of one fd: the revents, 0 on timeout */
  pollOne(fd: number, events: number, timeoutMs: number): number;
  /** the classic BPF program of SO_ATTACH_FILTER as struct sock_filter bytes (empty: none; EACCES: eBPF) */
  getFilter(fd: number): Buffer;
  /** setsockopt(SO_ATTACH_FILTER) with a program of struct sock_filter bytes */
  attachFilter(fd: number, program: Uint8Array): void;
  /**
   * ioctl on a struct with user-pointer fields: the u64 at each `at` is set to the address of its
   * `target` for the call (the kernel fills the targets in place); the struct's other bytes come
   * back in buf, its pointer fields as given.
   */
  ioctlPointers(fd: number, request: number | bigint, buf: Uint8Array, pointers: { at: number; target: Uint8Array }[]): number;
  /** mmap(MAP_SHARED) of [offset, offset + length) of fd, copy out to buf (write false) or in from it, munmap */
  mmapCopy(fd: number, offset: bigint | number, length: number, buf: Uint8Array, write: boolean): void;
  /** LZ4_decompress_safe of one raw LZ4 block: bytes decoded into dst, negative when src is no valid block fitting dst */
  lz4Decompress(src: Uint8Array, dst: Uint8Array): number;
  /** LZ4_decompress_safe per block of plan ([srcOff, srcLen, dstOff, dstLen] each); returns how many decoded to exactly dstLen before the first that did not */
  lz4DecompressBatch(src: Uint8Array, dst: Uint8Array, plan: Float64Array): number;
  /** LZ4_compress_fast: bytes written to dst, 0 when the block does not fit dst */
  lz4Compress(src: Uint8Array, dst: Uint8Array, acceleration: number): number;
  /** LZ4_compressBound: the largest block src.length bytes can compress to */
  lz4CompressBound(size: number): number;
  /** liblz4's version, e.g. "1.9.4" */
  lz4Version(): string;
}

export const NT_PRSTATUS = 1;
export const NT_PRFPREG = 2;
export const NT_X86_XSTATE = 0x202;

export const PTRACE_O_TRACECLONE = 0x8;
export const PTRACE_O_EXITKILL = 0x100000;
export const PTRACE_O_SUSPEND_SECCOMP = 0x200000;
export const PTRACE_EVENT_STOP = 128;

export const KCMP_FILE = 0;
export const KCMP_VM = 1;
export const KCMP_FILES = 2;
export const KCMP_FS = 3;
export const KCMP_SIGHAND = 4;

// PAGEMAP_SCAN categories (uapi linux/fs.h, 6.7+)
export const PAGE_IS_WPALLOWED = 1 << 0;
export const PAGE_IS_WRITTEN = 1 << 1;
export const PAGE_IS_FILE = 1 << 2;
export const PAGE_IS_PRESENT = 1 << 3;
export const PAGE_IS_SWAPPED = 1 << 4;
export const PAGE_IS_PFNZERO = 1 << 5;

let loaded: NativeAddon | undefined;

/** The addon, built by `npm install` (node-gyp) into native/build/Release. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  const candidates = [
    path.join(__dirname, 'build', 'Release', 'engine_native.node'),
    path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'engine_native.node'),
  ];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error('the native addon is not built (run `npm install` or `npx node-gyp rebuild --nodedir=/usr -C native`)');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded = require(found) as NativeAddon;
  return loaded;
}
