// State shared by the restore steps: the tracer, the image set and every process created so far.
import type { Tracer } from '../../native';
import type { Log } from '../log';
import type { ImageSet, TaskImage } from './imageset';
import type { Remote } from './remote';
import type { ShmemRestorer } from './shmem';
import type { UnixRestorer } from './unix';
import type { InetRestorer } from '../kinds/inet';
import type { PacketRestorer } from '../kinds/packet';
import type { NetlinkRestorer } from '../kinds/netlink-sock';
import type { TtyRestorer } from './tty';
import type { DeviceFiles } from '../plugins/glue';
import type { CgroupOptions, CgroupRestore } from '../kinds/cgroup';

export interface RestoreOptions {
  dir: string;
  detach: boolean;
  shellJob: boolean;
  pidns: boolean;
  log: Log;
  /** how long to wait for a PID still held by a zombie (ms) */
  pidWaitMs?: number;
  /** leave every task stopped (SIGSTOP) once restored */
  leaveStopped?: boolean;
  /** --manage-cgroups and its companions (default: CRIU's soft mode) */
  cgroups?: CgroupOptions;
  /** --tcp-close: TCP connections are made closed (their state is dropped) */
  tcpClose?: boolean;
  /** --network-lock skip: connections sending while they are made are not locked */
  networkLock?: 'nftables' | 'iptables' | 'skip';
  /** called once the tree runs, before a non-detached restore waits for its root */
  onRunning?: (stats: import('./index').RestoreStats) => void;
}

export interface Proc {
  img: TaskImage;
  /** PID in the engine's namespace */
  host: number;
  /** thread id in the image -> in the engine's namespace */
  tids: Map<number, number>;
  remote: Remote;
}

export interface Ctx {
  tracer: Tracer;
  set: ImageSet;
  opts: RestoreOptions;
  log: Log;
  procs: Map<number, Proc>;
  /** host PIDs of every process created, in creation order (killed on failure) */
  created: number[];
  /** image PIDs of the zombies made */
  zombies: number[];
  /** PID 1 of the new PID namespace (--pidns) */
  init?: number;
  /** the engine's end of the socket that carries fds into the stubs, and its number there */
  transport: { engineFd: number; stubFd: number; number: number };
  /** shared memory objects, unix sockets and terminals the engine made for the tasks */
  shmem: ShmemRestorer;
  unix: UnixRestorer;
  inet: InetRestorer;
  packet: PacketRestorer;
  netlink: NetlinkRestorer;
  ttys: TtyRestorer;
  /** EXT files and device mappings made by the plugins, before any task */
  devices?: DeviceFiles;
  /** cgroup.img: directories, properties and the tasks' moves (kinds/cgroup) */
  cgroups?: CgroupRestore;
  /** pages of forked children compared with their parent's, and those left shared (kinds/cow-memory) */
  cowPages: { compared: number; shared: number };
  /** files.img ids that are a dead process's /proc directory, with its PID (kinds/deadproc) */
  deadProcs: Map<number, number>;
  /** forks a helper child of a task with the given PID and exit signal (restore/tree) */
  forkHelper: (parent: Proc, pid: number, exitSignal: number) => number;
}

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Reaps a child of ours that was killed: a traced one reports its death first, then is reaped. */
export function reapKilled(tracer: Tracer, host: number): void {
  for (let i = 0; i < 4; i++) {
    try {
      const st = tracer.wait(host, 2000);
      if (st.exited || st.signaled) continue;
    } catch {
      return; // ECHILD: reaped, or never ours
    }
  }
}
