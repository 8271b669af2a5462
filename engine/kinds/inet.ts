// Inet sockets (IPv4 and IPv6: TCP listeners and closed TCP sockets, UDP, UDPLITE and ICMP ping sockets), both halves
// of CRIU 4.2's inet_sk_entry in one place: what dump reads from a socket and how restore makes it
// again. Addresses are kept as the kernel holds them (network-order words read little-endian: 1
// for IPv4, 4 for IPv6), options as CRIU records them (sk_opts, ip_opts, tcp_opts, v6only).
//
// Exactness: every socket option the image can hold is recorded and set again, then read back
// after restore and compared. Options it cannot hold are compared at dump with a socket the
// engine makes fresh of the same kind: any difference is refused by name (and checked again on
// the restored socket). State that would be lost is refused too: connections waiting in a
// listener's queue or still in the handshake, datagrams not read yet, pending socket errors,
// corked UDP, eBPF socket filters, TCP connections (they need TCP_REPAIR), raw sockets, and
// sockets of another network namespace than the engine's.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, isNativeError } from '../../native';
import { socketOpts } from '../dump/unix';
import { sockDiag, diagAttrs } from '../dump/netlink';
import { applySkOpts, socketFilter, optionValues, foreignOpts as socketForeignOpts, Opt } from './sk-common';
import { UnsupportedError, EngineError } from '../errors';
import { readProc } from '../proc/read';
import type { Log } from '../log';
import type { ImageSet } from '../restore/imageset';
import { ImageError, num, big } from '../restore/imageset';
import { TcpDump, ESTABLISHED_OWN_OPTIONS, REPAIRED_STATES, repairedEntry, loadStream, restoreInRepair, leaveRepair, StreamImage, Conn } from './tcp';

export const AF_INET = 2;
export const AF_INET6 = 10;
const IPPROTO_ICMP = 1, IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_ICMPV6 = 58, IPPROTO_UDPLITE = 136;
const SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1, SOL_IP = 0, SOL_TCP = 6, SOL_UDP = 17, SOL_IPV6 = 41, SOL_UDPLITE = 136;
const SO = {
  REUSEADDR: 2, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11, PRIORITY: 12,
  LINGER: 13, REUSEPORT: 15, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21, BINDTODEVICE: 25, GET_FILTER: 26,
  PEERNAME: 28, SNDBUFFORCE: 32, RCVBUFFORCE: 33, PASSSEC: 34, MARK: 36, TYPE: 3, PROTOCOL: 38, BUF_LOCK: 72,
} as const;
const IP = { TOS: 1, TTL: 2, PKTINFO: 8, FREEBIND: 15, TRANSPARENT: 19 } as const;
const IPV6 = { V6ONLY: 26, RECVPKTINFO: 49, FREEBIND: 78 } as const;
const TCP = { NODELAY: 1, CORK: 3, KEEPIDLE: 4, KEEPINTVL: 5, KEEPCNT: 6, INFO: 11 } as const;
const UDP_CORK = 1;
const SIOCINQ = 0x541b, SIOCGSKNS = 0x894c;
const POLLIN = 0x1, POLLOUT = 0x4, POLLERR = 0x8, POLLHUP = 0x10, POLLRDHUP = 0x2000;
const F_GETFL = 3, F_SETFL = 4;
/** file status flags fcntl(F_SETFL) can give a socket back */
const O_NONBLOCK = 0o4000, O_APPEND = 0o2000, O_ASYNC = 0o20000, O_NOATIME = 0o1000000, O_RDWR = 0o2;
const SETFL = O_NONBLOCK | O_APPEND | O_ASYNC | O_NOATIME;

const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV', 'BOUND_INACTIVE'];
const TCP_ESTABLISHED = 1, TCP_SYN_RECV = 3, TCP_CLOSE = 7, TCP_LISTEN = 10, TCP_NEW_SYN_RECV = 12, TCP_BOUND_INACTIVE = 13;

// ---------------------------------------------------------------------------------------------
// addresses

const familyName = (family: number) => (family === AF_INET6 ? 'IPv6' : 'IPv4');
const PROTO_NAMES: Record<number, string> = { [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP', [IPPROTO_UDPLITE]: 'UDPLITE', [IPPROTO_ICMP]: 'ICMP (ping)', [IPPROTO_ICMPV6]: 'ICMPv6 (ping)' };
const protoName = (proto: number) => PROTO_NAMES[proto] ?? `protocol ${proto}`;
/** a datagram kind the engine dumps and restores */
const isDatagram = (type: number, proto: number) => type === SOCK_DGRAM && [IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_ICMP, IPPROTO_ICMPV6].includes(proto);
const isPing = (proto: number) => proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6;

/** A struct sockaddr_in / sockaddr_in6 for the recorded words and port. */
export function sockaddr(family: number, port: number, words: number[], scopeId = 0): Buffer {
  if (family === AF_INET) {
    const a = Buffer.alloc(16);
    a.writeUInt16LE(AF_INET, 0);
    a.writeUInt16BE(port, 2);
    a.writeUInt32LE((words[0] ?? 0) >>> 0, 4);
    return a;
  }
  const a = Buffer.alloc(28);
  a.writeUInt16LE(AF_INET6, 0);
  a.writeUInt16BE(port, 2);
  for (let i = 0; i < 4; i++) a.writeUInt32LE((words[i] ?? 0) >>> 0, 8 + 4 * i);
  a.writeUInt32LE(scopeId >>> 0, 24);
  return a;
}

/** Port and address words of a struct sockaddr from getsockname / SO_PEERNAME. */
export function parseSockaddr(a: Buffer): { family: number; port: number; words: number[] } {
  const family = a.readUInt16LE(0);
  const words = family === AF_INET6 ? [0, 1, 2, 3].map((i) => a.readUInt32LE(8 + 4 * i)) : [a.readUInt32LE(4)];
  return { family, port: a.readUInt16BE(2), words };
}

/** For people: 127.0.0.1:80, [::1]:80. */
export function addrText(family: number, words: number[], port: number): string {
  const bytes = Buffer.alloc(4 * words.length);
  words.forEach((w, i) => bytes.writeUInt32LE(w >>> 0, 4 * i));
  if (family === AF_INET) return `${[...bytes].join('.')}:${port}`;
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(2 * i).toString(16));
  return `[${groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::')}]:${port}`;
}

/** Link-local and scoped multicast addresses need an interface to bind to (sin6_scope_id). */
function needsScope(words: number[]): boolean {
  const b0 = words[0] & 0xff, b1 = (words[0] >>> 8) & 0xff;
  if (b0 === 0xfe && (b1 & 0xc0) === 0x80) return true;
  return b0 === 0xff && (b1 & 0x0f) <= 2;
}

// ---------------------------------------------------------------------------------------------
// options

// Options inet_sk_entry has no field for (state-independent settings). Their values must be what
// a new socket of the same kind has, or the restore could not be exact. The SOL_SOCKET ones are
// sk-common's (SO_PASSCRED and SO_PASSSEC among them: inet images hold neither).
const FOREIGN_IP: Opt[] = [
  [SOL_IP, 3, 'IP_HDRINCL'], [SOL_IP, 4, 'IP_OPTIONS', 40], [SOL_IP, 5, 'IP_ROUTER_ALERT'], [SOL_IP, 6, 'IP_RECVOPTS'], [SOL_IP, 7, 'IP_RETOPTS'],
  [SOL_IP, 10, 'IP_MTU_DISCOVER'], [SOL_IP, 11, 'IP_RECVERR'], [SOL_IP, 12, 'IP_RECVTTL'], [SOL_IP, 13, 'IP_RECVTOS'], [SOL_IP, 18, 'IP_PASSSEC'],
  [SOL_IP, 20, 'IP_RECVORIGDSTADDR'], [SOL_IP, 21, 'IP_MINTTL'], [SOL_IP, 22, 'IP_NODEFRAG'], [SOL_IP, 23, 'IP_CHECKSUM'],
  [SOL_IP, 24, 'IP_BIND_ADDRESS_NO_PORT'], [SOL_IP, 25, 'IP_RECVFRAGSIZE'], [SOL_IP, 26, 'IP_RECVERR_RFC4884'], [SOL_IP, 32, 'IP_MULTICAST_IF'],
  [SOL_IP, 33, 'IP_MULTICAST_TTL'], [SOL_IP, 34, 'IP_MULTICAST_LOOP'], [SOL_IP, 49, 'IP_MULTICAST_ALL'], [SOL_IP, 50, 'IP_UNICAST_IF'],
  [SOL_IP, 51, 'IP_LOCAL_PORT_RANGE'],
];
// IPv6 sockets: CRIU keeps no IP_TOS, IP_TTL or IP_PKTINFO for them (they act on v4-mapped traffic)
const FOREIGN_IP_ON_V6: Opt[] = [[SOL_IP, IP.TOS, 'IP_TOS'], [SOL_IP, IP.TTL, 'IP_TTL'], [SOL_IP, IP.PKTINFO, 'IP_PKTINFO']];
const FOREIGN_IPV6: Opt[] = [
  [SOL_IPV6, 2, 'IPV6_2292PKTINFO'], [SOL_IPV6, 3, 'IPV6_2292HOPOPTS'], [SOL_IPV6, 4, 'IPV6_2292DSTOPTS'], [SOL_IPV6, 5, 'IPV6_2292RTHDR'],
  [SOL_IPV6, 7, 'IPV6_CHECKSUM'], [SOL_IPV6, 8, 'IPV6_2292HOPLIMIT'], [SOL_IPV6, 11, 'IPV6_FLOWINFO'], [SOL_IPV6, 16, 'IPV6_UNICAST_HOPS'],
  [SOL_IPV6, 17, 'IPV6_MULTICAST_IF'], [SOL_IPV6, 18, 'IPV6_MULTICAST_HOPS'], [SOL_IPV6, 19, 'IPV6_MULTICAST_LOOP'], [SOL_IPV6, 22, 'IPV6_ROUTER_ALERT'],
  [SOL_IPV6, 23, 'IPV6_MTU_DISCOVER'], [SOL_IPV6, 25, 'IPV6_RECVERR'], [SOL_IPV6, 29, 'IPV6_MULTICAST_ALL'], [SOL_IPV6, 30, 'IPV6_ROUTER_ALERT_ISOLATE'],
  [SOL_IPV6, 31, 'IPV6_RECVERR_RFC4884'], [SOL_IPV6, 33, 'IPV6_FLOWINFO_SEND'], [SOL_IPV6, 50, 'IPV6_PKTINFO', 20], [SOL_IPV6, 51, 'IPV6_RECVHOPLIMIT'],
  [SOL_IPV6, 53, 'IPV6_RECVHOPOPTS'], [SOL_IPV6, 54, 'IPV6_HOPOPTS', 256], [SOL_IPV6, 55, 'IPV6_RTHDRDSTOPTS', 256], [SOL_IPV6, 56, 'IPV6_RECVRTHDR'],
  [SOL_IPV6, 57, 'IPV6_RTHDR', 256], [SOL_IPV6, 58, 'IPV6_RECVDSTOPTS'], [SOL_IPV6, 59, 'IPV6_DSTOPTS', 256], [SOL_IPV6, 60, 'IPV6_RECVPATHMTU'],
  [SOL_IPV6, 62, 'IPV6_DONTFRAG'], [SOL_IPV6, 66, 'IPV6_RECVTCLASS'], [SOL_IPV6, 67, 'IPV6_TCLASS'], [SOL_IPV6, 70, 'IPV6_AUTOFLOWLABEL'],
  [SOL_IPV6, 72, 'IPV6_ADDR_PREFERENCES'], [SOL_IPV6, 73, 'IPV6_MINHOPCOUNT'], [SOL_IPV6, 74, 'IPV6_RECVORIGDSTADDR'], [SOL_IPV6, 76, 'IPV6_UNICAST_IF'],
  [SOL_IPV6, 77, 'IPV6_RECVFRAGSIZE'],
];
const FOREIGN_TCP: Opt[] = [
  [SOL_TCP, 2, 'TCP_MAXSEG'], [SOL_TCP, 7, 'TCP_SYNCNT'], [SOL_TCP, 8, 'TCP_LINGER2'], [SOL_TCP, 9, 'TCP_DEFER_ACCEPT'],
  [SOL_TCP, 10, 'TCP_WINDOW_CLAMP'], [SOL_TCP, 12, 'TCP_QUICKACK'], [SOL_TCP, 13, 'TCP_CONGESTION', 16], [SOL_TCP, 16, 'TCP_THIN_LINEAR_TIMEOUTS'],
  [SOL_TCP, 18, 'TCP_USER_TIMEOUT'], [SOL_TCP, 23, 'TCP_FASTOPEN'], [SOL_TCP, 25, 'TCP_NOTSENT_LOWAT'], [SOL_TCP, 27, 'TCP_SAVE_SYN'],
  [SOL_TCP, 30, 'TCP_FASTOPEN_CONNECT'], [SOL_TCP, 31, 'TCP_ULP', 16], [SOL_TCP, 34, 'TCP_FASTOPEN_NO_COOKIE'], [SOL_TCP, 36, 'TCP_INQ'],
  [SOL_TCP, 37, 'TCP_TX_DELAY'], [SOL_TCP, 44, 'TCP_RTO_MAX_MS'], [SOL_TCP, 45, 'TCP_RTO_MIN_US'], [SOL_TCP, 46, 'TCP_DELACK_MAX_US'],
];
const foreignUdp = (level: number): Opt[] => [
  [level, 100, 'UDP_ENCAP'], [level, 101, 'UDP_NO_CHECK6_TX'], [level, 102, 'UDP_NO_CHECK6_RX'], [level, 103, 'UDP_SEGMENT'], [level, 104, 'UDP_GRO'],
  ...(level === SOL_UDPLITE ? [[level, 10, 'UDPLITE_SEND_CSCOV'], [level, 11, 'UDPLITE_RECV_CSCOV']] as Opt[] : []),
];

function foreignOpts(family: number, proto: number): Opt[] {
  const l = [...socketForeignOpts(false), ...FOREIGN_IP];
  if (family === AF_INET6) l.push(...FOREIGN_IP_ON_V6, ...FOREIGN_IPV6);
  if (proto === IPPROTO_TCP) l.push(...FOREIGN_TCP);
  else if (!isPing(proto)) l.push(...foreignUdp(proto === IPPROTO_UDPLITE ? SOL_UDPLITE : SOL_UDP));
  return l;
}

/** The values of the options the image cannot hold, as text (an errno name when unreadable). */
function foreignValues(sock: number, family: number, proto: number): Map<string, string> {
  return optionValues(sock, foreignOpts(family, proto));
}

/** A socket of this kind as the kernel makes it, for its defaults. */
function freshSocket(family: number, type: number, proto: number): number {
  return native().socket(family, type | SOCK_CLOEXEC, proto);
}

const freshCache = new Map<string, Map<string, string>>();
const RAW_HELD = new Set(['IP_HDRINCL', 'IP_NODEFRAG']);

/** Foreign option values of a new socket of the kind (cached per engine run). */
function freshForeign(family: number, type: number, proto: number): Map<string, string> {
  const key = `${family}/${type}/${proto}`;
  let v = freshCache.get(key);
  if (!v) {
    const s = freshSocket(family, type, proto);
    try {
      v = foreignValues(s, family, proto);
    } finally {
      native().close(s);
    }
    freshCache.set(key, v);
  }
  return v;
}

/** The first option whose value differs from a new socket's, if any. */
function foreignDifference(sock: number, family: number, type: number, proto: number, own?: Set<string>): { label: string; have: string; fresh: string } | undefined {
  const fresh = freshForeign(family, type, proto);
  for (const [label, have] of foreignValues(sock, family, proto)) {
    if (own?.has(label)) continue;
    // a raw socket's image holds these (ip_opts.raw)
    if (type === SOCK_RAW && RAW_HELD.has(label)) continue;
    const f = fresh.get(label)!;
    if (have !== f) return { label, have, fresh: f };
  }
  return undefined;
}

function int(sock: number, level: number, name: number): number {
  return native().getsockopt(sock, level, name, 4).readInt32LE(0);
}

function boundDevice(sock: number): string {
  const dev = native().getsockopt(sock, SOL_SOCKET, SO.BINDTODEVICE, 16);
  const nul = dev.indexOf(0);
  return dev.subarray(0, nul < 0 ? dev.length : nul).toString();
}

/** The option fields of inet_sk_entry as CRIU 4.2 fills them, read from a socket. */
export function imageOptions(sock: number, family: number, proto: number, type = 0): { opts: Msg; ip_opts: Msg; tcp_opts: Msg; v6only?: boolean } {
  const n = native();
  const opts = socketOpts(sock, false); // passcred/passsec are unix-only in CRIU's images
  const linger = n.getsockopt(sock, SOL_SOCKET, SO.LINGER, 8);
  if (linger.readInt32LE(0)) opts.so_linger = linger.readInt32LE(4);
  const dev = boundDevice(sock);
  if (dev) opts.so_bound_dev = dev;
  const ip: Msg = {};
  // one flag with IPV6_FREEBIND (a raw IPv6 socket answers only to that one)
  if (family === AF_INET6 ? int(sock, SOL_IPV6, IPV6.FREEBIND) : int(sock, SOL_IP, IP.FREEBIND)) ip.freebind = true;
  if (family === AF_INET6) {
    if (int(sock, SOL_IPV6, IPV6.RECVPKTINFO)) ip.pktinfo = true;
  } else {
    if (int(sock, SOL_IP, IP.PKTINFO)) ip.pktinfo = true;
    const tos = int(sock, SOL_IP, IP.TOS);
    if (tos) ip.tos = tos;
    ip.ttl = int(sock, SOL_IP, IP.TTL);
  }
  if (type === SOCK_RAW) ip.raw = rawOptions(sock, family, proto);
  const tcp: Msg = {};
  if (proto === IPPROTO_TCP && type !== SOCK_RAW) {
    if (int(sock, SOL_TCP, TCP.CORK)) tcp.cork = true;
    if (int(sock, SOL_TCP, TCP.NODELAY)) tcp.nodelay = true;
    tcp.keepcnt = int(sock, SOL_TCP, TCP.KEEPCNT);
    tcp.keepidle = int(sock, SOL_TCP, TCP.KEEPIDLE);
    tcp.keepintvl = int(sock, SOL_TCP, TCP.KEEPINTVL);
  }
  const out: { opts: Msg; ip_opts: Msg; tcp_opts: Msg; v6only?: boolean } = { opts, ip_opts: ip, tcp_opts: tcp };
  if (family === AF_INET6) out.v6only = int(sock, SOL_IPV6, IPV6.V6ONLY) !== 0;
  return out;
}

const SOL_RAW = 255, SOL_ICMPV6 = 58;
const IP_HDRINCL = 3, IP_NODEFRAG = 22, IPV6_HDRINCL = 36, ICMP_FILTER = 1, ICMPV6_FILTER = 1;

/** ip_opts_raw_entry as CRIU records it: header inclusion, no-defrag (IPv4), the ICMP type filter. */
function rawOptions(sock: number, family: number, proto: number): Msg {
  const n = native();
  const r: Msg = {};
  if (int(sock, family === AF_INET6 ? SOL_IPV6 : SOL_IP, family === AF_INET6 ? IPV6_HDRINCL : IP_HDRINCL)) r.hdrincl = true;
  if (family === AF_INET && int(sock, SOL_IP, IP_NODEFRAG)) r.nodefrag = true;
  if (family === AF_INET && proto === IPPROTO_ICMP) r.icmpv_filter = [n.getsockopt(sock, SOL_RAW, ICMP_FILTER, 4).readUInt32LE(0)];
  if (family === AF_INET6 && proto === IPPROTO_ICMPV6) {
    const f = n.getsockopt(sock, SOL_ICMPV6, ICMPV6_FILTER, 32);
    r.icmpv_filter = Array.from({ length: 8 }, (_, i) => f.readUInt32LE(4 * i));
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// dump

const INET_DIAG_SHUTDOWN = 8;

export interface InetDiag {
  family: number;
  proto: number;
  state: number;
  srcPort: number;
  dstPort: number;
  /** the address words as the kernel holds them (network byte order read little-endian), 1 or 4 */
  src: number[];
  dst: number[];
  /** listener: pending connections / backlog; others: bytes queued in / out */
  rqueue: number;
  wqueue: number;
  ino: number;
  shutdown: number;
}

function diagRequest(family: number, proto: number): Buffer {
  const body = Buffer.alloc(56);
  body.writeUInt8(family, 0);
  body.writeUInt8(proto, 1);
  body.writeUInt8(1 << (INET_DIAG_SHUTDOWN - 1), 2); // idiag_ext (the shutdown attribute comes anyway)
  body.writeUInt32LE(0xffffffff, 4); // all states
  return body;
}

export function parseInetDiag(msg: Buffer, proto: number): InetDiag {
  const family = msg.readUInt8(16);
  const words = family === AF_INET ? 1 : 4;
  const addr = (o: number) => Array.from({ length: words }, (_, i) => msg.readUInt32LE(o + 4 * i));
  const d: InetDiag = {
    family, proto, state: msg.readUInt8(17), srcPort: msg.readUInt16BE(20), dstPort: msg.readUInt16BE(22),
    src: addr(24), dst: addr(40), rqueue: msg.readUInt32LE(72), wqueue: msg.readUInt32LE(76), ino: msg.readUInt32LE(84), shutdown: 0,
  };
  for (const { type, at } of diagAttrs(msg, 72)) if (type === INET_DIAG_SHUTDOWN) d.shutdown = msg.readUInt8(at);
  return d;
}

export interface InetContext {
  pid: number;
  fd: number;
  /** AF_INET or AF_INET6 (SO_DOMAIN) */
  family: number;
  netNsId: number;
  fown: Msg;
  dupFd(): number;
}

/** The filesystem uid and gid of a task (the fourth numbers of the Uid: and Gid: lines of status). */
function taskFsIds(pid: number): { uid: number; gid: number } {
  const status = readProc(pid, 'status');
  const fourth = (key: string) => Number(new RegExp(`^${key}:\\s+\\d+\\s+\\d+\\s+\\d+\\s+(\\d+)`, 'm').exec(status)![1]);
  return { uid: fourth('Uid'), gid: fourth('Gid') };
}

/** The ping or raw sockets of the engine's network namespace, by inode, from /proc/net/icmp(6) or raw(6). */
function procNetSockets(table: 'icmp' | 'raw', family: number): Map<number, { words: number[]; port: number; dst: number[]; dstPort: number; state: number; rqueue: number }> {
  const out = new Map<number, { words: number[]; port: number; dst: number[]; dstPort: number; state: number; rqueue: number }>();
  let text: string;
  try {
    text = fs.readFileSync(`/proc/net/${table}${family === AF_INET6 ? '6' : ''}`, 'utf8');
  } catch {
    return out;
  }
  // an address is printed as the kernel's 32-bit words in hex, so read as our words already are
  const addr = (a: string) => {
    const [w, p] = a.split(':');
    return { words: (w.match(/.{8}/g) ?? []).map((x) => parseInt(x, 16) >>> 0), port: parseInt(p, 16) };
  };
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = addr(f[1]), remote = addr(f[2]);
    out.set(Number(f[9]), { words: local.words, port: local.port, dst: remote.words, dstPort: remote.port, state: parseInt(f[3], 16), rqueue: parseInt(f[4].split(':')[1], 16) });
  }
  return out;
}

/** The inode of the engine's network namespace. */
function engineNetNs(): number {
  return fs.statSync('/proc/self/ns/net').ino;
}

export class InetSockets {
  private diag: Map<string, InetDiag> | undefined;
  /** local ports of connection requests still in the handshake (SYN_RECV) */
  private handshaking = new Map<number, number>();
  private netNs: number | undefined;
  /** established connections are dumped (criu --tcp-established) through this */
  tcp?: TcpDump;
  /** --tcp-close: connections are recorded as they stand, without their state (made closed at restore) */
  tcpClose = false;
  /** --skip-in-flight: connections a listener has not accepted yet are left out (they are lost) */
  skipInFlight = false;
  /** the tree will be killed: a reset connection's pending error may be taken from it (TcpDump.takeErrors) */
  mayTakeErrors = false;

  constructor(public log?: Log) {}

  /** The TCP connections among these socket inodes (what --tcp-established will repair), closed ones aside. */
  connectionsOf(inodes: Set<number>): Conn[] {
    const out: Conn[] = [];
    for (const d of this.sockets().values())
      if (d.proto === IPPROTO_TCP && REPAIRED_STATES.has(d.state) && d.state !== TCP_CLOSE && inodes.has(d.ino))
        out.push({ family: d.family, src: d.src, srcPort: d.srcPort, dst: d.dst, dstPort: d.dstPort });
    return out;
  }

  private sockets(): Map<string, InetDiag> {
    if (this.diag) return this.diag;
    this.diag = new Map();
    for (const family of [AF_INET, AF_INET6]) {
      for (const proto of [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE]) {
        let msgs: Buffer[];
        try {
          msgs = sockDiag(diagRequest(family, proto));
        } catch {
          continue; // no diag module for this protocol
        }
        for (const m of msgs) {
          const d = parseInetDiag(m, proto);
          if (proto === IPPROTO_TCP && (d.state === TCP_SYN_RECV || d.state === TCP_NEW_SYN_RECV)) this.handshaking.set(d.srcPort, (this.handshaking.get(d.srcPort) ?? 0) + 1);
          if (d.ino) this.diag.set(`${proto}:${d.ino}`, d);
        }
      }
    }
    return this.diag;
  }

  /** The file_entry of an IPv4 or IPv6 socket. */
  dump(id: number, ino: number, flags: number, ctx: InetContext): Msg {
    const n = native();
    const sock = ctx.dupFd();
    try {
      return this.describe(sock, id, ino, flags, ctx);
    } finally {
      n.close(sock);
    }
  }

  private describe(sock: number, id: number, ino: number, flags: number, ctx: InetContext): Msg {
    const n = native();
    const family = ctx.family;
    const fam = familyName(family);
    const type = int(sock, SOL_SOCKET, SO.TYPE);
    const proto = int(sock, SOL_SOCKET, SO.PROTOCOL);
    let kind = `${fam} ${protoName(proto)} socket`;
    const refuse = (why: string) => new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: ${kind}: ${why}`);
    if (type === SOCK_RAW) kind = `raw ${fam} socket (protocol ${proto})`;
    if (!((type === SOCK_STREAM && proto === IPPROTO_TCP) || isDatagram(type, proto) || type === SOCK_RAW))
      throw new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: ${fam} socket of type ${type} and protocol ${proto}: only TCP, UDP, UDPLITE and ICMP (ping) are supported`);
    // the restore makes sockets in the engine's namespace: the socket must live there
    this.netNs ??= engineNetNs();
    let nsFd = -1;
    try {
      nsFd = n.ioctl(sock, SIOCGSKNS);
      if (fs.fstatSync(nsFd).ino !== this.netNs) throw refuse("it belongs to another network namespace than the engine's (not supported)");
    } finally {
      if (nsFd >= 0) n.close(nsFd);
    }
    const events = n.pollOne(sock, POLLIN | POLLOUT | POLLRDHUP, 0);
    const d = this.sockets().get(`${proto}:${ino}`);
    let state: number, src: number[], dst: number[], srcPort: number, dstPort: number, shutdown: number, backlog = 0;
    /** a connection dumped without its state (--tcp-close) */
    let dropped = false;
    /** a connection dumped with TCP repair (--tcp-established): established, connecting, half-closed or closed */
    let repaired = false;
    /** a closed connection with an error not read yet: a reset */
    let reset = false;
    const words = family === AF_INET ? 1 : 4;
    // a raw socket of protocol TCP is a raw socket
    const tcp = type === SOCK_STREAM && proto === IPPROTO_TCP;
    if (tcp && d && d.state === TCP_LISTEN) {
      kind = `${fam} TCP listener`;
      if (d.rqueue > 0 && !this.skipInFlight) throw refuse(`${d.rqueue} connection(s) waiting to be accepted (they would be lost; dump with --skip-in-flight to drop them)`);
      const half = this.handshaking.get(d.srcPort);
      if (half && !this.skipInFlight) throw refuse(`${half} connection(s) to port ${d.srcPort} still in the handshake (they would be lost; dump with --skip-in-flight to drop them)`);
      if ((d.rqueue || half) && this.skipInFlight) this.log?.info(`task ${ctx.pid} fd ${ctx.fd}: ${kind}: connections not accepted yet are left out (--skip-in-flight)`);
      ({ state, src, dst, srcPort: srcPort, dstPort: dstPort, shutdown } = d);
      backlog = d.wqueue;
    } else if (tcp && d && d.state !== TCP_CLOSE && d.state !== TCP_BOUND_INACTIVE && this.tcpClose) {
      // --tcp-close: where it stands only; the restore makes it closed
      kind = `${fam} TCP connection`;
      ({ state, src, dst, srcPort: srcPort, dstPort: dstPort, shutdown } = d);
      dropped = true;
    } else if (tcp && d && REPAIRED_STATES.has(d.state) && d.state !== TCP_CLOSE && this.tcp) {
      // established, connecting or half-closed: TCP repair (kinds/tcp)
      kind = `${fam} TCP connection`;
      ({ state, src, dst, srcPort: srcPort, dstPort: dstPort, shutdown } = d);
      repaired = true;
    } else if (tcp && d && REPAIRED_STATES.has(d.state) && d.state !== TCP_CLOSE) {
      throw new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: ${fam} TCP connection ${addrText(family, d.src, d.srcPort)} -> ${addrText(family, d.dst, d.dstPort)} is ${d.state === TCP_ESTABLISHED ? 'established' : `in state ${TCP_STATES[d.state]}`} (dump it with --tcp-established)`);
    } else if (tcp && d && d.state !== TCP_CLOSE && d.state !== TCP_BOUND_INACTIVE) {
      throw new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: TCP connection in state ${TCP_STATES[d.state] ?? d.state} (not supported)`);
    } else if (tcp) {
      // closed: unhashed (or bound only), so not in sock_diag; the socket itself says where it is bound
      kind = `${fam} closed TCP socket`;
      const info = n.getsockopt(sock, SOL_TCP, TCP.INFO, 232);
      if (info[0] !== TCP_CLOSE) throw new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: TCP socket in state ${TCP_STATES[info[0]] ?? info[0]}, not in sock_diag (not supported)`);
      // one that was connected or tried to has its history (an error, the end of a stream) in it
      // (with --tcp-close it is dropped: made closed both ways, as every connection then)
      const wasConnected = info.length >= 144 && (info.readUInt32LE(136) || info.readUInt32LE(140)) !== 0;
      // a connection that ended (both FINs exchanged) still knows its peer and keeps what it
      // received: with --tcp-established it is repaired in its closed state, as CRIU does
      const peer = wasConnected && this.tcp && !this.tcpClose ? peerOf(sock, family) : undefined;
      backlog = info[4]; // CRIU records tcpi_backoff here
      if (peer?.port) {
        kind = `${fam} closed TCP connection`;
        reset = (events & POLLERR) !== 0;
        if (reset && !this.mayTakeErrors) throw refuse('it was reset, and its error is not read yet (the dump would take it from the running task; not supported with --leave-running)');
        ({ port: srcPort, words: src } = parseSockaddr(n.sockName(sock)));
        ({ port: dstPort, words: dst } = peer);
        state = TCP_CLOSE;
        shutdown = 3;
        repaired = true;
      } else {
        if (wasConnected && !this.tcpClose) throw refuse(`it was connected before (${this.tcp ? 'its peer is unknown: not restored' : 'dump with --tcp-established to restore what is left of that connection, or --tcp-close to drop it'})`);
        const inq = Buffer.alloc(4);
        n.ioctl(sock, SIOCINQ, inq);
        if (inq.readInt32LE(0) && !this.tcpClose) throw refuse(`${inq.readInt32LE(0)} bytes still to be read (not supported)`);
        const name = parseSockaddr(n.sockName(sock));
        ({ port: srcPort, words: src } = name);
        dst = new Array(words).fill(0);
        dstPort = 0;
        state = TCP_CLOSE;
        // as CRIU: only the read side's shutdown shows on a closed socket (poll's RDHUP)
        shutdown = events & POLLHUP && events & POLLRDHUP ? 1 : 0;
        if (wasConnected && this.tcpClose) shutdown = 3;
      }
    } else if (type === SOCK_RAW || isPing(proto)) {
      // ping and raw sockets: no sock_diag here, /proc/net/icmp(6) and raw(6) have the same (a
      // ping socket's port is its echo id once bound, a raw socket's its protocol; a connected
      // one has its peer's address and port 0)
      const e = procNetSockets(type === SOCK_RAW ? 'raw' : 'icmp', family).get(ino);
      const name = parseSockaddr(n.sockName(sock));
      ({ port: srcPort, words: src } = e ?? name);
      dst = e?.dst ?? new Array(words).fill(0);
      dstPort = e?.dstPort ?? 0;
      state = e?.state ?? TCP_CLOSE;
      if (e?.rqueue) throw refuse(`${e.rqueue} bytes ${type === SOCK_RAW ? 'of packets' : 'of replies'} received and not read yet (they would be lost; not supported)`);
      if (!e && (name.port || type === SOCK_RAW)) throw new EngineError(`task ${ctx.pid} fd ${ctx.fd}: ${kind} ${ino} is missing from /proc/net`);
      shutdown = events & POLLRDHUP ? 1 : 0;
    } else if (d) {
      ({ state, src, dst, srcPort: srcPort, dstPort: dstPort, shutdown } = d);
      if (d.rqueue > 0) throw refuse(`${d.rqueue} bytes of datagrams received and not read yet (they would be lost; not supported)`);
    } else {
      // not hashed: never bound nor connected
      const name = parseSockaddr(n.sockName(sock));
      if (name.port !== 0) throw new EngineError(`task ${ctx.pid} fd ${ctx.fd}: ${kind} bound to port ${name.port} is missing from sock_diag`);
      ({ port: srcPort, words: src } = name);
      dst = new Array(words).fill(0);
      dstPort = 0;
      state = TCP_CLOSE;
      shutdown = events & POLLRDHUP ? 1 : 0;
    }
    if (events & POLLERR && !reset) throw refuse('a socket error is pending (it would be lost; not supported)');
    if (type === SOCK_DGRAM && (proto === IPPROTO_UDP || proto === IPPROTO_UDPLITE) && int(sock, proto === IPPROTO_UDPLITE ? SOL_UDPLITE : SOL_UDP, UDP_CORK))
      throw refuse('corked (UDP_CORK): not supported');
    // one flag with IPV6_TRANSPARENT (75), which is all a raw IPv6 socket answers to
    if (family === AF_INET6 ? int(sock, SOL_IPV6, 75) : int(sock, SOL_IP, IP.TRANSPARENT)) throw refuse('IP_TRANSPARENT is set (CRIU images have no field for it; not supported)');
    const filter = socketFilter(sock);
    if (filter === 'ebpf') throw refuse('an eBPF socket filter is attached (SO_ATTACH_BPF; not supported)');
    // a connection's own options (and one dropped with --tcp-close) are not compared with a new socket's
    const connection = tcp && (repaired || (state !== TCP_LISTEN && state !== TCP_CLOSE) || (state === TCP_CLOSE && shutdown === 3 && this.tcpClose));
    const diff = foreignDifference(sock, family, type, proto, connection ? ESTABLISHED_OWN_OPTIONS : undefined);
    if (diff) throw refuse(`option ${diff.label} is ${diff.have}, a new socket has ${diff.fresh} (CRIU images have no field for it; not supported)`);
    // the restore makes the socket under the credentials of the task that holds it first
    const st = fs.fstatSync(sock);
    const fsIds = taskFsIds(ctx.pid);
    if (st.uid !== fsIds.uid || st.gid !== fsIds.gid)
      throw refuse(`made by uid ${st.uid} gid ${st.gid}, while the task's fsuid is ${fsIds.uid} and fsgid ${fsIds.gid} (the owner of a restored socket is its task's; not supported)`);
    if (flags & ~(SETFL | O_RDWR)) throw refuse(`file flags 0o${flags.toString(8)} cannot be set again (not supported)`);
    const o = imageOptions(sock, family, proto, type);
    if (filter.length) o.opts.so_filter = filter;
    for (const [k, name, lock] of [['so_sndbuf', 'SO_SNDBUF', 1], ['so_rcvbuf', 'SO_RCVBUF', 2]] as const)
      if (num(o.opts[k]) & 1 && !autotuned(proto, state, o.opts, lock)) throw refuse(`${name} is ${o.opts[k]}, an odd size (the kernel doubles what is set; not restorable)`);
    if (family === AF_INET6 && srcPort && needsScope(src) && !o.opts.so_bound_dev)
      throw refuse(`bound to the scoped address ${addrText(family, src, srcPort)} without a device (not supported)`);
    // after the options are read: repair mode changes SO_REUSEADDR
    if (repaired) state = this.tcp!.dump(sock, ino, { family, src, srcPort, dst, dstPort }, ctx, state === TCP_CLOSE, reset);
    if (dropped) this.tcp?.silence(sock, { family, src, srcPort, dst, dstPort }, ctx);
    if (d && d.wqueue && proto !== IPPROTO_TCP) this.log?.debug(`task ${ctx.pid} fd ${ctx.fd}: ${d.wqueue} bytes still being sent by ${kind} ${ino}`);
    const isk: Msg = {
      id, ino, family, type, proto, state, src_port: srcPort, dst_port: dstPort, flags, backlog, src_addr: src, dst_addr: dst, fown: ctx.fown,
      opts: o.opts,
    };
    if (o.v6only !== undefined) isk.v6only = o.v6only;
    isk.ip_opts = o.ip_opts;
    if (family === AF_INET6 && srcPort && needsScope(src)) isk.ifname = o.opts.so_bound_dev;
    isk.ns_id = ctx.netNsId;
    if (shutdown) isk.shutdown = shutdown;
    isk.tcp_opts = o.tcp_opts;
    return { type: 4, id, isk };
  }
}

/** A connection's buffer the kernel sizes itself (no SO_BUF_LOCK bit): its size moves on its own. */
function autotuned(proto: number, state: number, opts: Msg, lockBit: number): boolean {
  return proto === IPPROTO_TCP && REPAIRED_STATES.has(state) && state !== TCP_CLOSE && !(num(opts.so_buf_lock ?? 0) & lockBit);
}

/** The peer of a closed TCP socket that was connected (SO_PEERNAME still has it; getpeername says ENOTCONN). */
function peerOf(sock: number, family: number): { port: number; words: number[] } | undefined {
  try {
    // the length asked for must not exceed the address's (EINVAL)
    return parseSockaddr(native().getsockopt(sock, SOL_SOCKET, SO.PEERNAME, family === AF_INET ? 16 : 28));
  } catch (e) {
    if (isNativeError(e) && e.code === 'ENOTCONN') return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// restore

/** Refuses, before any process exists, an inet_sk_entry this engine cannot restore. */
export function checkInetEntry(id: number, isk: Msg, closing = false): void {
  const field = (f: string) => `id ${id}.isk.${f}`;
  const family = num(isk.family), type = num(isk.type), proto = num(isk.proto), state = num(isk.state);
  if (family !== AF_INET && family !== AF_INET6) throw new ImageError('files.img', field('family'), `family ${family} is not restored`);
  if (!((type === SOCK_STREAM && proto === IPPROTO_TCP) || isDatagram(type, proto) || type === SOCK_RAW))
    throw new ImageError('files.img', field('type'), `socket type ${type} with protocol ${proto} is not restored (TCP, UDP, UDPLITE, ICMP and raw are)`);
  const words = family === AF_INET ? 1 : 4;
  for (const k of ['src_addr', 'dst_addr']) {
    const n = ((isk[k] ?? []) as unknown[]).length;
    if (n !== words && !(n === 0 && k === 'dst_addr')) throw new ImageError('files.img', field(k), `${n} words for an ${familyName(family)} address`);
  }
  // dumped with --tcp-close: connections in any state, made closed
  if (proto === IPPROTO_TCP && state !== TCP_LISTEN && !REPAIRED_STATES.has(state) && !closing)
    throw new ImageError('files.img', field('state'), `TCP connection in state ${TCP_STATES[state] ?? state} is not restored`);
  if (proto === IPPROTO_TCP && state !== TCP_LISTEN && state !== TCP_CLOSE && !num(isk.dst_port) && !closing)
    throw new ImageError('files.img', field('dst_port'), `TCP connection in state ${TCP_STATES[state] ?? state} without a peer`);
  if (proto === IPPROTO_TCP && state === TCP_ESTABLISHED && num(isk.shutdown) & 2)
    throw new ImageError('files.img', field('shutdown'), 'an established TCP connection shut down for writing (it would be in FIN_WAIT1)');
  if (proto !== IPPROTO_TCP && state !== TCP_CLOSE && state !== TCP_ESTABLISHED) throw new ImageError('files.img', field('state'), `state ${state} of a datagram socket`);
  if (isk.ip_opts?.raw && type !== SOCK_RAW) throw new ImageError('files.img', field('ip_opts.raw'), 'raw socket options on a socket that is not raw');
  const filter = (isk.opts?.so_filter ?? []) as unknown[];
  if (filter.length > 4096) throw new ImageError('files.img', field('opts.so_filter'), `${filter.length} instructions is longer than a socket filter can be`);
  if (isk.ifname !== undefined && family === AF_INET6 && !fs.existsSync(`/sys/class/net/${isk.ifname}/ifindex`))
    throw new ImageError('files.img', field('ifname'), `no network interface ${isk.ifname}`);
  const sh = num(isk.shutdown);
  if (sh < 0 || sh > 3) throw new ImageError('files.img', field('shutdown'), `unknown value ${sh}`);
  if (num(isk.flags) & ~(SETFL | O_RDWR | 0o1 | 0o100000 | 0o2000000))
    throw new ImageError('files.img', field('flags'), `file flags 0o${num(isk.flags).toString(8)} cannot be set on a socket`);
}

interface Made {
  id: number;
  isk: Msg;
  fd: number;
  /** creds_entry of the task that holds the socket first */
  creds?: Msg;
  /** an established connection: its tcp-stream image, until repair mode goes off */
  stream?: StreamImage;
}

/**
 * Makes every inet socket of files.img in the engine: one socket per file id, passed into each
 * task that had it (so tasks that shared a socket share it again).
 */
export class InetRestorer {
  private byId = new Map<number, Made>();

  /** --tcp-close: connections are made closed */
  tcpClose = false;

  constructor(private set: ImageSet, private log: Log) {}

  fd(id: number): number | undefined {
    return this.byId.get(id)?.fd;
  }

  build(): void {
    // a socket is its first holder's (dump refuses one whose owner is not): pstree order, as dumped
    const owner = new Map<number, Msg>();
    for (const t of this.set.tasks)
      for (const e of t.fdinfo ?? []) if (!owner.has(num(e.id)) && t.leader.thread_core?.creds) owner.set(num(e.id), t.leader.thread_core.creds);
    // established connections last: bound in repair mode, they may share a port with a listener
    // (only a bind in repair mode passes over the sockets already bound there)
    const conn = (f: Msg) => repairedEntry(f.isk) && !this.tcpClose;
    const inet = [...this.set.files.values()].filter((f) => num(f.type) === 4);
    for (const f of [...inet.filter((x) => !conn(x)), ...inet.filter(conn)]) {
      const s: Made = { id: num(f.id), isk: f.isk, fd: -1, creds: owner.get(num(f.id)) };
      this.byId.set(s.id, s);
      s.fd = this.make(s);
    }
    // every socket bound: SO_REUSEPORT as it was (see make), then the checks
    for (const p of this.reuseportCleared.splice(0)) {
      try {
        native().setsockopt(p.s.fd, SOL_SOCKET, SO.REUSEPORT, 0);
      } catch (err) {
        throw new EngineError(`${p.where}: setsockopt(SO_REUSEPORT): ${isNativeError(err) ? err.code : (err as Error).message}`);
      }
      this.verify(p.s.fd, p.s, p.where);
    }
    if (this.byId.size) this.log.debug(`inet sockets: ${this.byId.size} made`);
  }

  private shared?: Set<string>;

  /** proto:port of the ports a socket of the set is bound to with SO_REUSEPORT */
  private sharedPorts(): Set<string> {
    this.shared ??= new Set([...this.set.files.values()]
      .filter((f) => num(f.type) === 4 && num(f.isk.src_port) && num(f.isk.opts?.so_reuseport) && num(f.isk.type) !== SOCK_RAW)
      .map((f) => `${num(f.isk.proto)}:${num(f.isk.src_port)}`));
    return this.shared;
  }

  /** sockets bound and listening with SO_REUSEPORT on, cleared after all are bound */
  private reuseportCleared: { s: Made; where: string }[] = [];

  private make(s: Made): number {
    const n = native();
    const e = s.isk;
    const family = num(e.family), type = num(e.type), proto = num(e.proto), state = num(e.state);
    const where = `files.img: id ${s.id}: ${familyName(family)} ${protoName(proto)} socket`;
    const fail = (what: string, err: unknown) => new EngineError(`${where}: ${what}: ${isNativeError(err) ? err.code : (err as Error).message}`);
    const fd = s.creds ? n.socket(family, type | SOCK_CLOEXEC, proto, num(s.creds.fsuid), num(s.creds.fsgid)) : n.socket(family, type | SOCK_CLOEXEC, proto);
    try {
      const opts: Msg = e.opts ?? {};
      const set = (level: number, name: number, v: number | Buffer, label: string) => {
        try {
          n.setsockopt(fd, level, name, v);
        } catch (err) {
          throw fail(`setsockopt(${label})`, err);
        }
      };
      // every option before the socket is bound: what it receives from then on sees them all
      // (a listener's connections take its options when they are made, a filter sees every datagram)
      if (family === AF_INET6 && (e.v6only ?? false) !== (int(fd, SOL_IPV6, IPV6.V6ONLY) !== 0)) set(SOL_IPV6, IPV6.V6ONLY, e.v6only ? 1 : 0, 'IPV6_V6ONLY');
      this.options(fd, e, set);
      // --tcp-close: a connection (in any state) comes back closed, both ways shut: reading gives
      // the end of file, as it would once the peer is gone (shutdown says ENOTCONN but holds)
      // (also one the dump found closed after a connection, shut both ways: its port may be held
      // by what is left of that connection, so it is not bound)
      const dropped = state === TCP_CLOSE ? num(e.shutdown) === 3 || num(e.dst_port) !== 0 : state !== TCP_LISTEN;
      if (this.tcpClose && type === SOCK_STREAM && proto === IPPROTO_TCP && dropped) {
        try {
          n.shutdown(fd, 2);
        } catch (err) {
          if (!(isNativeError(err) && err.code === 'ENOTCONN')) throw fail('shutdown', err);
        }
        const flags = num(e.flags) & SETFL;
        if (flags) n.fcntl(fd, F_SETFL, flags);
        return fd;
      }
      // the port may still be held by connections of the dumped socket in TIME_WAIT
      set(SOL_SOCKET, SO.REUSEADDR, 1, 'SO_REUSEADDR');
      const srcPort = num(e.src_port);
      if (repairedEntry(e)) {
        s.stream = loadStream(this.set.dir, num(e.ino), state);
        const w = (k: string) => ((e[k] ?? []) as unknown[]).map(num);
        try {
          restoreInRepair(fd, s.stream, sockaddr(family, srcPort, w('src_addr')), sockaddr(family, num(e.dst_port), w('dst_addr')));
        } catch (err) {
          throw fail(`TCP connection ${addrText(family, w('src_addr'), srcPort)} -> ${addrText(family, w('dst_addr'), num(e.dst_port))}`, err);
        }
        // the rest once every connection exists (repairOff)
        const flags = num(e.flags) & SETFL;
        if (flags) n.fcntl(fd, F_SETFL, flags);
        return fd;
      }
      // a socket bound without SO_REUSEPORT beside ones bound with it had it while it was bound
      // and listening, and cleared it since (a port shared by listeners): it is bound with it on,
      // and cleared once every socket is bound (build)
      const reuseportLater = srcPort !== 0 && !num(opts.so_reuseport) && this.sharedPorts().has(`${proto}:${srcPort}`);
      if (reuseportLater) set(SOL_SOCKET, SO.REUSEPORT, 1, 'SO_REUSEPORT');
      if (srcPort) {
        const words = ((e.src_addr ?? []) as unknown[]).map(num);
        const scope = family === AF_INET6 && e.ifname ? Number(fs.readFileSync(`/sys/class/net/${e.ifname}/ifindex`, 'utf8').trim()) : 0;
        // an IPv6 address may still be tentative: bind as CRIU does, with IP_FREEBIND meanwhile
        if (family === AF_INET6) set(SOL_IPV6, IPV6.FREEBIND, 1, 'IPV6_FREEBIND');
        try {
          n.sockBind(fd, sockaddr(family, srcPort, words, scope));
        } catch (err) {
          throw fail(`cannot bind ${addrText(family, words, srcPort)} again`, err);
        }
        if (family === AF_INET6 && !e.ip_opts?.freebind) set(SOL_IPV6, IPV6.FREEBIND, 0, 'IPV6_FREEBIND');
      }
      if (state === TCP_LISTEN) {
        try {
          n.listen(fd, num(e.backlog));
        } catch (err) {
          throw fail('listen', err);
        }
      }
      if (proto !== IPPROTO_TCP && state === TCP_ESTABLISHED) {
        const words = ((e.dst_addr ?? []) as unknown[]).map(num);
        try {
          n.sockConnect(fd, sockaddr(family, num(e.dst_port), words));
        } catch (err) {
          throw fail(`cannot connect to ${addrText(family, words, num(e.dst_port))} again`, err);
        }
      }
      if (!opts.reuseaddr) set(SOL_SOCKET, SO.REUSEADDR, 0, 'SO_REUSEADDR');
      const sh = num(e.shutdown);
      if (sh) {
        try {
          n.shutdown(fd, sh - 1); // READ, WRITE, BOTH -> SHUT_RD, SHUT_WR, SHUT_RDWR
        } catch (err) {
          // an unconnected socket takes the shutdown and says ENOTCONN
          if (!(isNativeError(err) && err.code === 'ENOTCONN')) throw fail('shutdown', err);
        }
      }
      const flags = num(e.flags) & SETFL;
      if (flags) n.fcntl(fd, F_SETFL, flags);
      if (reuseportLater) this.reuseportCleared.push({ s, where });
      else this.verify(fd, s, where);
      return fd;
    } catch (err) {
      n.close(fd);
      throw err;
    }
  }

  /** The recorded options, each set only where it differs from what the new socket has. */
  private options(fd: number, e: Msg, set: (level: number, name: number, v: number | Buffer, label: string) => void): void {
    const family = num(e.family), proto = num(e.proto);
    const o: Msg = e.opts ?? {};
    const cur = (level: number, name: number) => int(fd, level, name);
    const flag = (v: unknown, level: number, name: number, label: string) => {
      if (v === undefined) return;
      const want = num(v) ? 1 : 0;
      if ((cur(level, name) ? 1 : 0) !== want) set(level, name, want, label);
    };
    const value = (v: unknown, level: number, name: number, label: string) => {
      if (v !== undefined && num(v) !== cur(level, name)) set(level, name, num(v), label);
    };
    // the socket-level ones as every socket kind has them (the priority again after IP_TOS, below)
    applySkOpts(fd, o, set);
    const ip: Msg = e.ip_opts ?? {};
    flag(ip.freebind ?? false, family === AF_INET6 ? SOL_IPV6 : SOL_IP, family === AF_INET6 ? IPV6.FREEBIND : IP.FREEBIND, 'IP_FREEBIND');
    if (family === AF_INET6) flag(ip.pktinfo, SOL_IPV6, IPV6.RECVPKTINFO, 'IPV6_RECVPKTINFO');
    else {
      flag(ip.pktinfo, SOL_IP, IP.PKTINFO, 'IP_PKTINFO');
      value(ip.tos ?? 0, SOL_IP, IP.TOS, 'IP_TOS');
      value(ip.ttl, SOL_IP, IP.TTL, 'IP_TTL');
    }
    if (ip.raw) {
      const raw: Msg = ip.raw;
      flag(raw.hdrincl ?? false, family === AF_INET6 ? SOL_IPV6 : SOL_IP, family === AF_INET6 ? IPV6_HDRINCL : IP_HDRINCL, 'IP_HDRINCL');
      if (family === AF_INET) flag(raw.nodefrag ?? false, SOL_IP, IP_NODEFRAG, 'IP_NODEFRAG');
      const filter = ((raw.icmpv_filter ?? []) as unknown[]).map(num);
      if (filter.length) {
        const b = Buffer.alloc(4 * filter.length);
        filter.forEach((w, i) => b.writeUInt32LE(w >>> 0, 4 * i));
        set(family === AF_INET6 ? SOL_ICMPV6 : SOL_RAW, family === AF_INET6 ? ICMPV6_FILTER : ICMP_FILTER, b, 'ICMP_FILTER');
      }
    }
    // IP_TOS sets the priority as well: the recorded priority comes after it
    value(o.so_priority, SOL_SOCKET, SO.PRIORITY, 'SO_PRIORITY');
    if (proto === IPPROTO_TCP) {
      const t: Msg = e.tcp_opts ?? {};
      flag(t.nodelay, SOL_TCP, TCP.NODELAY, 'TCP_NODELAY');
      flag(t.cork, SOL_TCP, TCP.CORK, 'TCP_CORK');
      // older images keep the keepalive settings in sk_opts
      value(t.keepcnt ?? o.tcp_keepcnt, SOL_TCP, TCP.KEEPCNT, 'TCP_KEEPCNT');
      value(t.keepidle ?? o.tcp_keepidle, SOL_TCP, TCP.KEEPIDLE, 'TCP_KEEPIDLE');
      value(t.keepintvl ?? o.tcp_keepintvl, SOL_TCP, TCP.KEEPINTVL, 'TCP_KEEPINTVL');
    }
  }

  /** What the image holds must read back the same; the rest must be a new socket's defaults. */
  private verify(fd: number, s: Made, where: string): void {
    const e = s.isk;
    const family = num(e.family), type = num(e.type), proto = num(e.proto);
    const got = imageOptions(fd, family, proto, type);
    const same = (a: unknown, b: unknown) => (typeof a === 'string' || typeof b === 'string' ? String(a ?? '') === String(b ?? '') : big(a === true ? 1 : a === false ? 0 : a) === big(b === true ? 1 : b === false ? 0 : b));
    const check = (sub: string, want: Msg | undefined, have: Msg, skip: string[] = []) => {
      for (const [k, v] of Object.entries(want ?? {})) {
        if (skip.includes(k) || (typeof v === 'object' && v !== null && !(typeof v === 'bigint'))) continue;
        if (!same(v, have[k])) throw new EngineError(`${where}: ${sub}.${k} is ${have[k] ?? 'unset'} after restore, the image says ${v}`);
      }
    };
    // passcred/passsec and the sk_opts copies of the keepalive settings are checked where they live
    // an autotuned buffer of a connection may be odd: set again one byte smaller (the kernel doubles)
    const tuned = ([['so_sndbuf', 1], ['so_rcvbuf', 2]] as const).filter(([k, lock]) => autotuned(proto, num(e.state), e.opts ?? {}, lock) && Math.abs(num(got.opts[k]) - num(e.opts?.[k])) <= 1).map(([k]) => k as string);
    check('opts', e.opts, got.opts, ['so_passcred', 'so_passsec', 'tcp_keepcnt', 'tcp_keepidle', 'tcp_keepintvl', ...tuned]);
    const filter = socketFilter(fd);
    const want = ((e.opts?.so_filter ?? []) as unknown[]).map(big);
    if (filter === 'ebpf' || filter.length !== want.length || filter.some((w, i) => w !== want[i])) throw new EngineError(`${where}: the socket filter differs from the image after restore`);
    check('ip_opts', e.ip_opts, got.ip_opts);
    if (e.ip_opts?.raw) {
      check('ip_opts.raw', e.ip_opts.raw, got.ip_opts.raw ?? {});
      const want = ((e.ip_opts.raw.icmpv_filter ?? []) as unknown[]).map(num), have = ((got.ip_opts.raw?.icmpv_filter ?? []) as number[]);
      if (want.length && want.some((w, i) => (w >>> 0) !== (have[i] >>> 0))) throw new EngineError(`${where}: ip_opts.raw.icmpv_filter differs from the image after restore`);
    }
    if (proto === IPPROTO_TCP) check('tcp_opts', e.tcp_opts, got.tcp_opts);
    // binding an IPv6 address sets v6only: a connection made again (bound in repair mode) has it
    // even where its dumped end, bound by connect, had not (it only concerns IPv4 traffic, which
    // a connection to an IPv6 peer never sees)
    const boundV6 = repairedEntry(e) && got.v6only === true;
    if (family === AF_INET6 && !boundV6 && !same(e.v6only ?? false, got.v6only)) throw new EngineError(`${where}: v6only is ${got.v6only} after restore, the image says ${e.v6only}`);
    const diff = foreignDifference(fd, family, type, proto, repairedEntry(e) ? ESTABLISHED_OWN_OPTIONS : undefined);
    if (diff && diff.label !== 'SO_PASSCRED' && diff.label !== 'SO_PASSSEC')
      throw new EngineError(`${where}: option ${diff.label} is ${diff.have} after restore, a new socket has ${diff.fresh}`);
    const st = fs.fstatSync(fd);
    if (s.creds && (st.uid !== num(s.creds.fsuid) || st.gid !== num(s.creds.fsgid)))
      throw new EngineError(`${where}: made by uid ${st.uid} gid ${st.gid}, not by its task's fsuid ${s.creds.fsuid} fsgid ${s.creds.fsgid}`);
    const fl = native().fcntl(fd, F_GETFL) & SETFL;
    if (fl !== (num(e.flags) & SETFL)) throw new EngineError(`${where}: file flags 0o${fl.toString(8)} after restore, the image says 0o${(num(e.flags) & SETFL).toString(8)}`);
  }

  /**
   * Established connections leave repair mode, all made by now (a segment finds its peer), the
   * tree about to run: unsent data, SO_REUSEADDR, shutdown(SHUT_RD), then the usual checks.
   */
  repairOff(): void {
    for (const s of this.byId.values()) {
      if (!s.stream || s.fd < 0) continue;
      const e = s.isk;
      const where = `files.img: id ${s.id}: ${familyName(num(e.family))} TCP connection`;
      try {
        leaveRepair(s.fd, s.stream, e.opts ?? {});
        // a closed connection is shut both ways already (shutdown says ENOTCONN)
        if (num(e.shutdown) & 1 && num(e.state) !== TCP_CLOSE) native().shutdown(s.fd, 0);
      } catch (err) {
        throw new EngineError(`${where}: ${isNativeError(err) ? err.code : (err as Error).message}`);
      }
      s.stream = undefined;
      this.verify(s.fd, s, where);
    }
  }

  /** Closes the engine's copies (the tasks hold their own by now). */
  close(): void {
    for (const s of this.byId.values()) if (s.fd >= 0) try { native().close(s.fd); } catch { /* closed */ }
    for (const s of this.byId.values()) s.fd = -1;
  }
}
