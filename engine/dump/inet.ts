// IPv4 TCP and UDP sockets: inet_sk_entry from sock_diag (addresses, ports, state, backlog) and
// socket options read on a pidfd_getfd duplicate, with the fields CRIU 4.2 writes (corpus
// fdkinds/: sk_opts without the unix-only passcred/passsec, ip_opts with ttl, tcp_opts with the
// keepalive settings for TCP and empty for UDP). Listening and closed (bound or not) TCP sockets
// and UDP sockets are dumped; a TCP connection needs TCP_REPAIR and is refused by name.
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { socketOpts } from './unix';
import { UnsupportedError } from '../errors';
import type { Log } from '../log';

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1, NLM_F_DUMP = 0x300;
const INET_DIAG_SHUTDOWN = 8;
export const AF_INET = 2;
export const AF_INET6 = 10;
const IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_UDPLITE = 136;
const SOCK_STREAM = 1, SOCK_DGRAM = 2;
const SOL_SOCKET = 1, SO_TYPE = 3, SO_PROTOCOL = 38, SO_BINDTODEVICE = 25;
const SOL_IP = 0, IP_TOS = 1, IP_TTL = 2, IP_PKTINFO = 8, IP_FREEBIND = 15, IP_TRANSPARENT = 19;
const SOL_TCP = 6, TCP_NODELAY = 1, TCP_CORK = 3, TCP_KEEPIDLE = 4, TCP_KEEPINTVL = 5, TCP_KEEPCNT = 6;

const TCP_STATES = ['', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV'];
const TCP_ESTABLISHED = 1, TCP_CLOSE = 7, TCP_LISTEN = 10;

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
  const req = Buffer.alloc(16 + 56);
  req.writeUInt32LE(req.length, 0);
  req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
  req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  req.writeUInt32LE(1, 8);
  req.writeUInt8(family, 16);
  req.writeUInt8(proto, 17);
  req.writeUInt8(1 << (INET_DIAG_SHUTDOWN - 1), 18); // idiag_ext (the shutdown attribute comes anyway)
  req.writeUInt32LE(0xffffffff, 20); // all states
  return req;
}

export function parseInetDiag(msg: Buffer, proto: number): InetDiag {
  const family = msg.readUInt8(16);
  const words = family === AF_INET ? 1 : 4;
  const addr = (o: number) => Array.from({ length: words }, (_, i) => msg.readUInt32LE(o + 4 * i));
  const d: InetDiag = {
    family, proto, state: msg.readUInt8(17), srcPort: msg.readUInt16BE(20), dstPort: msg.readUInt16BE(22),
    src: addr(24), dst: addr(40), rqueue: msg.readUInt32LE(72), wqueue: msg.readUInt32LE(76), ino: msg.readUInt32LE(84), shutdown: 0,
  };
  const total = msg.readUInt32LE(0);
  for (let o = 16 + 72; o + 4 <= total; ) {
    const len = msg.readUInt16LE(o), type = msg.readUInt16LE(o + 2);
    if (len < 4) break;
    if (type === INET_DIAG_SHUTDOWN) d.shutdown = msg.readUInt8(o + 4);
    o += (len + 3) & ~3;
  }
  return d;
}

export interface InetContext {
  pid: number;
  fd: number;
  netNsId: number;
  fown: Msg;
  dupFd(): number;
}

export class InetSockets {
  private diag: Map<number, InetDiag> | undefined;

  constructor(private log?: Log) {}

  private sockets(): Map<number, InetDiag> {
    if (this.diag) return this.diag;
    this.diag = new Map();
    for (const proto of [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE]) {
      let msgs: Buffer[];
      try {
        msgs = native().netlinkQuery(NETLINK_SOCK_DIAG, diagRequest(AF_INET, proto));
      } catch {
        continue; // no diag module for this protocol
      }
      for (const m of msgs) {
        const d = parseInetDiag(m, proto);
        this.diag.set(d.ino, d);
      }
    }
    return this.diag;
  }

  /** The file_entry of an IPv4 socket. */
  dump(id: number, ino: number, flags: number, ctx: InetContext): Msg {
    const where = `task ${ctx.pid} fd ${ctx.fd}`;
    const n = native();
    const sock = ctx.dupFd();
    try {
      const int = (level: number, name: number) => n.getsockopt(sock, level, name, 4).readInt32LE(0);
      const type = int(SOL_SOCKET, SO_TYPE);
      const proto = int(SOL_SOCKET, SO_PROTOCOL);
      if (type !== SOCK_STREAM && type !== SOCK_DGRAM) throw new UnsupportedError(`${where}: IPv4 socket of type ${type} (raw sockets are not supported)`);
      const d = this.sockets().get(ino);
      if (!d) throw new UnsupportedError(`${where}: IPv4 socket ${ino} is not in the engine's network namespace`);
      if (proto === IPPROTO_TCP) {
        if (d.state === TCP_ESTABLISHED || (d.state !== TCP_LISTEN && d.state !== TCP_CLOSE))
          throw new UnsupportedError(`${where}: TCP connection in state ${TCP_STATES[d.state] ?? d.state} (dumping it needs TCP_REPAIR; not supported)`);
        if (d.state === TCP_LISTEN && d.rqueue > 0)
          throw new UnsupportedError(`${where}: listening TCP socket with ${d.rqueue} connection(s) not accepted yet (not supported)`);
      } else if (d.rqueue > 0) {
        // as CRIU: datagrams waiting in a UDP socket are not saved
        this.log?.debug(`${where}: ${d.rqueue} bytes queued on UDP socket ${ino} are not saved`);
      }
      if (int(SOL_IP, IP_TRANSPARENT)) throw new UnsupportedError(`${where}: IP_TRANSPARENT sockets are not supported`);
      const opts = socketOpts(sock, false); // passcred/passsec are unix-only
      const ip: Msg = {};
      if (int(SOL_IP, IP_FREEBIND)) ip.freebind = true;
      if (int(SOL_IP, IP_PKTINFO)) ip.pktinfo = true;
      const tos = int(SOL_IP, IP_TOS);
      if (tos) ip.tos = tos;
      ip.ttl = int(SOL_IP, IP_TTL);
      const tcp: Msg = {};
      if (proto === IPPROTO_TCP) {
        if (int(SOL_TCP, TCP_CORK)) tcp.cork = true;
        if (int(SOL_TCP, TCP_NODELAY)) tcp.nodelay = true;
        tcp.keepcnt = int(SOL_TCP, TCP_KEEPCNT);
        tcp.keepidle = int(SOL_TCP, TCP_KEEPIDLE);
        tcp.keepintvl = int(SOL_TCP, TCP_KEEPINTVL);
      }
      const dev = n.getsockopt(sock, SOL_SOCKET, SO_BINDTODEVICE, 16);
      const ifname = dev.subarray(0, dev.indexOf(0) < 0 ? dev.length : dev.indexOf(0)).toString();
      const isk: Msg = {
        id, ino, family: AF_INET, type, proto, state: d.state, src_port: d.srcPort, dst_port: d.dstPort, flags,
        backlog: d.state === TCP_LISTEN ? d.wqueue : 0, src_addr: d.src, dst_addr: d.dst, fown: ctx.fown, opts, ip_opts: ip,
      };
      if (ifname) isk.ifname = ifname;
      isk.ns_id = ctx.netNsId;
      if (d.shutdown) isk.shutdown = d.shutdown;
      isk.tcp_opts = tcp;
      return { type: 4, id, isk };
    } finally {
      n.close(sock);
    }
  }
}
