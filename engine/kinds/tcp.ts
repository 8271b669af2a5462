// Established TCP connections (criu --tcp-established), both halves, in CRIU 4.2's layout: the
// inet_sk_entry of the socket (state ESTABLISHED) plus tcp-stream-<ino>.img, one tcp_stream_entry
// followed by the receive queue's bytes and the send queue's bytes.
//
// Dump: the connection's packets are dropped by an nftables table of the engine's, then the
// socket (the engine's pidfd_getfd duplicate: the same socket) is put in TCP repair mode, where it
// sends nothing and its queues can be read without consuming them. Sequence numbers, queue
// contents (the send queue's sent-but-unacknowledged and unsent parts told apart), MSS, window
// scale, SACK, timestamps and the window are read. The socket stays in repair mode: a killed tree
// closes it silently; a tree that runs again gets it back out of repair mode first, with the
// lock removed, as does a dump that fails. A peer outside the tree would answer the segments it
// sends to the closed end with a reset: as CRIU does, the lock then stays after a dump that killed
// the tree, until the restore has made the connections again (its table is named after the dump's
// run id, as CRIU names it: inet CRIU-<first 21 characters>, network_lock_method NFTABLES in the
// inventory; without one, SKIP).
//
// Restore: the socket is bound in repair mode, its sequence numbers set, connected (no
// handshake), its TCP options and timestamp offset set, the receive queue and the sent part of
// the send queue written in repair mode, the window set. Once every socket of the set exists
// (so no segment finds its peer missing) repair mode goes off, the unsent part is written as
// ordinary data, and SO_REUSEADDR is set back (repair mode changes it).
import * as path from 'path';
import { spawnSync } from 'child_process';
import type { Msg } from '../../images/codec';
import type { NewEntry } from '../../images/files';
import { loadImage } from '../../images/files';
import { native, isNativeError } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import type { Log } from '../log';
import { num } from '../restore/imageset';
import type { ImageSet } from '../restore/imageset';

const SOL_TCP = 6, SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_SNDBUF = 7, SO_SNDBUFFORCE = 32, SO_BUF_LOCK = 72;
const TCP_MAXSEG = 2, TCP_INFO = 11, TCP_REPAIR = 19, TCP_REPAIR_QUEUE = 20, TCP_QUEUE_SEQ = 21, TCP_REPAIR_OPTIONS = 22;
const TCP_TIMESTAMP = 24, TCP_REPAIR_WINDOW = 29;
const TCP_NO_QUEUE = 0, TCP_RECV_QUEUE = 1, TCP_SEND_QUEUE = 2;
const SIOCINQ = 0x541b, SIOCOUTQ = 0x5411, SIOCOUTQNSD = 0x894b;
const MSG_PEEK = 0x2, MSG_DONTWAIT = 0x40;
const TCPI_OPT_TIMESTAMPS = 1, TCPI_OPT_SACK = 2, TCPI_OPT_WSCALE = 4;
const TCPOPT_MAXSEG = 2, TCPOPT_WINDOW = 3, TCPOPT_SACK_PERM = 4, TCPOPT_TIMESTAMP = 8;
export const TCP_ESTABLISHED = 1;
const AF_INET = 2, AF_INET6 = 10;

/**
 * Options a connection has that a new socket does not, not compared: the MSS (held in the image,
 * mss_clamp) and the multicast settings an accepted socket takes from the first packet (TCP
 * sends no multicast: they have no effect); the window clamp, which the kernel derives from the
 * buffer sizes when the socket connects (on restore too); quick-ack, a mode the kernel itself
 * switches on and off with the traffic.
 */
export const ESTABLISHED_OWN_OPTIONS = new Set(['TCP_MAXSEG', 'TCP_WINDOW_CLAMP', 'TCP_QUICKACK', 'IP_MULTICAST_TTL', 'IPV6_MULTICAST_HOPS', 'IPV6_MULTICAST_IF']);

function intOf(fd: number, level: number, name: number): number {
  return native().getsockopt(fd, level, name, 4).readInt32LE(0);
}

function ioctlInt(fd: number, req: number): number {
  const b = Buffer.alloc(4);
  native().ioctl(fd, req, b);
  return b.readInt32LE(0);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

// ---------------------------------------------------------------------------------------------
// connections and the lock

export interface Conn {
  family: number;
  src: number[];
  srcPort: number;
  dst: number[];
  dstPort: number;
}

/** An address as nft and people write it; v4-mapped IPv6 addresses as the IPv4 address (the packets are IPv4). */
function addrOf(family: number, words: number[]): { v6: boolean; text: string } {
  const b = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => b.writeUInt32LE(w >>> 0, 4 * i));
  if (family === AF_INET) return { v6: false, text: [...b].join('.') };
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) return { v6: false, text: [...b.subarray(12)].join('.') };
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(2 * i).toString(16));
  return { v6: true, text: groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::') };
}

/** One key per direction: a connection and its peer's socket have each other's keys. */
function endKey(c: Conn, reverse = false): string {
  const a = addrOf(c.family, c.src).text, b = addrOf(c.family, c.dst).text;
  return reverse ? `${b}:${c.dstPort}>${a}:${c.srcPort}` : `${a}:${c.srcPort}>${b}:${c.dstPort}`;
}

export function connText(c: Conn): string {
  const s = addrOf(c.family, c.src), d = addrOf(c.family, c.dst);
  const t = (a: { v6: boolean; text: string }, p: number) => (a.v6 ? `[${a.text}]:${p}` : `${a.text}:${p}`);
  return `${t(s, c.srcPort)} -> ${t(d, c.dstPort)}`;
}

/**
 * An nftables table of this engine run that drops the packets of the connections given to it,
 * both ways, on input and output. Removed by unlock(), which every way out of a dump reaches.
 */
export class NftLock {
  readonly table: string;
  private made = false;

  constructor(runId: string, private log?: Log) {
    this.table = lockTable(runId);
  }

  get locked(): boolean {
    return this.made;
  }

  private nft(script: string): void {
    const r = spawnSync('nft', ['-f', '-'], { input: script, encoding: 'utf8' });
    if (r.error) throw new EngineError(`network lock: cannot run nft: ${r.error.message}`);
    if (r.status !== 0) throw new EngineError(`network lock: nft failed: ${(r.stderr || '').trim()}`);
  }

  /** connections locked so far (both directions' keys) */
  private have = new Set<string>();

  /** Is this connection locked already? */
  covers(c: Conn): boolean {
    return this.have.has(endKey(c));
  }

  /**
   * Locks connections, all in one nft run: the table's two sets (IPv4 and IPv6 address-port
   * quadruples, as CRIU keeps them) get both directions of each, and its chains drop what they hold.
   */
  lock(...conns: Conn[]): void {
    conns = conns.filter((c) => !this.covers(c));
    if (!conns.length) return;
    let script = '';
    if (!this.made) {
      script += `table inet ${this.table} {\n`
        + ' set conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }\n'
        + ' set conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }\n'
        + ' chain input { type filter hook input priority -300; policy accept;\n  ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n  ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n }\n'
        + ' chain output { type filter hook output priority -300; policy accept;\n  ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n  ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n }\n}\n';
    }
    const v4: string[] = [], v6: string[] = [];
    for (const c of conns) {
      const s = addrOf(c.family, c.src), d = addrOf(c.family, c.dst);
      (s.v6 ? v6 : v4).push(`${s.text} . ${c.srcPort} . ${d.text} . ${c.dstPort}`, `${d.text} . ${c.dstPort} . ${s.text} . ${c.srcPort}`);
    }
    if (v4.length) script += `add element inet ${this.table} conns4 { ${v4.join(', ')} }\n`;
    if (v6.length) script += `add element inet ${this.table} conns6 { ${v6.join(', ')} }\n`;
    this.nft(script);
    this.made = true;
    for (const c of conns) {
      this.have.add(endKey(c));
      this.have.add(endKey(c, true));
    }
    this.log?.debug(`network lock: ${conns.length} connection(s) locked (nft table inet ${this.table})`);
  }

  unlock(): void {
    if (!this.made) return;
    this.made = false;
    this.have.clear();
    try {
      this.nft(`delete table inet ${this.table}\n`);
      this.log?.debug(`network lock: table inet ${this.table} removed`);
    } catch (e) {
      this.log?.error(`network lock: ${(e as Error).message} (remove it with: nft delete table inet ${this.table})`);
      throw e;
    }
  }
}

/** inventory_entry.network_lock_method: CRIU's NETWORK_LOCK_IPTABLES, NFTABLES, SKIP */
export const LOCK_IPTABLES = 0, LOCK_NFTABLES = 1, LOCK_SKIP = 2;

/** The nftables table of a dump's lock, as CRIU names it ("inet CRIU-<run id>" cut to 31 characters). */
export function lockTable(runId: string): string {
  return `CRIU-${runId}`.slice(0, 31 - 'inet '.length);
}

/**
 * The restore half of the lock: the table a dump left for its connections is removed once they
 * are made again (before the tree runs). A set locked with iptables (CRIU's default) is refused:
 * this engine does not undo it, and the connections would stay blocked.
 */
export function unlockAfterRestore(inventory: Msg, hasConnections: boolean, log?: Log): void {
  const method = inventory.network_lock_method === undefined ? LOCK_IPTABLES : num(inventory.network_lock_method);
  if (method !== LOCK_NFTABLES || !inventory.dump_criu_run_id) return;
  const table = lockTable(String(inventory.dump_criu_run_id));
  const listed = spawnSync('nft', ['list', 'table', 'inet', table], { encoding: 'utf8' });
  if (listed.error || listed.status !== 0) return; // not there (removed by an earlier restore of the set)
  const r = spawnSync('nft', ['delete', 'table', 'inet', table], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new EngineError(`network unlock: cannot remove nft table inet ${table}: ${r.error?.message ?? r.stderr.trim()}`);
  log?.debug(`network lock: table inet ${table} of the dump removed${hasConnections ? '' : ' (no connection in the set)'}`);
}

/** Does the set hold established TCP connections (inet entries of a stream socket in state ESTABLISHED)? */
export function hasConnections(set: ImageSet): boolean {
  return [...set.files.values()].some((f) => num(f.type) === 4 && num(f.isk?.proto) === 6 && num(f.isk?.type) === 1 && num(f.isk?.state) === TCP_ESTABLISHED);
}

/** Refuses, before any process exists, connections of a set whose lock this engine cannot undo. */
export function checkLockMethod(inventory: Msg, hasConnections: boolean): void {
  const method = inventory.network_lock_method === undefined ? LOCK_IPTABLES : num(inventory.network_lock_method);
  if (hasConnections && method === LOCK_IPTABLES)
    throw new EngineError('inventory.img: network_lock_method: established connections locked with iptables, which this engine does not undo (dump with --network-lock nftables)', 'EIMAGE');
}

// ---------------------------------------------------------------------------------------------
// dump

interface Held extends Conn {
  fd: number;
  pid: number;
  tfd: number;
  reuseaddr: number;
}

/** The established connections of one dump, held in repair mode until the dump ends. */
export class TcpDump {
  readonly images: [string, string, NewEntry[]][] = [];
  private held: Held[] = [];
  private lock: NftLock;

  /** connections whose peer is outside the dumped tree: the lock outlives a dump that kills the tree */
  private outside: Held[] = [];

  constructor(private log?: Log, readonly runId = '', private locking = true) {
    this.lock = new NftLock(runId, log);
  }

  /** inventory_entry.network_lock_method: NFTABLES when a table is left for the restore to remove. */
  get lockMethod(): number {
    return this.outside.length && this.locking ? LOCK_NFTABLES : LOCK_SKIP;
  }

  /**
   * Locks the connection, puts the socket in repair mode and reads it; returns the
   * tcp_opts fields the stream entry repeats. `sock` stays the caller's.
   */
  /** Locks, in one nft run, the connections the tree will have dumped (before the first is read). */
  lockAll(conns: Conn[]): void {
    if (this.locking) this.lock.lock(...conns);
  }

  dump(sock: number, ino: number, conn: Conn, where: { pid: number; fd: number }): void {
    if (this.locking) this.lock.lock(conn); // one lockAll did not see (nothing when it did)
    const fd = this.silence(sock, conn, where);
    const tse = readStream(fd, where, conn);
    this.images.push([`tcp-stream-${ino}.img`, 'TCP_STREAM', [{ msg: tse.msg, extra: { kind: 'tcp', inq: tse.inq, outq: tse.outq } }]]);
  }

  /**
   * A connection dumped without its state (--tcp-close): put in repair mode only, so that a killed
   * tree closes it without a FIN (no socket left behind holds its port); a tree that runs again
   * gets it back as it was. Returns the engine's fd of it in repair mode.
   */
  silence(sock: number, conn: Conn, where: { pid: number; fd: number }): number {
    const n = native();
    const reuseaddr = intOf(sock, SOL_SOCKET, SO_REUSEADDR);
    const fd = n.fcntl(sock, 1030 /* F_DUPFD_CLOEXEC */, 0);
    try {
      n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1);
    } catch (e) {
      n.close(fd);
      throw new EngineError(`task ${where.pid} fd ${where.fd}: cannot put ${connText(conn)} in TCP repair mode: ${isNativeError(e) ? e.code : e}`);
    }
    this.held.push({ ...conn, fd, pid: where.pid, tfd: where.fd, reuseaddr });
    return fd;
  }

  /** The connections whose peer is not among the dumped ones: their lock stays until the restore. */
  finish(): void {
    if (!this.lock.locked) return; // nothing locked: connections dropped (--tcp-close)
    const ends = new Set(this.held.map((h) => endKey(h)));
    this.outside = this.held.filter((h) => !ends.has(endKey(h, true)));
    for (const h of this.outside) this.log?.debug(`task ${h.pid} fd ${h.tfd}: TCP connection ${connText(h)} has its peer outside the tree`);
  }

  /** The tree runs again: the sockets leave repair mode, the lock goes. */
  resume(): void {
    const n = native();
    for (const h of this.held.splice(0)) {
      try {
        n.setsockopt(h.fd, SOL_TCP, TCP_REPAIR, 0);
        n.setsockopt(h.fd, SOL_SOCKET, SO_REUSEADDR, h.reuseaddr);
      } catch (e) {
        this.log?.error(`task ${h.pid} fd ${h.tfd}: cannot take ${connText(h)} out of repair mode: ${isNativeError(e) ? e.code : e}`);
      }
      n.close(h.fd);
    }
    this.lock.unlock();
  }

  /**
   * The tree is dead: its sockets are closed in repair mode (no FIN, no reset). The lock goes,
   * unless a peer outside the tree would meet the closed end: then it stays for the restore.
   */
  release(): void {
    for (const h of this.held.splice(0)) native().close(h.fd);
    if (this.outside.length && this.lock.locked) {
      this.log?.info(`network lock: ${this.outside.length} connection(s) to peers outside the tree stay locked until the restore (nft table inet ${this.lock.table})`);
      return;
    }
    this.lock.unlock();
  }
}

/** tcp_stream_entry of a socket in repair mode, with the queues' bytes. */
function readStream(fd: number, where: { pid: number; fd: number }, conn: Conn): { msg: Msg; inq: Buffer; outq: Buffer } {
  const n = native();
  const refuse = (why: string) => new UnsupportedError(`task ${where.pid} fd ${where.fd}: TCP connection ${connText(conn)}: ${why}`);
  const info = n.getsockopt(fd, SOL_TCP, TCP_INFO, 232);
  if (info[0] !== TCP_ESTABLISHED) throw refuse(`state ${info[0]} changed while it was being dumped`);
  const outqLen = ioctlInt(fd, SIOCOUTQ);
  const unsqLen = ioctlInt(fd, SIOCOUTQNSD);
  const inqLen = ioctlInt(fd, SIOCINQ);
  const optMask = info[5];
  const msg: Msg = { inq_len: inqLen, inq_seq: 0, outq_len: outqLen, outq_seq: 0, opt_mask: optMask, snd_wscale: 0, mss_clamp: intOf(fd, SOL_TCP, TCP_MAXSEG) >>> 0 };
  if (optMask & TCPI_OPT_WSCALE) {
    msg.snd_wscale = info[6] & 0xf;
    msg.rcv_wscale = info[6] >> 4;
  }
  if (optMask & TCPI_OPT_TIMESTAMPS) msg.timestamp = intOf(fd, SOL_TCP, TCP_TIMESTAMP) >>> 0;
  msg.unsq_len = unsqLen;
  const w = n.getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, 20);
  if (w.length !== 20) throw refuse(`TCP_REPAIR_WINDOW gave ${w.length} bytes`);
  msg.snd_wl1 = w.readUInt32LE(0);
  msg.snd_wnd = w.readUInt32LE(4);
  msg.max_window = w.readUInt32LE(8);
  msg.rcv_wnd = w.readUInt32LE(12);
  msg.rcv_wup = w.readUInt32LE(16);
  const queue = (id: number, len: number, name: string): { seq: number; data: Buffer } => {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, id);
    const seq = n.getsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, 4).readUInt32LE(0);
    if (!len) return { seq, data: Buffer.alloc(0) };
    // one byte more than expected proves the queue holds exactly len
    const r = n.recvmsg(fd, len + 1, MSG_PEEK | MSG_DONTWAIT);
    if (r.bytes !== len) throw refuse(`the ${name} queue gave ${r.bytes} bytes, ${len} were expected`);
    return { seq, data: r.data.subarray(0, len) };
  };
  const rq = queue(TCP_RECV_QUEUE, inqLen, 'receive');
  const sq = queue(TCP_SEND_QUEUE, outqLen, 'send');
  n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
  msg.inq_seq = rq.seq;
  msg.outq_seq = sq.seq;
  return { msg, inq: rq.data, outq: sq.data };
}

// ---------------------------------------------------------------------------------------------
// restore

export interface StreamImage {
  msg: Msg;
  inq: Uint8Array;
  outq: Uint8Array;
}

/** tcp-stream-<ino>.img of an image set, checked against what restore needs. */
export function loadStream(dir: string, ino: number): StreamImage {
  const name = `tcp-stream-${ino}.img`;
  let entries;
  try {
    entries = loadImage(path.join(dir, name)).entries;
  } catch (e) {
    throw new EngineError(`${name}: ${(e as Error).message}`, 'EIMAGE');
  }
  const e = entries[0];
  if (entries.length !== 1 || !e) throw new EngineError(`${name}: ${entries.length} entries, one expected`, 'EIMAGE');
  const m = e.msg;
  if (m.unsq_len === undefined) throw new EngineError(`${name}: no unsq_len (images of CRIU before 3.x are not restored)`, 'EIMAGE');
  if (num(m.unsq_len) > num(m.outq_len)) throw new EngineError(`${name}: unsq_len ${m.unsq_len} is more than outq_len ${m.outq_len}`, 'EIMAGE');
  if (num(m.opt_mask) & TCPI_OPT_WSCALE && m.rcv_wscale === undefined) throw new EngineError(`${name}: window scaling without rcv_wscale`, 'EIMAGE');
  if (num(m.opt_mask) & TCPI_OPT_TIMESTAMPS && m.timestamp === undefined) throw new EngineError(`${name}: timestamps without timestamp`, 'EIMAGE');
  const x = e.extra as { kind: string; inq: Uint8Array; outq: Uint8Array } | undefined;
  if (!x || x.kind !== 'tcp') throw new EngineError(`${name}: the queues' bytes are missing`, 'EIMAGE');
  return { msg: m, inq: x.inq, outq: x.outq };
}

/** Writes bytes with sendmsg, halving the chunk while the kernel refuses a large one. */
function sendAll(fd: number, data: Uint8Array, what: string, flags = 0): void {
  const n = native();
  let off = 0, chunk = data.length;
  while (off < data.length) {
    const len = Math.min(chunk, data.length - off);
    let sent: number;
    try {
      sent = n.sendTo(fd, data.subarray(off, off + len), null, flags);
    } catch (e) {
      if (chunk > 1024 && isNativeError(e) && e.code !== 'EAGAIN') {
        chunk >>= 1;
        continue;
      }
      throw new EngineError(`cannot write the ${what} (${off} of ${data.length} bytes written): ${isNativeError(e) ? e.code : e}`);
    }
    off += sent;
  }
}

/**
 * The connection of `fd` (a new socket with its options set, SO_REUSEADDR on) made again in
 * repair mode: bound, sequence numbers, connected, options, queues (but the unsent part), window.
 */
export function restoreInRepair(fd: number, st: StreamImage, src: Buffer, dst: Buffer): void {
  const n = native();
  const m = st.msg;
  const step = (what: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      throw new EngineError(`${what}: ${isNativeError(e) ? e.code : (e as Error).message}`);
    }
  };
  const inqLen = num(m.inq_len), outqLen = num(m.outq_len), unsq = num(m.unsq_len);
  step('TCP_REPAIR on', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1));
  step('bind', () => n.sockBind(fd, src));
  step('receive queue sequence', () => {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE);
    n.setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, u32(num(m.inq_seq) - inqLen));
  });
  step('send queue sequence', () => {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE);
    n.setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, u32(num(m.outq_seq) - outqLen));
  });
  step('connect in repair mode', () => n.sockConnect(fd, dst));
  const mask = num(m.opt_mask);
  const opts: [number, number][] = [];
  if (mask & TCPI_OPT_SACK) opts.push([TCPOPT_SACK_PERM, 0]);
  if (mask & TCPI_OPT_WSCALE) opts.push([TCPOPT_WINDOW, num(m.snd_wscale) + (num(m.rcv_wscale) << 16)]);
  if (mask & TCPI_OPT_TIMESTAMPS) opts.push([TCPOPT_TIMESTAMP, 0]);
  opts.push([TCPOPT_MAXSEG, num(m.mss_clamp)]);
  const ob = Buffer.alloc(8 * opts.length);
  opts.forEach(([c, v], i) => {
    ob.writeUInt32LE(c, 8 * i);
    ob.writeUInt32LE(v >>> 0, 8 * i + 4);
  });
  step('TCP_REPAIR_OPTIONS', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, ob));
  if (mask & TCPI_OPT_TIMESTAMPS) step('TCP_TIMESTAMP', () => n.setsockopt(fd, SOL_TCP, TCP_TIMESTAMP, u32(num(m.timestamp))));
  if (inqLen) {
    step('TCP_REPAIR_QUEUE', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE));
    sendAll(fd, st.inq.subarray(0, inqLen), 'receive queue');
  }
  // the queue held what it holds within the recorded send buffer, but written again its memory
  // is counted otherwise: room meanwhile, the recorded size back once it is written (leaveRepair)
  if (outqLen) step('SO_SNDBUFFORCE', () => n.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, Math.min(0x3fffffff, intOf(fd, SOL_SOCKET, SO_SNDBUF) + 8 * outqLen + 65536)));
  if (outqLen - unsq) {
    step('TCP_REPAIR_QUEUE', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE));
    sendAll(fd, st.outq.subarray(0, outqLen - unsq), 'sent part of the send queue', MSG_DONTWAIT);
  }
  if (m.snd_wnd !== undefined) {
    const w = Buffer.alloc(20);
    [m.snd_wl1, m.snd_wnd, m.max_window, m.rcv_wnd, m.rcv_wup].forEach((v, i) => w.writeUInt32LE(num(v) >>> 0, 4 * i));
    step('TCP_REPAIR_WINDOW', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, w));
  }
  step('TCP_REPAIR_QUEUE', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE));
}

/** Repair mode off (every socket of the set exists by now), the unsent data, SO_REUSEADDR back. */
export function leaveRepair(fd: number, st: StreamImage, opts: Msg): void {
  const n = native();
  try {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 0);
  } catch (e) {
    throw new EngineError(`TCP_REPAIR off: ${isNativeError(e) ? e.code : e}`);
  }
  const outqLen = num(st.msg.outq_len), unsq = num(st.msg.unsq_len);
  if (unsq) sendAll(fd, st.outq.subarray(outqLen - unsq, outqLen), 'unsent part of the send queue', MSG_DONTWAIT);
  if (outqLen) {
    // a buffer smaller than what is queued takes no more until the queue drains, as before the dump
    n.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, num(opts.so_sndbuf) >> 1);
    n.setsockopt(fd, SOL_SOCKET, SO_BUF_LOCK, num(opts.so_buf_lock ?? 0));
  }
  n.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, opts.reuseaddr ? 1 : 0);
  // nothing reads the receive queue yet (the peer may have added to it by now)
  const inq = ioctlInt(fd, SIOCINQ);
  if (inq < num(st.msg.inq_len)) throw new EngineError(`${inq} bytes in the receive queue after restore, the image has ${st.msg.inq_len}`);
}

export const familyOk = (f: number) => f === AF_INET || f === AF_INET6;
