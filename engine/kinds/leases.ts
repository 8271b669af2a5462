// File leases (fcntl F_SETLEASE): the fl_kind 8 entries of filelocks.img, both halves.
// A lease belongs to an open file description and shows in the fdinfo of every fd of it, as
// "LEASE ACTIVE READ|WRITE" or, once a conflicting open has started to break it, as
// "LEASE BREAKING READ|UNLCK", the type it goes to. It is recorded once per description, as CRIU
// does: type F_RDLCK / F_WRLCK, or LEASE_BREAKING | the type it goes to, with the task and fd
// that take it again (its setter, when it still holds the description).
// What a breaking lease was before the break is not in the image. It is a write lease when it
// breaks to a read lease, or when its description is open for writing (no read lease can be
// there); the restore takes a read lease otherwise, so the dump checks the one case left, a
// read-only description breaking to unlocked, with a non-blocking read open of the file, which
// only a write lease turns away (a lease already breaking is not broken again), and refuses a
// write lease there. A breaking lease waited for by an opener outside the tree is refused
// (that opener waits for the old lease, which the restored one would not release).
// The restore takes every lease again through its fd (injected F_SETLEASE; the tasks are still
// privileged), clears the owner F_SETLEASE gives the file (the dumped owner is set later, with
// the other files') so that breaking sends no signal, then breaks the breaking ones with one
// non-blocking open per file, by the engine, of the mode that made it go to that type. As in
// CRIU the break starts a new break period (/proc/sys/fs/lease-break-time): the time the
// original had left is not visible. Leases are checked with F_GETLEASE at the end.
// Elsewhere the dump reads some files through an open of its own (an unlinked file's or a memfd's
// contents, a mapped file's build id): refused, or the build id left out, when the file has a
// lease that such an open would break or wait on (any but an active read lease).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { UnsupportedError, EngineError } from '../errors';
import type { Ctx, Proc } from '../restore/context';
import { ImageError, ImageSet, num } from '../restore/imageset';
import { NR } from '../restore/sys';
import { errnoName } from '../restore/remote';
import { procPath } from '../proc/read';

/** file_lock_entry.flag of a lease, and the bit its type carries while it breaks */
export const FL_LEASE = 8;
export const LEASE_BREAKING = 4;
const F_RDLCK = 0, F_WRLCK = 1, F_UNLCK = 2;
const F_SETOWN = 8, F_SETLEASE = 1024, F_GETLEASE = 1025;
const O_ACCMODE = 3, O_RDONLY = 0, O_WRONLY = 1;
const { O_NONBLOCK, O_NOCTTY } = fs.constants;
const O_CLOEXEC = 0o2000000;
const FILE_REG = 1, FILE_MEMFD = 18;

const TYPE_NAME: Record<number, string> = { [F_RDLCK]: 'read', [F_WRLCK]: 'write', [F_UNLCK]: 'unlocked' };

/** "read lease", "write lease", "lease breaking to read" ... for messages */
export function leaseName(type: number): string {
  return type & LEASE_BREAKING ? `lease breaking to ${TYPE_NAME[type & ~LEASE_BREAKING] ?? type}` : `${TYPE_NAME[type] ?? type} lease`;
}

/** What /proc/locks says about leases: inodes a read open would wait on or break, and the openers waiting. */
interface ProcLeases {
  /** inode numbers with a lease other than an active read lease */
  hazard: Set<number>;
  /** "maj:min:ino" -> PIDs of the openers waiting for a lease of it to break */
  waiters: Map<string, number[]>;
}

// "12: LEASE  BREAKING  UNLCK 31409 fe:00:2146633 0 EOF", "12: -> LEASE  BREAKER   READ 31411 <none>:0 0 EOF"
const PROC_LOCKS_LINE = /^(\d+):\s+(->\s+)?(\S+)\s+(\S+)\s+(\S+)\s+(-?\d+)\s+(\S+)/;

function readProcLeases(): ProcLeases {
  const out: ProcLeases = { hazard: new Set(), waiters: new Map() };
  const inodeOf = new Map<string, string>();
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const m = PROC_LOCKS_LINE.exec(line);
    if (!m) continue;
    const [, id, waiting, cls, state, type, pidText, inode] = m;
    if (!waiting) {
      inodeOf.set(id, inode);
      if (cls === 'LEASE' && !(state === 'ACTIVE' && type === 'READ')) out.hazard.add(Number(inode.split(':')[2]));
    } else if (cls === 'LEASE' && inodeOf.has(id)) {
      const of = inodeOf.get(id)!;
      out.waiters.set(of, [...(out.waiters.get(of) ?? []), Number(pidText)]);
    }
  }
  return out;
}

/** One lease line of an fdinfo, split. */
export interface LeaseLine {
  state: string;
  type: string;
  /** the setter (the process that called F_SETLEASE) */
  setter: number;
  /** "maj:min:ino" as fdinfo and /proc/locks print it */
  inode: string;
  text: string;
}

/** The dump half: one lease entry per open file description, into the filelocks.img entries. */
export class LeaseTable {
  /** PIDs of the dumped tree; unset: openers waiting are not checked */
  tree?: Set<number>;
  private byFile = new Map<number, { entry: Msg; setter: number }>();
  private byInode = new Map<string, { breaking: boolean; where: string }>();
  private procLeases?: ProcLeases;

  constructor(private entries: Msg[]) {}

  private leasesNow(): ProcLeases {
    return (this.procLeases ??= readProcLeases());
  }

  /** The lease shown on `fd` of task `pid` (files.img id `fileId`, opened with access mode `acc`). */
  collect(pid: number, fd: number, fileId: number, acc: number, l: LeaseLine): void {
    const where = `task ${pid} fd ${fd}`;
    const known = this.byFile.get(fileId);
    if (known) {
      // taken again by its setter when the setter holds the description too
      if (known.entry.pid !== known.setter && pid === known.setter) Object.assign(known.entry, { pid, fd });
      return;
    }
    let type: number;
    if (l.state === 'ACTIVE' && (l.type === 'READ' || l.type === 'WRITE')) type = l.type === 'WRITE' ? F_WRLCK : F_RDLCK;
    else if (l.state === 'BREAKING' && (l.type === 'READ' || l.type === 'UNLCK')) type = LEASE_BREAKING | (l.type === 'READ' ? F_RDLCK : F_UNLCK);
    else throw new UnsupportedError(`${where}: lease in state ${l.state} ${l.type} (${l.text}) is not supported`);
    if (type === F_RDLCK && acc !== O_RDONLY) throw new UnsupportedError(`${where}: read lease on a description open for writing (${l.text}) is not supported`);
    const breaking = (type & LEASE_BREAKING) !== 0;
    if (type === (LEASE_BREAKING | F_UNLCK) && acc === O_RDONLY) this.refuseBreakingWriteLease(pid, fd, where, l.text);
    // one break restores every breaking lease of a file: they all break, or none does
    const other = this.byInode.get(l.inode);
    if (other && other.breaking !== breaking)
      throw new UnsupportedError(`${where}: ${leaseName(type)} (${l.text}) on a file whose lease at ${other.where} is ${other.breaking ? '' : 'not '}breaking (not supported)`);
    if (!other) this.byInode.set(l.inode, { breaking, where });
    if (breaking) {
      const outside = (this.leasesNow().waiters.get(l.inode) ?? []).filter((w) => this.tree && !this.tree.has(w));
      if (outside.length)
        throw new UnsupportedError(`${where}: ${leaseName(type)} (${l.text}) is waited for by process ${outside.join(', ')} outside the dumped tree (not supported)`);
    }
    const entry: Msg = { flag: FL_LEASE, type, pid, fd, start: 0n, len: 0n };
    this.byFile.set(fileId, { entry, setter: l.setter });
    this.entries.push(entry);
  }

  /** A read-only description breaking to unlocked: a read lease, or a write lease the image cannot tell. */
  private refuseBreakingWriteLease(pid: number, fd: number, where: string, text: string): void {
    let probe: number;
    try {
      probe = fs.openSync(procPath(pid, 'fd', String(fd)), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK')
        throw new UnsupportedError(`${where}: breaking write lease on a read-only description (${text}): filelocks.img keeps only the type it breaks to, and a read lease would be restored (not supported)`);
      throw new UnsupportedError(`${where}: breaking lease (${text}): cannot tell a read lease from a write lease: ${code ?? (e as Error).message}`);
    }
    fs.closeSync(probe);
  }

  /**
   * Whether opening the file at `via` (a /proc link) again for reading would wait on or break a
   * lease: any lease but an active read lease. Matched by inode number (the device /proc/locks
   * prints is the superblock's, not always st_dev).
   */
  reopenBreaks(via: string): boolean {
    let ino: number;
    try {
      ino = fs.statSync(via).ino;
    } catch {
      return false;
    }
    return this.leasesNow().hazard.has(ino);
  }

  /** Refuses to read the file at `via` again (an unlinked file's or a memfd's contents) when that would break its lease. */
  refuseReopen(via: string, who: string, what: string): void {
    if (this.reopenBreaks(via))
      throw new UnsupportedError(`${who}: ${what} has a write or breaking lease, which opening it again to read its contents would break (not supported)`);
  }
}

/** The access mode of the description of fd `fd` of `task` in the image, or undefined when it is not a regular file or memfd. */
function accessOf(set: ImageSet, fdinfo: Msg[], fd: number): number | undefined {
  const e = fdinfo.find((f) => num(f.fd) === fd);
  const file = e && set.files.get(num(e.id));
  if (!file) return undefined;
  if (num(file.type) === FILE_REG) return num(file.reg?.flags) & O_ACCMODE;
  if (num(file.type) === FILE_MEMFD) return num(file.memfd?.flags) & O_ACCMODE;
  return undefined;
}

/** The lease taken before the break: see the header. */
function takenType(type: number, acc: number): number {
  if (!(type & LEASE_BREAKING)) return type;
  return (type & ~LEASE_BREAKING) === F_RDLCK || acc !== O_RDONLY ? F_WRLCK : F_RDLCK;
}

/** The restore half, before anything is created: entry `at` of filelocks.img, a lease of a live task's fd. */
export function checkLease(set: ImageSet, l: Msg, at: string, fdinfo: Msg[]): void {
  const type = num(l.type);
  if (![F_RDLCK, F_WRLCK, LEASE_BREAKING | F_RDLCK, LEASE_BREAKING | F_UNLCK].includes(type))
    throw new ImageError('filelocks.img', `${at}.type`, `lease type ${type} is not restored (read, write, or breaking to read or unlocked)`);
  const acc = accessOf(set, fdinfo, num(l.fd));
  if (acc === undefined) throw new ImageError('filelocks.img', `${at}.fd`, `a lease on fd ${l.fd} of task ${l.pid}, which is not a regular file`);
  if (type === F_RDLCK && acc !== O_RDONLY) throw new ImageError('filelocks.img', `${at}.type`, `a read lease on fd ${l.fd} of task ${l.pid}, open for writing`);
}

function leaseOn(l: Msg): string {
  return `${leaseName(num(l.type))} on fd ${l.fd}`;
}

function procOf(ctx: Ctx, l: Msg): Proc {
  const p = ctx.procs.get(num(l.pid));
  if (!p) throw new EngineError(`filelocks.img: task ${l.pid} was not restored`);
  return p;
}

/** Every lease taken again, the breaking ones broken again, all checked (once every task holds its fds). */
export function restoreLeases(ctx: Ctx, leases: Msg[]): void {
  if (!leases.length) return;
  // 1. taken by their tasks, the file's owner cleared
  const files = new Map<string, { target: number; via: string; l: Msg }>();
  for (const l of leases) {
    const p = procOf(ctx, l);
    const fd = num(l.fd);
    const type = num(l.type);
    const taken = takenType(type, accessOf(ctx.set, p.img.fdinfo!, fd)!);
    const r = p.remote;
    r.reset();
    const [res] = r.run(p.host, [{ nr: NR.fcntl, args: [fd, F_SETLEASE, taken], what: `fcntl(F_SETLEASE) on fd ${fd}`, mayFail: true }]);
    if (res < 0n) {
      const e = Number(-res);
      const why = e === 11 ? 'the file is open, or leased, outside the restored tree' : errnoName(e);
      throw new EngineError(`task ${l.pid}: cannot take the ${TYPE_NAME[taken]} lease on fd ${fd} again: ${why}`);
    }
    r.one(p.host, `fcntl(F_SETOWN, 0) on fd ${fd}`, NR.fcntl, fd, F_SETOWN, 0);
    if (!(type & LEASE_BREAKING)) continue;
    const via = procPath(p.host, 'fd', String(fd));
    const st = fs.statSync(via);
    const key = `${st.dev}:${st.ino}`;
    const known = files.get(key);
    if (known && known.target !== (type & ~LEASE_BREAKING))
      throw new EngineError(`filelocks.img: task ${l.pid}: ${leaseOn(l)} and task ${known.l.pid}: ${leaseOn(known.l)} are leases of one file`);
    if (!known) files.set(key, { target: type & ~LEASE_BREAKING, via, l });
  }
  // 2. broken: a write open breaks every lease of the file, a read open a write lease to a read lease
  for (const { target, via, l } of files.values()) {
    let fd: number;
    try {
      fd = fs.openSync(via, (target === F_UNLCK ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') continue;
      throw new EngineError(`task ${l.pid}: cannot break the ${leaseOn(l)} again: ${code ?? (e as Error).message}`);
    }
    fs.closeSync(fd);
    throw new EngineError(`task ${l.pid}: cannot break the ${leaseOn(l)} again: the open met no lease`);
  }
  // 3. each as it was
  for (const l of leases) {
    const p = procOf(ctx, l);
    const fd = num(l.fd);
    p.remote.reset();
    const got = Number(p.remote.one(p.host, `fcntl(F_GETLEASE) on fd ${fd}`, NR.fcntl, fd, F_GETLEASE, 0));
    const want = num(l.type) & ~LEASE_BREAKING;
    if (got !== want) throw new EngineError(`task ${l.pid}: the ${leaseOn(l)} came back as a ${TYPE_NAME[got] ?? got} lease`);
  }
}
