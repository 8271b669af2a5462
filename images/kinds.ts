// Image kinds: for each magic name, the message its entries hold, the file layout, and the
// extra payload handler. Mirrors CRIT's handler table and adds the kinds CRIT cannot read
// (SIGNAL/PSIGNAL, BINFMT_MISC, PIDFD) and the amdgpu plugin files.
import { EXTRA_HANDLERS, ExtraHandler } from './extras';

export type Layout = 'entries' | 'pagemap' | 'ghost' | 'amdgpu' | 'amdgpu-raw';

export interface Kind {
  name: string;
  message: string;
  layout: Layout;
  extra?: ExtraHandler;
}

const MESSAGES: Record<string, string> = {
  INVENTORY: 'inventory_entry', FDINFO: 'fdinfo_entry', CORE: 'core_entry', IDS: 'task_kobj_ids_entry', CREDS: 'creds_entry',
  UTSNS: 'utsns_entry', TIMENS: 'timens_entry', PIDNS: 'pidns_entry', IPC_VAR: 'ipc_var_entry', FS: 'fs_entry',
  GHOST_FILE: 'ghost_file_entry', MM: 'mm_entry', CGROUP: 'cgroup_entry', TCP_STREAM: 'tcp_stream_entry',
  STATS: 'stats_entry', PAGEMAP: 'pagemap_entry', PSTREE: 'pstree_entry', REG_FILES: 'reg_file_entry',
  NS_FILES: 'ns_file_entry', EVENTFD_FILE: 'eventfd_file_entry', EVENTPOLL_FILE: 'eventpoll_file_entry',
  EVENTPOLL_TFD: 'eventpoll_tfd_entry', SIGNALFD: 'signalfd_entry', TIMERFD: 'timerfd_entry',
  INOTIFY_FILE: 'inotify_file_entry', INOTIFY_WD: 'inotify_wd_entry', FANOTIFY_FILE: 'fanotify_file_entry',
  FANOTIFY_MARK: 'fanotify_mark_entry', VMAS: 'vma_entry', PIPES: 'pipe_entry', FIFO: 'fifo_entry',
  SIGACT: 'sa_entry', NETLINK_SK: 'netlink_sk_entry', REMAP_FPATH: 'remap_file_path_entry', MNTS: 'mnt_entry',
  TTY_FILES: 'tty_file_entry', TTY_INFO: 'tty_info_entry', TTY_DATA: 'tty_data_entry', FILE_LOCKS: 'file_lock_entry',
  RLIMIT: 'rlimit_entry', UNIXSK: 'unix_sk_entry', INETSK: 'inet_sk_entry', PACKETSK: 'packet_sock_entry',
  ITIMERS: 'itimer_entry', POSIX_TIMERS: 'posix_timer_entry', NETDEV: 'net_device_entry',
  PIPES_DATA: 'pipe_data_entry', FIFO_DATA: 'pipe_data_entry', SK_QUEUES: 'sk_packet_entry',
  IPCNS_SHM: 'ipc_shm_entry', IPCNS_SEM: 'ipc_sem_entry', IPCNS_MSG: 'ipc_msg_entry', NETNS: 'netns_entry',
  USERNS: 'userns_entry', SECCOMP: 'seccomp_entry', AUTOFS: 'autofs_entry', FILES: 'file_entry',
  CPUINFO: 'cpuinfo_entry', MEMFD_INODE: 'memfd_inode_entry', BPFMAP_FILE: 'bpfmap_file_entry',
  BPFMAP_DATA: 'bpfmap_data_entry', APPARMOR: 'apparmor_entry', EXT_FILES: 'ext_file_entry',
  IRMAP_CACHE: 'irmap_cache_entry', TUNFILE: 'tunfile_entry',
  // beyond CRIT: kinds it has a magic for but no handler
  SIGNAL: 'siginfo_entry', BINFMT_MISC: 'binfmt_misc_entry', PIDFD: 'pidfd_entry',
};

/** amdgpu plugin files: no magic, an 8-byte length header; named by these pseudo-magics in JSON. */
export const AMDGPU_KINDS: Record<string, { prefix: RegExp; message?: string }> = {
  AMDGPU_KFD: { prefix: /^amdgpu-kfd-/, message: 'criu_kfd' },
  AMDGPU_RENDER_NODE: { prefix: /^amdgpu-renderD-/, message: 'criu_render_node' },
  AMDGPU_DMABUF: { prefix: /^amdgpu-dmabuf_/, message: 'criu_dmabuf_node' },
  AMDGPU_PAGES: { prefix: /^amdgpu-pages-/ },
  AMDGPU_DRM_PAGES: { prefix: /^amdgpu-drm-pages-/ },
};

const kinds = new Map<string, Kind>();

export function kindFor(name: string): Kind | undefined {
  let k = kinds.get(name);
  if (k) return k;
  const amd = AMDGPU_KINDS[name];
  if (amd) {
    k = amd.message ? { name, message: amd.message, layout: 'amdgpu' } : { name, message: '', layout: 'amdgpu-raw' };
  } else {
    const message = MESSAGES[name];
    if (!message) return undefined;
    const layout: Layout = name === 'PAGEMAP' ? 'pagemap' : name === 'GHOST_FILE' ? 'ghost' : 'entries';
    k = { name, message, layout, extra: EXTRA_HANDLERS[name] };
  }
  kinds.set(name, k);
  return k;
}

/** The amdgpu pseudo-magic for a file name, if it is a plugin file. */
export function amdgpuKindOfFile(fileName: string): string | undefined {
  const base = fileName.replace(/^.*\//, '');
  for (const [name, k] of Object.entries(AMDGPU_KINDS)) if (k.prefix.test(base)) return name;
  return undefined;
}
