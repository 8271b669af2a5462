// Pseudo-terminals: a TTY file entry (plus a REG entry for its path, as CRIU writes it) per open
// file and one tty_info_entry per terminal end (id = index * 2 + 1 for a master, index * 2 for a
// slave). Termios, window size and modes are read with ioctls on a duplicate of the task's fd;
// the session and foreground group of a slave come from the tasks that have it as their
// controlling terminal (those ioctls answer only the terminal's own session).
// A master whose slave no task holds: a slave that was opened and closed again (the master polls
// POLLHUP) gets a tty_info of its own, read through a short-lived open of /dev/pts/N, so that the
// restore opens and closes it once too (the master reads EOF/EIO again) and gives the node its
// owner back; a slave open outside the tree is refused. Bytes queued in either direction are
// refused: a tty cannot be read without consuming them. (A partial line in canonical mode is not
// even counted by FIONREAD, and cannot be seen at all.)
import * as fs from 'fs';
import { readMountinfo } from '../proc/mountinfo';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { UnsupportedError } from '../errors';

const TCGETS = 0x5401, TIOCGWINSZ = 0x5413, TIOCGLCKTRMIOS = 0x5456, TIOCGSID = 0x5429, TIOCGPGRP = 0x540f;
const TIOCGPTN = 0x80045430, TIOCGPKT = 0x80045438, TIOCGPTLCK = 0x80045439, TIOCGEXCL = 0x80045440;
const FIONREAD = 0x541b;
const POLLIN = 0x1, POLLPRI = 0x2, POLLHUP = 0x10;
const O_RDWR = 2, O_NOCTTY = 0o400, O_NONBLOCK = 0o4000, O_CLOEXEC = 0o2000000;
const PTY_MASTER_MAJOR = 5, PTY_MASTER_MINOR = 2;
const PTS_MAJOR = 136;
const TTY_TYPE_PTY = 1;
const NCCS = 19;

export const major = (rdev: number) => ((rdev >> 8) & 0xfff) | Math.floor(rdev / 2 ** 32) & ~0xfff;
export const minor = (rdev: number) => (rdev & 0xff) | ((rdev >> 12) & ~0xff);

/** A path that names a pseudo-terminal end (the engine decides by the device number). */
export function isPtyDevice(rdev: number): boolean {
  const M = major(rdev);
  return (M === PTY_MASTER_MAJOR && minor(rdev) === PTY_MASTER_MINOR) || M === PTS_MAJOR;
}

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

export class TtyTable {
  readonly infos: Msg[] = [];
  private infoIds = new Set<number>();
  /** master index -> the task and fd it was first seen at */
  private masters = new Map<number, { pid: number; fd: number; where: string }>();
  private slaves = new Map<number, string>();
  /** PIDs of the dumped tree (a session led inside it must get its terminal back); unset: not checked */
  tree?: Set<number>;

  /** cttys: controlling terminal rdev (stat tty_nr) -> its session and foreground group, from the tree */
  constructor(private cttys: () => Map<number, CttyOwner>) {}

  /**
   * The tty_info id of the terminal behind `dup` (a duplicate of fd `holder.fd` of task
   * `holder.pid`), recording it once.
   */
  info(dup: number, st: fs.Stats, where: string, holder?: { pid: number; fd: number }): number {
    const M = major(st.rdev);
    const isMaster = M === PTY_MASTER_MAJOR;
    let index: number;
    if (isMaster) {
      const n = ioctlInt(dup, TIOCGPTN);
      if (n === undefined) throw new UnsupportedError(`${where}: cannot read the pty index of /dev/ptmx`);
      index = n;
      if (!this.masters.has(index) && holder) this.masters.set(index, { ...holder, where });
    } else if (M === PTS_MAJOR) {
      index = minor(st.rdev); // all slaves are major 136 with a 20-bit minor
      if (!this.slaves.has(index)) this.slaves.set(index, where);
    } else {
      throw new UnsupportedError(`${where}: terminal device ${M}:${minor(st.rdev)} is not a pseudo-terminal`);
    }
    const id = index * 2 + (isMaster ? 1 : 0);
    if (this.infoIds.has(id)) return id;
    this.infoIds.add(id);
    const unread = ioctlInt(dup, FIONREAD) ?? 0;
    if (unread > 0)
      throw new UnsupportedError(`${where}: pty ${index} has ${unread} unread bytes queued for its ${isMaster ? 'master (written on the slave side)' : 'slave (written on the master side)'}; a terminal cannot be read without consuming them (not supported)`);
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
      id, type: TTY_TYPE_PTY, locked: isMaster ? (ioctlInt(dup, TIOCGPTLCK) ?? 0) !== 0 : false,
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

  /**
   * After every fd: a slave whose master is outside the tree belongs to the caller's terminal
   * (--shell-job only); masters whose slave no task holds; sessions led in the tree keep their
   * controlling terminal only when it is a pty made again.
   */
  finish(shellJob: boolean): void {
    if (!shellJob) {
      for (const [index, where] of this.slaves) {
        if (!this.masters.has(index)) throw new UnsupportedError(`${where}: /dev/pts/${index} belongs to a terminal outside the dumped tree (use --shell-job)`);
      }
    }
    for (const [index, m] of this.masters) {
      const sid = num(this.infos.find((e) => e.id === index * 2 + 1)?.sid);
      if (sid && this.tree && !this.tree.has(sid))
        throw new UnsupportedError(`${m.where}: pty ${index} is the controlling terminal of session ${sid}, outside the dumped tree (not supported)`);
      if (!this.slaves.has(index)) this.closedSlave(index, m);
    }
    for (const [rdev, owner] of this.cttys()) {
      if (!this.tree?.has(owner.sid)) continue; // a session outside: the restored tree stays in the caller's
      const restored = major(rdev) === PTS_MAJOR && this.masters.has(minor(rdev));
      if (!restored)
        throw new UnsupportedError(`task ${owner.sid}: its controlling terminal (device ${major(rdev)}:${minor(rdev)}) is ${major(rdev) === PTS_MAJOR ? `/dev/pts/${minor(rdev)}, whose master is outside the dumped tree` : 'not a pseudo-terminal'}; a session leader's terminal is not restored from outside (not supported)`);
    }
  }

  /** A master with no slave fd in the tree: the slave was opened and closed (recorded), or is refused. */
  private closedSlave(index: number, m: { pid: number; fd: number; where: string }): void {
    const n = native();
    const slavePath = `/dev/pts/${index}`;
    const pidfd = n.pidfdOpen(m.pid);
    let dup: number;
    try {
      dup = n.pidfdGetfd(pidfd, m.fd);
    } finally {
      n.close(pidfd);
    }
    try {
      // POLLHUP: the slave has been opened and every fd of it closed since
      const closed = (n.pollOne(dup, POLLIN, 0) & POLLHUP) !== 0;
      if (!closed) {
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
        this.info(slave, st, `${m.where} (its closed slave ${slavePath})`);
      } finally {
        fs.closeSync(slave);
      }
    } finally {
      n.close(dup);
    }
  }
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
