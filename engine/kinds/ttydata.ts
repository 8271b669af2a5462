// Bytes queued in a pseudo-terminal: tty-data.img, one tty_data_entry per reading end, tty_id its
// tty_info id (as CRIU). A terminal cannot be read without consuming what it holds, so the dump
// reads each queue with every holder frozen and puts it straight back; the restore puts it in the
// same way. Bytes go in with TIOCSTI, which hands them to the reading end's line discipline at
// once (no flip buffer in between), under settings that store them as they are.
// - The master's queue (written on the slave side, after output processing): the master's line
//   discipline is always raw, the bytes go in unchanged.
// - The slave's queue (written on the master side, after input processing). In canonical mode
//   complete lines are read one by one, and the line not finished yet by turning canonical mode off
//   for a moment; the record is the input that makes the same lines again: a line ended by VEOF
//   (which a read drops) gets VEOF after it, and a character that would end a line or stop output
//   is preceded by an escape (VLNEXT: the terminal's own when it has one, CRIU replaying the bytes
//   as typed then gets them right too). Put back with signals, echo and input mapping off and the
//   editing characters disabled, so that only the line ends act. Not seen, so not kept: a pending
//   VLNEXT with nothing after it, and whether a line ending in an escaped line end was ended by
//   VEOF. Outside canonical mode the bytes are put back as they are (VSTART/VSTOP disabled
//   meanwhile when they occur; the packet-mode notice that change makes is read away).
// Refused: external processing (EXTPROC), queues near n_tty's 4 KiB buffer (more may be held back
// behind them, and they could not all be put back in order).
import * as fs from 'fs';
import { native } from '../../native';
import { EngineError, UnsupportedError } from '../errors';

const TCGETS = 0x5401, TCSETS = 0x5402, TIOCSTI = 0x5412, FIONREAD = 0x541b;
const TIOCGLCKTRMIOS = 0x5456, TIOCSLCKTRMIOS = 0x5457;
const POLLIN = 0x1, POLLPRI = 0x2;
const IXON = 0o2000;
const ISIG = 0o1, ICANON = 0o2, ECHO = 0o10, ECHOE = 0o20, ECHOK = 0o40, ECHONL = 0o100, ECHOCTL = 0o1000, ECHOPRT = 0o2000, ECHOKE = 0o4000;
const IEXTEN = 0o100000, EXTPROC = 0o200000;
const V = { INTR: 0, QUIT: 1, ERASE: 2, KILL: 3, EOF: 4, START: 8, STOP: 9, SUSP: 10, EOL: 11, REPRINT: 12, DISCARD: 13, WERASE: 14, LNEXT: 15, EOL2: 16 };
/** where c_cc starts in the kernel's struct termios (36 bytes) */
const CC = 17;
/** what one direction may hold to be taken and put back whole: n_tty's buffer is 4096 bytes, and near full more may wait behind it */
export const QUEUE_LIMIT = 4096 - 128;
const LINE_MAX = 4096;

const iflag = (t: Buffer) => t.readUInt32LE(0);
const lflag = (t: Buffer) => t.readUInt32LE(12);

export function tcgets(fd: number): Buffer {
  const b = Buffer.alloc(36);
  native().ioctl(fd, TCGETS, b);
  return b;
}

export function fionread(fd: number): number {
  const b = Buffer.alloc(4);
  native().ioctl(fd, FIONREAD, b);
  return b.readInt32LE(0);
}

const readable = (fd: number) => (native().pollOne(fd, POLLIN, 0) & POLLIN) !== 0;

/** The characters that act in the slave's canonical input, and the escape that makes one literal. */
interface Rules {
  canon: boolean;
  ends: Set<number>;
  eof: number;
  flow: Set<number>;
  special: Set<number>;
  esc: number;
}

function rules(t: Buffer): Rules {
  const cc = (i: number) => t[CC + i];
  const ends = new Set<number>([10]);
  if (cc(V.EOL)) ends.add(cc(V.EOL));
  if (lflag(t) & IEXTEN && cc(V.EOL2)) ends.add(cc(V.EOL2));
  const flow = new Set<number>();
  if (iflag(t) & IXON) for (const v of [V.START, V.STOP]) if (cc(v)) flow.add(cc(v));
  const special = new Set<number>([...ends, ...flow]);
  if (cc(V.EOF)) special.add(cc(V.EOF));
  const own = lflag(t) & IEXTEN ? cc(V.LNEXT) : 0;
  let esc = own && !special.has(own) ? own : 0x16;
  for (let c = 1; special.has(esc); c++) esc = c;
  special.add(esc);
  return { canon: (lflag(t) & ICANON) !== 0, ends, eof: cc(V.EOF), flow, special, esc };
}

/** The settings bytes are put back under: nothing but line ends (canonical) and flow control act. */
function injecting(t: Buffer, r: Rules, flowInData: boolean): Buffer {
  const b = Buffer.from(t);
  // only IXON stays: turning it off would restart output stopped by VSTOP
  b.writeUInt32LE((iflag(t) & IXON) >>> 0, 0);
  let l = lflag(t) & ~(ISIG | ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOPRT | ECHOKE | EXTPROC);
  if (r.canon) l |= IEXTEN; // for the escape
  b.writeUInt32LE(l >>> 0, 12);
  for (const v of [V.INTR, V.QUIT, V.SUSP, V.ERASE, V.KILL, V.WERASE, V.REPRINT, V.DISCARD]) b[CC + v] = 0;
  b[CC + V.LNEXT] = r.canon ? r.esc : 0;
  if (!(lflag(t) & IEXTEN)) b[CC + V.EOL2] = 0;
  if (!r.canon && flowInData) b[CC + V.START] = b[CC + V.STOP] = 0;
  return b;
}

/** TCSETS, checked: locked bits would be kept silently. */
function setTermios(fd: number, t: Buffer, what: string): void {
  native().ioctl(fd, TCSETS, t);
  const now = tcgets(fd);
  if (iflag(now) !== iflag(t) || lflag(now) !== lflag(t) || !now.subarray(CC, CC + 19).equals(t.subarray(CC, CC + 19)))
    throw new EngineError(`${what}: the terminal did not take the settings (locked termios?)`);
}

/** fn with the termios lock lifted (TIOCSLCKTRMIOS needs CAP_SYS_ADMIN), put back after. */
function unlocked<T>(fd: number, fn: () => T): T {
  const n = native();
  const lock = Buffer.alloc(36);
  n.ioctl(fd, TIOCGLCKTRMIOS, lock);
  if (lock.every((x) => x === 0)) return fn();
  n.ioctl(fd, TIOCSLCKTRMIOS, Buffer.alloc(36));
  try {
    return fn();
  } finally {
    n.ioctl(fd, TIOCSLCKTRMIOS, lock);
  }
}

/**
 * Reads exactly n bytes that FIONREAD counts into sink, outside canonical mode (poll would wait
 * for VMIN of them); a packet-mode master prefixes each read with a status byte.
 */
function readExact(fd: number, n: number, sink: Buffer[], packet: boolean, what: string): void {
  let got = 0;
  while (got < n) {
    if (fionread(fd) <= 0) throw new EngineError(`${what}: ${n - got} of ${n} queued bytes are gone`);
    const b = Buffer.alloc(n - got + (packet ? 1 : 0));
    const k = fs.readSync(fd, b, 0, b.length, null);
    if (packet && (k < 1 || b[0] !== 0)) throw new EngineError(`${what}: a packet-mode read brought status ${b[0]}`);
    const data = b.subarray(packet ? 1 : 0, k);
    sink.push(data);
    got += data.length;
    if (!data.length) throw new EngineError(`${what}: end of file with ${n - got} queued bytes unread`);
  }
}

function escape(bytes: Buffer, r: Rules): Buffer {
  const out: number[] = [];
  for (const c of bytes) {
    if (r.special.has(c)) out.push(r.esc);
    out.push(c);
  }
  return Buffer.from(out);
}

/** Whether the queue of a terminal end has something (complete lines, an empty VEOF line, or raw bytes). */
export function hasQueued(fd: number): boolean {
  return fionread(fd) > 0 || readable(fd);
}

/** Puts bytes into a master's queue (its line discipline is raw). */
export function putMaster(fd: number, data: Buffer): void {
  const n = native();
  for (const c of data) n.ioctl(fd, TIOCSTI, Buffer.from([c]));
}

/**
 * Puts a slave's queue record back through slave fd `fd` (the terminal's own settings in force).
 * master: its master, whose packet-mode notice of a VSTART/VSTOP change is read away.
 */
export function putSlave(fd: number, data: Buffer, what: string, master?: number): void {
  if (!data.length) return;
  const n = native();
  const t = tcgets(fd);
  const r = rules(t);
  const flowInData = !r.canon && data.some((c) => r.flow.has(c));
  const pri = master !== undefined && (n.pollOne(master, POLLPRI, 0) & POLLPRI) !== 0;
  unlocked(fd, () => {
    setTermios(fd, injecting(t, r, flowInData), what);
    try {
      for (const c of data) n.ioctl(fd, TIOCSTI, Buffer.from([c]));
    } finally {
      setTermios(fd, t, what);
    }
  });
  if (master !== undefined && !pri && n.pollOne(master, POLLPRI, 0) & POLLPRI) fs.readSync(master, Buffer.alloc(1), 0, 1, null);
}

/** Takes the master's queue and puts it straight back; returns it. */
export function takeMaster(fd: number, packet: boolean, where: string, index: number): Buffer {
  const queued = fionread(fd);
  if (!queued) return Buffer.alloc(0);
  if (queued >= QUEUE_LIMIT)
    throw new UnsupportedError(`${where}: pty ${index} has ${queued} bytes queued for its master, so many that more may be held back behind them (not supported)`);
  const parts: Buffer[] = [];
  try {
    readExact(fd, queued, parts, packet, `${where}: pty ${index} master`);
  } finally {
    putMaster(fd, Buffer.concat(parts));
  }
  return Buffer.concat(parts);
}

/** Takes the slave's queue through slave fd `fd` and puts it straight back; returns its record. */
export function takeSlave(fd: number, where: string, index: number, master?: number): Buffer {
  const t = tcgets(fd);
  const r = rules(t);
  const what = `${where}: pty ${index} slave`;
  const queued = fionread(fd);
  if (lflag(t) & EXTPROC) {
    if (r.canon || queued || readable(fd))
      throw new UnsupportedError(`${where}: pty ${index} is in external processing mode (EXTPROC): its queued input cannot be read exactly (not supported)`);
    return Buffer.alloc(0);
  }
  if (queued >= QUEUE_LIMIT)
    throw new UnsupportedError(`${where}: pty ${index} has ${queued} bytes queued for its slave, so many that more may be held back behind them (not supported)`);
  const parts: Buffer[] = [];
  let taken = 0;
  try {
    if (r.canon) {
      while (taken < QUEUE_LIMIT && readable(fd)) {
        const b = Buffer.alloc(LINE_MAX);
        const k = fs.readSync(fd, b, 0, LINE_MAX, null);
        const ended = k > 0 && r.ends.has(b[k - 1]);
        // a read drops the VEOF that ended a line (an empty one reads as 0 bytes)
        if (!ended && !r.eof) throw new EngineError(`${what}: a line came back without its end`);
        parts.push(escape(b.subarray(0, ended ? k - 1 : k), r), Buffer.from([ended ? b[k - 1] : r.eof]));
        taken += k + (ended ? 0 : 1);
      }
      // the unfinished line: seen only outside canonical mode (the switch back leaves the buffer empty)
      unlocked(fd, () => {
        const raw = Buffer.from(t);
        raw.writeUInt32LE((lflag(t) & ~ICANON) >>> 0, 12);
        setTermios(fd, raw, what);
        try {
          const rest = fionread(fd);
          const got: Buffer[] = [];
          try {
            if (rest) readExact(fd, rest, got, false, what);
          } finally {
            parts.push(escape(Buffer.concat(got), r));
            taken += rest;
          }
        } finally {
          setTermios(fd, t, what);
        }
      });
    } else if (queued) {
      readExact(fd, queued, parts, false, what);
      taken = queued;
    }
  } finally {
    putSlave(fd, Buffer.concat(parts), what, master);
  }
  if (taken >= QUEUE_LIMIT)
    throw new UnsupportedError(`${where}: pty ${index} has ${taken} bytes queued for its slave, so many that more may be held back behind them (not supported)`);
  return Buffer.concat(parts);
}

let tiocsti: string | undefined | null = null;

/** Why bytes cannot be put into a terminal here (TIOCSTI needs CAP_SYS_ADMIN), or undefined. Tried once on a pty of our own. */
export function cannotPutBack(): string | undefined {
  if (tiocsti !== null) return tiocsti;
  const n = native();
  let m = -1;
  try {
    m = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    n.ioctl(m, TIOCSTI, Buffer.from('x'));
    tiocsti = fionread(m) === 1 ? undefined : 'TIOCSTI did not queue the byte';
  } catch (e) {
    tiocsti = `TIOCSTI: ${(e as Error).message} (it needs CAP_SYS_ADMIN)`;
  } finally {
    if (m >= 0) fs.closeSync(m);
  }
  return tiocsti;
}
