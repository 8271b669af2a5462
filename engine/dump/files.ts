// files.img: every open-file object the dumped tasks refer to (fds, mapped files, cwd/root),
// each with one id; descriptors shared between fds or tasks are found with kcmp(KCMP_FILE).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, KCMP_FILE } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import { readProc, readLinkProc, procPath } from '../proc/read';
import type { NewEntry } from '../../images/files';
import { ShmemTable, onShmemMount } from './shmem';
import { UnixSockets } from './unix';
import { InetSockets, AF_INET, AF_INET6 } from '../kinds/inet';
import { PacketSockets, AF_PACKET, FD_TYPE_PACKETSK } from '../kinds/packet';
import { NetlinkSockets, AF_NETLINK, FD_TYPE_NETLINKSK } from '../kinds/netlink-sock';
import { inotifyWdEntries } from './fsnotify';
import { TtyTable, CttyOwner, isTtyDevice, major, minor } from './tty';
import type { PluginHost } from '../plugins/host';
import { dumpExtFile, FD_TYPE_EXT } from '../plugins/glue';
import { FileLockTable } from '../kinds/filelocks';
import { GhostFiles, unlinkedName } from '../kinds/ghost';
import { deadProcDir, REMAP_PROCFS } from '../kinds/deadproc';
import { pidfdEntry, isPidfdLink, FD_TYPE_PIDFD } from '../kinds/pidfd';
import { nsFileEntry, nsKindOf, FD_TYPE_NS } from '../kinds/nsfile';
import { fanotifyEntry, FANOTIFY_LINK, FD_TYPE_FANOTIFY } from '../kinds/fanotify';

/** What dumping an fd may need from its task beyond /proc. */
export interface TaskFdContext {
  netNsId: number;
  /** real and effective uid of the task (fown_entry records them for an owned file) */
  uid: number;
  euid: number;
  /** a pidfd of the task (opened once, closed by the caller) */
  pidfd(): number;
  /** is this PID one of the dumped processes? */
  inTree?: (pid: number) => boolean;
  /** the id the dump gave the namespace with this /proc link, if a dumped task is in it */
  nsId?: (link: string) => number | undefined;
}

const SOL_SOCKET = 1, SO_DOMAIN = 39, AF_UNIX = 1;
const SOCKET_FAMILIES: Record<number, string> = { 40: 'vsock', 38: 'AF_ALG', 31: 'bluetooth' };
const F_GETSIG = 11;

/** files.img types the restore can make in the engine, so send in flight again: reg, pipe, fifo, inet, unix, memfd */
const IN_FLIGHT_TYPES = new Set([1, 2, 3, 4, 5, 18]);
/** and those the task holding the socket makes (eventfd, epoll, inotify, signalfd, timerfd) */
const MADE_IN_TASK_TYPES = new Set([6, 7, 8, 9, 17]);

/** The SIGIO owner of the task's fd (F_GETOWN_EX / F_GETSIG on a duplicate); zeros when none, as CRIU. */
export function fownOf(ctx: TaskFdContext, fd: number): Msg {
  const n = native();
  const dup = n.pidfdGetfd(ctx.pidfd(), fd);
  try {
    const owner = n.getOwnerEx(dup);
    if (owner.pid === 0) return zeroFown();
    return { uid: ctx.uid, euid: ctx.euid, signum: n.fcntl(dup, F_GETSIG), pid_type: owner.type, pid: owner.pid };
  } finally {
    n.close(dup);
  }
}

export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_APPEND = 0o2000;
const O_DIRECT = 0o40000;
const FIONREAD = 0x541b;
const DEFAULT_PIPE_SIZE = 16 * 4096;
export const O_CLOEXEC = 0o2000000;
const O_PATH = 0o10000000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

export function zeroFown(): Msg {
  return { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
}

export interface FdInfo {
  pos: bigint;
  flags: number;
  mntId: number;
  ino: number;
  fields: Map<string, string>;
  lines: string[];
}

export function parseFdinfo(text: string): FdInfo {
  const fields = new Map<string, string>();
  const lines = text.split('\n');
  for (const line of lines) {
    const i = line.indexOf(':');
    if (i > 0 && !fields.has(line.slice(0, i))) fields.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return {
    pos: BigInt(fields.get('pos') ?? '0'),
    flags: parseInt(fields.get('flags') ?? '0', 8),
    mntId: Number(fields.get('mnt_id') ?? '-1'),
    ino: Number(fields.get('ino') ?? '0'),
    fields,
    lines,
  };
}

/** The 20-byte GNU build-id of an ELF file as CRIU stores it (five little-endian u32). */
export function elfBuildId(file: string): number[] | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const hdr = Buffer.alloc(64);
    if (fs.readSync(fd, hdr, 0, 64, 0) < 64 || hdr.readUInt32BE(0) !== 0x7f454c46 || hdr[4] !== 2) return undefined;
    const phoff = Number(hdr.readBigUInt64LE(32));
    const phentsize = hdr.readUInt16LE(54);
    const phnum = hdr.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    fs.readSync(fd, ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const p = i * phentsize;
      if (ph.readUInt32LE(p) !== 4) continue; // PT_NOTE
      const off = Number(ph.readBigUInt64LE(p + 8));
      const size = Number(ph.readBigUInt64LE(p + 32));
      const notes = Buffer.alloc(size);
      fs.readSync(fd, notes, 0, size, off);
      for (let q = 0; q + 12 <= size; ) {
        const namesz = notes.readUInt32LE(q), descsz = notes.readUInt32LE(q + 4), type = notes.readUInt32LE(q + 8);
        const name = notes.subarray(q + 12, q + 12 + namesz).toString('latin1');
        const desc = q + 12 + ((namesz + 3) & ~3);
        if (type === 3 && name.startsWith('GNU') && descsz === 20) {
          const words: number[] = [];
          for (let w = 0; w < 5; w++) words.push(notes.readUInt32LE(desc + w * 4));
          return words;
        }
        q = desc + ((descsz + 3) & ~3);
      }
    }
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

const buildIds = new Map<string, number[] | undefined>();

/**
 * elfBuildId through a cache keyed by the file's identity and change times, so that a look-up
 * made before the tree was frozen (see dump's rehearsal) saves the reads inside the window.
 */
export function cachedBuildId(file: string, st: fs.Stats): number[] | undefined {
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  if (buildIds.has(key)) return buildIds.get(key);
  const b = elfBuildId(file);
  buildIds.set(key, b);
  return b;
}

/** Collects file_entry messages and the extra per-kind images (pipes-data, ...). */
export class FileTable {
  private nextId = 1;
  readonly entries: Msg[] = [];
  private byDescription = new Map<string, { pid: number; fd: number; id: number }[]>();
  private mapped = new Map<string, number>();
  readonly pipesData: NewEntry[] = [];
  readonly fifoData: NewEntry[] = [];
  /** the POSIX, flock and OFD locks the tasks hold (filelocks.img) */
  readonly lockTable = new FileLockTable();
  readonly locks: Msg[] = this.lockTable.entries;
  private pipesDumped = new Set<number>();
  readonly shmem = new ShmemTable();
  readonly unix = new UnixSockets();
  readonly inet = new InetSockets();
  readonly packet = new PacketSockets();
  readonly netlink = new NetlinkSockets();
  readonly ttys: TtyTable;
  /** device plugins, asked about fds the core has no kind for (and device files) */
  plugins?: PluginHost;
  /** where unlinked files' contents go; without it an unlinked file is refused */
  ghosts?: GhostFiles;

  /**
   * allocPagesId hands out pages-<id>.img numbers in CRIU's order (shared with the task pagemaps);
   * cttys maps a controlling terminal to its session and foreground group within the tree.
   */
  constructor(private allocPagesId: () => number, cttys: () => Map<number, CttyOwner> = () => new Map()) {
    this.ttys = new TtyTable(cttys);
  }

  allocId(): number {
    return this.nextId++;
  }

  /** A REG entry for a path seen through `via` (a /proc link that stats the open object). */
  private regEntry(id: number, name: string, via: string, flags: number, pos: bigint, withBuildId: boolean, fown: Msg = zeroFown()): Msg {
    let st: fs.Stats;
    try {
      st = fs.statSync(via);
    } catch (e) {
      throw new EngineError(`cannot stat ${via}: ${(e as Error).message}`);
    }
    const reg: Msg = { id, flags, pos, fown, name };
    if ((st.mode & S_IFMT) === S_IFREG && !(flags & O_APPEND)) reg.size = st.size;
    reg.mode = st.mode;
    // no build id for a file a read open would break the lease of
    if (withBuildId && (st.mode & S_IFMT) === S_IFREG && !this.lockTable.leases.reopenBreaks(via)) {
      const b = cachedBuildId(via, st);
      if (b) reg.build_id = b;
    }
    return reg;
  }

  /** The name to record for file `id` seen as `link`: an unlinked file is saved as a ghost. */
  private linkedName(id: number, link: string, via: string, who: string): string {
    if (unlinkedName(link) === undefined) return link;
    if (!this.ghosts) throw new UnsupportedError(`${who}: unlinked file ${link} (ghost files are not enabled)`);
    this.lockTable.leases.refuseReopen(via, who, `unlinked file ${link}`);
    return this.ghosts.remap(id, link, via, who) ?? link;
  }

  /** The id of a mapped file (exe, libraries, file mappings), one per inode. */
  mappedFile(pid: number, name: string, start: bigint, end: bigint, dev: string, inode: number, shared: boolean): number {
    const key = `${dev}:${inode}:${shared ? 's' : 'p'}`;
    const known = this.mapped.get(key);
    if (known !== undefined) return known;
    const id = this.allocId();
    const via = procPath(pid, 'map_files', `${start.toString(16)}-${end.toString(16)}`);
    const recorded = this.linkedName(id, name, via, `task ${pid} mapping ${start.toString(16)}-${end.toString(16)}`);
    this.entries.push({ type: 1, id, reg: this.regEntry(id, recorded, via, shared ? O_RDWR : 0, 0n, true) });
    this.mapped.set(key, id);
    return id;
  }

  /** The MEMFD file of a shmem-backed mapping (memfd or anonymous shared), one per inode. */
  memfdMapping(pid: number, name: string, start: bigint, end: bigint, inode: number, shared: boolean): number {
    const key = `memfd:${inode}:${shared ? 's' : 'p'}`;
    const known = this.mapped.get(key);
    if (known !== undefined) return known;
    const via = procPath(pid, 'map_files', `${start.toString(16)}-${end.toString(16)}`);
    this.lockTable.leases.refuseReopen(via, `task ${pid} mapping ${start.toString(16)}-${end.toString(16)}`, `memfd ${name}`);
    const obj = this.shmem.object(pid, via, name, inode, this.allocPagesId);
    const id = this.allocId();
    this.entries.push({ type: 18, id, memfd: { id, flags: 0, pos: 0n, fown: zeroFown(), inode_id: obj.inodeId } });
    this.mapped.set(key, id);
    return id;
  }

  /** exe: the same object as its mappings when it is mapped. */
  exeFile(pid: number, exePath: string, vmas: { name: string; start: bigint; end: bigint; dev: string; inode: number; shared: boolean }[]): number {
    const v = vmas.find((m) => m.name === exePath && !m.shared);
    if (v) return this.mappedFile(pid, v.name, v.start, v.end, v.dev, v.inode, false);
    const id = this.allocId();
    const recorded = this.linkedName(id, exePath, procPath(pid, 'exe'), `task ${pid} exe`);
    this.entries.push({ type: 1, id, reg: this.regEntry(id, recorded, procPath(pid, 'exe'), 0, 0n, true) });
    return id;
  }

  /** cwd / root: a directory REG entry per task (CRIU does not share them). */
  fsDir(pid: number, which: 'cwd' | 'root'): number {
    const id = this.allocId();
    const link = readLinkProc(pid, which);
    // the /proc directory of a process gone since (kinds/deadproc)
    const dead = this.ghosts ? deadProcDir(link, procPath(pid, which)) : undefined;
    if (dead !== undefined) {
      this.ghosts!.remaps.push({ orig_id: id, remap_id: dead, remap_type: REMAP_PROCFS });
      this.entries.push({ type: 1, id, reg: this.regEntry(id, `/proc/${dead}`, procPath(pid, which), 0, 0n, false) });
      return id;
    }
    const name = this.linkedName(id, link, procPath(pid, which), `task ${pid} ${which}`);
    this.entries.push({ type: 1, id, reg: this.regEntry(id, name, procPath(pid, which), 0, 0n, false) });
    return id;
  }

  /** An id already given to the same open file description, if any. */
  private shared(pid: number, fd: number, key: string): number | undefined {
    for (const o of this.byDescription.get(key) ?? []) {
      try {
        if (native().kcmp(pid, o.pid, KCMP_FILE, fd, o.fd) === 0) return o.id;
      } catch {
        /* not comparable */
      }
    }
    return undefined;
  }

  private remember(pid: number, fd: number, key: string, id: number): void {
    let l = this.byDescription.get(key);
    if (!l) this.byDescription.set(key, (l = []));
    l.push({ pid, fd, id });
  }

  /** Dumps one fd; returns its fdinfo_entry. */
  dumpFd(pid: number, fd: number, ctx: TaskFdContext): Msg {
    const link = readLinkProc(pid, 'fd', String(fd));
    const info = parseFdinfo(readProc(pid, 'fdinfo', String(fd)));
    const cloexec = (info.flags & O_CLOEXEC) !== 0 ? 1 : 0;
    const flags = info.flags & ~O_CLOEXEC;
    const known = this.shared(pid, fd, link);
    let kind = fileKind(link);
    // a memfd lives on an internal shmem or hugetlbfs mount, as does anonymous shared memory
    // opened through map_files ("/dev/zero (deleted)"); a real file may be named /memfd:...
    if (kind.name === 'memfd' || kind.name === 'reg') kind = onShmemMount(procPath(pid, 'fd', String(fd))) ? { name: 'memfd', type: 18 } : { name: 'reg', type: 1 };
    let st: fs.Stats | undefined;
    if (kind.name === 'reg') {
      st = fs.statSync(procPath(pid, 'fd', String(fd)));
      if (st.isFIFO()) kind = { name: 'fifo', type: 3 };
      else if (st.isCharacterDevice() && isTtyDevice(st.rdev)) kind = { name: 'tty', type: 11 };
      else if (st.isCharacterDevice() && [4, 5].includes(major(st.rdev)))
        throw new UnsupportedError(`task ${pid} fd ${fd}: terminal ${link} (device ${major(st.rdev)}:${minor(st.rdev)}) is not supported (pseudo-terminals, /dev/tty, /dev/console and virtual terminals 1-63 are)`);
    }
    let domain = 0;
    if (kind.name === 'socket') {
      const probe = native().pidfdGetfd(ctx.pidfd(), fd);
      try {
        domain = native().getsockopt(probe, SOL_SOCKET, SO_DOMAIN, 4).readInt32LE(0);
      } finally {
        native().close(probe);
      }
      if (domain === AF_INET || domain === AF_INET6) kind = { name: 'inet', type: 4 };
      else if (domain === AF_PACKET) kind = { name: 'packet', type: FD_TYPE_PACKETSK };
      else if (domain === AF_NETLINK) kind = { name: 'netlink', type: FD_TYPE_NETLINKSK };
      else if (domain !== AF_UNIX) throw new UnsupportedError(`task ${pid} fd ${fd}: ${SOCKET_FAMILIES[domain] ?? 'family ' + domain} socket (${link}) is not supported`);
    }
    if (known !== undefined) {
      this.lockTable.collect(pid, fd, known, info.lines);
      return { id: known, flags: cloexec, type: kind.type, fd };
    }
    const id = this.allocId();
    this.lockTable.collect(pid, fd, id, info.lines);
    this.remember(pid, fd, link, id);
    // an O_PATH fd has no owner to ask about (fcntl says EBADF)
    const fown = flags & O_PATH ? zeroFown() : fownOf(ctx, fd);
    if ((kind.name === 'other' || st?.isCharacterDevice() || link.startsWith('/dmabuf:')) && dumpExtFile(this.plugins, ctx.pidfd(), pid, fd, id, link)) {
      this.entries.push({ type: FD_TYPE_EXT, id, ext: { id, fown } });
      return { id, flags: cloexec, type: FD_TYPE_EXT, fd };
    }
    switch (kind.name) {
      case 'memfd': {
        const via = procPath(pid, 'fd', String(fd));
        this.lockTable.leases.refuseReopen(via, `task ${pid} fd ${fd}`, `memfd ${link}`);
        const obj = this.shmem.object(pid, via, link, info.ino || fs.statSync(via).ino, this.allocPagesId);
        this.entries.push({ type: 18, id, memfd: { id, flags, pos: info.pos, fown, inode_id: obj.inodeId } });
        break;
      }
      case 'socket': {
        const ino = Number(/\[(\d+)\]/.exec(link)![1]);
        const dupFd = () => native().pidfdGetfd(ctx.pidfd(), fd);
        const inFlight = (f: number, where: string) => this.inFlight(f, where, ctx.netNsId, pid);
        const madeInTask = (fileId: number) => this.madeInTaskInFlight.has(fileId);
        this.entries.push(...this.unix.dump(id, ino, flags, { pid, fd, netNsId: ctx.netNsId, fown, dupFd, inFlight, madeInTask }));
        break;
      }
      case 'inet': {
        const ino = Number(/\[(\d+)\]/.exec(link)![1]);
        const dupFd = () => native().pidfdGetfd(ctx.pidfd(), fd);
        this.entries.push(this.inet.dump(id, ino, flags, { pid, fd, family: domain, netNsId: ctx.netNsId, fown, dupFd }));
        break;
      }
      case 'packet':
      case 'netlink': {
        const ino = Number(/\[(\d+)\]/.exec(link)![1]);
        const sk = { pid, fd, netNsId: ctx.netNsId, fown, dupFd: () => native().pidfdGetfd(ctx.pidfd(), fd) };
        this.entries.push(kind.name === 'packet' ? this.packet.dump(id, ino, flags, sk) : this.netlink.dump(id, ino, flags, sk));
        break;
      }
      case 'tty': {
        const dup = native().pidfdGetfd(ctx.pidfd(), fd);
        let infoId: number;
        try {
          infoId = this.ttys.info(dup, st!, `task ${pid} fd ${fd}`, { pid, fd, flags });
        } finally {
          native().close(dup);
        }
        // CRIU writes the path as a REG entry of its own, then the TTY entry that points at it; a
        // slave whose master is gone reads "(deleted)", devpts names never do otherwise
        const regId = this.allocId();
        const name = major(st!.rdev) === 136 ? link.replace(/ \(deleted\)$/, '') : link;
        this.entries.push({ type: 1, id: regId, reg: this.regEntry(regId, name, procPath(pid, 'fd', String(fd)), flags, 0n, false, fown) });
        this.entries.push({ type: 11, id, tty: { id, tty_info_id: infoId, flags, fown, regf_id: regId } });
        break;
      }
      case 'reg':
        this.entries.push({
          type: 1, id,
          reg: this.regEntry(id, this.linkedName(id, link, procPath(pid, 'fd', String(fd)), `task ${pid} fd ${fd}`), procPath(pid, 'fd', String(fd)), flags, info.pos, false, fown),
        });
        break;
      case 'pipe': {
        const pipeId = Number(/\[(\d+)\]/.exec(link)![1]);
        // packet mode: the boundaries of the queued writes cannot be read back
        if (flags & O_DIRECT) throw new UnsupportedError(`task ${pid} fd ${fd}: pipe ${link} in packet mode (O_DIRECT) is not supported`);
        this.entries.push({ type: 2, id, pipe: { id, pipe_id: pipeId, flags, fown } });
        this.dumpPipeData(pid, fd, pipeId, this.pipesData);
        break;
      }
      case 'fifo': {
        // as CRIU: the path as a REG entry of its own, then the FIFO entry naming it; the
        // buffered bytes go to fifo-data.img keyed by the FIFO's inode
        const regId = this.allocId();
        const via = procPath(pid, 'fd', String(fd));
        this.entries.push({ type: 1, id: regId, reg: this.regEntry(regId, this.linkedName(regId, link, via, `task ${pid} fd ${fd}`), via, flags, 0n, false, fown) });
        this.entries.push({ type: 3, id, fifo: { id, pipe_id: st!.ino, regf_id: regId } });
        this.dumpPipeData(pid, fd, st!.ino, this.fifoData);
        break;
      }
      case 'eventfd':
        this.entries.push({ type: 6, id, efd: { id, flags, fown, counter: BigInt('0x' + (info.fields.get('eventfd-count') ?? '0')) } });
        break;
      case 'signalfd':
        this.entries.push({ type: 9, id, sgfd: { id, flags, fown, sigmask: BigInt('0x' + (info.fields.get('sigmask') ?? '0')) } });
        break;
      case 'timerfd':
        this.entries.push({ type: 17, id, tfd: timerfdEntry(id, flags, info, fown) });
        break;
      case 'inotify': {
        // events queued are lost to a new instance: refused (FIONREAD counts them, reading nothing)
        const dup = native().pidfdGetfd(ctx.pidfd(), fd);
        const queued = Buffer.alloc(4);
        try {
          native().ioctl(dup, FIONREAD, queued);
        } finally {
          native().close(dup);
        }
        if (queued.readInt32LE(0)) throw new UnsupportedError(`task ${pid} fd ${fd}: inotify instance with ${queued.readInt32LE(0)} bytes of events queued and not read yet (they would be lost; not supported)`);
        this.entries.push({ type: 8, id, ify: { id, flags, fown, wd: inotifyWdEntries(info.lines, `task ${pid} fd ${fd}`) } });
        break;
      }
      case 'fanotify':
        this.entries.push({ type: FD_TYPE_FANOTIFY, id, ffy: fanotifyEntry(id, flags, fown, info.lines, { pid, fd, dupFd: () => native().pidfdGetfd(ctx.pidfd(), fd) }) });
        break;
      case 'eventpoll':
        this.entries.push({ type: 7, id, epfd: { id, flags, fown, tfd: this.epollTargets(pid, fd, info) } });
        break;
      case 'ns':
        this.entries.push({ type: FD_TYPE_NS, id, nsf: nsFileEntry(id, flags, link, ctx.nsId ?? (() => undefined), `task ${pid} fd ${fd}`) });
        break;
      case 'pidfd':
        this.entries.push({ type: FD_TYPE_PIDFD, id, pidfd: pidfdEntry(id, flags, info, procPath(pid, 'fd', String(fd)), fown, ctx.inTree ?? (() => false), `task ${pid} fd ${fd}`) });
        break;
      default:
        throw new UnsupportedError(`task ${pid} fd ${fd}: unsupported file kind ${link}`);
    }
    return { id, flags: cloexec, type: kind.type, fd };
  }

  /** watches whose file is held under another fd number than the one it was added with */
  private epollFixups: { pid: number; target: Msg; holder: number }[] = [];

  /**
   * The watches of epoll `epfd`. A watch is keyed by the file and the fd number it was added
   * with; that number may since have been closed or given to another file. kcmp(KCMP_EPOLL_TFD)
   * tells whether the fd still holds the watched file; when not, the fd of the task that does is
   * found and named in the watch's id (its file's id once the task's fds are dumped, see
   * resolveEpollTargets), so that the restore adds the watch with that file under the recorded
   * number. A watched file no fd of the task holds is refused.
   */
  private epollTargets(epollPid: number, epfd: number, info: FdInfo): Msg[] {
    const targets = epollTargets(info);
    const n = native();
    const seen = new Map<number, number>();
    let fds: number[] | undefined;
    // an epoll in flight is held by the engine; its watches name fds of the task whose socket has it
    const pid = this.inFlightHolder ?? epollPid;
    const holds = (fd: number, t: Msg, toff: number) => {
      try {
        return n.kcmpEpollTfd(pid, epollPid, fd, epfd, t.tfd as number, toff) === 0;
      } catch {
        return false; // no such fd
      }
    };
    for (const t of targets) {
      const tfd = t.tfd as number;
      const toff = seen.get(tfd) ?? 0;
      seen.set(tfd, toff + 1);
      if (holds(tfd, t, toff)) continue;
      fds ??= fs.readdirSync(procPath(pid, 'fd')).map(Number).sort((a, b) => a - b);
      const holder = fds.find((fd) => fd !== tfd && holds(fd, t, toff));
      if (holder === undefined)
        throw new UnsupportedError(`task ${epollPid} fd ${epfd}: epoll watches a file added as fd ${tfd} that no fd of ${epollPid === pid ? 'the task' : `task ${pid}`} holds any more (unsupported)`);
      this.epollFixups.push({ pid, target: t, holder });
    }
    return targets;
  }

  /** Names, in each watch found under another fd, the files.img id of the file it watches. */
  resolveEpollTargets(pid: number, fdinfo: Msg[]): void {
    const idOf = new Map(fdinfo.map((e) => [e.fd as number, e.id as number]));
    for (const f of this.epollFixups.filter((x) => x.pid === pid)) f.target.id = idOf.get(f.holder)!;
    this.epollFixups = this.epollFixups.filter((x) => x.pid !== pid);
  }

  /**
   * A file in flight (SCM_RIGHTS in a socket's queue), received by the peek as the engine's fd
   * `fd`: dumped like a task's fd, its entry named by the queue, no fdinfo. The fd stays open until
   * closeInFlight, so that its number is not reused by another file while kcmp still compares it.
   * Only kinds the engine itself makes at restore can travel: those made by injection in a task
   * (eventfd, epoll, ...), terminals, device files and pidfds are refused, as are locked files.
   */
  inFlight(fd: number, where: string, netNsId: number, holder: number): number {
    this.flying.push(fd);
    const self = process.pid;
    const info = parseFdinfo(readProc(self, 'fdinfo', String(fd)));
    const link = readLinkProc(self, 'fd', String(fd));
    const what = `${where}: ${link} in flight (SCM_RIGHTS)`;
    if (info.lines.some((l) => l.startsWith('lock:'))) throw new UnsupportedError(`${what} holds a file lock (unsupported)`);
    let entry: Msg;
    const outer = this.inFlightHolder;
    this.inFlightHolder = holder;
    try {
      entry = this.dumpFd(self, fd, { netNsId, uid: process.getuid!(), euid: process.geteuid!(), pidfd: () => this.selfPidfd() });
    } catch (e) {
      if (e instanceof UnsupportedError) throw new UnsupportedError(`${what}: ${e.message.replace(/^task \d+ fd \d+: /, '')}`);
      throw e;
    } finally {
      this.inFlightHolder = outer;
    }
    const type = entry.type as number;
    if (!IN_FLIGHT_TYPES.has(type) && !MADE_IN_TASK_TYPES.has(type)) throw new UnsupportedError(`${what}: a file of this kind in flight is not supported`);
    if (MADE_IN_TASK_TYPES.has(type)) this.madeInTaskInFlight.add(entry.id as number);
    return entry.id as number;
  }

  private ownPidfd = -1;
  private flying: number[] = [];
  /** while a file in flight is dumped: the task whose socket holds it (an epoll's watches name its fds) */
  private inFlightHolder: number | undefined;
  /** files in flight of kinds a task makes at restore (the task holding the socket makes them) */
  private madeInTaskInFlight = new Set<number>();

  private selfPidfd(): number {
    if (this.ownPidfd < 0) this.ownPidfd = native().pidfdOpen(process.pid);
    return this.ownPidfd;
  }

  /** Closes the engine's fds of files in flight (at the end of the dump, or when it fails). */
  closeInFlight(): void {
    for (const fd of this.flying.splice(0)) try { native().close(fd); } catch { /* closed */ }
    if (this.ownPidfd >= 0) native().close(this.ownPidfd);
    this.ownPidfd = -1;
  }

  /** Copies the queued bytes of a pipe or FIFO without consuming them (tee into an engine pipe). */
  private dumpPipeData(pid: number, fd: number, pipeId: number, into: NewEntry[]): void {
    const key = into === this.fifoData ? -pipeId : pipeId;
    if (this.pipesDumped.has(key)) return;
    this.pipesDumped.add(key);
    const n = native();
    // a read end of the same pipe, even when the task holds only the write end
    const src = fs.openSync(procPath(pid, 'fd', String(fd)), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const F_GETPIPE_SZ = 1032, F_SETPIPE_SZ = 1031;
    try {
      const size = n.fcntl(src, F_GETPIPE_SZ);
      const [r, w] = n.pipe2(fs.constants.O_NONBLOCK);
      try {
        n.fcntl(w, F_SETPIPE_SZ, size);
        let copied = 0;
        try {
          copied = n.tee(src, w, size, 2 /* SPLICE_F_NONBLOCK */);
        } catch (e) {
          if ((e as { code?: string }).code !== 'EAGAIN') throw e;
        }
        const queued = Buffer.alloc(4);
        n.ioctl(src, FIONREAD, queued);
        if (copied !== queued.readInt32LE(0)) throw new EngineError(`task ${pid} fd ${fd}: copied ${copied} of the ${queued.readInt32LE(0)} bytes queued in the pipe`);
        const data = Buffer.alloc(copied);
        let got = 0;
        while (got < copied) {
          const n = fs.readSync(r, data, got, copied - got, null);
          // a read ends early only at a packet (bytes written through an O_DIRECT end)
          if (n < copied - got) throw new UnsupportedError(`task ${pid} fd ${fd}: pipe ${pipeId} holds packets written in packet mode (O_DIRECT), whose boundaries are not restored`);
          got += n;
        }
        // an empty pipe too when its buffer is not the default one (16 pages, what the restore gets)
        if (copied > 0 || size !== DEFAULT_PIPE_SIZE) into.push({ msg: { pipe_id: pipeId, bytes: copied, size }, extra: { kind: 'blob', data } });
      } finally {
        n.close(r);
        n.close(w);
      }
    } finally {
      fs.closeSync(src);
    }
  }
}

interface Kind {
  name: string;
  type: number;
}

export function fileKind(link: string): Kind {
  if (link.startsWith('/')) return link.startsWith('/memfd:') ? { name: 'memfd', type: 18 } : { name: 'reg', type: 1 };
  if (link.startsWith('pipe:')) return { name: 'pipe', type: 2 };
  if (link.startsWith('socket:')) return { name: 'socket', type: 5 };
  if (link === 'anon_inode:[eventfd]') return { name: 'eventfd', type: 6 };
  if (link === 'anon_inode:[eventpoll]') return { name: 'eventpoll', type: 7 };
  if (link === 'anon_inode:[signalfd]') return { name: 'signalfd', type: 9 };
  if (link === 'anon_inode:[timerfd]') return { name: 'timerfd', type: 17 };
  if (link === 'anon_inode:inotify') return { name: 'inotify', type: 8 };
  if (link === FANOTIFY_LINK) return { name: 'fanotify', type: FD_TYPE_FANOTIFY };
  if (isPidfdLink(link)) return { name: 'pidfd', type: FD_TYPE_PIDFD };
  if (nsKindOf(link)) return { name: 'ns', type: FD_TYPE_NS };
  return { name: 'other', type: 0 };
}

function timerfdEntry(id: number, flags: number, info: FdInfo, fown: Msg): Msg {
  const f = info.fields;
  const pair = (s: string | undefined): [bigint, bigint] => {
    const m = /\(\s*(\d+),\s*(\d+)\)/.exec(s ?? '');
    return m ? [BigInt(m[1]), BigInt(m[2])] : [0n, 0n];
  };
  let [vsec, vnsec] = pair(f.get('it_value'));
  const [isec, insec] = pair(f.get('it_interval'));
  // A periodic timer whose expiry is pending (counted in ticks, not read yet) is re-armed by the
  // kernel only on the next read, so fdinfo shows it_value (0, 0). CRIU's restore hands it_value
  // to timerfd_settime as it is, and a zero value disarms the timer for good: record the next
  // expiry as one interval away (the true one is at most that far; the pending one is in ticks).
  if (!vsec && !vnsec && (isec || insec)) [vsec, vnsec] = [isec, insec];
  return {
    id, flags, fown, clockid: Number(f.get('clockid') ?? 0), ticks: BigInt(f.get('ticks') ?? '0'),
    settime_flags: parseInt(f.get('settime flags') ?? '0', 8), vsec, vnsec, isec, insec,
  };
}

function epollTargets(info: FdInfo): Msg[] {
  const out: Msg[] = [];
  for (const line of info.lines) {
    const m = /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)\s+pos:\s*(\d+)\s+ino:\s*([0-9a-f]+)\s+sdev:\s*([0-9a-f]+)/.exec(line);
    if (!m) continue;
    out.push({
      id: 0, tfd: Number(m[1]), events: parseInt(m[2], 16), data: BigInt('0x' + m[3]),
      dev: parseInt(m[6], 16), inode: parseInt(m[5], 16), pos: BigInt(m[4]),
    });
  }
  return out;
}
