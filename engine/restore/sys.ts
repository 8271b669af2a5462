// x86-64 system call numbers and constants the restore injects.
export const NR = {
  read: 0, write: 1, close: 3, lseek: 8, mmap: 9, mprotect: 10, munmap: 11, rt_sigaction: 13, pread64: 17,
  mremap: 25, madvise: 28, recvmsg: 47, exit_group: 231, kill: 62, fcntl: 72, chdir: 80, umask: 95, setpgid: 109,
  setsid: 112, setgroups: 116, setresuid: 117, setresgid: 119, capset: 126, sigaltstack: 131, prctl: 157,
  chroot: 161, setitimer: 38, set_tid_address: 218, timer_create: 222, timer_settime: 223, epoll_ctl: 233,
  set_robust_list: 273, timerfd_create: 283, timerfd_settime: 286, signalfd4: 289, eventfd2: 290,
  epoll_create1: 291, dup3: 292, rt_tgsigqueueinfo: 297, prlimit64: 302, openat: 257, rseq: 334, clone3: 435,
  close_range: 436, ioctl: 16, getpid: 39,
} as const;

export const AT_FDCWD = -100;
export const O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0o2000000, O_NONBLOCK = 0o4000, O_ACCMODE = 3;
export const O_WRONLY = 1, O_APPEND = 0o2000, O_ASYNC = 0o20000;
/** flags that only matter when a file is created, never kept in f_flags: O_CREAT O_EXCL O_TRUNC O_NOCTTY */
export const OPEN_ONLY = 0o100 | 0o200 | 0o1000 | 0o400;
export const F_SETFD = 2, F_SETFL = 4, F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
export const PROT_READ = 1, PROT_WRITE = 2;
export const MAP_SHARED = 0x1, MAP_PRIVATE = 0x2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_GROWSDOWN = 0x100;
export const MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000;
export const MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2;
export const SIGCHLD = 17, SIGSTOP = 19, SIGKILL = 9;
export const CLONE_VM = 0x100, CLONE_FS = 0x200, CLONE_FILES = 0x400, CLONE_SIGHAND = 0x800, CLONE_THREAD = 0x10000,
  CLONE_SYSVSEM = 0x40000;
export const PR_SET_PDEATHSIG = 1, PR_SET_DUMPABLE = 4, PR_SET_NAME = 15, PR_SET_MM = 35, PR_SET_MM_MAP = 14,
  PR_SET_CHILD_SUBREAPER = 36, PR_SET_THP_DISABLE = 41, PR_TIMER_CREATE_RESTORE_IDS = 77, PR_SET_SECUREBITS = 28;
export const PTRACE_EVENT_FORK = 1, PTRACE_EVENT_CLONE = 3;

/** struct clone_args with set_tid pointing at one pid_t */
export function cloneArgs(flags: number, exitSignal: number, setTidAddr: bigint): Buffer {
  const b = Buffer.alloc(88);
  b.writeBigUInt64LE(BigInt(flags), 0);
  b.writeBigUInt64LE(BigInt(exitSignal), 32);
  b.writeBigUInt64LE(setTidAddr, 64);
  b.writeBigUInt64LE(1n, 72);
  return b;
}

export function i32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

export function u64s(...vals: bigint[]): Buffer {
  const b = Buffer.alloc(vals.length * 8);
  vals.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, v), i * 8));
  return b;
}
