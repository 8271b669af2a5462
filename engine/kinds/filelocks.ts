// File locks (filelocks.img, file_lock_entry): POSIX record locks, flock()s and OFD locks, both
// halves. The dump reads the "lock:" lines of each fd's fdinfo; a lock shows on the fds of the open
// file description it was taken through, so each is recorded once, with the task and fd that will
// take it again. Who owns a lock is what makes it the same lock:
// - POSIX: the fd table (l_pid is the process that set it). It is set again by that process, through
//   the dumped fd; a lock whose owner shares no fd table with the dumping task is refused.
// - flock and OFD: the open file description. Set again by a task holding it, the locker itself
//   when it still does (flock's pid in /proc/locks is the locker's; OFD locks show -1).
// Leases are entries of this image too, their halves in kinds/leases. Delegations and locks of
// unknown kinds are refused at dump. The restore takes every lock without waiting (a conflict
// means a lock held outside the tree) once every task has its fds and before anything could close
// one of them (closing any fd of a file drops its POSIX locks).
import * as fs from 'fs';
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { native, KCMP_FILES } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import type { Ctx } from '../restore/context';
import { loadMessages } from '../../images/files';
import { ImageError, ImageSet, num, big } from '../restore/imageset';
import { NR } from '../restore/sys';
import { errnoName } from '../restore/remote';
import { FL_LEASE, LeaseTable, checkLease, restoreLeases } from './leases';

/** file_lock_entry.flag, as CRIU numbers them */
export const FL_POSIX = 1, FL_FLOCK = 2, FL_OFD = 4;
/** file_lock_entry.type: F_RDLCK / F_WRLCK for every kind (flock's LOCK_SH / LOCK_EX) */
const F_RDLCK = 0, F_WRLCK = 1;
const F_SETLK = 6, F_OFD_SETLK = 37;
const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4;
const NR_FLOCK = 73;

const KIND_NAME: Record<number, string> = { [FL_POSIX]: 'POSIX', [FL_FLOCK]: 'flock', [FL_OFD]: 'OFD', [FL_LEASE]: 'lease' };

export function lockKindName(flag: number): string {
  return KIND_NAME[flag] ?? `kind ${flag}`;
}

// "lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (fs/locks.c lock_get_status)
const LOCK_LINE = /^lock:\s*\d+:\s*(\S+)\s+(\S+)\s+(\S+)\s+(-?\d+)\s+([0-9a-f]+:[0-9a-f]+:\d+)\s+(\d+)\s+(\d+|EOF)\s*$/;

/** The dump half: one file_lock_entry per lock held by the tree. */
export class FileLockTable {
  /** file_lock_entry messages, in the order first seen */
  readonly entries: Msg[] = [];
  /** PIDs of the dumped tree (a POSIX owner must be one); unset: not checked */
  set tree(pids: Set<number> | undefined) {
    this.treePids = pids;
    this.leases.tree = pids;
  }
  get tree(): Set<number> | undefined {
    return this.treePids;
  }
  private treePids?: Set<number>;
  /** the leases, into the same entries */
  readonly leases = new LeaseTable(this.entries);
  private byKey = new Map<string, { entry: Msg; locker: number }>();

  /**
   * The locks shown in the fdinfo of `fd` of task `pid`, whose open file description has the
   * files.img id `fileId` (flocks and OFD locks belong to it).
   */
  collect(pid: number, fd: number, fileId: number, fdinfoLines: string[]): void {
    const where = `task ${pid} fd ${fd}`;
    for (const line of fdinfoLines) {
      if (!line.startsWith('lock:')) continue;
      const text = line.slice(5).trim();
      // a request still waiting for a lock: the task is blocked in the call, which restarts
      if (text.includes('->')) continue;
      const first = /^\d+:\s*(\S+)/.exec(text)?.[1];
      if (first === 'DELEG') throw new UnsupportedError(`${where}: delegation (${text}) is not supported`);
      const m = LOCK_LINE.exec(line);
      if (!m) throw new UnsupportedError(`${where}: unrecognised lock (${text})`);
      const [, cls, mode, type, ownerText, inode, startText, endText] = m;
      if (cls === 'LEASE') {
        this.leases.collect(pid, fd, fileId, accessMode(fdinfoLines), { state: mode, type, setter: Number(ownerText), inode, text });
        continue;
      }
      const flag = cls === 'POSIX' ? FL_POSIX : cls === 'FLOCK' ? FL_FLOCK : cls === 'OFDLCK' ? FL_OFD : 0;
      if (!flag) throw new UnsupportedError(`${where}: ${cls} lock (${text}) is not supported`);
      if (mode !== 'ADVISORY') throw new UnsupportedError(`${where}: ${lockKindName(flag)} lock in ${mode.toLowerCase()} mode (${text}) is not supported`);
      if (type !== 'READ' && type !== 'WRITE') throw new UnsupportedError(`${where}: ${lockKindName(flag)} lock of type ${type} (${text}) is not supported`);
      const owner = Number(ownerText);
      const start = flag === FL_FLOCK ? 0n : BigInt(startText);
      const len = flag === FL_FLOCK || endText === 'EOF' ? 0n : BigInt(endText) - start + 1n;
      const range = `${type}:${start}:${len}`;
      let key: string;
      if (flag === FL_POSIX) {
        if (owner !== pid) this.checkPosixOwner(owner, pid, where, text);
        key = `posix:${owner}:${inode}:${range}`;
      } else {
        // one flock per open file description; OFD locks may be several ranges of it
        key = flag === FL_FLOCK ? `flock:${fileId}` : `ofd:${fileId}:${range}`;
      }
      const known = this.byKey.get(key);
      if (known) {
        // a flock is taken again by its locker when the locker holds the description too
        if (flag === FL_FLOCK && known.entry.pid !== known.locker && pid === known.locker) Object.assign(known.entry, { pid, fd });
        continue;
      }
      const entry: Msg = { flag, type: type === 'WRITE' ? F_WRLCK : F_RDLCK, pid: flag === FL_POSIX ? owner : pid, fd, start, len };
      this.byKey.set(key, { entry, locker: owner });
      this.entries.push(entry);
    }
  }

  /** A POSIX lock belongs to an fd table: its owner must share this task's, inside the tree. */
  private checkPosixOwner(owner: number, pid: number, where: string, text: string): void {
    let shared = false;
    try {
      shared = native().kcmp(owner, pid, KCMP_FILES, 0, 0) === 0;
    } catch {
      /* the owner is gone */
    }
    if (!shared || (this.tree && !this.tree.has(owner)))
      throw new UnsupportedError(`${where}: POSIX lock (${text}) is owned by process ${owner}, ${shared ? 'outside the dumped tree' : 'which no longer shares this task\'s fd table'} (not supported)`);
  }
}

/** The restore half: filelocks.img checked against the set before anything is created. */
export function loadFileLocks(set: ImageSet): Msg[] {
  const file = path.join(set.dir, 'filelocks.img');
  if (!fs.existsSync(file)) return [];
  let locks: Msg[];
  try {
    locks = loadMessages(file);
  } catch (e) {
    throw new EngineError(`filelocks.img: unreadable: ${(e as Error).message}`, 'EIMAGE');
  }
  locks.forEach((l, i) => {
    const at = `entry ${i}`;
    const flag = num(l.flag);
    if (flag !== FL_POSIX && flag !== FL_FLOCK && flag !== FL_OFD && flag !== FL_LEASE)
      throw new ImageError('filelocks.img', `${at}.flag`, `lock kind ${flag} is not restored`);
    const task = set.byPid.get(num(l.pid));
    if (!task || !task.fdinfo) throw new ImageError('filelocks.img', `${at}.pid`, `task ${l.pid} is not a live task of the set`);
    if (!task.fdinfo.some((f) => num(f.fd) === num(l.fd))) throw new ImageError('filelocks.img', `${at}.fd`, `task ${l.pid} has no fd ${l.fd} in ${task.fdinfoImage}`);
    if (flag === FL_LEASE) return checkLease(set, l, at, task.fdinfo);
    const type = num(l.type);
    if (type !== F_RDLCK && type !== F_WRLCK) throw new ImageError('filelocks.img', `${at}.type`, `lock type ${type} is not restored (read and write locks only)`);
    if (big(l.start) < 0n || big(l.len) < 0n) throw new ImageError('filelocks.img', `${at}.start`, `range ${l.start}+${l.len} is not restored`);
  });
  return locks;
}

/**
 * Every lock taken again by its task, injected, without waiting: leases, flocks and OFD locks
 * first, then the POSIX locks (nothing closes a task's fd after this, which would drop them).
 */
export function restoreFileLocks(ctx: Ctx, locks: Msg[]): void {
  restoreLeases(ctx, locks.filter((l) => num(l.flag) === FL_LEASE));
  const locking = locks.filter((l) => num(l.flag) !== FL_LEASE);
  const ordered = [...locking.filter((l) => num(l.flag) !== FL_POSIX), ...locking.filter((l) => num(l.flag) === FL_POSIX)];
  for (const l of ordered) {
    const p = ctx.procs.get(num(l.pid));
    if (!p) throw new EngineError(`filelocks.img: task ${l.pid} was not restored`);
    const r = p.remote;
    const fd = num(l.fd);
    const flag = num(l.flag);
    const write = num(l.type) === F_WRLCK;
    const what = `${lockKindName(flag)} ${write ? 'write' : 'read'} lock on fd ${fd}${flag === FL_FLOCK ? '' : ` (${l.start}+${l.len})`}`;
    r.reset();
    const res = flag === FL_FLOCK
      ? r.run(p.host, [{ nr: NR_FLOCK, args: [fd, (write ? LOCK_EX : LOCK_SH) | LOCK_NB], what, mayFail: true }])[0]
      : r.run(p.host, [{ nr: NR.fcntl, args: [fd, flag === FL_OFD ? F_OFD_SETLK : F_SETLK, r.put(flockStruct(write, big(l.start), big(l.len)))], what, mayFail: true }])[0];
    if (res < 0n) {
      const e = Number(-res);
      const why = e === 11 || e === 13 ? 'a conflicting lock is held outside the restored tree' : errnoName(e);
      throw new EngineError(`task ${l.pid}: cannot take the ${what} again: ${why}`);
    }
  }
}

/** O_ACCMODE of the description, from the fdinfo "flags:" line (octal) */
function accessMode(fdinfoLines: string[]): number {
  const flags = fdinfoLines.find((l) => l.startsWith('flags:'));
  return flags ? parseInt(flags.slice(6).trim(), 8) & 3 : 0;
}

/** struct flock (x86_64): l_type, l_whence SEEK_SET, l_start, l_len, l_pid 0 (required for OFD) */
function flockStruct(write: boolean, start: bigint, len: bigint): Buffer {
  const b = Buffer.alloc(32);
  b.writeInt16LE(write ? F_WRLCK : F_RDLCK, 0);
  b.writeInt16LE(0, 2);
  b.writeBigInt64LE(start, 8);
  b.writeBigInt64LE(len, 16);
  return b;
}
