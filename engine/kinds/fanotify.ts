// fanotify groups, both halves, in CRIU 4.2's layout (files.img FANOTIFY entries:
// fanotify_file_entry with the group's init flags and event_f_flags, and its marks). The dump
// reads the group from fdinfo ("fanotify flags:.. event-flags:..", then one line per mark, newest
// first: "fanotify ino:.. sdev:.. mflags:.. mask:.. ignored_mask:.. fhandle-..." for an inode,
// "fanotify mnt_id:.. mflags:.. mask:.. ignored_mask:.." for a mount). An inode mark's file is
// named by the path its handle opens (as for inotify), a mount mark's mount by its mount point.
// The restore makes the group inside its task (injected fanotify_init, then fanotify_mark per
// mark, oldest first so that fdinfo lists them in the same order), then reads the new group's
// fdinfo back and fails unless it shows what was dumped.
//
// Refused at dump, since they cannot come back: events queued and not read yet (FIONREAD counts
// them without consuming any), permission events a listener has read but not answered (the
// accessing task waits in the kernel; no interface lists them, so any task waiting for a fanotify
// answer while the group has permission marks refuses it), filesystem and mount-namespace marks
// (CRIU's image has no mark type for them), marks on unlinked files, marks with both masks empty
// (fanotify_mark cannot make one), mount marks whose mount point is covered by another mount, and
// groups that may have been made without CAP_SYS_ADMIN (nothing shows whether a group was: the
// restore makes it privileged, which reports other processes' pids where the original gave 0).
import { major, minor } from '../proc/devnum';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import { readMountinfo, Mount } from '../proc/mountinfo';
import { handlePath, handleWords, devString } from '../dump/fsnotify';
import type { Remote, Call } from '../restore/remote';
import { ImageError, num, big } from '../restore/imageset';

export const FD_TYPE_FANOTIFY = 12;
export const FANOTIFY_LINK = 'anon_inode:[fanotify]';

const NR_FANOTIFY_INIT = 300, NR_FANOTIFY_MARK = 301;
const AT_FDCWD = -100;
const FIONREAD = 0x541b;
const MARK_INODE = 1, MARK_MOUNT = 2;

// fanotify_init flags
const FAN_NONBLOCK = 0x2, FAN_CLASS_BITS = 0xc;
/** flags only a CAP_SYS_ADMIN caller may give: content classes, unlimited queue/marks, audit, tid, pidfd */
const ADMIN_INIT_FLAGS = 0xc | 0x10 | 0x20 | 0x40 | 0x80 | 0x100;
/** FID reporting (FID, DIR_FID, NAME, TARGET_FID) and mount events: what an unprivileged group must use */
const UNPRIV_REPORT_FLAGS = 0x200 | 0x400 | 0x800 | 0x1000 | 0x4000;

// fanotify_mark flags
const FAN_MARK_ADD = 0x1, FAN_MARK_REMOVE = 0x2, FAN_MARK_DONT_FOLLOW = 0x4, FAN_MARK_MOUNT = 0x10;
const FAN_MARK_IGNORED_MASK = 0x20, FAN_MARK_IGNORED_SURV_MODIFY = 0x40, FAN_MARK_EVICTABLE = 0x200, FAN_MARK_IGNORE = 0x400;
/** the mark flags fdinfo reports */
const KNOWN_MFLAGS = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE | FAN_MARK_IGNORE;
/** FAN_OPEN_PERM, FAN_ACCESS_PERM, FAN_OPEN_EXEC_PERM, FAN_PRE_ACCESS */
const PERM_EVENTS = 0x10000 | 0x20000 | 0x40000 | 0x100000;
/** an event bit put in an ignore mask and taken out again, to leave the mark's ignore flags set */
const FAN_ACCESS = 0x1;

const O_PATH = 0o10000000, O_NONBLOCK = 0o4000;
/** the file status flags F_SETFL sets: O_APPEND O_NONBLOCK O_ASYNC O_DIRECT O_NOATIME */
const SETFL_MASK = 0o2000 | 0o4000 | 0o20000 | 0o40000 | 0o1000000;
const F_SETFL = 4, NR_FCNTL = 72;
const CAP_SYS_ADMIN = 21;

interface Group {
  faflags: number;
  evflags: number;
  marks: Mark[];
}

interface Mark {
  type: number;
  mflags: number;
  mask: number;
  ignored: number;
  /** inode marks */
  ino?: bigint;
  sdev?: number;
  handleBytes?: number;
  handleType?: number;
  handle?: Buffer;
  /** mount marks */
  mntId?: number;
}

const hex = (f: Map<string, string>, k: string) => parseInt(f.get(k) ?? '', 16);

/** The group as fdinfo shows it; a mark line of any other kind is refused (`where`: task and fd). */
export function parseFanotify(lines: string[], where: string): Group {
  const g: Group = { faflags: 0, evflags: 0, marks: [] };
  let sawFlags = false;
  for (const line of lines) {
    if (!line.startsWith('fanotify ')) continue;
    const f = new Map<string, string>();
    for (const m of line.slice(9).matchAll(/(\S+?):(\S*)/g)) f.set(m[1], m[2]);
    const key = /^fanotify (\S+?):/.exec(line)?.[1];
    if (key === 'flags') {
      g.faflags = hex(f, 'flags');
      g.evflags = hex(f, 'event-flags');
      sawFlags = true;
      continue;
    }
    const common = { mflags: hex(f, 'mflags'), mask: hex(f, 'mask'), ignored: hex(f, 'ignored_mask') };
    if (key === 'ino') {
      g.marks.push({
        type: MARK_INODE, ...common, ino: BigInt('0x' + f.get('ino')), sdev: hex(f, 'sdev'),
        handleBytes: f.has('fhandle-bytes') ? hex(f, 'fhandle-bytes') : undefined, handleType: hex(f, 'fhandle-type'),
        handle: Buffer.from(f.get('f_handle') ?? '', 'hex'),
      });
    } else if (key === 'mnt_id') {
      g.marks.push({ type: MARK_MOUNT, ...common, mntId: hex(f, 'mnt_id') });
    } else if (key === 'sdev') {
      throw new UnsupportedError(`${where}: fanotify filesystem mark (FAN_MARK_FILESYSTEM) on ${devString(hex(f, 'sdev'))} (CRIU's image has no such mark)`);
    } else {
      throw new UnsupportedError(`${where}: fanotify mark of a kind not supported (${line.trim()})`);
    }
    if ([common.mflags, common.mask, common.ignored].some(Number.isNaN)) throw new EngineError(`${where}: cannot parse fdinfo line "${line.trim()}"`);
  }
  if (!sawFlags) throw new EngineError(`${where}: fdinfo of a fanotify fd without its flags line`);
  return g;
}

/** The mount with this id and the mount the engine reaches at its mount point (the same one unless covered). */
function mountOf(id: number): { mount?: Mount; top?: number } {
  const mount = readMountinfo().find((m) => m.id === id);
  return { mount, top: mount ? mountIdAt(mount.point) : undefined };
}

/** The id of the mount a path lands on (O_PATH open: no fsnotify event). */
export function mountIdAt(p: string): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync(p, O_PATH);
  } catch {
    return undefined;
  }
  try {
    const m = /^mnt_id:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** mountinfo's "major:minor" -> the kernel's s_dev (major << 20 | minor), as CRIU records it. */
function kdev(dev: string): number {
  const [ma, mi] = dev.split(':').map(Number);
  return ma * 2 ** 20 + mi;
}

/** A userspace st_dev -> the kernel's s_dev. */
function kdevOfStat(dev: number): number {
  return major(dev) * 2 ** 20 + minor(dev);
}

function effectiveCaps(pid: number): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? BigInt('0x' + m[1]) : 0n;
}

/** A task (pid or tid) blocked in the kernel until a fanotify listener answers its permission event. */
function waiterForAnswer(): number | undefined {
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      try {
        if (/fanotify/.test(fs.readFileSync(`/proc/${p}/task/${t}/wchan`, 'utf8'))) return Number(t);
      } catch {
        /* gone */
      }
    }
  }
  return undefined;
}

export interface FanotifyFd {
  pid: number;
  fd: number;
  /** a duplicate of the task's fd (the caller's to close) */
  dupFd(): number;
}

/** The dump half: the fanotify_file_entry of task `t.pid`'s fd `t.fd`. */
export function fanotifyEntry(id: number, flags: number, fown: Msg, lines: string[], t: FanotifyFd): Msg {
  const where = `task ${t.pid} fd ${t.fd}`;
  // first, before the engine touches any marked file: the queue
  const dup = t.dupFd();
  try {
    const q = Buffer.alloc(4);
    native().ioctl(dup, FIONREAD, q);
    if (q.readInt32LE(0) > 0)
      throw new UnsupportedError(`${where}: fanotify group with events queued and not read yet (${q.readInt32LE(0)} bytes; they cannot be restored)`);
  } finally {
    native().close(dup);
  }
  const g = parseFanotify(lines, where);
  const mountMarks = g.marks.some((m) => m.type === MARK_MOUNT);
  if ((g.faflags & UNPRIV_REPORT_FLAGS) && !(g.faflags & ADMIN_INIT_FLAGS) && !mountMarks && !((effectiveCaps(t.pid) >> BigInt(CAP_SYS_ADMIN)) & 1n))
    throw new UnsupportedError(`${where}: fanotify group (flags 0x${g.faflags.toString(16)}) held by a task without CAP_SYS_ADMIN may have been made unprivileged, which the restore cannot tell nor make again`);
  if ((g.faflags & FAN_CLASS_BITS) && g.marks.some((m) => m.mask & PERM_EVENTS)) {
    const waiter = waiterForAnswer();
    if (waiter !== undefined)
      throw new UnsupportedError(`${where}: fanotify group with permission marks while task ${waiter} waits for a fanotify permission answer (pending permission events cannot be restored)`);
  }
  const marks = g.marks.map((m, i): Msg => {
    const what = `fanotify mark ${i}`;
    if (m.mflags & ~KNOWN_MFLAGS) throw new UnsupportedError(`${where}: ${what}: mark flags 0x${m.mflags.toString(16)} not supported`);
    if (!m.mask && !m.ignored) throw new UnsupportedError(`${where}: ${what}: a mark with empty masks (fanotify_mark cannot make one again)`);
    const base = { id: 0, type: m.type, mflags: m.mflags, mask: m.mask, ignored_mask: m.ignored };
    if (m.type === MARK_MOUNT) {
      const { mount, top } = mountOf(m.mntId!);
      if (!mount) throw new UnsupportedError(`${where}: ${what} on mount ${m.mntId}, which is not in the engine's mount namespace`);
      if (top !== m.mntId) throw new UnsupportedError(`${where}: ${what} on mount ${m.mntId} at ${mount.point}, which another mount covers`);
      return { ...base, s_dev: kdev(mount.dev), me: { mnt_id: m.mntId, path: mount.point } };
    }
    if (m.handleBytes === undefined || m.handleBytes === 0)
      throw new UnsupportedError(`${where}: ${what} on inode ${m.ino} of ${devString(m.sdev!)}, which has no file handle`);
    const h = { sdev: m.sdev!, handleBytes: m.handleBytes, handleType: m.handleType!, handle: m.handle! };
    const p = handlePath(h, `${what} (inode ${m.ino})`, where);
    const st = fs.lstatSync(p, { bigint: true });
    if (st.ino !== m.ino || kdevOfStat(Number(st.dev)) !== m.sdev)
      throw new UnsupportedError(`${where}: ${what}: inode ${m.ino} resolved to ${p}, which is another file`);
    return { ...base, s_dev: m.sdev, ie: { i_ino: m.ino, f_handle: { bytes: m.handleBytes, type: m.handleType, handle: handleWords(h), path: p } } };
  });
  return { id, flags, fown, faflags: g.faflags, evflags: g.evflags, mark: marks };
}

/** Image check (before any process exists): what the restore half can make. */
export function checkFanotifyEntry(id: number, f: Msg): void {
  const e = f.ffy;
  if (!e) throw new ImageError('files.img', `id ${id}.ffy`, 'a FANOTIFY file without its entry');
  for (const [i, m] of ((e.mark ?? []) as Msg[]).entries()) {
    const at = `id ${id}.ffy.mark[${i}]`;
    if (num(m.mflags) & ~KNOWN_MFLAGS) throw new ImageError('files.img', `${at}.mflags`, `mark flags 0x${num(m.mflags).toString(16)} are not restored`);
    if (!num(m.mask) && !num(m.ignored_mask)) throw new ImageError('files.img', at, 'a mark with empty masks cannot be made');
    if (num(m.type) === MARK_INODE) {
      if (!String(m.ie?.f_handle?.path ?? '').startsWith('/')) throw new ImageError('files.img', `${at}.ie.f_handle.path`, 'inode mark without a path (resolve by handle is not supported)');
    } else if (num(m.type) === MARK_MOUNT) {
      if (!String(m.me?.path ?? '').startsWith('/')) throw new ImageError('files.img', `${at}.me.path`, 'mount mark without its mount point');
    } else throw new ImageError('files.img', `${at}.type`, `mark type ${m.type} is not restored`);
  }
}

/** Before the restore: every marked file is still the marked inode, every mount point still the marked filesystem's. */
export function checkFanotifyMarks(files: Iterable<Msg>): void {
  for (const f of files) {
    if (num(f.type) !== FD_TYPE_FANOTIFY) continue;
    for (const [i, m] of ((f.ffy.mark ?? []) as Msg[]).entries()) {
      const at = `id ${f.id}.ffy.mark[${i}]`;
      if (num(m.type) === MARK_INODE) {
        const p = String(m.ie.f_handle.path);
        let st: fs.BigIntStats;
        try {
          st = fs.lstatSync(p, { bigint: true });
        } catch {
          throw new ImageError('files.img', `${at}.ie.f_handle.path`, `marked ${p} no longer exists`);
        }
        if (st.ino !== big(m.ie.i_ino) || kdevOfStat(Number(st.dev)) !== num(m.s_dev))
          throw new ImageError('files.img', `${at}.ie.i_ino`, `${p} is inode ${st.ino} of ${devString(kdevOfStat(Number(st.dev)))} now, the mark was on ${m.ie.i_ino} of ${devString(num(m.s_dev))}`);
      } else {
        const p = String(m.me.path);
        const id = mountIdAt(p);
        const mount = readMountinfo().find((x) => x.id === id);
        if (!mount || mount.point !== p) throw new ImageError('files.img', `${at}.me.path`, `no mount at ${p} now`);
        if (num(m.s_dev) && kdev(mount.dev) !== num(m.s_dev))
          throw new ImageError('files.img', `${at}.s_dev`, `the mount at ${p} is of ${mount.dev} now, the mark was on ${devString(num(m.s_dev))}`);
      }
    }
  }
}

/**
 * The restore half, in the task (thread `tid`, through `r`): the group with its init flags, the
 * file's status flags, then the marks, oldest first. Returns the new fd. `host` is the task's pid
 * here, for reading the group back.
 */
export function makeFanotify(r: Remote, tid: number, host: number, f: Msg, fd: number): bigint {
  const e = f.ffy;
  const faflags = num(e.faflags) >>> 0;
  r.reset();
  const made = r.one(tid, `fanotify_init for fd ${fd}`, NR_FANOTIFY_INIT, faflags, num(e.evflags) >>> 0);
  const calls: Call[] = [];
  const want = num(e.flags) & SETFL_MASK;
  if (want !== (faflags & FAN_NONBLOCK ? O_NONBLOCK : 0)) calls.push({ nr: NR_FCNTL, args: [made, F_SETFL, want], what: `fcntl(F_SETFL) on fd ${fd}` });
  const marks = [...((e.mark ?? []) as Msg[])].reverse();
  for (const m of marks) {
    const mount = num(m.type) === MARK_MOUNT;
    const p = String(mount ? m.me.path : m.ie.f_handle.path);
    const at = r.cstr(p);
    const mflags = num(m.mflags);
    const base = FAN_MARK_DONT_FOLLOW | (mount ? FAN_MARK_MOUNT : 0) | (mflags & FAN_MARK_EVICTABLE);
    const ignore = base | (mflags & FAN_MARK_IGNORE ? FAN_MARK_IGNORE : FAN_MARK_IGNORED_MASK) | (mflags & FAN_MARK_IGNORED_SURV_MODIFY);
    const mark = (flags: number, mask: number, what: string): Call =>
      ({ nr: NR_FANOTIFY_MARK, args: [made, flags, mask >>> 0, AT_FDCWD, at], what: `fanotify_mark(${what} 0x${(mask >>> 0).toString(16)}, ${p}) on fd ${fd}` });
    if (num(m.mask)) calls.push(mark(FAN_MARK_ADD | base, num(m.mask), 'mask'));
    if (num(m.ignored_mask)) calls.push(mark(FAN_MARK_ADD | ignore, num(m.ignored_mask), 'ignored mask'));
    else if (mflags & (FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY)) {
      // ignore flags over an empty ignore mask (emptied since, by a modification): set with one
      // event bit, which is taken out again (the mask keeps the mark alive meanwhile)
      calls.push(mark(FAN_MARK_ADD | ignore, FAN_ACCESS, 'ignore flags'));
      calls.push(mark(FAN_MARK_REMOVE | (ignore & ~FAN_MARK_EVICTABLE & ~FAN_MARK_IGNORED_SURV_MODIFY), FAN_ACCESS, 'ignore flags'));
    }
  }
  r.run(tid, calls);
  verifyGroup(host, Number(made), e, fd);
  return made;
}

/** Reads the made group back (fdinfo of a duplicate): its flags and marks must be the dumped ones. */
function verifyGroup(host: number, made: number, e: Msg, fd: number): void {
  const n = native();
  const pidfd = n.pidfdOpen(host);
  let dup: number;
  try {
    dup = n.pidfdGetfd(pidfd, made);
  } finally {
    n.close(pidfd);
  }
  let g: Group;
  try {
    g = parseFanotify(fs.readFileSync(`/proc/self/fdinfo/${dup}`, 'utf8').split('\n'), `restored fd ${fd}`);
  } finally {
    n.close(dup);
  }
  const mountPoint = (id: number) => readMountinfo().find((m) => m.id === id)?.point ?? `mount ${id}`;
  const got = g.marks.map((m) => `${m.type === MARK_MOUNT ? mountPoint(m.mntId!) : `inode ${m.ino}@${m.sdev}`} mflags ${m.mflags} mask ${m.mask} ignored ${m.ignored}`);
  const wanted = ((e.mark ?? []) as Msg[]).map((m) =>
    `${num(m.type) === MARK_MOUNT ? m.me.path : `inode ${big(m.ie.i_ino)}@${num(m.s_dev)}`} mflags ${num(m.mflags)} mask ${num(m.mask)} ignored ${num(m.ignored_mask)}`);
  const bad = g.faflags !== num(e.faflags) >>> 0 ? `init flags 0x${g.faflags.toString(16)}, dumped 0x${num(e.faflags).toString(16)}`
    : g.evflags !== num(e.evflags) >>> 0 ? `event flags 0x${g.evflags.toString(16)}, dumped 0x${num(e.evflags).toString(16)}`
    : got.join('; ') !== wanted.join('; ') ? `marks [${got.join('; ')}], dumped [${wanted.join('; ')}]` : undefined;
  if (bad) throw new EngineError(`files.img: id ${e.id}: fanotify group restored at fd ${fd} differs: ${bad}`);
}
