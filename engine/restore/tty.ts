// Pseudo-terminals: each master of tty-info.img is opened again by the engine with its old index
// when that is free (devpts hands out the lowest free index: extra masters are held until the
// wanted one comes, then closed), unlocked, and its slave ends opened by path; termios, locked
// termios, window size, packet mode and exclusivity come back, and the lock last. A slave whose
// master is outside the set is the caller's terminal (--shell-job): the recorded /dev/pts/N when
// it still exists, else the engine's own terminal. The controlling terminal of a session leader
// is taken by the leader itself right after its setsid, before it forks (injected TIOCSCTTY), so
// that every member of the session inherits it; the foreground group is set once groups exist.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { EngineError } from '../errors';
import type { Log } from '../log';
import type { Proc } from './context';
import { ImageSet, ImageError, num } from './imageset';
import { NR, AT_FDCWD, O_RDWR, O_CLOEXEC, i32 } from './sys';
import type { Call } from './remote';

const TIOCGPTN = 0x80045430, TIOCSPTLCK = 0x40045431, TCSETS = 0x5402, TIOCSLCKTRMIOS = 0x5457, TIOCSWINSZ = 0x5414;
const TIOCPKT = 0x5420, TIOCEXCL = 0x540c, TIOCSCTTY = 0x540e, TIOCSPGRP = 0x5410;
const O_NOCTTY = 0o400;
const OPEN_ONLY = 0o100 | 0o200 | 0o1000 | 0o400;
const MAX_TRIES = 4096;

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
}

export class TtyRestorer {
  private ptys = new Map<number, Pty>();
  private files = new Map<number, number>();

  constructor(private set: ImageSet, private shellJob: boolean, private log: Log) {}

  /**
   * Refusals before anything exists: a slave whose master is outside needs --shell-job; a pty made
   * again can be the controlling terminal only of a session led inside the set.
   */
  check(): void {
    for (const info of this.set.ttyInfos.values()) {
      const index = num(info.pty?.index);
      if (num(info.id) % 2 === 0 && !this.set.ttyInfos.has(num(info.id) + 1) && this.usedBy(num(info.id)).length && !this.shellJob)
        throw new ImageError('tty-info.img', `id ${info.id}`, `/dev/pts/${index} belongs to a terminal outside the image set (use --shell-job)`);
      const inside = num(info.id) % 2 === 1 || this.set.ttyInfos.has(num(info.id) + 1);
      if (!inside || !num(info.sid)) continue;
      const sid = num(info.sid);
      const leader = this.set.byPid.get(sid);
      if (!leader || leader.sid !== sid || !leader.fdinfo)
        throw new ImageError('tty-info.img', `id ${info.id}.sid`, `/dev/pts/${index} is the controlling terminal of session ${sid}, which is not led by a live task of the set`);
    }
  }

  private usedBy(infoId: number): Msg[] {
    return [...this.set.files.values()].filter((f) => num(f.type) === 11 && num(f.tty.tty_info_id) === infoId);
  }

  /** Opens every terminal end the tasks hold. */
  build(): void {
    const n = native();
    for (const info of this.set.ttyInfos.values()) {
      const index = num(info.pty.index);
      let p = this.ptys.get(index);
      if (!p) this.ptys.set(index, (p = { index, slavePath: `/dev/pts/${index}`, outside: false }));
      if (num(info.id) % 2) p.masterInfo = info;
      else p.slaveInfo = info;
    }
    for (const p of this.ptys.values()) {
      if (!p.masterInfo) {
        p.outside = true;
        if (!fs.existsSync(p.slavePath)) {
          const own = ttyOfStdin();
          if (!own) throw new EngineError(`--shell-job: ${p.slavePath} is gone and the engine has no terminal to put in its place`);
          this.log.debug(`${p.slavePath} is gone: using the engine's terminal ${own}`);
          p.slavePath = own;
        }
        continue;
      }
      if (this.usedBy(num(p.masterInfo.id)).length > 1)
        throw new ImageError('files.img', `tty_info_id ${p.masterInfo.id}`, 'two open descriptions of one pty master cannot be made again');
      const got = openMaster(p.index);
      p.master = got.fd;
      if (got.index !== p.index) this.log.debug(`pty ${p.index} is taken: restored as ${got.index}`);
      p.slavePath = `/dev/pts/${got.index}`;
      n.ioctl(p.master, TIOCSPTLCK, i32(0));
    }
    for (const f of this.set.files.values()) {
      if (num(f.type) !== 11) continue;
      const info = this.set.ttyInfos.get(num(f.tty.tty_info_id))!;
      const p = this.ptys.get(num(info.pty.index))!;
      const flags = (num(f.tty.flags) & ~OPEN_ONLY) | O_NOCTTY | O_CLOEXEC;
      if (num(info.id) % 2) this.files.set(num(f.id), p.master!);
      else {
        try {
          this.files.set(num(f.id), fs.openSync(p.slavePath, flags));
        } catch (e) {
          throw new EngineError(`files.img: id ${f.id}: cannot open ${p.slavePath}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
    }
    for (const p of this.ptys.values()) {
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
      } finally {
        if (s !== undefined && slave === undefined) fs.closeSync(s);
      }
      if (si) this.slaveNode(p, si);
      if (mi.packet_mode) n.ioctl(m, TIOCPKT, i32(1));
      if (mi.exclusive) n.ioctl(m, TIOCEXCL, 0);
      if (si?.exclusive && s !== undefined) n.ioctl(s, TIOCEXCL, 0);
      if (mi.locked) n.ioctl(m, TIOCSPTLCK, i32(1));
    }
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
    if (!isZero(info.termios_locked)) n.ioctl(fd, TIOCSLCKTRMIOS, termiosBuffer(info.termios_locked));
    const w = info.winsize;
    if (w) {
      const b = Buffer.alloc(8);
      [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel].forEach((v, i) => b.writeUInt16LE(num(v) & 0xffff, i * 2));
      n.ioctl(fd, TIOCSWINSZ, b);
    }
  }

  fd(fileId: number): number | undefined {
    return this.files.get(fileId);
  }

  /** The ptys that are the controlling terminal of the session `p` leads. */
  private cttysOf(p: Proc): [number, Pty, Msg][] {
    const out: [number, Pty, Msg][] = [];
    for (const [index, pty] of this.ptys) {
      // a set made by CRIU records the session of a slave no task holds at the master only
      const si = pty.slaveInfo ?? pty.masterInfo;
      if (pty.outside || !si || num(si.sid) !== p.img.pid || p.img.sid !== p.img.pid) continue;
      out.push([index, pty, si]);
    }
    return out;
  }

  /** Calls on a slave fd the leader opens for them (the pty unlocked meanwhile: a locked slave does not open). */
  private onSlave(p: Proc, pty: Pty, what: (fd: bigint) => Call[]): void {
    const n = native();
    const locked = pty.masterInfo?.locked && pty.master !== undefined;
    if (locked) n.ioctl(pty.master!, TIOCSPTLCK, i32(0));
    try {
      const r = p.remote;
      r.reset();
      const fd = r.one(p.host, `open ${pty.slavePath}`, NR.openat, AT_FDCWD, r.cstr(pty.slavePath), O_RDWR | O_NOCTTY | O_CLOEXEC, 0);
      r.run(p.host, [...what(fd), { nr: NR.close, args: [fd], what: 'close' }]);
    } finally {
      if (locked) n.ioctl(pty.master!, TIOCSPTLCK, i32(1));
    }
  }

  /**
   * Right after a session leader's setsid, before it forks: its controlling terminal (a process
   * gets its terminal from the one it was forked from; only a leader can take one itself).
   */
  takeControllingTerminal(p: Proc): void {
    for (const [index, pty] of this.cttysOf(p))
      this.onSlave(p, pty, (fd) => [{ nr: NR.ioctl, args: [fd, TIOCSCTTY, 0], what: `ioctl(TIOCSCTTY) on /dev/pts/${index}` }]);
  }

  /** Once every process group exists: the terminal's foreground group. */
  controllingTerminal(p: Proc): void {
    for (const [, pty, si] of this.cttysOf(p)) {
      if (!num(si.pgrp)) continue;
      this.onSlave(p, pty, (fd) => [{ nr: NR.ioctl, args: [fd, TIOCSPGRP, p.remote.put(i32(num(si.pgrp)))], what: `ioctl(TIOCSPGRP ${si.pgrp})` }]);
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
