// What each file of an images directory should be, by its name: the image kind CRIU writes
// under that name and how many entries it holds. Used to validate a set (a file whose magic
// disagrees with its name is damaged) and to salvage a file whose magic is damaged.

import { amdgpuKindOfFile, kindFor } from '../kinds';

/** [file name pattern, CRIT magic name] for every image CRIU writes or once wrote. */
const NAME_KINDS: [RegExp, string][] = [
  [/^inventory\.img$/, 'INVENTORY'], [/^pstree\.img$/, 'PSTREE'], [/^core-\d+\.img$/, 'CORE'],
  [/^ids-\d+\.img$/, 'IDS'], [/^mm-\d+\.img$/, 'MM'], [/^fs-\d+\.img$/, 'FS'], [/^fdinfo-\d+\.img$/, 'FDINFO'],
  [/^files\.img$/, 'FILES'], [/^pagemap-(shmem-)?\d+\.img$/, 'PAGEMAP'], [/^pipes-data\.img$/, 'PIPES_DATA'],
  [/^fifo-data\.img$/, 'FIFO_DATA'], [/^sk-queues\.img$/, 'SK_QUEUES'], [/^tcp-stream-[0-9a-f]+\.img$/, 'TCP_STREAM'],
  [/^ghost-file-[0-9a-f]+\.img$/, 'GHOST_FILE'], [/^remap-fpath\.img$/, 'REMAP_FPATH'], [/^memfd\.img$/, 'MEMFD_INODE'],
  [/^bpfmap-data\.img$/, 'BPFMAP_DATA'], [/^bpfmap-file\.img$/, 'BPFMAP_FILE'], [/^tty-info\.img$/, 'TTY_INFO'],
  [/^tty-data\.img$/, 'TTY_DATA'], [/^filelocks\.img$/, 'FILE_LOCKS'], [/^cgroup\.img$/, 'CGROUP'],
  [/^seccomp\.img$/, 'SECCOMP'], [/^apparmor\.img$/, 'APPARMOR'], [/^cpuinfo\.img$/, 'CPUINFO'],
  [/^binfmt-misc(-\d+)?\.img$/, 'BINFMT_MISC'], [/^autofs-\d+\.img$/, 'AUTOFS'], [/^mountpoints-\d+\.img$/, 'MNTS'],
  [/^utsns-\d+\.img$/, 'UTSNS'], [/^ipcns-var-\d+\.img$/, 'IPC_VAR'], [/^ipcns-shm-\d+\.img$/, 'IPCNS_SHM'],
  [/^ipcns-msg-\d+\.img$/, 'IPCNS_MSG'], [/^ipcns-sem-\d+\.img$/, 'IPCNS_SEM'], [/^netns-\d+\.img$/, 'NETNS'],
  [/^netdev-\d+\.img$/, 'NETDEV'], [/^userns-\d+\.img$/, 'USERNS'], [/^timens-\d+\.img$/, 'TIMENS'],
  [/^pidns-\d+\.img$/, 'PIDNS'], [/^stats-(dump|restore)$/, 'STATS'], [/^irmap-cache$/, 'IRMAP_CACHE'],
  [/^reg-files\.img$/, 'REG_FILES'], [/^ext-files\.img$/, 'EXT_FILES'], [/^ns-files\.img$/, 'NS_FILES'],
  [/^eventfd\.img$/, 'EVENTFD_FILE'], [/^eventpoll\.img$/, 'EVENTPOLL_FILE'], [/^eventpoll-tfd\.img$/, 'EVENTPOLL_TFD'],
  [/^signalfd\.img$/, 'SIGNALFD'], [/^inotify\.img$/, 'INOTIFY_FILE'], [/^inotify-wd\.img$/, 'INOTIFY_WD'],
  [/^fanotify\.img$/, 'FANOTIFY_FILE'], [/^fanotify-mark\.img$/, 'FANOTIFY_MARK'], [/^pipes\.img$/, 'PIPES'],
  [/^fifo\.img$/, 'FIFO'], [/^unixsk\.img$/, 'UNIXSK'], [/^inetsk\.img$/, 'INETSK'], [/^packetsk\.img$/, 'PACKETSK'],
  [/^netlinksk\.img$/, 'NETLINK_SK'], [/^tunfile\.img$/, 'TUNFILE'], [/^timerfd\.img$/, 'TIMERFD'],
  [/^tty\.img$/, 'TTY_FILES'], [/^vmas-\d+\.img$/, 'VMAS'], [/^sigacts-\d+\.img$/, 'SIGACT'],
  [/^itimers-\d+\.img$/, 'ITIMERS'], [/^posix-timers-\d+\.img$/, 'POSIX_TIMERS'], [/^creds-\d+\.img$/, 'CREDS'],
  [/^rlimit-\d+\.img$/, 'RLIMIT'], [/^signal-[sp]-\d+\.img$/, 'SIGNAL'], [/^pidfd\.img$/, 'PIDFD'],
];

/** The kind CRIU writes under this file name, if it is one of its image names. */
export function kindByName(fileName: string): string | undefined {
  const b = fileName.replace(/^.*\//, '');
  for (const [re, k] of NAME_KINDS) if (re.test(b)) return k;
  const amd = amdgpuKindOfFile(b); // the plugin's files: one table, in kinds.ts
  return amd && kindFor(amd)?.layout === 'amdgpu' ? amd : undefined;
}

/** Kinds CRIU reads with "exactly one entry". */
export const SINGLE_ENTRY = new Set([
  'INVENTORY', 'CORE', 'IDS', 'MM', 'FS', 'CGROUP', 'SECCOMP', 'APPARMOR', 'CPUINFO', 'AUTOFS', 'UTSNS', 'IPC_VAR',
  'NETNS', 'USERNS', 'TIMENS', 'PIDNS', 'STATS', 'TCP_STREAM', 'CREDS',
]);
