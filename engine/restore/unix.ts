// Unix sockets, made by the engine and passed into the tasks like any other fd. Mutually connected
// unnamed pairs (and stream pairs, whose accepted end only echoes its listener's name) come back
// as socketpairs; named sockets are bound again (a stale socket file at the path is removed first,
// then the file gets its recorded mode and owner back); listeners listen; a connection still in a
// listener's queue connects again; datagram peers connect by name. Queued data is sent again from
// the peer (or, for a datagram socket nobody is connected to, to its name) before connections that
// would refuse it exist; shutdown state is applied last. Files in flight go with their message
// as SCM_RIGHTS, opened by the engine (the file restorer's own fds, so shared with the tasks' fds
// of the same id).
import * as fs from 'fs';
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { native, isNativeError } from '../../native';
import { EngineError } from '../errors';
import type { Log } from '../log';
import { ImageSet, ImageError, num, big, MADE_IN_TASK_IN_FLIGHT } from './imageset';

const SOCK_DGRAM = 2;
const TCP_LISTEN = 10;
const SOL_SOCKET = 1;
const SO = {
  REUSEADDR: 2, SNDBUFFORCE: 32, RCVBUFFORCE: 33, SNDBUF: 7, RCVBUF: 8, KEEPALIVE: 9, OOBINLINE: 10, PRIORITY: 12,
  PASSCRED: 16, RCVLOWAT: 18, RCVTIMEO: 20, SNDTIMEO: 21, PASSSEC: 34, MARK: 36, BROADCAST: 6, DONTROUTE: 5, BUF_LOCK: 72,
} as const;
const MSG_DONTWAIT = 0x40;
/** unix_sk_entry.uflags: a peer outside the dumped tree */
const USK_EXTERN = 1;
const F_SETFL = 4, O_NONBLOCK = 0o4000, O_ASYNC = 0o20000;

interface Sock {
  /** the other end of a pair made to queue data at a socket whose peer was closed (closed after) */
  released?: number;
  id: number;
  u: Msg;
  name: Buffer;
  fd: number;
  /** made with socketpair together with its peer */
  paired: boolean;
  /** the path that reaches it while the restore connects and sends by name (its own name is unlinked) */
  reachAt?: Buffer;
  /** its queue carries files its task makes: filled (and shut down) once the tasks exist */
  deferred?: boolean;
}

/** Opens a file in flight; `holder` is the socket whose queue has it (its task makes what the engine cannot). */
export type InFlightOpener = (id: number, where: string, holder: number) => number;

export class UnixRestorer {
  private byId = new Map<number, Sock>();
  private byIno = new Map<number, Sock>();
  private bound: string[] = [];
  /** where the files of sockets bound at an unlinked path were moved */
  private deleted: string[] = [];
  /** directories made for them */
  private madeDirs: string[] = [];

  constructor(private set: ImageSet, private log: Log) {}

  fd(id: number): number | undefined {
    return this.byId.get(id)?.fd;
  }

  private sendQueue?: (s: Sock, from: number, to: Buffer | null, inFlight: InFlightOpener) => void;

  /**
   * Builds every socket of files.img, connections and queues included; inFlight opens a file sent
   * in a queue. A queue carrying files a task makes waits for sendDeferred.
   */
  build(inFlight: InFlightOpener): void {
    const n = native();
    const all: Sock[] = [];
    for (const f of this.set.files.values()) {
      if (num(f.type) !== 5) continue;
      const s: Sock = { id: num(f.id), u: f.usk, name: Buffer.from((f.usk.name ?? new Uint8Array()) as Uint8Array), fd: -1, paired: false };
      this.byIno.set(num(s.u.ino), s);
      // a peer outside the tree (--ext-unix-sk): not made, only connected to by its name
      if (num(s.u.uflags) & USK_EXTERN) {
        if (!s.name.length) throw new ImageError('files.img', `id ${s.id}.usk.name`, 'an external unix socket without a name to connect to');
        continue;
      }
      all.push(s);
      this.byId.set(s.id, s);
    }
    if (!all.length) return;
    const where = (s: Sock, field: string) => `id ${s.id}.usk.${field}`;
    const peerOf = (s: Sock): Sock | undefined => {
      const p = num(s.u.peer);
      if (!p) return undefined;
      const peer = this.byIno.get(p);
      if (!peer) throw new ImageError('files.img', where(s, 'peer'), `peer socket ${p} is not in the image set`);
      return peer;
    };
    const listenerNames = new Set(all.filter((s) => num(s.u.state) === TCP_LISTEN && s.name.length).map((s) => s.name.toString('latin1')));

    // 1. sockets: mutual pairs as socketpairs, the rest one by one
    for (const s of all) {
      if (s.fd >= 0) continue;
      const type = num(s.u.type);
      const peer = peerOf(s);
      const mutual = peer && peer !== s && num(peer.u.peer) === num(s.u.ino) && num(s.u.state) !== TCP_LISTEN && num(peer.u.state) !== TCP_LISTEN;
      if (mutual && peer && num(peer.u.type) === type && (type !== SOCK_DGRAM || (!s.name.length && !peer.name.length))) {
        const [a, b] = n.socketPair(1, type | 0o2000000 /* SOCK_CLOEXEC */);
        s.fd = a;
        peer.fd = b;
        s.paired = peer.paired = true;
      } else if (!peer && this.set.skQueues.get(s.id)?.length && (type !== SOCK_DGRAM || !s.name.length)) {
        // its peer was closed with data still queued here: the data comes from a pair's other
        // end, closed again once it is sent
        const [a, b] = n.socketPair(1, type | 0o2000000 /* SOCK_CLOEXEC */);
        s.fd = a;
        s.released = b;
      } else {
        s.fd = n.unixSocket(type);
      }
    }
    for (const s of all) this.options(s);

    // 2. names (an accepted stream end reports its listener's name: it has none of its own)
    for (const s of all) {
      if (!s.name.length) continue;
      if (s.paired && listenerNames.has(s.name.toString('latin1'))) continue;
      this.bind(s);
    }
    for (const s of all) if (num(s.u.state) === TCP_LISTEN) n.listen(s.fd, Math.max(1, num(s.u.backlog)));

    // 3. datagram queues, sent to the socket's name before it connects elsewhere
    const sendQueue = (s: Sock, from: number, to: Buffer | null, opener: InFlightOpener) => {
      for (const [i, { data, rights }] of (this.set.skQueues.get(s.id) ?? []).entries()) {
        const fds = rights.map((id) => opener(id, `sk-queues.img: message ${i} of socket ${s.id}`, s.id));
        try {
          n.sendTo(from, data, to, MSG_DONTWAIT, fds);
        } catch (e) {
          throw new EngineError(`files.img: id ${s.id}: cannot queue ${data.length} bytes${fds.length ? ` and ${fds.length} files` : ''} again: ${isNativeError(e) ? e.code : (e as Error).message}`);
        }
      }
    };
    this.sendQueue = sendQueue;
    for (const s of all) {
      s.deferred = (this.set.skQueues.get(s.id) ?? []).some((m) => m.rights.some((r) => MADE_IN_TASK_IN_FLIGHT.has(num(this.set.files.get(r)?.type))));
      if (s.deferred && s.name.length) throw new ImageError('sk-queues.img', `id_for ${s.id}`, 'files a task makes in flight to a named socket are not restored');
    }
    const sendAll = (s: Sock, from: number, to: Buffer | null) => {
      if (!s.deferred) sendQueue(s, from, to, inFlight);
    };
    for (const s of all) {
      if (num(s.u.type) !== SOCK_DGRAM || !this.set.skQueues.get(s.id)?.length) continue;
      const peer = peerOf(s);
      if (s.paired && peer) {
        sendAll(s, peer.fd, null);
        continue;
      }
      if (s.released !== undefined) {
        sendAll(s, s.released, null);
        continue;
      }
      if (!s.name.length) throw new ImageError('sk-queues.img', `id_for ${s.id}`, 'data queued at an unnamed datagram socket nobody is connected to');
      const sender = all.find((x) => x !== s && num(x.u.peer) === num(s.u.ino) && num(x.u.type) === SOCK_DGRAM);
      if (sender) atDir(s.reachAt ? undefined : s.u.name_dir, () => sendAll(s, sender.fd, s.reachAt ?? s.name));
      else {
        const tmp = n.unixSocket(SOCK_DGRAM);
        try {
          atDir(s.reachAt ? undefined : s.u.name_dir, () => sendAll(s, tmp, s.reachAt ?? s.name));
        } finally {
          n.close(tmp);
        }
      }
    }

    // 4. connections made by name: datagram peers, and streams still waiting in a listener's queue
    for (const s of all) {
      if (s.paired) continue;
      const peer = peerOf(s);
      if (!peer) continue;
      if (!peer.name.length) throw new ImageError('files.img', where(s, 'peer'), `connected to socket ${peer.u.ino}, which has no name to connect to`);
      if (num(s.u.type) !== SOCK_DGRAM && num(peer.u.state) !== TCP_LISTEN)
        throw new ImageError('files.img', where(s, 'peer'), `stream socket connected to ${peer.u.ino}, which is neither its pair nor a listener`);
      try {
        atDir(peer.reachAt ? undefined : peer.u.name_dir, () => n.unixConnect(s.fd, peer.reachAt ?? peer.name));
      } catch (e) {
        throw new EngineError(`files.img: id ${s.id}: cannot connect to ${printable(peer.name)} again: ${isNativeError(e) ? e.code : (e as Error).message}`);
      }
    }

    this.unbindDeleted();

    // 5. stream queues (from the pair's other end), then flags and shutdown
    for (const s of all) {
      if (num(s.u.type) === SOCK_DGRAM || !this.set.skQueues.get(s.id)?.length) continue;
      if (s.released !== undefined) {
        sendAll(s, s.released, null);
        continue;
      }
      const peer = peerOf(s);
      if (!peer || !s.paired) throw new ImageError('sk-queues.img', `id_for ${s.id}`, 'data queued at a stream socket without a connected peer');
      sendAll(s, peer.fd, null);
    }
    // a deferred queue's socket, and the end it is filled from, stay open to sends until then
    const waiting = new Set<Sock>();
    for (const s of all) if (s.deferred) {
      waiting.add(s);
      const peer = peerOf(s);
      if (peer) waiting.add(peer);
    }
    for (const s of all) {
      if (s.released === undefined || s.deferred) continue;
      n.close(s.released);
      s.released = undefined;
    }
    for (const s of all) {
      if (num(s.u.flags) & (O_NONBLOCK | O_ASYNC)) n.fcntl(s.fd, F_SETFL, num(s.u.flags) & (O_NONBLOCK | O_ASYNC));
      if (!waiting.has(s)) this.shutdown(s);
    }
    this.waiting = [...waiting];
    this.log.debug(`unix sockets: ${all.length} made, ${this.bound.length} paths bound`);
  }

  private waiting: Sock[] = [];

  private shutdown(s: Sock): void {
    const sh = num(s.u.shutdown);
    if (sh >= 1 && sh <= 3) native().shutdown(s.fd, sh - 1); // READ, WRITE, BOTH -> SHUT_RD, SHUT_WR, SHUT_RDWR
  }

  /**
   * Once every task holds its fds: the queues that carry files a task makes are filled (through
   * the socket's pair, or the end left for a closed peer), then those sockets are shut down as
   * they were.
   */
  sendDeferred(inFlight: InFlightOpener): void {
    const n = native();
    for (const s of this.byId.values()) {
      if (!s.deferred) continue;
      const peer = num(s.u.peer) ? this.byIno.get(num(s.u.peer)) : undefined;
      const from = s.released ?? (s.paired && peer ? peer.fd : undefined);
      if (from === undefined) throw new ImageError('sk-queues.img', `id_for ${s.id}`, 'a queue carrying files a task makes, at a socket without its pair');
      this.sendQueue!(s, from, null, inFlight);
      if (s.released !== undefined) {
        n.close(s.released);
        s.released = undefined;
      }
    }
    for (const s of this.waiting.splice(0)) this.shutdown(s);
  }

  private bind(s: Sock): void {
    const isPath = s.name[0] !== 0;
    if (!isPath) {
      this.bindName(s);
      return;
    }
    const nul = s.name.indexOf(0);
    const rel = s.name.subarray(0, nul < 0 ? s.name.length : nul).toString();
    const dir = s.u.name_dir as string | undefined;
    const file = dir ? path.join(dir, rel) : rel;
    if (s.u.deleted) {
      // its path was unlinked (maybe taken by another file since, or by another socket that was
      // bound there, unlinked too): bound there, its file moved at once to a name of its own that
      // connections and datagrams by name use, and whatever stood at the path put back; the
      // directories removed since are made for the while. All goes again in unbindDeleted.
      const missing: string[] = [];
      for (let d = path.dirname(file); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
      for (const d of missing) {
        fs.mkdirSync(d, 0o700);
        this.madeDirs.push(d);
      }
      let aside: string | undefined;
      if (fs.existsSync(file) || isSymlink(file)) {
        aside = path.join(path.dirname(file), `.${path.basename(file)}.engine-${process.pid}`);
        fs.renameSync(file, aside);
      }
      this.bindName(s, dir);
      const own = path.join(path.dirname(file), `.${path.basename(file)}.engine-${process.pid}-${s.id}`);
      fs.renameSync(file, own);
      if (aside) fs.renameSync(aside, file);
      s.reachAt = Buffer.from(own);
      this.deleted.push(own);
      return;
    }
    // a socket file left by the dumped task: bind would find it taken
    try {
      const st = fs.lstatSync(file);
      if (!st.isSocket()) throw new ImageError('files.img', `id ${s.id}.usk.name`, `${file} exists and is not a socket`);
      fs.unlinkSync(file);
    } catch (e) {
      if (e instanceof ImageError) throw e;
    }
    this.bindName(s, dir);
    this.bound.push(file);
    const p = s.u.file_perms;
    if (p) {
      fs.chmodSync(file, num(p.mode) & 0o7777);
      fs.chownSync(file, num(p.uid), num(p.gid));
    }
  }

  /** bind(2) with the dumped name; a relative one from its directory, as it was bound. */
  private bindName(s: Sock, dir?: string): void {
    try {
      atDir(dir, () => native().unixBind(s.fd, s.name));
    } catch (e) {
      throw new EngineError(`files.img: id ${s.id}: cannot bind ${printable(s.name)}${dir ? ` in ${dir}` : ''} again: ${isNativeError(e) ? e.code : (e as Error).message}`);
    }
  }

  /** The files of sockets whose file was unlinked are unlinked again, the directories made for them removed. */
  private unbindDeleted(): void {
    for (const f of this.deleted.splice(0)) {
      try {
        fs.unlinkSync(f);
      } catch {
        /* gone */
      }
    }
    for (const d of this.madeDirs.splice(0).reverse()) {
      try {
        fs.rmdirSync(d);
      } catch {
        /* not empty: something else was made there meanwhile */
      }
    }
  }

  private options(s: Sock): void {
    const n = native();
    const o = s.u.opts ?? {};
    const set = (name: number, v: number | Buffer) => {
      try {
        n.setsockopt(s.fd, SOL_SOCKET, name, v);
      } catch (e) {
        this.log.debug(`files.img: id ${s.id}: setsockopt(${name}) failed: ${(e as Error).message}`);
      }
    };
    const cur = (name: number) => n.getsockopt(s.fd, SOL_SOCKET, name, 4).readInt32LE(0);
    // the kernel doubles what is set: set half of what was read
    if (o.so_sndbuf !== undefined && num(o.so_sndbuf) !== cur(SO.SNDBUF)) set(SO.SNDBUFFORCE, num(o.so_sndbuf) >> 1);
    if (o.so_rcvbuf !== undefined && num(o.so_rcvbuf) !== cur(SO.RCVBUF)) set(SO.RCVBUFFORCE, num(o.so_rcvbuf) >> 1);
    // setting a size locks it: the recorded locks (SO_BUF_LOCK) go back after the sizes
    if (o.so_buf_lock !== undefined && num(o.so_buf_lock) !== cur(SO.BUF_LOCK)) set(SO.BUF_LOCK, num(o.so_buf_lock));
    for (const [k, name] of [['so_passcred', SO.PASSCRED], ['so_passsec', SO.PASSSEC], ['reuseaddr', SO.REUSEADDR], ['so_keepalive', SO.KEEPALIVE],
      ['so_broadcast', SO.BROADCAST], ['so_dontroute', SO.DONTROUTE]] as const)
      if (o[k]) set(name, 1);
    if (num(o.so_oobinline)) set(SO.OOBINLINE, 1);
    if (num(o.so_priority)) set(SO.PRIORITY, num(o.so_priority));
    if (num(o.so_mark)) set(SO.MARK, num(o.so_mark));
    if (o.so_rcvlowat !== undefined && num(o.so_rcvlowat) > 1) set(SO.RCVLOWAT, num(o.so_rcvlowat));
    const tv = (sec: unknown, usec: unknown) => {
      const b = Buffer.alloc(16);
      b.writeBigInt64LE(big(sec), 0);
      b.writeBigInt64LE(big(usec), 8);
      return b;
    };
    if (big(o.so_snd_tmo_sec) || big(o.so_snd_tmo_usec)) set(SO.SNDTIMEO, tv(o.so_snd_tmo_sec, o.so_snd_tmo_usec));
    if (big(o.so_rcv_tmo_sec) || big(o.so_rcv_tmo_usec)) set(SO.RCVTIMEO, tv(o.so_rcv_tmo_sec, o.so_rcv_tmo_usec));
  }

  /** Closes the engine's copies (the tasks hold their own by now). */
  close(): void {
    for (const s of this.byId.values()) if (s.fd >= 0) try { native().close(s.fd); } catch { /* closed */ }
    for (const s of this.byId.values()) s.fd = -1;
  }

  /** After a failed restore: the socket files this restore bound go again. */
  unlinkBound(): void {
    for (const f of this.bound) try { fs.unlinkSync(f); } catch { /* gone */ }
    this.bound = [];
    this.unbindDeleted();
  }
}

/** Runs fn with the engine's cwd at dir (a relative socket name is resolved from there). */
function atDir<T>(dir: string | undefined, fn: () => T): T {
  if (!dir) return fn();
  const back = process.cwd();
  process.chdir(dir);
  try {
    return fn();
  } finally {
    process.chdir(back);
  }
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

function printable(name: Buffer): string {
  return name[0] === 0 ? '@' + name.subarray(1).toString('latin1').replace(/[^\x20-\x7e]/g, '?') : name.toString().replace(/\0.*$/, '');
}
