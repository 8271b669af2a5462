// Terminals. Pseudo-terminals: a TTY file entry (plus a REG entry for its path, as CRIU writes it)
// per open file and one tty_info_entry per terminal end (id = index * 2 + 1 for a master, index * 2
// for a slave). Termios, window size and modes are read with ioctls on a duplicate of the task's
// fd; the session and foreground group of a slave come from the tasks that have it as their
// controlling terminal (those ioctls answer only the terminal's own session).
// A master whose slave no task holds: a slave that was opened and closed again (the master polls
// POLLHUP) gets a tty_info of its own, read through a short-lived open of /dev/pts/N, so that the
// restore opens and closes it once too (the master reads EOF/EIO again) and gives the node its
// owner back; a slave open outside the tree is refused. A slave whose master was closed is hung
// up (its ioctls fail with EIO, its node is gone): recorded as CRIU does, without settings, and
// made again by opening it under a master closed right after. Bytes queued in either direction of
// a pair inside the tree go to tty-data.img (kinds/ttydata: taken and put straight back).
// Other terminals, as CRIU numbers them (one tty_info each): /dev/tty (CTTY, id 2012) is reopened
// by its holder, which must have as controlling terminal the one the fd refers to (TIOCGDEV);
// /dev/console (CONSOLE, 2004) and a virtual terminal /dev/ttyN, N 1..63 (VT, 2008; one VT device
// per dump, CRIU keeps a single tty_info for all) are reopened by path with their settings.
import * as fs from 'fs';
import { readMountinfo } from '../proc/mountinfo';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { UnsupportedError } from '../errors';
import { readStat } from '../proc/stat';
import { takeMaster, takeSlave, hasQueued, cannotPutBack, fionread } from '../kinds/ttydata';

const TCGETS = 0x5401, TIOCGWINSZ = 0x5413, TIOCGLCKTRMIOS = 0x5456, TIOCGSID = 0x5429, TIOCGPGRP = 0x540f;
const TIOCGPTN = 0x80045430, TIOCGPKT = 0x80045438, TIOCGPTLCK = 0x80045439, TIOCGEXCL = 0x80045440;
const TIOCGDEV = 0x80045432, TIOCGETD = 0x5424;
const POLLIN = 0x1, POLLPRI = 0x2, POLLHUP = 0x10;
const O_RDWR = 2, O_NOCTTY = 0o400, O_NONBLOCK = 0o4000, O_ASYNC = 0o20000, O_CLOEXEC = 0o2000000;
const TTYAUX_MAJOR = 5, PTY_MASTER_MINOR = 2, CONSOLE_MINOR = 1, CTTY_MINOR = 0;
const TTY_MAJOR = 4, MAX_NR_CONSOLES = 63;
const PTS_MAJOR = 136;
const TTY_TYPE = { PTY: 1, CONSOLE: 2, VT: 3, CTTY: 4 } as const;
/** CRIU's tty_info ids of the terminals that are not ptys (its fixed indices, shifted as a pty's) */
const INFO_ID = { console: 1002 * 2, vt: 1004 * 2, ctty: 1006 * 2 } as const;
const N_TTY = 0;
const NCCS = 19;

export { major, minor } from '../proc/devnum';
import { major, minor } from '../proc/devnum';

export type TtyKind = 'ptm' | 'pts' | 'console' | 'vt' | 'ctty';

/** The terminal a device number names, among those dumped (undefined: another one). */
export function ttyKind(rdev: number): TtyKind | undefined {
  const M = major(rdev), m = minor(rdev);
  if (M === TTYAUX_MAJOR) return m === PTY_MASTER_MINOR ? 'ptm' : m === CONSOLE_MINOR ? 'console' : m === CTTY_MINOR ? 'ctty' : undefined;
  if (M === PTS_MAJOR) return 'pts';
  if (M === TTY_MAJOR && m >= 1 && m <= MAX_NR_CONSOLES) return 'vt';
  return undefined;
}

/** A path that names a pseudo-terminal end (the engine decides by the device number). */
export function isPtyDevice(rdev: number): boolean {
  const k = ttyKind(rdev);
  return k === 'ptm' || k === 'pts';
}

/** A terminal the engine dumps: a pty end, /dev/tty, /dev/console or a virtual terminal. */
export const isTtyDevice = (rdev: number) => ttyKind(rdev) !== undefined;

const devName = (rdev: number) => (major(rdev) === PTS_MAJOR ? `/dev/pts/${minor(rdev)}` : `device ${major(rdev)}:${minor(rdev)}`);

/** termios_entry; c_cc holds the 19 control bytes packed little-endian into u32 words, as CRIU does. */
export function termiosEntry(raw: Buffer): Msg {
  const cc = Buffer.alloc(NCCS * 4);
  raw.copy(cc, 0, 17, 17 + NCCS);
  const words: number[] = [];
  for (let i = 0; i < NCCS; i++) words.push(cc.readUInt32LE(i * 4));
  return {
    c_iflag: raw.readUInt32LE(0), c_oflag: raw.readUInt32LE(4), c_cflag: raw.readUInt32LE(8), c_lflag: raw.readUInt32LE(12),
    c_line: raw.readUInt8(16), c_ispeed: 0, c_ospeed: 0, c_cc: words,
  };
}

/** Whether a terminal fd was hung up: every ioctl on it then fails with EIO. */
function hungUp(fd: number): boolean {
  try {
    native().ioctl(fd, TCGETS, Buffer.alloc(36));
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EIO') return true;
    throw e;
  }
}

function ioctlBuf(fd: number, req: number, len: number): Buffer | undefined {
  const b = Buffer.alloc(len);
  try {
    native().ioctl(fd, req, b);
    return b;
  } catch {
    return undefined;
  }
}

const num = (v: unknown) => Number(v ?? 0);
const ioctlInt = (fd: number, req: number) => ioctlBuf(fd, req, 4)?.readInt32LE(0);

export interface CttyOwner {
  sid: number;
  pgrp: number;
}

/** A terminal end as a task holds it: the first fd seen. */
interface End {
  pid: number;
  fd: number;
  where: string;
}

export class TtyTable {
  readonly infos: Msg[] = [];
  /** tty_data_entry: the bytes queued for each reading end */
  readonly data: Msg[] = [];
  private infoIds = new Set<number>();
  /** master index -> the task and fd it was first seen at */
  private masters = new Map<number, End>();
  private slaves = new Map<number, End>();
  /** hung-up slaves (their master closed), by index */
  private hung = new Map<number, string>();
  /** pty ends some holder set for SIGIO (O_ASYNC): `${index}m` / `${index}s` */
  private async = new Set<string>();
  /** CONSOLE / VT tty_info id -> the device it was recorded for */
  private devices = new Map<number, number>();
  /** /dev/tty fds: the terminal they refer to -> where first seen */
  private devTtys = new Map<number, string>();
  /** PIDs of the dumped tree (a session led inside it must get its terminal back); unset: not checked */
  tree?: Set<number>;

  /** cttys: controlling terminal rdev (stat tty_nr) -> its session and foreground group, from the tree */
  constructor(private cttys: () => Map<number, CttyOwner>) {}

  /**
   * The tty_info id of the terminal behind `dup` (a duplicate of fd `holder.fd` of task
   * `holder.pid`, whose file flags are `holder.flags`), recording it once.
   */
  info(dup: number, st: fs.Stats, where: string, holder?: { pid: number; fd: number; flags?: number }): number {
    const kind = ttyKind(st.rdev);
    if (kind === 'ctty') return this.devTty(dup, st, where, holder);
    if (kind === 'console' || kind === 'vt') return this.device(dup, st, where, kind);
    if (kind !== 'ptm' && kind !== 'pts') throw new UnsupportedError(`${where}: terminal device ${major(st.rdev)}:${minor(st.rdev)} is not supported`);
    const isMaster = kind === 'ptm';
    let index: number;
    if (isMaster) {
      const n = ioctlInt(dup, TIOCGPTN);
      if (n === undefined) throw new UnsupportedError(`${where}: cannot read the pty index of /dev/ptmx`);
      index = n;
    } else {
      index = minor(st.rdev); // all slaves are major 136 with a 20-bit minor
      if (hungUp(dup)) return this.hungSlave(index, st, where);
    }
    if (holder) {
      const ends = isMaster ? this.masters : this.slaves;
      if (!ends.has(index)) ends.set(index, { pid: holder.pid, fd: holder.fd, where });
      if ((holder.flags ?? 0) & O_ASYNC) this.async.add(`${index}${isMaster ? 'm' : 's'}`);
    }
    const id = index * 2 + (isMaster ? 1 : 0);
    if (this.infoIds.has(id)) return id;
    this.infoIds.add(id);
    lineDiscipline(dup, where, `pty ${index}`);
    const termios = ioctlBuf(dup, TCGETS, 36);
    const locked = ioctlBuf(dup, TIOCGLCKTRMIOS, 36);
    const ws = ioctlBuf(dup, TIOCGWINSZ, 8);
    let sid = 0, pgrp = 0;
    if (isMaster) {
      sid = Math.max(0, ioctlInt(dup, TIOCGSID) ?? 0);
      pgrp = Math.max(0, ioctlInt(dup, TIOCGPGRP) ?? 0);
    } else {
      const owner = this.cttys().get(st.rdev);
      if (owner) ({ sid, pgrp } = owner);
    }
    const e: Msg = {
      id, type: TTY_TYPE.PTY, locked: isMaster ? (ioctlInt(dup, TIOCGPTLCK) ?? 0) !== 0 : false,
      exclusive: (ioctlInt(dup, TIOCGEXCL) ?? 0) !== 0, packet_mode: isMaster ? (ioctlInt(dup, TIOCGPKT) ?? 0) !== 0 : false,
      sid, pgrp, rdev: st.rdev,
    };
    if (e.packet_mode && native().pollOne(dup, POLLPRI, 0) & POLLPRI)
      throw new UnsupportedError(`${where}: pty ${index} in packet mode has a status byte pending at the master (not supported)`);
    if (termios) e.termios = termiosEntry(termios);
    if (locked) e.termios_locked = termiosEntry(locked);
    if (ws) e.winsize = { ws_row: ws.readUInt16LE(0), ws_col: ws.readUInt16LE(2), ws_xpixel: ws.readUInt16LE(4), ws_ypixel: ws.readUInt16LE(6) };
    Object.assign(e, { pty: { index }, dev: st.dev, uid: st.uid, gid: st.gid });
    this.infos.push(e);
    return id;
  }

  /** A slave hung up by the close of its master (its node is gone): CRIU's record, without settings. */
  private hungSlave(index: number, st: fs.Stats, where: string): number {
    if (st.nlink !== 0) throw new UnsupportedError(`${where}: /dev/pts/${index} was hung up (vhangup) while its master lives (not supported)`);
    if (!this.hung.has(index)) this.hung.set(index, where);
    const id = index * 2;
    if (!this.infoIds.has(id)) {
      this.infoIds.add(id);
      this.infos.push({
        id, type: TTY_TYPE.PTY, locked: false, exclusive: false, packet_mode: false, sid: 0, pgrp: 0, rdev: st.rdev,
        pty: { index }, dev: st.dev, uid: st.uid, gid: st.gid,
      });
    }
    return id;
  }

  /** Settings of a terminal that is not a pty: its tty_info, without the pty fields. */
  private plainInfo(dup: number, st: fs.Stats, id: number, type: number, sidOf: number): Msg {
    const termios = ioctlBuf(dup, TCGETS, 36);
    const locked = ioctlBuf(dup, TIOCGLCKTRMIOS, 36);
    const ws = ioctlBuf(dup, TIOCGWINSZ, 8);
    const owner = this.cttys().get(sidOf);
    const e: Msg = {
      id, type, locked: false, exclusive: (ioctlInt(dup, TIOCGEXCL) ?? 0) !== 0, packet_mode: false,
      sid: owner?.sid ?? 0, pgrp: owner?.pgrp ?? 0, rdev: st.rdev,
    };
    if (termios) e.termios = termiosEntry(termios);
    if (locked) e.termios_locked = termiosEntry(locked);
    if (ws) e.winsize = { ws_row: ws.readUInt16LE(0), ws_col: ws.readUInt16LE(2), ws_xpixel: ws.readUInt16LE(4), ws_ypixel: ws.readUInt16LE(6) };
    Object.assign(e, { dev: st.dev, uid: st.uid, gid: st.gid });
    return e;
  }

  /**
   * /dev/tty: the holder reopens it on restore, so the terminal the fd refers to must be the
   * holder's controlling terminal (it stays so when the holder drops it, or gets another one).
   */
  private devTty(dup: number, st: fs.Stats, where: string, holder?: { pid: number; fd: number; flags?: number }): number {
    if (!holder) throw new UnsupportedError(`${where}: /dev/tty outside a task`);
    if (hungUp(dup)) throw new UnsupportedError(`${where}: /dev/tty of a terminal that was hung up (not supported)`);
    const real = ioctlInt(dup, TIOCGDEV);
    if (real === undefined) throw new UnsupportedError(`${where}: cannot tell which terminal /dev/tty refers to (TIOCGDEV)`);
    const ctty = readStat(holder.pid).ttyNr;
    if (real !== ctty)
      throw new UnsupportedError(`${where}: /dev/tty refers to ${devName(real)}, which is not the controlling terminal of task ${holder.pid} (${ctty ? devName(ctty) : 'none'}) any more (not supported)`);
    if (!this.devTtys.has(real)) this.devTtys.set(real, where);
    if ((holder.flags ?? 0) & O_ASYNC && major(real) === PTS_MAJOR) this.async.add(`${minor(real)}s`);
    const id = INFO_ID.ctty;
    if (this.infoIds.has(id)) return id;
    this.infoIds.add(id);
    lineDiscipline(dup, where, '/dev/tty');
    this.infos.push(this.plainInfo(dup, st, id, TTY_TYPE.CTTY, real));
    return id;
  }

  /** /dev/console or a virtual terminal: reopened by path, its settings put back. */
  private device(dup: number, st: fs.Stats, where: string, kind: 'console' | 'vt'): number {
    const id = INFO_ID[kind];
    const name = kind === 'console' ? 'the console' : `virtual terminal ${minor(st.rdev)}`;
    const seen = this.devices.get(id);
    if (seen !== undefined) {
      if (seen !== st.rdev)
        throw new UnsupportedError(`${where}: a second virtual terminal (${minor(st.rdev)}, after ${minor(seen)}): CRIU's image has one tty_info for every virtual terminal (not supported)`);
      return id;
    }
    if (hungUp(dup)) throw new UnsupportedError(`${where}: ${name} was hung up (not supported)`);
    this.devices.set(id, st.rdev);
    this.infoIds.add(id);
    lineDiscipline(dup, where, name);
    this.infos.push(this.plainInfo(dup, st, id, kind === 'console' ? TTY_TYPE.CONSOLE : TTY_TYPE.VT, st.rdev));
    return id;
  }

  /**
   * After every fd: a slave whose master is outside the tree belongs to the caller's terminal
   * (--shell-job only); masters whose slave no task holds; the queued bytes of every pair;
   * sessions led in the tree keep their controlling terminal only when it is a pty made again.
   */
  finish(shellJob: boolean): void {
    for (const [index, s] of this.slaves) {
      if (this.masters.has(index)) continue;
      if (!shellJob) throw new UnsupportedError(`${s.where}: /dev/pts/${index} belongs to a terminal outside the dumped tree (use --shell-job)`);
      // someone outside may write to it meanwhile: its queue is not taken
      const queued = withDup(s, fionread);
      if (queued > 0)
        throw new UnsupportedError(`${s.where}: pty ${index} has ${queued} unread bytes queued for its slave, whose master is outside the dumped tree; they cannot be taken and put back (not supported)`);
    }
    for (const [index, m] of this.masters) {
      const sid = num(this.infos.find((e) => e.id === index * 2 + 1)?.sid);
      if (sid && this.tree && !this.tree.has(sid))
        throw new UnsupportedError(`${m.where}: pty ${index} is the controlling terminal of session ${sid}, outside the dumped tree (not supported)`);
      const s = this.slaves.get(index);
      if (s) withDup(m, (md) => withDup(s, (sd) => this.queues(index, md, sd, m.where, s.where)));
      else this.closedSlave(index, m);
    }
    for (const [rdev, owner] of this.cttys()) {
      if (!this.tree?.has(owner.sid)) continue; // a session outside: the restored tree stays in the caller's
      // a pty made again, or a virtual terminal a task holds (reopened by its path)
      const restored = major(rdev) === PTS_MAJOR ? this.masters.has(minor(rdev)) : this.devices.get(INFO_ID.vt) === rdev;
      if (!restored)
        throw new UnsupportedError(`task ${owner.sid}: its controlling terminal (device ${major(rdev)}:${minor(rdev)}) is ${major(rdev) === PTS_MAJOR ? `/dev/pts/${minor(rdev)}, whose master is outside the dumped tree` : ttyKind(rdev) === 'vt' ? 'a virtual terminal no task of the tree holds open' : 'neither a pseudo-terminal nor a virtual terminal'}; a session leader's terminal is not restored from outside (not supported)`);
    }
  }

  /** The bytes queued both ways in pty `index` (master fd md, slave fd sd), taken and put back. */
  private queues(index: number, md: number, sd: number, mWhere: string, sWhere: string): void {
    const forMaster = hasQueued(md), forSlave = hasQueued(sd);
    const why = cannotPutBack();
    if (why) {
      // without a way back nothing is taken; an unfinished canonical line stays unseen
      if (forMaster || forSlave)
        throw new UnsupportedError(`${forMaster ? mWhere : sWhere}: pty ${index} has bytes queued for its ${forMaster ? 'master' : 'slave'}, which cannot be put back after reading them: ${why} (not supported)`);
      return;
    }
    for (const [end, queued, where] of [['m', forMaster, mWhere], ['s', forSlave, sWhere]] as const)
      if (queued && this.async.has(`${index}${end}`))
        throw new UnsupportedError(`${where}: pty ${index} has bytes queued for its ${end === 'm' ? 'master' : 'slave'}, whose holder is set for SIGIO (O_ASYNC): putting them back would signal it again (not supported)`);
    const packet = this.infos.find((e) => e.id === index * 2 + 1)?.packet_mode === true;
    const m = takeMaster(md, packet, mWhere, index);
    const s = takeSlave(sd, sWhere, index, md);
    if (m.length) this.data.push({ tty_id: index * 2 + 1, data: m });
    if (s.length) this.data.push({ tty_id: index * 2, data: s });
  }

  /** A master with no slave fd in the tree: the slave was opened and closed (recorded), or is refused. */
  private closedSlave(index: number, m: End): void {
    const n = native();
    const slavePath = `/dev/pts/${index}`;
    withDup(m, (dup) => {
      // POLLHUP: the slave has been opened and every fd of it closed since
      const closed = (n.pollOne(dup, POLLIN, 0) & POLLHUP) !== 0;
      if (!closed) {
        const viaDevTty = this.devTtys.get(ptsRdev(slavePath));
        if (viaDevTty) throw new UnsupportedError(`${viaDevTty}: the slave ${slavePath} of pty ${index} is held only through /dev/tty (not supported)`);
        const outside = openedBy(slavePath);
        throw new UnsupportedError(`${m.where}: the slave ${slavePath} of this pty ${outside ? `is open in process ${outside}, outside the dumped tree` : 'was never opened, or is open outside the dumped tree'} (not supported)`);
      }
      if (ioctlInt(dup, TIOCGPTLCK)) throw new UnsupportedError(`${m.where}: pty ${index} is locked and its slave closed (not supported)`);
      let slave: number;
      try {
        slave = fs.openSync(slavePath, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
      } catch (e) {
        throw new UnsupportedError(`${m.where}: cannot open the closed slave ${slavePath} to read its state: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      try {
        const st = fs.fstatSync(slave);
        const fresh = freshPtsMode();
        if (fresh !== undefined && (st.mode & 0o7777) !== fresh)
          throw new UnsupportedError(`${m.where}: the closed slave ${slavePath} has mode ${(st.mode & 0o7777).toString(8)}, a new one gets ${fresh.toString(8)} (not recorded for a slave no task holds; not supported)`);
        const where = `${m.where} (its closed slave ${slavePath})`;
        this.info(slave, st, where);
        this.queues(index, dup, slave, m.where, where);
      } finally {
        fs.closeSync(slave);
      }
    });
  }
}

/** fn on a duplicate of a task's fd, closed after. */
function withDup<T>(e: { pid: number; fd: number }, fn: (dup: number) => T): T {
  const n = native();
  const pidfd = n.pidfdOpen(e.pid);
  let dup: number;
  try {
    dup = n.pidfdGetfd(pidfd, e.fd);
  } finally {
    n.close(pidfd);
  }
  try {
    return fn(dup);
  } finally {
    n.close(dup);
  }
}

function ptsRdev(p: string): number {
  try {
    return fs.statSync(p).rdev;
  } catch {
    return -1;
  }
}

/** Only n_tty is made again. */
function lineDiscipline(dup: number, where: string, what: string): void {
  const ld = ioctlInt(dup, TIOCGETD);
  if (ld !== undefined && ld !== N_TTY) throw new UnsupportedError(`${where}: ${what} uses line discipline ${ld}, not N_TTY (not supported)`);
}

/** The first process with an fd on `file` (scanning /proc), or undefined. */
function openedBy(file: string): number | undefined {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${d}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${d}/fd/${fd}`) === file) return Number(d);
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return undefined;
}

/** The mode devpts gives a new slave node (mount option mode=, 0600 without it), from /dev/pts's mount. */
function freshPtsMode(): number | undefined {
  // the last devpts mounted on /dev/pts is the one seen there
  const pts = readMountinfo().filter((m) => m.point === '/dev/pts' && m.fstype === 'devpts').pop();
  if (!pts) return undefined;
  const mode = pts.superOptions.find((o) => /^mode=[0-7]+$/.test(o));
  return mode ? parseInt(mode.slice(5), 8) : 0o600;
}
