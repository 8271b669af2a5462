// Netlink sockets (AF_NETLINK), both halves of CRIU 4.2's netlink_sk_entry (files.img type
// NETLINKSK): what dump reads (netlink sock_diag: protocol, port id, multicast groups, the peer a
// connected socket sends to) and how restore makes the socket again in the engine and hands it to
// the task, like an inet socket: bound to its own port id and groups, connected to its peer.
//
// Exactness: the port id is bound again as it was (a restore that cannot have it fails; it is
// never swapped for another one); messages queued and not read yet, a dump answer still being
// produced by the kernel and a pending error are refused, as are SOCK_DGRAM sockets (the image
// has no type: a socket comes back SOCK_RAW), groups above 32 and groups of an unbound socket
// (CRIU binds the first 32 groups with the port id), the netlink flags (NETLINK_PKTINFO,
// NO_ENOBUFS, EXT_ACK, ...) and SOL_SOCKET options the image has no field for, and the protocols
// whose kernel side keeps state of its own for a socket's port (audit, netfilter queues and
// logs, generic netlink families, connector, ...), which a new socket would not have.
import { sockDiag, diagAttrs } from '../dump/netlink';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, isNativeError } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import type { Log } from '../log';
import type { ImageSet } from '../restore/imageset';
import { ImageError, num } from '../restore/imageset';
import {
  SOL_SOCKET, Opt, foreignOpts, checkCommon, skOpts, intOpt, makeSocket, setter, applySkOpts, verifySkOpts,
  applyFileFlags, badFileFlags, SO, EngineSockets, MadeSocket,
} from './sk-common';

export const AF_NETLINK = 16;
export const FD_TYPE_NETLINKSK = 13;
const SOCK_RAW = 3;
const SOL_NETLINK = 270;
const NETLINK_LIST_MEMBERSHIPS = 9;
/** ndiag_state: a new socket is TCP_CLOSE (7), connect makes it NETLINK_CONNECTED, a disconnect NETLINK_UNCONNECTED (0) */
const NETLINK_UNCONNECTED = 0, NETLINK_CONNECTED = 1, TCP_CLOSE = 7;
const POLLIN = 0x1;

const PROTO_NAMES: Record<number, string> = {
  0: 'ROUTE', 1: 'UNUSED', 2: 'USERSOCK', 3: 'FIREWALL', 4: 'SOCK_DIAG', 5: 'NFLOG', 6: 'XFRM', 7: 'SELINUX', 8: 'ISCSI', 9: 'AUDIT',
  10: 'FIB_LOOKUP', 11: 'CONNECTOR', 12: 'NETFILTER', 13: 'IP6_FW', 14: 'DNRTMSG', 15: 'KOBJECT_UEVENT', 16: 'GENERIC',
  18: 'SCSITRANSPORT', 19: 'ECRYPTFS', 20: 'RDMA', 21: 'CRYPTO', 22: 'SMC',
};
const protoName = (p: number) => (PROTO_NAMES[p] ? `NETLINK_${PROTO_NAMES[p]}` : `protocol ${p}`);

/**
 * Protocols whose kernel side holds nothing for a socket beyond what the image has (its port id,
 * groups and peer): requests are answered as they come, events go to the groups.
 */
const RESTORABLE = new Set([0, 2, 4, 7, 10, 15, 21]);

// SOL_NETLINK flags netlink_sk_entry has no field for
const FOREIGN_NETLINK: Opt[] = [
  [SOL_NETLINK, 3, 'NETLINK_PKTINFO'], [SOL_NETLINK, 4, 'NETLINK_BROADCAST_ERROR'], [SOL_NETLINK, 5, 'NETLINK_NO_ENOBUFS'],
  [SOL_NETLINK, 8, 'NETLINK_LISTEN_ALL_NSID'], [SOL_NETLINK, 10, 'NETLINK_CAP_ACK'], [SOL_NETLINK, 11, 'NETLINK_EXT_ACK'],
  [SOL_NETLINK, 12, 'NETLINK_GET_STRICT_CHK'],
];

function foreignOf(proto: number): { key: string; opts: Opt[]; fresh: () => number } {
  return { key: `netlink/${proto}`, opts: foreignOpts(true, FOREIGN_NETLINK), fresh: () => makeSocket(AF_NETLINK, SOCK_RAW, proto) };
}

// ---------------------------------------------------------------------------------------------
// sock_diag

export interface NetlinkDiag {
  protocol: number;
  state: number;
  portid: number;
  dstPortid: number;
  dstGroup: number;
  ino: number;
  /** the group bitmap as 32-bit words, lowest groups first */
  groups: number[];
  flags: number;
  rmem: number;
}

const NDIAG_PROTO_ALL = 255;
const SHOW = { MEMINFO: 1, GROUPS: 2, FLAGS: 8 } as const;
const ATTR = { MEMINFO: 0, GROUPS: 1, FLAGS: 4 } as const;
const NDIAG_FLAG_CB_RUNNING = 0x1;

/** The bound netlink sockets of the engine's network namespace (and unbound ones with groups), by inode. */
export function netlinkDiag(): Map<number, NetlinkDiag> {
  const body = Buffer.alloc(20);
  body.writeUInt8(AF_NETLINK, 0);
  body.writeUInt8(NDIAG_PROTO_ALL, 1);
  body.writeUInt32LE(SHOW.MEMINFO | SHOW.GROUPS | SHOW.FLAGS, 8);
  const out = new Map<number, NetlinkDiag>();
  for (const m of sockDiag(body)) {
    const d: NetlinkDiag = {
      protocol: m.readUInt8(18), state: m.readUInt8(19), portid: m.readUInt32LE(20), dstPortid: m.readUInt32LE(24),
      dstGroup: m.readUInt32LE(28), ino: m.readUInt32LE(32), groups: [], flags: 0, rmem: 0,
    };
    for (const { type, at, end } of diagAttrs(m, 28)) {
      if (type === ATTR.GROUPS) for (let p = at; p + 4 <= end; p += 4) d.groups.push(m.readUInt32LE(p));
      else if (type === ATTR.FLAGS) d.flags = m.readUInt32LE(at);
      else if (type === ATTR.MEMINFO) d.rmem = m.readUInt32LE(at);
    }
    out.set(d.ino, d);
  }
  return out;
}

/** The groups bitmap with its zero words at the end dropped. */
function trimmed(words: number[]): number[] {
  const w = [...words];
  while (w.length && w[w.length - 1] === 0) w.pop();
  return w;
}

/** NETLINK_LIST_MEMBERSHIPS: the groups of a socket as 32-bit words. */
function memberships(sock: number): number[] {
  const b = native().getsockopt(sock, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 128);
  return Array.from({ length: b.length >> 2 }, (_, i) => b.readUInt32LE(4 * i));
}

/** struct sockaddr_nl */
function nlAddr(portid: number, groups: number): Buffer {
  const a = Buffer.alloc(12);
  a.writeUInt16LE(AF_NETLINK, 0);
  a.writeUInt32LE(portid >>> 0, 4);
  a.writeUInt32LE(groups >>> 0, 8);
  return a;
}

/** The nl_groups mask of a connect to group g (1..32; 0: a unicast peer). */
const groupMask = (g: number) => (g ? (1 << (g - 1)) >>> 0 : 0);

// ---------------------------------------------------------------------------------------------
// dump

export interface NetlinkContext {
  pid: number;
  fd: number;
  netNsId: number;
  fown: Msg;
  dupFd(): number;
}

export class NetlinkSockets {
  private diag?: Map<number, NetlinkDiag>;

  /** The file_entry of a netlink socket. */
  dump(id: number, ino: number, flags: number, ctx: NetlinkContext): Msg {
    const sock = ctx.dupFd();
    try {
      return this.describe(sock, id, ino, flags, ctx);
    } finally {
      native().close(sock);
    }
  }

  private describe(sock: number, id: number, ino: number, flags: number, ctx: NetlinkContext): Msg {
    const n = native();
    const type = intOpt(sock, SOL_SOCKET, SO.TYPE);
    const proto = intOpt(sock, SOL_SOCKET, SO.PROTOCOL);
    const kind = `netlink socket (${protoName(proto)})`;
    const refuse = (why: string) => new UnsupportedError(`task ${ctx.pid} fd ${ctx.fd}: ${kind}: ${why}`);
    if (type !== SOCK_RAW) throw refuse(`of type ${type === 2 ? 'SOCK_DGRAM' : type} (the image has no socket type: CRIU makes netlink sockets SOCK_RAW; not restorable)`);
    if (!RESTORABLE.has(proto)) throw refuse('the kernel keeps state of its own for such a socket (registrations, subscriptions, bindings to its port) that the image cannot hold (not supported)');
    checkCommon(sock, ctx.pid, flags, refuse, foreignOf(proto));
    this.diag ??= netlinkDiag();
    const d = this.diag.get(ino);
    let portid = 0, state = 0, dstPortid = 0, dstGroup = 0, groups: number[];
    if (d) {
      ({ portid, state, dstPortid, dstGroup } = d);
      groups = trimmed(d.groups);
      if (d.flags & NDIAG_FLAG_CB_RUNNING) throw refuse('the kernel is still producing the answer to a dump request (it would be lost; not supported)');
      if (d.rmem) throw refuse(`${d.rmem} bytes of messages received and not read yet (they would be lost; not supported)`);
    } else {
      // neither bound nor subscribed: not in sock_diag
      const name = n.sockName(sock);
      if (name.readUInt32LE(4) !== 0) throw new EngineError(`task ${ctx.pid} fd ${ctx.fd}: ${kind} bound to port id ${name.readUInt32LE(4)} is missing from sock_diag`);
      groups = trimmed(memberships(sock));
    }
    if (n.pollOne(sock, POLLIN, 0) & POLLIN) throw refuse('messages received and not read yet (they would be lost; not supported)');
    if (groups.length > 1) throw refuse('subscribed to groups above 32 (CRIU images keep the first 32; not supported)');
    if (groups.length && !portid) throw refuse('subscribed to groups without a port id (CRIU binds the groups with the port id; not supported)');
    if (dstGroup > 32) throw refuse(`connected to group ${dstGroup} (not supported)`);
    const nlsk: Msg = { id, ino, protocol: proto, state, flags, portid, groups, dst_portid: dstPortid, dst_group: dstGroup, fown: ctx.fown, opts: skOpts(sock, true) };
    nlsk.ns_id = ctx.netNsId;
    return { type: FD_TYPE_NETLINKSK, id, nlsk };
  }
}

// ---------------------------------------------------------------------------------------------
// restore

/** Refuses, before any process exists, a netlink_sk_entry this engine cannot restore. */
export function checkNetlinkEntry(id: number, nlsk: Msg): void {
  const field = (f: string) => `id ${id}.nlsk.${f}`;
  const proto = num(nlsk.protocol);
  if (!RESTORABLE.has(proto)) throw new ImageError('files.img', field('protocol'), `${protoName(proto)} sockets are not restored (the kernel keeps state of its own for them)`);
  const groups = trimmed(((nlsk.groups ?? []) as unknown[]).map(num));
  if (groups.length > 1) throw new ImageError('files.img', field('groups'), 'groups above 32 are not restored');
  if (groups.length && !num(nlsk.portid)) throw new ImageError('files.img', field('groups'), 'groups without a port id');
  const state = num(nlsk.state);
  if (state !== NETLINK_UNCONNECTED && state !== NETLINK_CONNECTED && state !== TCP_CLOSE) throw new ImageError('files.img', field('state'), `unknown state ${state}`);
  if (state === NETLINK_CONNECTED && !num(nlsk.portid)) throw new ImageError('files.img', field('portid'), 'a connected socket without a port id');
  if (num(nlsk.dst_group) > 32) throw new ImageError('files.img', field('dst_group'), `group ${nlsk.dst_group}`);
  if ((nlsk.opts?.so_filter ?? []).length > 4096) throw new ImageError('files.img', field('opts.so_filter'), 'longer than a socket filter can be');
  if (badFileFlags(num(nlsk.flags))) throw new ImageError('files.img', field('flags'), `file flags 0o${num(nlsk.flags).toString(8)} cannot be set on a socket`);
}

/** Makes every netlink socket of files.img in the engine, one per file id, passed into each task that has it. */
export class NetlinkRestorer extends EngineSockets {
  constructor(set: ImageSet, log: Log) {
    super(set, log, FD_TYPE_NETLINKSK, 'nlsk', 'netlink sockets');
  }

  protected make(s: MadeSocket): number {
    const n = native();
    const e = s.entry;
    const proto = num(e.protocol), portid = num(e.portid);
    const where = `files.img: id ${s.id}: netlink socket (${protoName(proto)})`;
    const fail = (what: string, err: unknown) => new EngineError(`${where}: ${what}: ${isNativeError(err) ? err.code : (err as Error).message}`);
    const fd = makeSocket(AF_NETLINK, SOCK_RAW, proto, s.creds);
    try {
      // options and filter first: what it receives from its bind on sees them all
      applySkOpts(fd, e.opts ?? {}, setter(fd, fail));
      const groups = trimmed(((e.groups ?? []) as unknown[]).map(num));
      if (portid) {
        try {
          n.sockBind(fd, nlAddr(portid, groups[0] ?? 0));
        } catch (err) {
          throw fail(`cannot bind port id ${portid >>> 0} again`, err);
        }
      }
      if (num(e.state) === NETLINK_CONNECTED) {
        try {
          n.sockConnect(fd, nlAddr(num(e.dst_portid), groupMask(num(e.dst_group))));
        } catch (err) {
          throw fail(`cannot connect to port id ${num(e.dst_portid) >>> 0} group ${num(e.dst_group)} again`, err);
        }
      }
      applyFileFlags(fd, num(e.flags));
      this.verify(fd, s, where, groups);
      return fd;
    } catch (err) {
      n.close(fd);
      throw err;
    }
  }

  /** The new socket, read back the way dump reads one, must be what the image says. */
  private verify(fd: number, s: MadeSocket, where: string, groups: number[]): void {
    const e = s.entry;
    const check = (what: string, have: unknown, want: unknown) => {
      if (String(have) !== String(want)) throw new EngineError(`${where}: ${what} is ${have} after restore, the image says ${want}`);
    };
    const name = native().sockName(fd);
    check('portid', name.readUInt32LE(4), num(e.portid) >>> 0);
    check('groups', trimmed(memberships(fd)).join(','), groups.join(','));
    const peer = native().getsockopt(fd, SOL_SOCKET, SO.PEERNAME, 12);
    check('dst_portid', peer.readUInt32LE(4), num(e.dst_portid) >>> 0);
    check('dst_group', peer.readUInt32LE(8), groupMask(num(e.dst_group)));
    if (num(e.portid)) {
      const d = netlinkDiag().get(fs.fstatSync(fd).ino);
      if (!d) throw new EngineError(`${where}: not in sock_diag after restore`);
      check('connected', d.state === NETLINK_CONNECTED, num(e.state) === NETLINK_CONNECTED);
      check('protocol', d.protocol, num(e.protocol));
    }
    verifySkOpts(fd, e.opts ?? {}, true, where, s.creds, num(e.flags), foreignOf(num(e.protocol)));
  }

  /** Closes the engine's copies (the tasks hold their own by now). */
}
