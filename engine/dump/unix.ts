// Unix sockets: unix_sk_entry from sock_diag and the socket options (read on a pidfd_getfd
// duplicate), queued data into sk-queues.img copied with MSG_PEEK without consuming it. Files in
// flight (SCM_RIGHTS) come with the peek as the engine's own fds; they are dumped as files of
// their own (no task holds them) and named by id in the packet's scm entry, as CRIU does.
// Like CRIU, an entry whose peer has not been dumped yet is held back and written right after
// its peer, and a connection still waiting in a listener's queue names the listener as peer.
import * as fs from 'fs';
import { unlinkedName } from '../kinds/ghost';
import type { Msg } from '../../images/codec';
import type { NewEntry } from '../../images/files';
import { native, isNativeError } from '../../native';
import { collectUnixSockets, UnixDiag } from './netlink';
import { UnsupportedError } from '../errors';
import { zeroFown } from './files';

const SOL_SOCKET = 1;
const SO = {
  REUSEADDR: 2, DONTROUTE: 5, BROADCAST: 6, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, NO_CHECK: 11,
  PRIORITY: 12, REUSEPORT: 15, PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21, PASSSEC: 34, MARK: 36,
  PEEK_OFF: 42, BUF_LOCK: 72,
} as const;
const SCM_RIGHTS = 1;
const MSG_PEEK = 0x2, MSG_DONTWAIT = 0x40, MSG_TRUNC = 0x20, MSG_CTRUNC = 0x8;
const TCP_LISTEN = 10;
/** sk_opts_entry of an external peer: nothing of it is read (as CRIU: zeros) */
const NO_OPTS: Msg = { so_sndbuf: 0, so_rcvbuf: 0, so_snd_tmo_sec: 0n, so_snd_tmo_usec: 0n, so_rcv_tmo_sec: 0n, so_rcv_tmo_usec: 0n };
/** unix_sk_entry.uflags: a peer outside the dumped tree, kept by name only */
export const USK_EXTERN = 1;
const SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5;
const FIONREAD = 0x541b, SIOCUNIXFILE = 0x89e0;
/** sk_shutdown as sock_diag reports it */
const RCV_SHUTDOWN = 1;
/** the largest datagram we expect; a longer one is reported, never silently cut */
const PEEK_BUF = 1 << 20;
/** room for the most fds one message can carry (SCM_MAX_FD, 253) */
const PEEK_CONTROL = 4096;

export interface SocketContext {
  pid: number;
  fd: number;
  netNsId: number;
  fown: Msg;
  /** a duplicate of the task's fd in the engine (pidfd_getfd) */
  dupFd(): number;
  /** dumps a file in flight, given as an engine fd it then owns; returns its files.img id */
  inFlight(fd: number, where: string): number;
  /** is this file in flight of a kind the holding task makes at restore (an epoll, an eventfd...)? */
  madeInTask?(fileId: number): boolean;
}

/** A queued message: its bytes and the ids of the files it carries. */
export interface Packet {
  data: Buffer;
  rights: number[];
}

/** sk_opts_entry as CRIU fills it for a unix socket (inet: without passcred/passsec). */
export function socketOpts(sock: number, unix = true): Msg {
  const n = native();
  const int = (name: number) => n.getsockopt(sock, SOL_SOCKET, name, 4).readInt32LE(0);
  const tv = (name: number) => {
    const b = n.getsockopt(sock, SOL_SOCKET, name, 16);
    return [b.readBigUInt64LE(0), b.readBigUInt64LE(8)];
  };
  const [sndS, sndU] = tv(SO.SNDTIMEO);
  const [rcvS, rcvU] = tv(SO.RCVTIMEO);
  const o: Msg = {
    so_sndbuf: int(SO.SNDBUF), so_rcvbuf: int(SO.RCVBUF), so_snd_tmo_sec: sndS, so_snd_tmo_usec: sndU,
    so_rcv_tmo_sec: rcvS, so_rcv_tmo_usec: rcvU, reuseaddr: int(SO.REUSEADDR) !== 0, so_priority: int(SO.PRIORITY),
    so_rcvlowat: int(SO.RCVLOWAT),
  };
  const mark = int(SO.MARK);
  if (mark) o.so_mark = mark;
  if (unix) Object.assign(o, { so_passcred: int(SO.PASSCRED) !== 0, so_passsec: int(SO.PASSSEC) !== 0 });
  Object.assign(o, {
    so_dontroute: int(SO.DONTROUTE) !== 0,
    so_no_check: int(SO.NO_CHECK) !== 0, so_reuseport: int(SO.REUSEPORT) !== 0, so_broadcast: int(SO.BROADCAST) !== 0,
    so_keepalive: int(SO.KEEPALIVE) !== 0, so_oobinline: int(SO.OOBINLINE), so_buf_lock: int(SO.BUF_LOCK),
  });
  return o;
}

/**
 * Copies the receive queue of `sock` without consuming it: MSG_PEEK with SO_PEEK_OFF advancing
 * over each message, the socket's own peek offset put back afterwards. One chunk per datagram
 * (a stream gives its bytes in as few chunks as the buffer allows, and ends a chunk after the
 * segment that carries files). Files in flight are handed to `inFlight`.
 */
export function peekQueue(sock: number, type: number, where: string, inFlight: (fd: number) => number, rcvShutdown = false): Packet[] {
  const n = native();
  const old = n.getsockopt(sock, SOL_SOCKET, SO.PEEK_OFF, 4).readInt32LE(0);
  const out: Packet[] = [];
  /** a peek at byte `off` of the queue, at most `len` bytes; undefined when nothing is queued there */
  const peek = (off: number, len: number) => {
    n.setsockopt(sock, SOL_SOCKET, SO.PEEK_OFF, off);
    let r;
    try {
      r = n.recvmsg(sock, len, MSG_PEEK | MSG_DONTWAIT | (type === SOCK_STREAM ? 0 : MSG_TRUNC), PEEK_CONTROL);
    } catch (e) {
      if (isNativeError(e) && e.code === 'EAGAIN') return undefined;
      // a stream or seqpacket socket never connected has no queue to read
      if (isNativeError(e) && type !== SOCK_DGRAM && (e.code === 'EINVAL' || e.code === 'ENOTCONN')) return undefined;
      throw e;
    }
    const fds: number[] = [];
    for (const c of r.cmsgs) if (c.level === SOL_SOCKET && c.type === SCM_RIGHTS) for (let i = 0; i + 4 <= c.data.length; i += 4) fds.push(c.data.readInt32LE(i));
    return { ...r, fds };
  };
  const closeAll = (fds: number[]) => { for (const fd of fds) n.close(fd); };
  try {
    for (let off = 0; ; ) {
      let r = peek(off, PEEK_BUF);
      if (!r) break;
      // A stream peek runs on through the segments up to the first one that carries files and
      // hands back that segment's files whatever part of the bytes it copied; a real read gets
      // them with the segment's first byte. Where that is among the bytes peeked cannot be read
      // back, so files in flight behind other bytes are refused.
      if (type === SOCK_STREAM && r.fds.length && r.bytes > 1) {
        closeAll(r.fds);
        throw new UnsupportedError(`${where}: files in flight (SCM_RIGHTS) in a stream queue behind ${r.bytes - 1} other bytes (where they ride cannot be read back without consuming the queue)`);
      }
      const rights: number[] = [];
      try {
        if (r.msgFlags & MSG_CTRUNC) throw new UnsupportedError(`${where}: a queued message carries more files than one peek takes`);
        if (r.bytes > r.data.length || r.msgFlags & MSG_TRUNC) throw new UnsupportedError(`${where}: a queued datagram of ${r.bytes} bytes is too large`);
        while (r.fds.length) rights.push(inFlight(r.fds.shift()!));
      } finally {
        closeAll(r.fds);
      }
      if (r.bytes === 0 && !rights.length) {
        if (type === SOCK_STREAM) break; // end of stream
        // a seqpacket socket that can no longer receive reads 0 once its queue is empty; the
        // bytes counted queued tell it from a zero-length record with more behind it (trailing
        // zero-length records read exactly as that end does)
        if (type === SOCK_SEQPACKET && rcvShutdown) {
          const inq = Buffer.alloc(4);
          n.ioctl(sock, FIONREAD, inq);
          if (inq.readInt32LE(0) === off) break;
        }
        throw new UnsupportedError(`${where}: zero-length datagrams in the queue are not supported`);
      }
      out.push({ data: r.data, rights });
      off += r.bytes;
    }
  } finally {
    n.setsockopt(sock, SOL_SOCKET, SO.PEEK_OFF, old);
  }
  return out;
}

interface Held {
  peer: number;
  entry: Msg;
}

export class UnixSockets {
  private diag: Map<number, UnixDiag> | undefined;
  /** client inode -> listener inode, for connections not accepted yet */
  private pendingTo = new Map<number, number>();
  private dumped = new Set<number>();
  private held: Held[] = [];
  readonly queues: NewEntry[] = [];
  /** listeners with connections waiting to be accepted: each connecting end must be dumped too */
  private listeners: { ino: number; where: string; clients: number[] }[] = [];

  private sockets(): Map<number, UnixDiag> {
    if (!this.diag) {
      this.diag = collectUnixSockets();
      for (const d of this.diag.values()) if (d.state === TCP_LISTEN) for (const c of d.icons) this.pendingTo.set(c, d.ino);
    }
    return this.diag;
  }

  /** The file entries to append now: this socket's (unless held back) and any it releases. */
  dump(id: number, ino: number, flags: number, ctx: SocketContext): Msg[] {
    const where = `task ${ctx.pid} fd ${ctx.fd}`;
    const all = this.sockets();
    const d = all.get(ino);
    if (!d) throw new UnsupportedError(`${where}: unix socket ${ino} is not in the engine's network namespace`);
    let peer = d.peer;
    const listener = this.pendingTo.get(ino);
    if (listener !== undefined) {
      // the bytes wait in the not yet accepted end, which no restore can make: the sender's
      // unread output says they are there
      const embryo = all.get(peer);
      if ((embryo && embryo.rqueue > 0) || d.wqueue > 0) throw new UnsupportedError(`${where}: data sent on a connection not accepted yet`);
      peer = listener;
    }
    if (d.state === TCP_LISTEN && d.icons.length) this.listeners.push({ ino, where, clients: d.icons });
    const usk: Msg = {
      id, ino, type: d.type, state: d.state, flags, uflags: 0, backlog: d.wqueue, peer,
      fown: ctx.fown,
      opts: {}, name: new Uint8Array(d.name),
    };
    if (d.shutdown) usk.shutdown = d.shutdown;
    const sock = ctx.dupFd();
    try {
      if (d.name.length && d.name[0] !== 0) Object.assign(usk, this.boundFile(d, sock, where));
      usk.ns_id = ctx.netNsId;
      usk.opts = socketOpts(sock);
      if (d.state !== TCP_LISTEN) {
        const packets = peekQueue(sock, d.type, where, (fd) => ctx.inFlight(fd, where), (d.shutdown & RCV_SHUTDOWN) !== 0);
        // such files exist only once the tasks do: the queue is filled then, which only a socket
        // without a name (filled through its pair) can wait for
        if (d.name.length && packets.some((p) => p.rights.some((r) => ctx.madeInTask?.(r))))
          throw new UnsupportedError(`${where}: an eventfd, epoll, inotify, signalfd or timerfd in flight (SCM_RIGHTS) to a named unix socket is not supported`);
        for (const p of packets) {
          const msg: Msg = { id_for: id, length: p.data.length };
          if (p.rights.length) msg.scm = [{ type: SCM_RIGHTS, rights: p.rights }];
          this.queues.push({ msg, extra: { kind: 'blob', data: p.data } });
        }
      }
    } finally {
      native().close(sock);
    }
    const entry: Msg = { type: 5, id, usk };
    this.dumped.add(ino);
    if (peer !== 0 && !this.dumped.has(peer)) {
      this.held.push({ peer, entry });
      return [];
    }
    const out = [entry];
    for (let i = 0; i < this.held.length; ) {
      if (this.held[i].peer === ino) out.push(this.held.splice(i, 1)[0].entry);
      else i++;
    }
    return out;
  }

  /**
   * Sockets whose peer was never found belong to something outside the dumped tree: refused, but
   * with `external` (--ext-unix-sk) a datagram socket connected to a named socket outside is kept
   * as CRIU keeps it: the peer written as an entry of its own marked external (USK_EXTERN, its name,
   * no socket made for it at restore), which the restore connects to by name. Returns the entries
   * to append.
   */
  finish(external?: () => number): Msg[] {
    for (const l of this.listeners) {
      const lost = l.clients.find((c) => !this.dumped.has(c));
      if (lost !== undefined)
        throw new UnsupportedError(`${l.where}: unix listener ${l.ino} has a connection not accepted yet whose connecting socket ${lost} is closed or outside the dumped tree`);
    }
    const out: Msg[] = [];
    const externs = new Map<number, Msg>();
    for (const h of this.held) {
      const u = h.entry.usk;
      const outside = this.sockets().get(h.peer);
      const why = !external ? 'dump it with --ext-unix-sk'
        : u.type !== SOCK_DGRAM ? 'only datagram sockets may have an external peer'
        : !outside?.name.length ? 'the peer has no name to connect to again'
        : this.queues.some((q) => q.msg.id_for === u.id) ? 'datagrams from it are queued, which only it could send again'
        : undefined;
      if (why) throw new UnsupportedError(`unix socket ${u.ino} is connected to socket ${h.peer} outside the dumped tree (${why})`);
      let ext = externs.get(h.peer);
      if (!ext) {
        const id = external!();
        ext = { type: 5, id, usk: { id, ino: h.peer, type: SOCK_DGRAM, state: TCP_LISTEN, flags: 0, uflags: USK_EXTERN, backlog: 0, peer: 0, fown: zeroFown(), opts: NO_OPTS, name: new Uint8Array(outside!.name) } };
        externs.set(h.peer, ext);
        out.push(ext);
      }
      out.push(h.entry);
    }
    this.held = [];
    return out;
  }

  /**
   * Where a bound socket's file is, asked of the socket itself: SIOCUNIXFILE opens the file it is
   * bound to, whose /proc link is its path now (" (deleted)" once unlinked, also when another file
   * took the name since). A relative name is found at the end of that path, and the directory
   * before it recorded as name_dir, as CRIU does; a deleted file is bound, then unlinked again at
   * restore; a live one gets its mode and owner back.
   */
  private boundFile(d: UnixDiag, sock: number, where: string): Msg {
    const nul = d.name.indexOf(0);
    const p = d.name.subarray(0, nul < 0 ? d.name.length : nul).toString();
    const out: Msg = {};
    // an accepted connection only echoes its listener's name: it has no file of its own
    if (!d.vfs) return out;
    const n = native();
    let f: number;
    try {
      f = n.ioctl(sock, SIOCUNIXFILE);
    } catch (e) {
      throw new UnsupportedError(`${where}: the file of unix socket ${p} cannot be opened (SIOCUNIXFILE: ${isNativeError(e) ? e.code : (e as Error).message})`);
    }
    try {
      const link = fs.readlinkSync(`/proc/self/fd/${f}`);
      const deleted = unlinkedName(link);
      const now = deleted ?? link;
      if (!p.startsWith('/')) {
        if (!now.endsWith('/' + p)) throw new UnsupportedError(`${where}: unix socket bound to the relative path ${p}, whose file is at ${now}`);
        out.name_dir = now.slice(0, -p.length - 1) || '/';
      }
      if (deleted !== undefined) {
        out.deleted = true;
        return out;
      }
      const st = fs.fstatSync(f);
      out.file_perms = { mode: st.mode, uid: st.uid, gid: st.gid };
      return out;
    } finally {
      n.close(f);
    }
  }
}
