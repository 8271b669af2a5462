// Pseudo-terminals: a TTY file entry (plus a REG entry for its path, as CRIU writes it) per open
// file and one tty_info_entry per terminal end (id = index * 2 + 1 for a master, index * 2 for a
// slave). Termios, window size and modes are read with ioctls on a duplicate of the task's fd;
// the session and foreground group of a slave come from the tasks that have it as their
// controlling terminal (those ioctls answer only the terminal's own session).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { UnsupportedError } from '../errors';

const TCGETS = 0x5401, TIOCGWINSZ = 0x5413, TIOCGLCKTRMIOS = 0x5456, TIOCGSID = 0x5429, TIOCGPGRP = 0x540f;
const TIOCGPTN = 0x80045430, TIOCGPKT = 0x80045438, TIOCGPTLCK = 0x80045439, TIOCGEXCL = 0x80045440;
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

const ioctlInt = (fd: number, req: number) => ioctlBuf(fd, req, 4)?.readInt32LE(0);

export interface CttyOwner {
  sid: number;
  pgrp: number;
}

export class TtyTable {
  readonly infos: Msg[] = [];
  private infoIds = new Set<number>();
  private masters = new Set<number>();
  private slaves = new Map<number, string>();

  /** cttys: controlling terminal rdev (stat tty_nr) -> its session and foreground group, from the tree */
  constructor(private cttys: () => Map<number, CttyOwner>) {}

  /** The tty_info id of the terminal behind `dup` (a duplicate of the task's fd), recording it once. */
  info(dup: number, st: fs.Stats, where: string): number {
    const M = major(st.rdev);
    const isMaster = M === PTY_MASTER_MAJOR;
    let index: number;
    if (isMaster) {
      const n = ioctlInt(dup, TIOCGPTN);
      if (n === undefined) throw new UnsupportedError(`${where}: cannot read the pty index of /dev/ptmx`);
      index = n;
      this.masters.add(index);
    } else if (M === PTS_MAJOR) {
      index = minor(st.rdev); // all slaves are major 136 with a 20-bit minor
      if (!this.slaves.has(index)) this.slaves.set(index, where);
    } else {
      throw new UnsupportedError(`${where}: terminal device ${M}:${minor(st.rdev)} is not a pseudo-terminal`);
    }
    const id = index * 2 + (isMaster ? 1 : 0);
    if (this.infoIds.has(id)) return id;
    this.infoIds.add(id);
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
    if (termios) e.termios = termiosEntry(termios);
    if (locked) e.termios_locked = termiosEntry(locked);
    if (ws) e.winsize = { ws_row: ws.readUInt16LE(0), ws_col: ws.readUInt16LE(2), ws_xpixel: ws.readUInt16LE(4), ws_ypixel: ws.readUInt16LE(6) };
    Object.assign(e, { pty: { index }, dev: st.dev, uid: st.uid, gid: st.gid });
    this.infos.push(e);
    return id;
  }

  /** A slave whose master is outside the tree belongs to the caller's terminal: --shell-job only. */
  finish(shellJob: boolean): void {
    if (shellJob) return;
    for (const [index, where] of this.slaves) {
      if (!this.masters.has(index)) throw new UnsupportedError(`${where}: /dev/pts/${index} belongs to a terminal outside the dumped tree (use --shell-job)`);
    }
  }
}
