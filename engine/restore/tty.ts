// Terminals. Pseudo-terminals: each master of tty-info.img is opened again by the engine with its
// old index when that is free (devpts hands out the lowest free index: extra masters are held
// until the wanted one comes, then closed), unlocked, and its slave ends opened by path; termios,
// window size, the queued bytes (tty-data.img, kinds/ttydata), locked termios, packet mode and
// exclusivity come back, and the lock last. A slave whose master is outside the set is the
// caller's terminal (--shell-job): the recorded /dev/pts/N when it still exists, else the engine's
// own terminal. A hung-up slave (no settings recorded) is opened under a master of its own that is
// closed right after, which hangs it up again. The controlling terminal of a session leader is
// taken by the leader itself right after its setsid, before it forks (injected TIOCSCTTY), so
// that every member of the session inherits it; the foreground group is set once groups exist.
// /dev/tty is opened by its holder (injected), which has its controlling terminal by then;
// /dev/console and virtual terminals are opened by path, their settings put back.
import * as fs from 'fs';
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { loadMessages } from '../../images/files';
import { native } from '../../native';
import { EngineError } from '../errors';
import { putMaster, putSlave, cannotPutBack } from '../kinds/ttydata';
import type { Log } from '../log';
import type { Proc } from './context';
import { ImageSet, ImageError, num } from './imageset';
import { NR, AT_FDCWD, O_RDONLY, O_RDWR, O_CLOEXEC, O_NONBLOCK, O_APPEND, O_ASYNC, F_SETFL, i32 } from './sys';
import type { Call } from './remote';

const TIOCGPTN = 0x80045430, TIOCSPTLCK = 0x40045431, TCSETS = 0x5402, TIOCSLCKTRMIOS = 0x5457, TIOCSWINSZ = 0x5414;
const TIOCPKT = 0x5420, TIOCEXCL = 0x540c, TIOCSCTTY = 0x540e, TIOCSPGRP = 0x5410;
const O_NOCTTY = 0o400;
const OPEN_ONLY = 0o100 | 0o200 | 0o1000 | 0o400;
const MAX_TRIES = 4096;
const TYPE_TTY = 11;
const TTY_TYPE = { PTY: 1, CONSOLE: 2, VT: 3, CTTY: 4 } as const;

/** termios_entry -> the kernel's 36-byte struct termios (c_cc: 19 bytes packed in u32 words, as CRIU). */
export function termiosBuffer(t: Msg): Buffer {
  const b = Buffer.alloc(36);
  b.writeUInt32LE(num(t.c_iflag) >>> 0, 0);
  b.writeUInt32LE(num(t.c_oflag) >>> 0, 4);
  b.writeUInt32LE(num(t.c_cflag) >>> 0, 8);
  b.writeUInt32LE(num(t.c_lflag) >>> 0, 12);
  b.writeUInt8(num(t.c_line) & 0xff, 16);
  const words = ((t.c_cc ?? []) as unknown[]).map(num);
  for (let j = 0; j < 19; j++) b.writeUInt8(((words[j >> 2] ?? 0) >>> ((j & 3) * 8)) & 0xff, 17 + j);
  return b;
}

const isZero = (t: Msg | undefined) => !t || termiosBuffer(t).every((x) => x === 0);

interface Pty {
  index: number;
  master?: number;
  masterInfo?: Msg;
  slaveInfo?: Msg;
  /** the slave's path here (the index may differ when the old one is taken) */
  slavePath: string;
  outside: boolean;
  /** a hung-up slave: its master is closed once the slave fds are open */
  hung: boolean;
}

/** A controlling terminal to give back: a pty's slave or a virtual terminal. */
interface Ctty {
  name: string;
  path: string;
  info: Msg;
  pty?: Pty;
}

/** A slave recorded without settings was hung up (CRIU's record of it too). */
const isHung = (info: Msg) => num(info.type) === TTY_TYPE.PTY && num(info.id) % 2 === 0 && !info.termios;

export class TtyRestorer {
  private ptys = new Map<number, Pty>();
  private files = new Map<number, number>();
  /** tty-data.img: tty_info id -> the bytes queued for that end */
  private data = new Map<number, Buffer>();

  constructor(private set: ImageSet, private shellJob: boolean, private log: Log) {
    const file = path.join(set.dir, 'tty-data.img');
    if (!fs.existsSync(file)) return;
    let entries: Msg[];
    try {
      entries = loadMessages(file);
    } catch (e) {
      throw new EngineError(`tty-data.img: unreadable: ${(e as Error).message}`, 'EIMAGE');
    }
    for (const [i, e] of entries.entries()) {
      const id = num(e.tty_id);
      const info = set.ttyInfos.get(id);
      const pair = info && num(info.type) === TTY_TYPE.PTY && set.ttyInfos.has(id | 1) && !isHung(info);
      if (!pair) throw new ImageError('tty-data.img', `entry ${i}.tty_id`, `${id} is not an end of a pty pair in tty-info.img`);
      if (this.data.has(id)) throw new ImageError('tty-data.img', `entry ${i}.tty_id`, `a second queue for ${id}`);
      this.data.set(id, Buffer.from((e.data ?? new Uint8Array()) as Uint8Array));
    }
  }

  /**
   * Refusals before anything exists: a slave whose master is outside needs --shell-job; a pty made
   * again can be the controlling terminal only of a session led inside the set; /dev/tty needs its
   * holder's controlling terminal to come back; queued bytes need TIOCSTI.
   */
  check(): void {
    for (const info of this.set.ttyInfos.values()) {
      if (num(info.type) !== TTY_TYPE.PTY) continue;
      const index = num(info.pty?.index);
      const hung = isHung(info);
      if (num(info.id) % 2 === 0 && !hung && !this.set.ttyInfos.has(num(info.id) + 1) && this.usedBy(num(info.id)).length && !this.shellJob)
        throw new ImageError('tty-info.img', `id ${info.id}`, `/dev/pts/${index} belongs to a terminal outside the image set (use --shell-job)`);
      const inside = num(info.id) % 2 === 1 || this.set.ttyInfos.has(num(info.id) + 1);
      if (!inside || !num(info.sid)) continue;
      const sid = num(info.sid);
      const leader = this.set.byPid.get(sid);
      if (!leader || leader.sid !== sid || !leader.fdinfo)
        throw new ImageError('tty-info.img', `id ${info.id}.sid`, `/dev/pts/${index} is the controlling terminal of session ${sid}, which is not led by a live task of the set`);
    }
    for (const info of this.set.ttyInfos.values()) {
      if (num(info.type) !== TTY_TYPE.VT || !num(info.sid)) continue;
      const leader = this.set.byPid.get(num(info.sid));
      if (!leader || leader.sid !== num(info.sid) || !leader.fdinfo)
        throw new ImageError('tty-info.img', `id ${info.id}.sid`, `a virtual terminal is the controlling terminal of session ${info.sid}, which is not led by a live task of the set`);
    }
    for (const t of this.set.tasks) {
      for (const e of t.fdinfo ?? []) {
        const f = this.set.files.get(num(e.id));
        if (num(f?.type) !== TYPE_TTY || num(this.set.ttyInfos.get(num(f!.tty.tty_info_id))?.type) !== TTY_TYPE.CTTY) continue;
        const where = `task ${t.pid} fd ${e.fd}`;
        if (!this.set.byPid.has(t.sid)) {
          if (!this.shellJob) throw new ImageError(`fdinfo-${num(t.ids?.files_id)}.img`, `fd ${e.fd}`, `${where}: /dev/tty of session ${t.sid}, outside the image set (use --shell-job)`);
          continue;
        }
        // a pty made again or a virtual terminal, with the session recorded
        const ctty = [...this.set.ttyInfos.values()].some((i) => num(i.sid) === t.sid &&
          ((num(i.type) === TTY_TYPE.PTY && (num(i.id) % 2 === 1 || this.set.ttyInfos.has(num(i.id) + 1))) || num(i.type) === TTY_TYPE.VT));
        if (!ctty) throw new ImageError(`fdinfo-${num(t.ids?.files_id)}.img`, `fd ${e.fd}`, `${where}: /dev/tty, but session ${t.sid} gets no controlling terminal back`);
      }
    }
    const why = this.data.size ? cannotPutBack() : undefined;
    if (why) throw new ImageError('tty-data.img', 'data', `queued terminal bytes cannot be put back here: ${why}`);
  }

  private usedBy(infoId: number): Msg[] {
    return [...this.set.files.values()].filter((f) => num(f.type) === TYPE_TTY && num(f.tty.tty_info_id) === infoId);
  }

  /** The path a TTY entry was opened by (its REG entry). */
  private pathOf(f: Msg): string {
    const reg = f.tty.regf_id !== undefined ? this.set.files.get(num(f.tty.regf_id))?.reg : undefined;
    if (!reg?.name) throw new ImageError('files.img', `id ${f.id}.tty.regf_id`, 'no path recorded for the terminal');
    return String(reg.name);
  }

  /** Opens every terminal end the tasks hold (not /dev/tty: its holder does, see openInTask). */
  build(): void {
    const n = native();
    for (const info of this.set.ttyInfos.values()) {
      if (num(info.type) !== TTY_TYPE.PTY) continue;
      const index = num(info.pty.index);
      let p = this.ptys.get(index);
      if (!p) this.ptys.set(index, (p = { index, slavePath: `/dev/pts/${index}`, outside: false, hung: false }));
      if (num(info.id) % 2) p.masterInfo = info;
      else p.slaveInfo = info;
    }
    for (const p of this.ptys.values()) {
      if (!p.masterInfo && p.slaveInfo && isHung(p.slaveInfo)) p.hung = true;
      else if (!p.masterInfo) {
        p.outside = true;
        if (!fs.existsSync(p.slavePath)) {
          const own = ttyOfStdin();
          if (!own) throw new EngineError(`--shell-job: ${p.slavePath} is gone and the engine has no terminal to put in its place`);
          this.log.debug(`${p.slavePath} is gone: using the engine's terminal ${own}`);
          p.slavePath = own;
        }
        continue;
      }
      if (p.masterInfo && this.usedBy(num(p.masterInfo.id)).length > 1)
        throw new ImageError('files.img', `tty_info_id ${p.masterInfo.id}`, 'two open descriptions of one pty master cannot be made again');
      const got = openMaster(p.index);
      p.master = got.fd;
      if (got.index !== p.index) this.log.debug(`pty ${p.index} is taken: restored as ${got.index}`);
      p.slavePath = `/dev/pts/${got.index}`;
      n.ioctl(p.master, TIOCSPTLCK, i32(0));
    }
    const devices = new Map<number, number>();
    for (const f of this.set.files.values()) {
      if (num(f.type) !== TYPE_TTY) continue;
      const info = this.set.ttyInfos.get(num(f.tty.tty_info_id))!;
      const type = num(info.type);
      if (type === TTY_TYPE.CTTY) continue;
      const flags = (num(f.tty.flags) & ~OPEN_ONLY) | O_NOCTTY | O_CLOEXEC;
      if (type !== TTY_TYPE.PTY) {
        const fd = this.open(f, this.pathOf(f), flags);
        if (!devices.has(num(info.id))) devices.set(num(info.id), fd);
        continue;
      }
      const p = this.ptys.get(num(info.pty.index))!;
      if (num(info.id) % 2) this.files.set(num(f.id), p.master!);
      else this.open(f, p.slavePath, flags);
    }
    for (const p of this.ptys.values()) {
      if (p.hung) {
        // the slave fds are open: closing the master hangs them up
        if (p.slaveInfo) this.slaveNode(p, p.slaveInfo);
        fs.closeSync(p.master!);
        p.master = undefined;
        continue;
      }
      if (p.outside) continue;
      const slave = [...this.files.entries()].find(([id]) => {
        const f = this.set.files.get(id)!;
        return num(f.tty.tty_info_id) === num(p.masterInfo!.id) - 1;
      })?.[1];
      const m = p.master!;
      const mi = p.masterInfo!;
      const si = p.slaveInfo;
      // the slave side's settings through a slave fd (a temporary one when no task holds it)
      const s = slave ?? (si ? fs.openSync(p.slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC) : undefined);
      try {
        if (s !== undefined && si) this.settings(s, si);
        this.settings(m, mi);
        // the queues, under the terminal's own settings, before a lock can keep them from changing
        const sd = si && this.data.get(num(si.id));
        if (sd) {
          if (s === undefined) throw new ImageError('tty-data.img', `tty_id ${si.id}`, 'bytes queued for a slave nobody holds');
          putSlave(s, sd, `pty ${p.index} slave`);
        }
        const md = this.data.get(num(mi.id));
        if (md) putMaster(m, md);
        if (s !== undefined && si) this.locked(s, si);
        this.locked(m, mi);
      } finally {
        if (s !== undefined && slave === undefined) fs.closeSync(s);
      }
      if (si) this.slaveNode(p, si);
      if (mi.packet_mode) n.ioctl(m, TIOCPKT, i32(1));
      if (mi.exclusive) n.ioctl(m, TIOCEXCL, 0);
      if (si?.exclusive && s !== undefined) n.ioctl(s, TIOCEXCL, 0);
      if (mi.locked) n.ioctl(m, TIOCSPTLCK, i32(1));
    }
    for (const [id, fd] of devices) {
      const info = this.set.ttyInfos.get(id)!;
      this.settings(fd, info);
      this.locked(fd, info);
      if (info.exclusive) n.ioctl(fd, TIOCEXCL, 0);
      const f = this.usedBy(id)[0];
      this.node(this.pathOf(f), info, f);
    }
    // file flags open() does not take (O_ASYNC), and those of masters (opened without them)
    for (const [id, fd] of this.files) {
      const fl = num(this.set.files.get(id)!.tty.flags);
      if (fl & (O_ASYNC | O_NONBLOCK | O_APPEND)) n.fcntl(fd, F_SETFL, fl & (O_ASYNC | O_NONBLOCK | O_APPEND));
    }
  }

  /** Opens a terminal file by path for files.img entry f. */
  private open(f: Msg, file: string, flags: number): number {
    let fd: number;
    try {
      fd = fs.openSync(file, flags);
    } catch (e) {
      throw new EngineError(`files.img: id ${f.id}: cannot open ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    this.files.set(num(f.id), fd);
    return fd;
  }

  /**
   * /dev/tty for files.img entry f, opened by task p itself (it names the opener's controlling
   * terminal); returns the task's fd.
   */
  openInTask(p: Proc, f: Msg): bigint {
    const file = this.pathOf(f);
    const r = p.remote;
    const flags = (num(f.tty.flags) & ~OPEN_ONLY) | O_NOCTTY;
    const fd = r.one(p.host, `open ${file} (task ${p.img.pid}'s controlling terminal)`, NR.openat, AT_FDCWD, r.cstr(file), flags, 0);
    const info = this.set.ttyInfos.get(num(f.tty.tty_info_id))!;
    this.node(file, info, f);
    if (num(f.tty.flags) & O_ASYNC) r.one(p.host, 'fcntl(F_SETFL O_ASYNC)', NR.fcntl, fd, F_SETFL, num(f.tty.flags) & (O_ASYNC | O_NONBLOCK | O_APPEND));
    return fd;
  }

  /** A device node as recorded: owner (tty_info uid/gid) and mode (the REG entry of its path). */
  private node(file: string, info: Msg, f: Msg): void {
    const st = fs.statSync(file);
    if (info.uid !== undefined && info.gid !== undefined && (st.uid !== num(info.uid) || st.gid !== num(info.gid))) fs.chownSync(file, num(info.uid), num(info.gid));
    const mode = f.tty.regf_id !== undefined ? this.set.files.get(num(f.tty.regf_id))?.reg?.mode : undefined;
    if (mode !== undefined && (st.mode & 0o7777) !== (num(mode) & 0o7777)) fs.chmodSync(file, num(mode) & 0o7777);
  }

  /** The slave's node as it was: its owner (tty_info uid/gid) and mode (the REG entry of its path). */
  private slaveNode(p: Pty, si: Msg): void {
    if (si.uid !== undefined && si.gid !== undefined) fs.chownSync(p.slavePath, num(si.uid), num(si.gid));
    const f = this.usedBy(num(si.id)).find((e) => e.tty.regf_id !== undefined);
    const mode = f && this.set.files.get(num(f.tty.regf_id))?.reg?.mode;
    if (mode !== undefined) fs.chmodSync(p.slavePath, num(mode) & 0o7777);
  }

  private settings(fd: number, info: Msg): void {
    const n = native();
    if (info.termios) n.ioctl(fd, TCSETS, termiosBuffer(info.termios));
    const w = info.winsize;
    if (w) {
      const b = Buffer.alloc(8);
      [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel].forEach((v, i) => b.writeUInt16LE(num(v) & 0xffff, i * 2));
      n.ioctl(fd, TIOCSWINSZ, b);
    }
  }

  private locked(fd: number, info: Msg): void {
    if (!isZero(info.termios_locked)) native().ioctl(fd, TIOCSLCKTRMIOS, termiosBuffer(info.termios_locked));
  }

  fd(fileId: number): number | undefined {
    return this.files.get(fileId);
  }

  /** The terminals (ptys made again, virtual terminals) that are the controlling terminal of the session `p` leads. */
  private cttysOf(p: Proc): Ctty[] {
    const out: Ctty[] = [];
    if (p.img.sid !== p.img.pid) return out;
    for (const [index, pty] of this.ptys) {
      // a set made by CRIU records the session of a slave no task holds at the master only
      const si = pty.slaveInfo ?? pty.masterInfo;
      if (pty.outside || pty.hung || !si || num(si.sid) !== p.img.pid) continue;
      out.push({ name: `/dev/pts/${index}`, path: pty.slavePath, info: si, pty });
    }
    for (const info of this.set.ttyInfos.values()) {
      if (num(info.type) !== TTY_TYPE.VT || num(info.sid) !== p.img.pid) continue;
      const f = this.usedBy(num(info.id))[0];
      if (f) out.push({ name: this.pathOf(f), path: this.pathOf(f), info });
    }
    return out;
  }

  /** Calls on an fd of the terminal the leader opens for them (a pty unlocked meanwhile: a locked slave does not open). */
  private onTerminal(p: Proc, c: Ctty, what: (fd: bigint) => Call[]): void {
    const n = native();
    const pty = c.pty;
    const locked = pty?.masterInfo?.locked && pty.master !== undefined;
    if (locked) n.ioctl(pty!.master!, TIOCSPTLCK, i32(0));
    try {
      const r = p.remote;
      r.reset();
      const fd = r.one(p.host, `open ${c.path}`, NR.openat, AT_FDCWD, r.cstr(c.path), (pty ? O_RDWR : O_RDONLY) | O_NOCTTY | O_CLOEXEC, 0);
      r.run(p.host, [...what(fd), { nr: NR.close, args: [fd], what: 'close' }]);
    } finally {
      if (locked) n.ioctl(pty!.master!, TIOCSPTLCK, i32(1));
    }
  }

  /**
   * Right after a session leader's setsid, before it forks: its controlling terminal (a process
   * gets its terminal from the one it was forked from; only a leader can take one itself). A
   * terminal another session holds meanwhile is not taken from it (TIOCSCTTY fails).
   */
  takeControllingTerminal(p: Proc): void {
    for (const c of this.cttysOf(p))
      this.onTerminal(p, c, (fd) => [{ nr: NR.ioctl, args: [fd, TIOCSCTTY, 0], what: `ioctl(TIOCSCTTY) on ${c.name}` }]);
  }

  /** Once every process group exists: the terminal's foreground group. */
  controllingTerminal(p: Proc): void {
    for (const c of this.cttysOf(p)) {
      if (!num(c.info.pgrp)) continue;
      this.onTerminal(p, c, (fd) => [{ nr: NR.ioctl, args: [fd, TIOCSPGRP, p.remote.put(i32(num(c.info.pgrp)))], what: `ioctl(TIOCSPGRP ${c.info.pgrp}) on ${c.name}` }]);
    }
  }

  close(): void {
    const seen = new Set<number>();
    for (const fd of [...this.files.values(), ...[...this.ptys.values()].map((p) => p.master ?? -1)]) {
      if (fd < 0 || seen.has(fd)) continue;
      seen.add(fd);
      try { fs.closeSync(fd); } catch { /* closed */ }
    }
    this.files.clear();
    for (const p of this.ptys.values()) p.master = undefined;
  }
}

/** A master with the wanted index if it is free (lowest free first), else the first one got. */
function openMaster(want: number): { fd: number; index: number } {
  const n = native();
  const held: number[] = [];
  try {
    for (let i = 0; i < MAX_TRIES; i++) {
      const fd = fs.openSync('/dev/ptmx', O_RDWR | O_NOCTTY | O_CLOEXEC);
      const b = Buffer.alloc(4);
      n.ioctl(fd, TIOCGPTN, b);
      const index = b.readUInt32LE(0);
      if (index === want) return { fd, index };
      if (index > want) {
        // taken: keep the lowest one we got
        if (held.length) {
          fs.closeSync(fd);
          const first = held.shift()!;
          const b2 = Buffer.alloc(4);
          n.ioctl(first, TIOCGPTN, b2);
          return { fd: first, index: b2.readUInt32LE(0) };
        }
        return { fd, index };
      }
      held.push(fd);
    }
    throw new EngineError(`cannot get pty index ${want}: more than ${MAX_TRIES} ptys open`);
  } finally {
    for (const fd of held) try { fs.closeSync(fd); } catch { /* closed */ }
  }
}

function ttyOfStdin(): string | undefined {
  try {
    const p = fs.readlinkSync('/proc/self/fd/0');
    return p.startsWith('/dev/pts/') || p.startsWith('/dev/tty') ? p : undefined;
  } catch {
    return undefined;
  }
}
