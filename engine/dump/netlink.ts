// sock_diag: the request and attribute framing every socket kind's query shares, and AF_UNIX's
// own: every unix socket of the engine's network namespace with its name, bound inode, peer,
// pending connections, queue sizes and shutdown state.
import { native } from '../../native';

const NETLINK_SOCK_DIAG = 4;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x1, NLM_F_DUMP = 0x300;
const NLMSG_HDRLEN = 16;

/** A SOCK_DIAG_BY_FAMILY dump request: the nlmsghdr, then `body` (the family's request, family first). */
export function sockDiagRequest(body: Buffer): Buffer {
  const req = Buffer.alloc(NLMSG_HDRLEN + body.length);
  req.writeUInt32LE(req.length, 0);
  req.writeUInt16LE(SOCK_DIAG_BY_FAMILY, 4);
  req.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  req.writeUInt32LE(1, 8); // seq
  body.copy(req, NLMSG_HDRLEN);
  return req;
}

/** The answers (one message per socket, nlmsghdr included) to a sock_diag request body. */
export function sockDiag(body: Buffer): Buffer[] {
  return native().netlinkQuery(NETLINK_SOCK_DIAG, sockDiagRequest(body));
}

/** The attributes of an answer after its fixed part of `fixed` bytes: type, payload offset and end. */
export function* diagAttrs(msg: Buffer, fixed: number): Generator<{ type: number; at: number; end: number }> {
  const total = msg.readUInt32LE(0);
  for (let o = NLMSG_HDRLEN + fixed; o + 4 <= total; ) {
    const len = msg.readUInt16LE(o);
    if (len < 4) return;
    yield { type: msg.readUInt16LE(o + 2), at: o + 4, end: o + len };
    o += (len + 3) & ~3;
  }
}
const AF_UNIX = 1;
const UDIAG_SHOW_NAME = 0x1, UDIAG_SHOW_VFS = 0x2, UDIAG_SHOW_PEER = 0x4, UDIAG_SHOW_ICONS = 0x8, UDIAG_SHOW_RQLEN = 0x10;
const UNIX_DIAG_NAME = 0, UNIX_DIAG_VFS = 1, UNIX_DIAG_PEER = 2, UNIX_DIAG_ICONS = 3, UNIX_DIAG_RQLEN = 4, UNIX_DIAG_SHUTDOWN = 6;

export interface UnixDiag {
  ino: number;
  type: number;
  state: number;
  /** raw sun_path bytes as bound (abstract names start with NUL); empty when unbound */
  name: Buffer;
  vfs?: { ino: number; dev: number };
  peer: number;
  /** client inodes of connections waiting in a listener's queue */
  icons: number[];
  /** listener: pending connections / backlog; others: bytes queued in / allocated out */
  rqueue: number;
  wqueue: number;
  shutdown: number;
}

export function unixDiagRequest(): Buffer {
  const body = Buffer.alloc(24);
  body.writeUInt8(AF_UNIX, 0);
  body.writeUInt32LE(0xffffffff, 4); // all states
  body.writeUInt32LE(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN, 12);
  return body;
}

export function parseUnixDiag(msg: Buffer): UnixDiag {
  const d: UnixDiag = {
    type: msg.readUInt8(17), state: msg.readUInt8(18), ino: msg.readUInt32LE(20), name: Buffer.alloc(0), peer: 0, icons: [],
    rqueue: 0, wqueue: 0, shutdown: 0,
  };
  for (const { type, at: p, end } of diagAttrs(msg, 16)) {
    const plen = end - p;
    switch (type) {
      case UNIX_DIAG_NAME: d.name = Buffer.from(msg.subarray(p, p + plen)); break;
      case UNIX_DIAG_VFS: d.vfs = { ino: msg.readUInt32LE(p), dev: msg.readUInt32LE(p + 4) }; break;
      case UNIX_DIAG_PEER: d.peer = msg.readUInt32LE(p); break;
      case UNIX_DIAG_ICONS: for (let i = 0; i + 4 <= plen; i += 4) d.icons.push(msg.readUInt32LE(p + i)); break;
      case UNIX_DIAG_RQLEN: d.rqueue = msg.readUInt32LE(p); d.wqueue = msg.readUInt32LE(p + 4); break;
      case UNIX_DIAG_SHUTDOWN: d.shutdown = msg.readUInt8(p); break;
    }
  }
  return d;
}

/** All unix sockets of the current network namespace, by inode. */
export function collectUnixSockets(): Map<number, UnixDiag> {
  const out = new Map<number, UnixDiag>();
  for (const m of sockDiag(unixDiagRequest())) {
    const d = parseUnixDiag(m);
    out.set(d.ino, d);
  }
  return out;
}
