// TCP connections (criu --tcp-established), both halves, in CRIU 4.2's layout: the inet_sk_entry
// of the socket plus tcp-stream-<ino in hex>.img, one tcp_stream_entry followed by the receive
// queue's bytes and the send queue's bytes. Established, half-closed (FIN_WAIT1/2, CLOSE_WAIT,
// LAST_ACK, CLOSING), closed and still connecting (SYN_SENT) connections, as libsoccr does them.
//
// Dump: the connection's packets are dropped by a lock of the engine's (an nftables table, or
// iptables rules with --network-lock iptables), then the socket (the engine's pidfd_getfd
// duplicate: the same socket) is put in TCP repair mode, where it sends nothing and its queues can
// be read without consuming them. Sequence numbers, queue contents (the send queue's
// sent-but-unacknowledged and unsent parts told apart, our FIN kept out of them), MSS, window
// scale, SACK, timestamps and the window are read. The socket stays in repair mode: a killed tree
// closes it silently; a tree that runs again gets it back out of repair mode first, with the lock
// removed, as does a dump that fails. A peer outside the tree would answer the segments it sends
// to the closed end with a reset: as CRIU does, the lock then stays after a dump that killed the
// tree, until the restore has made the connections again (the nft table is named after the dump's
// run id, as CRIU names it: inet CRIU-<first 21 characters>; network_lock_method NFTABLES or
// IPTABLES in the inventory; without a lock left, SKIP). A reset connection's pending error is
// taken last, when only the images remain to be written, into tcp_stream_entry.so_error.
//
// Restore: the socket is bound in repair mode, its sequence numbers set, connected (no
// handshake; a SYN_SENT one connects for real), its TCP options and timestamp offset set, the
// receive queue and the sent part of the send queue written in repair mode, the window set, then
// the FINs its state had: ours by shutdown in repair mode, the peer's FIN and ACK (and a reset)
// as segments forged through a raw socket with the mark the locks let through. Once every socket
// of the set exists (so no segment finds its peer missing) the locks go, repair mode goes off, the
// unsent part is written as ordinary data, and SO_REUSEADDR is set back (repair mode changes it).
import * as path from 'path';
import { spawnSync } from 'child_process';
import { randomUUID } from 'crypto';
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
const F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0o4000;
const SIOCINQ = 0x541b, SIOCOUTQ = 0x5411, SIOCOUTQNSD = 0x894b;
const MSG_PEEK = 0x2, MSG_DONTWAIT = 0x40;
const SO_ERROR = 4, ECONNRESET = 104, EPIPE = 32;
const TCPI_OPT_TIMESTAMPS = 1, TCPI_OPT_SACK = 2, TCPI_OPT_WSCALE = 4;
const TCPOPT_MAXSEG = 2, TCPOPT_WINDOW = 3, TCPOPT_SACK_PERM = 4, TCPOPT_TIMESTAMP = 8;
export const TCP_ESTABLISHED = 1;
export const TCP_SYN_SENT = 2, TCP_FIN_WAIT1 = 4, TCP_FIN_WAIT2 = 5, TCP_CLOSE = 7, TCP_CLOSE_WAIT = 8, TCP_LAST_ACK = 9, TCP_LISTEN = 10, TCP_CLOSING = 11;
const AF_INET = 2, AF_INET6 = 10;

// Where the FINs of a connection stand, by state (bit 1 << state), as libsoccr reads them: our
// FIN queued first (we shut down first) or second (after the peer's), our FIN acknowledged; the
// peer's FIN received first or second, and acknowledged by us.
const F = (...states: number[]) => states.reduce((m, s) => m | (1 << s), 0);
const SNDQ_FIRST_FIN = F(TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING);
const SNDQ_SECOND_FIN = F(TCP_LAST_ACK, TCP_CLOSE);
const SNDQ_FIN_ACKED = F(TCP_FIN_WAIT2, TCP_CLOSE);
const RCVQ_FIRST_FIN = F(TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSE);
const RCVQ_SECOND_FIN = F(TCP_CLOSING);
const RCVQ_FIN_ACKED = F(TCP_CLOSE);

/** States a connection is dumped and restored in with TCP repair (--tcp-established). */
export const REPAIRED_STATES = new Set([TCP_ESTABLISHED, TCP_SYN_SENT, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING, TCP_CLOSE]);

/**
 * The packets of the restore's own forged segments (a peer's FIN or ACK a half-closed connection
 * had received) carry this mark, and the lock lets them through (CRIU's SOCCR_MARK, so that
 * either engine's lock passes either's segments).
 */
const SOCCR_MARK = 0xc114;

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

  get description(): string {
    return `nft table inet ${this.table}`;
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
        + ` chain input { type filter hook input priority -300; policy accept;\n  meta mark ${SOCCR_MARK} accept\n  ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n  ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n }\n`
        + ` chain output { type filter hook output priority -300; policy accept;\n  meta mark ${SOCCR_MARK} accept\n  ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n  ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n }\n}\n`;
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

/**
 * The same lock with iptables rules (criu --network-lock iptables, CRIU's default): for each
 * connection, a rule on INPUT and one on OUTPUT dropping its packets but the marked ones, as CRIU
 * writes them (so either engine's restore removes the other's). All connections go in one
 * iptables-restore run per family (ip6tables for IPv6, v4-mapped addresses as IPv4).
 */
export class IptLock {
  private have = new Map<string, Conn>();

  constructor(private log?: Log) {}

  get locked(): boolean {
    return this.have.size > 0;
  }

  get description(): string {
    return `${this.have.size} connection(s), iptables rules on INPUT and OUTPUT`;
  }

  covers(c: Conn): boolean {
    return this.have.has(endKey(c));
  }

  /** The two rule specifications of a connection: [ip6tables?, INPUT rule, OUTPUT rule]. */
  static rules(c: Conn): [boolean, string, string] {
    const s = addrOf(c.family, c.src), d = addrOf(c.family, c.dst);
    const rule = (chain: string, from: string, fp: number, to: string, tp: number) =>
      `${chain} -p tcp -m mark ! --mark 0x${SOCCR_MARK.toString(16)} -s ${from} --sport ${fp} -d ${to} --dport ${tp} -j DROP`;
    return [s.v6, rule('INPUT', d.text, c.dstPort, s.text, c.srcPort), rule('OUTPUT', s.text, c.srcPort, d.text, c.dstPort)];
  }

  /** Runs `op` (-I or -D) on the rules of these connections, one iptables-restore per family. */
  static apply(op: '-I' | '-D', conns: Conn[]): void {
    for (const v6 of [false, true]) {
      const lines = conns.map(IptLock.rules).filter((r) => r[0] === v6).flatMap((r) => [`${op} ${r[1]}`, `${op} ${r[2]}`]);
      if (!lines.length) continue;
      const cmd = v6 ? 'ip6tables-restore' : 'iptables-restore';
      const r = spawnSync(cmd, ['-w', '--noflush'], { input: `*filter\n${lines.join('\n')}\nCOMMIT\n`, encoding: 'utf8' });
      if (r.error) throw new EngineError(`network lock: cannot run ${cmd}: ${r.error.message}`);
      if (r.status !== 0) throw new EngineError(`network lock: ${cmd} failed: ${(r.stderr || '').trim()}`);
    }
  }

  lock(...conns: Conn[]): void {
    conns = conns.filter((c) => !this.covers(c));
    if (!conns.length) return;
    IptLock.apply('-I', conns);
    for (const c of conns) this.have.set(endKey(c), c);
    this.log?.debug(`network lock: ${conns.length} connection(s) locked (iptables)`);
  }

  unlock(): void {
    if (!this.have.size) return;
    const conns = [...this.have.values()];
    this.have.clear();
    try {
      IptLock.apply('-D', conns);
      this.log?.debug(`network lock: iptables rules of ${conns.length} connection(s) removed`);
    } catch (e) {
      this.log?.error(`network lock: ${(e as Error).message} (the rules dropping ${conns.map(connText).join(', ')} are left)`);
      throw e;
    }
  }

  /**
   * The rules a dump left are removed (those of the connections given that exist: a rule
   * removed already, by an earlier restore of the set, is no error).
   */
  static forget(conns: Conn[], log?: Log, oneByOne = false): void {
    if (oneByOne) IptLock.forgetEach(conns);
    else {
      try {
        IptLock.apply('-D', conns);
      } catch {
        IptLock.forgetEach(conns); // some are gone already: those that are there
      }
    }
    log?.debug(`network lock: iptables rules of ${conns.length} connection(s) of the dump removed`);
  }

  /** Removes, rule by rule, those of these connections' rules that exist. */
  private static forgetEach(conns: Conn[]): void {
    for (const c of conns) {
      const [v6, input, output] = IptLock.rules(c);
      const cmd = v6 ? 'ip6tables' : 'iptables';
      for (const rule of [input, output]) {
        const spec = rule.split(' ');
        if (spawnSync(cmd, ['-w', '-C', ...spec]).status !== 0) continue;
        const r = spawnSync(cmd, ['-w', '-D', ...spec], { encoding: 'utf8' });
        if (r.error || r.status !== 0) throw new EngineError(`network unlock: cannot remove the ${cmd} rule ${rule}: ${r.error?.message ?? r.stderr.trim()}`);
      }
    }
  }
}

/** A lock of connections, by nftables or iptables. */
export type ConnLock = NftLock | IptLock;

/** inventory_entry.network_lock_method: CRIU's NETWORK_LOCK_IPTABLES, NFTABLES, SKIP */
export const LOCK_IPTABLES = 0, LOCK_NFTABLES = 1, LOCK_SKIP = 2;

/** The nftables table of a dump's lock, as CRIU names it ("inet CRIU-<run id>" cut to 31 characters). */
export function lockTable(runId: string): string {
  return `CRIU-${runId}`.slice(0, 31 - 'inet '.length);
}

/**
 * The connections of a set restored through repair, as the lock names them: the live ones (is any
 * of them sending while it is made?), and the closed ones (this engine locks none of those; CRIU
 * locks them too).
 */
function setConnections(set: ImageSet): { conns: Conn[]; closed: Conn[]; sending: boolean } {
  const conns: Conn[] = [], closed: Conn[] = [];
  let sending = false;
  for (const f of set.files.values()) {
    if (num(f.type) !== 4 || !f.isk || !repairedEntry(f.isk)) continue;
    const e = f.isk;
    const w = (k: string) => ((e[k] ?? []) as unknown[]).map(num);
    const c = { family: num(e.family), src: w('src_addr'), srcPort: num(e.src_port), dst: w('dst_addr'), dstPort: num(e.dst_port) };
    if (num(e.state) === TCP_CLOSE) closed.push(c);
    else conns.push(c);
    if (num(e.state) !== TCP_ESTABLISHED && num(e.state) !== TCP_CLOSE) sending = true;
  }
  return { conns, closed, sending };
}

/**
 * The restore half of the lock: what a dump left for its connections (an nftables table, or
 * iptables rules) is removed once they are made again (before they leave repair mode).
 */
export function unlockAfterRestore(inventory: Msg, set: ImageSet, log?: Log): void {
  const method = inventory.network_lock_method === undefined ? LOCK_IPTABLES : num(inventory.network_lock_method);
  if (method === LOCK_IPTABLES) {
    const { conns, closed } = setConnections(set);
    if (conns.length) IptLock.forget(conns, log);
    // rules for closed ones, where a CRIU dump left them
    if (closed.length) IptLock.forget(closed, log, true);
    return;
  }
  const hasConnections = setConnections(set).conns.length > 0;
  if (method !== LOCK_NFTABLES || !inventory.dump_criu_run_id) return;
  const table = lockTable(String(inventory.dump_criu_run_id));
  const listed = spawnSync('nft', ['list', 'table', 'inet', table], { encoding: 'utf8' });
  if (listed.error || listed.status !== 0) return; // not there (removed by an earlier restore of the set)
  const r = spawnSync('nft', ['delete', 'table', 'inet', table], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new EngineError(`network unlock: cannot remove nft table inet ${table}: ${r.error?.message ?? r.stderr.trim()}`);
  log?.debug(`network lock: table inet ${table} of the dump removed${hasConnections ? '' : ' (no connection in the set)'}`);
}

/**
 * The lock of a restore: connections that send while they are made again (a half-closed one's
 * FIN, the ACKs of the segments forged for it, a SYN) must not meet a peer of the set that does
 * not exist yet (it would be answered with a reset). A lock of this restore (nftables table, or
 * iptables rules with --network-lock iptables) drops their packets (the forged segments pass it)
 * until every connection exists; established ones send nothing in repair mode and need none.
 * Returns it locked, or undefined.
 */
export function lockForRestore(set: ImageSet, method: 'nftables' | 'iptables', log?: Log): ConnLock | undefined {
  const { conns, sending } = setConnections(set);
  if (!sending) return undefined;
  const lock = method === 'iptables' ? new IptLock(log) : new NftLock(`rst-${randomUUID()}`, log);
  lock.lock(...conns);
  return lock;
}

/** Refuses, before any process exists, connections of a set whose lock this engine cannot undo here. */
export function checkLockMethod(inventory: Msg, set: ImageSet): void {
  const method = inventory.network_lock_method === undefined ? LOCK_IPTABLES : num(inventory.network_lock_method);
  if (method !== LOCK_IPTABLES || !setConnections(set).conns.length) return;
  for (const cmd of ['iptables', 'iptables-restore']) {
    const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new EngineError(`inventory.img: network_lock_method: the connections were locked with iptables, and ${cmd} cannot run here to unlock them`, 'EIMAGE');
  }
}

// ---------------------------------------------------------------------------------------------
// dump

interface Held extends Conn {
  fd: number;
  pid: number;
  tfd: number;
  reuseaddr: number;
  /** a connection that ended: no peer waits for it */
  closed: boolean;
}

/** The established connections of one dump, held in repair mode until the dump ends. */
export class TcpDump {
  readonly images: [string, string, NewEntry[]][] = [];
  private held: Held[] = [];
  private lock: ConnLock;
  private locking: boolean;

  /** connections whose peer is outside the dumped tree: the lock outlives a dump that kills the tree */
  private outside: Held[] = [];


  constructor(private log?: Log, readonly runId = '', private method: 'nftables' | 'iptables' | 'skip' = 'nftables') {
    this.locking = method !== 'skip';
    this.lock = method === 'iptables' ? new IptLock(log) : new NftLock(runId, log);
  }

  /**
   * inventory_entry.network_lock_method: what the restore has to remove, NFTABLES (a table) or
   * IPTABLES (rules); SKIP when nothing is left.
   */
  get lockMethod(): number {
    if (!this.locking || !this.lock.locked) return LOCK_SKIP;
    if (this.method === 'iptables') return LOCK_IPTABLES;
    return this.outside.length ? LOCK_NFTABLES : LOCK_SKIP;
  }

  /**
   * Locks the connection, puts the socket in repair mode and reads it; returns the
   * tcp_opts fields the stream entry repeats. `sock` stays the caller's.
   */
  /** Locks, in one nft run, the connections the tree will have dumped (before the first is read). */
  lockAll(conns: Conn[]): void {
    if (this.locking) this.lock.lock(...conns);
  }

  /** Returns the state the connection was read in (what the inet entry records, as CRIU's). */
  dump(sock: number, ino: number, conn: Conn, where: { pid: number; fd: number }, closed = false, reset = false): number {
    // a closed connection sends and receives nothing any more: no lock
    if (this.locking && !closed) this.lock.lock(conn); // one lockAll did not see (nothing when it did)
    const fd = this.silence(sock, conn, where, closed);
    const tse = readStream(fd, where, conn);
    // named by the inode in hex, as CRIU names it (tcp-stream-%x)
    this.images.push([`tcp-stream-${ino.toString(16)}.img`, 'TCP_STREAM', [{ msg: tse.msg, extra: { kind: 'tcp', inq: tse.inq, outq: tse.outq } }]]);
    if (reset) this.resets.push({ fd, msg: tse.msg, where, conn });
    return tse.state;
  }

  /** reset connections whose error is taken at the end of the dump (takeErrors) */
  private resets: { fd: number; msg: Msg; where: { pid: number; fd: number }; conn: Conn; error?: number }[] = [];

  get errorsPending(): boolean {
    return this.resets.some((r) => r.error === undefined);
  }

  /**
   * The errors of reset connections, read (SO_ERROR takes them) into their stream entries, once the
   * tree is to be killed and only the images remain to be written. The restore gives them back
   * with a forged reset: ECONNRESET (reset while open) and EPIPE (after the peer's FIN) are.
   */
  takeErrors(): void {
    for (const r of this.resets) {
      if (r.error !== undefined) continue;
      r.error = native().getsockopt(r.fd, SOL_SOCKET, SO_ERROR, 4).readInt32LE(0);
      if (r.error !== ECONNRESET && r.error !== EPIPE)
        throw new UnsupportedError(`task ${r.where.pid} fd ${r.where.fd}: TCP connection ${connText(r.conn)}: its pending error ${r.error} is not one a restore can give back (ECONNRESET and EPIPE are); the task has lost it`);
      r.msg.so_error = r.error;
      this.log?.debug(`task ${r.where.pid} fd ${r.where.fd}: TCP connection ${connText(r.conn)} was reset (error ${r.error === ECONNRESET ? 'ECONNRESET' : 'EPIPE'} pending)`);
    }
  }

  /**
   * A connection dumped without its state (--tcp-close): put in repair mode only, so that a killed
   * tree closes it without a FIN (no socket left behind holds its port); a tree that runs again
   * gets it back as it was. Returns the engine's fd of it in repair mode.
   */
  silence(sock: number, conn: Conn, where: { pid: number; fd: number }, closed = false): number {
    const n = native();
    const reuseaddr = intOf(sock, SOL_SOCKET, SO_REUSEADDR);
    const fd = n.fcntl(sock, 1030 /* F_DUPFD_CLOEXEC */, 0);
    try {
      n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1);
    } catch (e) {
      n.close(fd);
      throw new EngineError(`task ${where.pid} fd ${where.fd}: cannot put ${connText(conn)} in TCP repair mode: ${isNativeError(e) ? e.code : e}`);
    }
    this.held.push({ ...conn, fd, pid: where.pid, tfd: where.fd, reuseaddr, closed });
    return fd;
  }

  /** The connections whose peer is not among the dumped ones: their lock stays until the restore. */
  finish(): void {
    if (!this.lock.locked) return; // nothing locked: connections dropped (--tcp-close)
    const ends = new Set(this.held.map((h) => endKey(h)));
    this.outside = this.held.filter((h) => !h.closed && !ends.has(endKey(h, true)));
    for (const h of this.outside) this.log?.debug(`task ${h.pid} fd ${h.tfd}: TCP connection ${connText(h)} has its peer outside the tree`);
  }

  /** The tree runs again: the sockets leave repair mode, the lock goes. */
  resume(): void {
    const n = native();
    for (const r of this.resets.splice(0))
      if (r.error !== undefined) this.log?.error(`task ${r.where.pid} fd ${r.where.fd}: TCP connection ${connText(r.conn)}: the dump failed after taking its pending error ${r.error}: the task will not see it`);
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
    // iptables: every rule stays, as CRIU leaves them (its restore removes them all)
    if (this.method === 'iptables' && this.lock.locked) {
      this.log?.info(`network lock: ${this.lock.description} stay until the restore`);
      return;
    }
    if (this.outside.length && this.lock.locked) {
      this.log?.info(`network lock: ${this.outside.length} connection(s) to peers outside the tree stay locked until the restore (${this.lock.description})`);
      return;
    }
    this.lock.unlock();
  }
}

/** tcp_stream_entry of a socket in repair mode, with the queues' bytes. */
function readStream(fd: number, where: { pid: number; fd: number }, conn: Conn): { msg: Msg; inq: Buffer; outq: Buffer; state: number } {
  const n = native();
  const refuse = (why: string) => new UnsupportedError(`task ${where.pid} fd ${where.fd}: TCP connection ${connText(conn)}: ${why}`);
  const info = n.getsockopt(fd, SOL_TCP, TCP_INFO, 232);
  const state = info[0];
  if (!REPAIRED_STATES.has(state)) throw refuse(`state ${state} is not one TCP repair restores`);
  let outqLen = ioctlInt(fd, SIOCOUTQ);
  let unsqLen = ioctlInt(fd, SIOCOUTQNSD);
  // a closed connection's send queue can never be sent (nor read) again: none is kept
  if (state === TCP_CLOSE) outqLen = unsqLen = 0;
  // our FIN is counted in the send queue (and in its unsent part until it is sent): not data
  if ((1 << state) & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) {
    if (outqLen) outqLen--;
    if (unsqLen) unsqLen--;
  }
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
  return { msg, inq: rq.data, outq: sq.data, state };
}

// ---------------------------------------------------------------------------------------------
// restore

export interface StreamImage {
  msg: Msg;
  inq: Uint8Array;
  outq: Uint8Array;
  /** the connection's state (inet_sk_entry.state) */
  state: number;
  /** the unsent part of the send queue is queued already (before our FIN: restoreInRepair) */
  unsentQueued?: boolean;
}

/** An inet_sk_entry restored through TCP repair: a TCP connection (it has a peer), listeners aside. */
export function repairedEntry(isk: Msg): boolean {
  return num(isk.proto) === 6 && num(isk.type) === 1 && num(isk.dst_port) !== 0 && REPAIRED_STATES.has(num(isk.state));
}

/** tcp-stream-<ino in hex>.img of an image set, checked against what restore needs. */
export function loadStream(dir: string, ino: number, state: number): StreamImage {
  const name = `tcp-stream-${ino.toString(16)}.img`;
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
  if (m.so_error !== undefined && (state !== TCP_CLOSE || (num(m.so_error) !== ECONNRESET && num(m.so_error) !== EPIPE)))
    throw new EngineError(`${name}: so_error ${m.so_error} on a connection in state ${state} (only a closed one's ECONNRESET or EPIPE is restored)`, 'EIMAGE');
  if (state === TCP_CLOSE && num(m.outq_len)) throw new EngineError(`${name}: a closed connection with ${m.outq_len} bytes to send`, 'EIMAGE');
  if (state === TCP_SYN_SENT && (num(m.outq_len) || num(m.inq_len))) throw new EngineError(`${name}: a connection still connecting with data queued`, 'EIMAGE');
  return { msg: m, inq: x.inq, outq: x.outq, state };
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
 * repair mode: bound, sequence numbers, connected, options, queues (but the unsent part), window,
 * then the FINs its state had sent and received (libsoccr's order: ours by shutdown in repair
 * mode, the peer's FIN and ACK as forged segments). A connection still connecting sends its SYN
 * again (with its sequence number), which the lock drops.
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
  // a reset connection is made as it was before the reset (open, or after the peer's FIN for
  // EPIPE), then reset by a forged RST: its queued bytes, then its error, then the end of file
  const resetError = st.state === TCP_CLOSE ? num(m.so_error ?? 0) : 0;
  const as = resetError === EPIPE ? TCP_CLOSE_WAIT : resetError ? TCP_ESTABLISHED : st.state;
  const mstate = 1 << as;
  const inqLen = num(m.inq_len), outqLen = num(m.outq_len), unsq = num(m.unsq_len);
  // the sequence numbers count the FINs, which come back with the segments that carry them
  let inqSeq = num(m.inq_seq), outqSeq = num(m.outq_seq);
  if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) inqSeq--;
  if (mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) outqSeq--;
  step('TCP_REPAIR on', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1));
  step('bind', () => n.sockBind(fd, src));
  step('receive queue sequence', () => {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE);
    n.setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, u32(inqSeq - inqLen));
  });
  step('send queue sequence', () => {
    n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE);
    // a SYN takes a sequence number: the one it was sent with
    n.setsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, u32(outqSeq - outqLen - (st.state === TCP_SYN_SENT ? 1 : 0)));
  });
  if (st.state === TCP_SYN_SENT) {
    // connect for real (a SYN, not a repaired connection), without waiting for the answer
    const fl = n.fcntl(fd, F_GETFL);
    step('O_NONBLOCK', () => n.fcntl(fd, F_SETFL, fl | O_NONBLOCK));
    step('TCP_REPAIR off', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 0));
    try {
      n.sockConnect(fd, dst);
    } catch (e) {
      if (!(isNativeError(e) && e.code === 'EINPROGRESS')) throw new EngineError(`connect: ${isNativeError(e) ? e.code : (e as Error).message}`);
    }
    step('TCP_REPAIR on', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1));
    step('file flags', () => n.fcntl(fd, F_SETFL, fl));
  } else step('connect in repair mode', () => n.sockConnect(fd, dst));
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
  // the SYN negotiates them again
  if (st.state !== TCP_SYN_SENT) step('TCP_REPAIR_OPTIONS', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, ob));
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
  if (unsq && mstate & (SNDQ_FIRST_FIN | SNDQ_SECOND_FIN)) {
    // our FIN goes after the data not sent yet: that is queued first, out of repair mode (sent
    // for real, into the lock)
    step('TCP_REPAIR off', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 0));
    sendAll(fd, st.outq.subarray(outqLen - unsq, outqLen), 'unsent part of the send queue', MSG_DONTWAIT);
    step('TCP_REPAIR on', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR, 1));
    st.unsentQueued = true;
  }
  if (m.snd_wnd !== undefined) {
    const w = Buffer.alloc(20);
    const win = [m.snd_wl1, m.snd_wnd, m.max_window, m.rcv_wnd, m.rcv_wup].map((v) => num(v) >>> 0);
    // the peer's FIN is not received yet: it comes in at rcv_wup - 1, inside the window
    if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) {
      win[4] = (win[4] - 1) >>> 0;
      win[3] = (win[3] + 1) >>> 0;
    }
    win.forEach((v, i) => w.writeUInt32LE(v, 4 * i));
    step('TCP_REPAIR_WINDOW', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, w));
  }
  step('TCP_REPAIR_QUEUE', () => n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE));
  // the FINs, in the order the state had them
  const window = Math.min(0xffff, num(m.snd_wnd ?? 0xffff) >>> (mask & TCPI_OPT_WSCALE ? num(m.snd_wscale) : 0));
  const ourFin = (acked: boolean) => step('shutdown(SHUT_WR) in repair mode', () => {
    // an acknowledged FIN is queued as sent (the forged ACK below then acknowledges it)
    if (acked) n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE);
    n.shutdown(fd, 1);
    if (acked) n.setsockopt(fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE);
  });
  if (mstate & SNDQ_FIRST_FIN) ourFin(!!(mstate & SNDQ_FIN_ACKED));
  if (mstate & (RCVQ_FIRST_FIN | RCVQ_SECOND_FIN)) step("the peer's FIN", () => forgeSegment(dst, src, inqSeq, outqSeq - outqLen, TH_FIN | TH_ACK, window));
  if (mstate & SNDQ_SECOND_FIN) ourFin(!!(mstate & SNDQ_FIN_ACKED));
  if (mstate & RCVQ_FIN_ACKED) inqSeq++;
  if (mstate & SNDQ_FIN_ACKED) step("the peer's ACK of our FIN", () => forgeSegment(dst, src, inqSeq, outqSeq + 1 - outqLen, TH_ACK, window));
  if (resetError) {
    // a reset is taken only at exactly the next sequence number expected
    step("the peer's reset", () => forgeSegment(dst, src, as === TCP_CLOSE_WAIT ? inqSeq + 1 : inqSeq, outqSeq - outqLen, TH_RST | TH_ACK, window));
    const now = n.getsockopt(fd, SOL_TCP, TCP_INFO, 232)[0];
    if (now !== TCP_CLOSE) throw new EngineError(`the forged reset left the connection in state ${now}`);
  }
}

const TH_FIN = 0x01, TH_RST = 0x04, TH_ACK = 0x10;
const IPPROTO_RAW = 255, SO_MARK = 36, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000;

/** The one's-complement sum of 16-bit words, folded. */
function csum(bufs: Buffer[]): number {
  let sum = 0;
  for (const b of bufs) {
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length & 1) sum += b[b.length - 1] << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The address of a struct sockaddr as IP bytes, a v4-mapped IPv6 address as IPv4. */
function ipOf(sa: Buffer): { v6: boolean; addr: Buffer } {
  if (sa.readUInt16LE(0) === AF_INET) return { v6: false, addr: sa.subarray(4, 8) };
  const a = sa.subarray(8, 24);
  if (a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff) return { v6: false, addr: a.subarray(12) };
  return { v6: true, addr: a };
}

/**
 * A TCP segment from the peer (`from`) to a socket of ours (`to`), sent through a raw socket with
 * the mark the lock lets through: how a half-closed connection is given the FIN or ACK it had
 * received (the kernel has no repair option for those).
 */
function forgeSegment(from: Buffer, to: Buffer, seq: number, ack: number, flags: number, window: number): void {
  const n = native();
  const s = ipOf(from), d = ipOf(to);
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(from.readUInt16BE(2), 0);
  tcp.writeUInt16BE(to.readUInt16BE(2), 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(window, 14);
  let packet: Buffer, dest: Buffer;
  if (s.v6) {
    const pseudo = Buffer.alloc(40);
    s.addr.copy(pseudo, 0);
    d.addr.copy(pseudo, 16);
    pseudo.writeUInt32BE(20, 32);
    pseudo[39] = 6;
    tcp.writeUInt16BE(csum([pseudo, tcp]), 16);
    const ip = Buffer.alloc(40);
    ip.writeUInt32BE(0x60000000, 0);
    ip.writeUInt16BE(20, 4);
    ip[6] = 6;
    ip[7] = 64;
    s.addr.copy(ip, 8);
    d.addr.copy(ip, 24);
    packet = Buffer.concat([ip, tcp]);
    dest = Buffer.alloc(28);
    dest.writeUInt16LE(AF_INET6, 0);
    d.addr.copy(dest, 8);
  } else {
    const pseudo = Buffer.alloc(12);
    s.addr.copy(pseudo, 0);
    d.addr.copy(pseudo, 4);
    pseudo[9] = 6;
    pseudo.writeUInt16BE(20, 10);
    tcp.writeUInt16BE(csum([pseudo, tcp]), 16);
    // the kernel fills in the header's length, id and checksum
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(40, 2);
    ip[8] = 64;
    ip[9] = 6;
    s.addr.copy(ip, 12);
    d.addr.copy(ip, 16);
    packet = Buffer.concat([ip, tcp]);
    dest = Buffer.alloc(16);
    dest.writeUInt16LE(AF_INET, 0);
    d.addr.copy(dest, 4);
  }
  const raw = n.socket(s.v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
  try {
    n.setsockopt(raw, SOL_SOCKET, SO_MARK, SOCCR_MARK);
    // connected: the destination of what is sent (sendTo names unix addresses only)
    n.sockConnect(raw, dest);
    n.sendTo(raw, packet, null, 0);
  } finally {
    n.close(raw);
  }
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
  if (unsq && !st.unsentQueued) sendAll(fd, st.outq.subarray(outqLen - unsq, outqLen), 'unsent part of the send queue', MSG_DONTWAIT);
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
