// File descriptors. Regular files and pipes are opened by the engine (one open file description
// per files.img id, shared by every fd and task that had it), passed into each task over the
// socket every stub inherited (SCM_RIGHTS + injected recvmsg) and moved to their numbers.
// eventfd, signalfd, timerfd and epoll are created by their first holder (injected), and
// fetched back with pidfd_getfd for any other task that shares them.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { EngineError } from '../errors';
import type { Ctx, Proc } from './context';
import { big, num, ImageError } from './imageset';
import { Call } from './remote';
import { FifoRestorer } from '../kinds/fifo';
import { PidfdRestorer, FD_TYPE_PIDFD } from '../kinds/pidfd';
import { FD_TYPE_PACKETSK } from '../kinds/packet';
import { FD_TYPE_NETLINKSK } from '../kinds/netlink-sock';
import { openNsFile, FD_TYPE_NS } from '../kinds/nsfile';
import { makeFanotify, FD_TYPE_FANOTIFY } from '../kinds/fanotify';
import { NR, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, O_WRONLY, O_APPEND, O_ASYNC, OPEN_ONLY, F_SETFD, F_SETFL, u64s } from './sys';
import { fillPipe } from './pipedata';

/** fds passed per message */
export const CHUNK = 200;
const O_TMPFILE_BIT = 0o20000000, O_DIRECTORY = 0o200000;
const TFD_IOC_SET_TICKS = 0x40085400;
const TYPE = { REG: 1, PIPE: 2, FIFO: 3, INETSK: 4, UNIXSK: 5, EVENTFD: 6, EVENTPOLL: 7, INOTIFY: 8, SIGNALFD: 9, TTY: 11, EXT: 16, TIMERFD: 17, MEMFD: 18 } as const;
const NR_INOTIFY_INIT1 = 294, NR_INOTIFY_ADD_WATCH = 254, NR_INOTIFY_RM_WATCH = 255;
/** how many watches may be added and removed to reach a watch descriptor */
const MAX_WD_SKIP = 4096;

export class FileRestorer {
  /** files.img id -> an engine fd on the same open file description */
  private held = new Map<number, number>();
  private pipes = new Map<number, { r: number; w: number; usedR: boolean; usedW: boolean }>();

  private fifos: FifoRestorer;
  private pidfds: PidfdRestorer;

  constructor(private ctx: Ctx) {
    this.fifos = new FifoRestorer(ctx.set);
    this.pidfds = new PidfdRestorer(ctx.set.files);
  }

  /** Before the tree is built: what must exist before any of its PIDs is taken. */
  prepare(): void {
    this.pidfds.prepare(this.ctx.tracer);
  }

  close(): void {
    this.fifos.close();
    this.pidfds.close();
    for (const fd of this.held.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    for (const p of this.pipes.values()) for (const fd of [p.r, p.w]) try { fs.closeSync(fd); } catch { /* closed */ }
    this.held.clear();
    this.pipes.clear();
  }

  private file(id: number): Msg {
    return this.ctx.set.files.get(id)!;
  }

  /** The engine's fd of a file in flight (sent in a socket's queue); the image check allowed only kinds made here. */
  inFlightFd(id: number, where: string, holder: number): number {
    const fd = this.engineFd(id);
    if (fd !== undefined) return fd;
    // a kind a task makes: the first task holding the socket makes it (its epoll watches name
    // that task's fds), at a free fd it then closes again; the engine keeps a copy to send
    const p = [...this.ctx.procs.values()].find((x) => (x.img.fdinfo ?? []).some((e) => num(e.id) === holder));
    if (!p) throw new ImageError('files.img', `id ${id}`, `${where}: no task holds socket ${holder}, whose task would make this file in flight`);
    const entries = [...p.img.fdinfo!];
    const free = entries.reduce((m, e) => Math.max(m, num(e.fd)), this.ctx.transport.number) + CHUNK + 16;
    const e: Msg = { id, fd: free, flags: 1 };
    this.create(p, e);
    if (num(this.file(id).type) === TYPE.EVENTPOLL) this.epollWatches(p, e, entries, free + 1);
    const n = native();
    const pidfd = n.pidfdOpen(p.host);
    try {
      this.held.set(id, n.pidfdGetfd(pidfd, free));
    } finally {
      n.close(pidfd);
    }
    p.remote.reset();
    p.remote.one(p.host, `close fd ${free}`, NR.close, free);
    return this.held.get(id)!;
  }

  /** An engine fd for a regular file or pipe end; undefined for kinds made inside a task. */
  private engineFd(id: number): number | undefined {
    const known = this.held.get(id);
    if (known !== undefined) return known;
    const f = this.file(id);
    let fd: number | undefined;
    const type = num(f.type);
    // sockets and terminals stay the property of their restorers
    if (type === TYPE.UNIXSK) return this.ctx.unix.fd(id);
    if (type === TYPE.INETSK) return this.ctx.inet.fd(id);
    if (type === FD_TYPE_PACKETSK) return this.ctx.packet.fd(id);
    if (type === FD_TYPE_NETLINKSK) return this.ctx.netlink.fd(id);
    if (type === TYPE.TTY) return this.ctx.ttys.fd(id);
    if (type === TYPE.EXT) return this.ctx.devices?.fileFd(id);
    if (type === TYPE.REG) fd = this.openReg(id, f.reg);
    else if (type === TYPE.PIPE) fd = this.pipeEnd(f.pipe);
    else if (type === TYPE.FIFO) fd = this.fifos.open(id, f.fifo);
    else if (type === FD_TYPE_NS) fd = openNsFile(f);
    else if (type === FD_TYPE_PIDFD) fd = this.pidfds.open(id, f.pidfd, (pid) => this.ctx.procs.get(pid)?.host);
    else if (type === TYPE.MEMFD) fd = this.ctx.shmem.open(num(f.memfd.inode_id), (num(f.memfd.flags) & ~OPEN_ONLY) | O_CLOEXEC, big(f.memfd.pos));
    if (fd !== undefined) {
      this.held.set(id, fd);
      // open() ignores O_ASYNC: it takes fcntl (the owner is set later, by a task)
      const flags = num((f.reg ?? f.pipe ?? f.memfd)?.flags);
      if (flags & O_ASYNC) native().fcntl(fd, F_SETFL, flags & (O_ASYNC | O_NONBLOCK | O_APPEND));
    }
    return fd;
  }

  private openReg(id: number, reg: Msg): number {
    let flags = (num(reg.flags) & ~OPEN_ONLY) | O_CLOEXEC;
    // an O_TMPFILE file is a ghost by now: opened as the plain file it became
    if (flags & O_TMPFILE_BIT) flags &= ~(O_TMPFILE_BIT | O_DIRECTORY);
    let fd: number;
    try {
      fd = fs.openSync(reg.name, flags);
    } catch (e) {
      throw new ImageError('files.img', `id ${id}.name`, `cannot open ${reg.name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const pos = big(reg.pos);
    if (pos !== 0n) native().lseek(fd, pos, 0);
    return fd;
  }

  private pipeEnd(pipe: Msg): number {
    const n = native();
    const pipeId = num(pipe.pipe_id);
    let p = this.pipes.get(pipeId);
    if (!p) {
      const [r, w] = n.pipe2(O_CLOEXEC);
      p = { r, w, usedR: false, usedW: false };
      this.pipes.set(pipeId, p);
      const queued = this.ctx.set.pipesData.get(pipeId);
      if (queued) fillPipe(w, queued, `pipes-data.img: pipe ${pipeId}`);
    }
    const write = (num(pipe.flags) & O_ACCMODE) === O_WRONLY;
    let fd = write ? p.w : p.r;
    // a second description of the same end: reopen it
    if (write ? p.usedW : p.usedR) fd = fs.openSync(`/proc/self/fd/${fd}`, write ? 'w' : 'r');
    if (write) p.usedW = true;
    else p.usedR = true;
    n.fcntl(fd, F_SETFL, num(pipe.flags) & O_NONBLOCK);
    return fd;
  }

  restore(p: Proc): void {
    const ctx = this.ctx;
    const r = p.remote;
    const tid = p.host;
    const T = ctx.transport.number;
    const entries = [...p.img.fdinfo!].sort((a, b) => num(a.fd) - num(b.fd));
    const maxFd = entries.reduce((m, e) => Math.max(m, num(e.fd)), T);
    const base = maxFd + 1 + CHUNK + 8;
    r.reset();
    r.run(tid, [
      ...(T > 0 ? [{ nr: NR.close_range, args: [0, T - 1, 0], what: 'close_range' }] : []),
      { nr: NR.close_range, args: [T + 1, 0xffffffff, 0], what: 'close_range' },
    ]);

    // 1. what the engine holds, passed in chunks, stashed high, then moved to its number; a file
    // of /proc/PID/fd or fdinfo (which may name an fd made in step 2) only after step 2
    const late = (e: Msg) => /^\/proc\/\d+\/fd(info)?\//.test(String(this.file(num(e.id)).reg?.name ?? ''));
    const passed = entries.filter((e) => !late(e) && this.engineFd(num(e.id)) !== undefined);
    const finals: Call[] = [];
    for (let c = 0; c < passed.length; c += CHUNK) {
      const chunk = passed.slice(c, c + CHUNK);
      r.reset();
      native().sendFds(ctx.transport.engineFd, chunk.map((e) => this.engineFd(num(e.id))!), Buffer.from([1]));
      const got = receiveFds(ctx, p, chunk.length);
      r.run(tid, got.flatMap((fd, i) => [
        { nr: NR.dup3, args: [fd, base + c + i, 0], what: 'dup3' },
        { nr: NR.close, args: [fd], what: 'close' },
      ]));
      chunk.forEach((e, i) => finals.push(
        { nr: NR.dup3, args: [base + c + i, num(e.fd), num(e.flags) & 1 ? O_CLOEXEC : 0], what: `dup3 to fd ${e.fd}` },
        { nr: NR.close, args: [base + c + i], what: 'close' },
      ));
    }
    r.run(tid, finals);

    // 2. kinds made here, by their first holder
    const made: Msg[] = [];
    for (const e of entries) {
      if (late(e) || this.engineFd(num(e.id)) !== undefined) continue;
      this.create(p, e);
      made.push(e);
      const pidfd = native().pidfdOpen(p.host);
      try {
        this.held.set(num(e.id), native().pidfdGetfd(pidfd, num(e.fd)));
      } finally {
        native().close(pidfd);
      }
    }
    // 2b. the files of /proc/PID/fd or fdinfo, now that the fds they may name exist
    for (const e of entries.filter(late)) {
      const fd = this.engineFd(num(e.id))!;
      r.reset();
      native().sendFds(ctx.transport.engineFd, [fd], Buffer.from([1]));
      const [got] = receiveFds(ctx, p, 1);
      const cloexec = num(e.flags) & 1;
      r.run(tid, got === num(e.fd) ? [{ nr: NR.fcntl, args: [got, F_SETFD, cloexec], what: 'fcntl(F_SETFD)' }] : [
        { nr: NR.dup3, args: [got, num(e.fd), cloexec ? O_CLOEXEC : 0], what: `dup3 to fd ${e.fd}` },
        { nr: NR.close, args: [got], what: 'close' },
      ]);
    }
    // 3. epoll watches, once every fd is in place
    for (const e of made) if (num(this.file(num(e.id)).type) === TYPE.EVENTPOLL) this.epollWatches(p, e, entries, base);
    r.one(tid, 'close(transport)', NR.close, T);
  }

  /**
   * The watches of the epoll at fdinfo entry `e`. A watch names the fd number it was added with;
   * one whose file the task holds under another number (its id says which file) is added with
   * that file put at the number for the moment (what stood there set aside at `spare`, a free fd).
   */
  private epollWatches(p: Proc, e: Msg, entries: Msg[], spare: number): void {
    const r = p.remote;
    const f = this.file(num(e.id));
    const byFd = new Map(entries.map((x) => [num(x.fd), x]));
    r.reset();
    r.run(p.host, ((f.epfd.tfd ?? []) as Msg[]).flatMap((w, i) => {
      const ev = Buffer.alloc(12);
      ev.writeUInt32LE(num(w.events) >>> 0, 0);
      ev.writeBigUInt64LE(big(w.data), 4);
      const tfd = num(w.tfd);
      const add: Call = { nr: NR.epoll_ctl, args: [num(e.fd), 1, tfd, r.put(ev)], what: `epoll_ctl(ADD fd ${tfd}) on fd ${e.fd}` };
      const want = num(w.id);
      const there = byFd.get(tfd);
      if (!want || (there && num(there.id) === want)) {
        if (!there) throw new ImageError('files.img', `id ${e.id}.epfd.tfd[${i}].tfd`, `watched fd ${tfd} is not an fd of task ${p.img.pid}`);
        return [add];
      }
      const holder = entries.find((x) => num(x.id) === want);
      if (!holder) throw new ImageError('files.img', `id ${e.id}.epfd.tfd[${i}].id`, `watched file ${want} is not held by task ${p.img.pid}`);
      const calls: Call[] = [];
      if (there) calls.push({ nr: NR.dup3, args: [tfd, spare, 0], what: `dup3 fd ${tfd} aside` });
      calls.push({ nr: NR.dup3, args: [num(holder.fd), tfd, 0], what: `dup3 watched file to fd ${tfd}` }, add);
      if (there) calls.push(
        { nr: NR.dup3, args: [spare, tfd, num(there.flags) & 1 ? O_CLOEXEC : 0], what: `dup3 fd ${tfd} back` },
        { nr: NR.close, args: [spare], what: 'close' },
      );
      else calls.push({ nr: NR.close, args: [tfd], what: `close fd ${tfd}` });
      return calls;
    }));
  }

  /**
   * inotify watches with their descriptors: the kernel numbers them upwards, so a watch that comes
   * back with a lower number than recorded is removed and added again until the numbers agree.
   */
  private watches(p: Proc, ify: bigint, f: Msg, fd: number): void {
    const r = p.remote;
    const ws = [...((f.ify.wd ?? []) as Msg[])].sort((a, b) => num(a.wd) - num(b.wd));
    let removed = false;
    for (const w of ws) {
      const want = num(w.wd);
      r.reset();
      const at = r.cstr(String(w.f_handle.path));
      for (let i = 0; ; i++) {
        const got = Number(r.one(p.host, `inotify_add_watch(${w.f_handle.path}) on fd ${fd}`, NR_INOTIFY_ADD_WATCH, ify, at, num(w.mask) >>> 0));
        if (got === want) break;
        if (got > want || i > MAX_WD_SKIP)
          throw new EngineError(`files.img: id ${f.id}: inotify watch ${want} on ${w.f_handle.path} came back as ${got}`);
        r.one(p.host, 'inotify_rm_watch', NR_INOTIFY_RM_WATCH, ify, got);
        removed = true;
      }
    }
    if (removed) this.drainIgnored(p, ify);
  }

  /** The IN_IGNORED events of the watches removed above are read away (the engine's copy, nonblocking). */
  private drainIgnored(p: Proc, ify: bigint): void {
    const n = native();
    const pidfd = n.pidfdOpen(p.host);
    let dup: number;
    try {
      dup = n.pidfdGetfd(pidfd, Number(ify));
    } finally {
      n.close(pidfd);
    }
    try {
      const fl = n.fcntl(dup, 3 /* F_GETFL */);
      n.fcntl(dup, F_SETFL, fl | O_NONBLOCK);
      const buf = Buffer.alloc(65536);
      try {
        for (;;) if (fs.readSync(dup, buf, 0, buf.length, null) <= 0) break;
      } catch {
        /* EAGAIN: empty */
      }
      n.fcntl(dup, F_SETFL, fl);
    } finally {
      n.close(dup);
    }
  }

  private create(p: Proc, e: Msg): void {
    const r = p.remote;
    const tid = p.host;
    const f = this.file(num(e.id));
    const fd = num(e.fd);
    r.reset();
    let made: bigint;
    const nb = (flags: unknown) => num(flags) & O_NONBLOCK;
    switch (num(f.type)) {
      case TYPE.EVENTFD: {
        made = r.one(tid, `eventfd2 for fd ${fd}`, NR.eventfd2, 0, nb(f.efd.flags));
        const count = big(f.efd.counter);
        if (count > 0n) r.one(tid, `write eventfd count to fd ${fd}`, NR.write, made, r.put(u64s(count)), 8);
        break;
      }
      case TYPE.SIGNALFD:
        made = r.one(tid, `signalfd4 for fd ${fd}`, NR.signalfd4, -1, r.put(u64s(big(f.sgfd.sigmask))), 8, nb(f.sgfd.flags));
        break;
      case TYPE.TIMERFD: {
        const t = f.tfd;
        made = r.one(tid, `timerfd_create for fd ${fd}`, NR.timerfd_create, num(t.clockid), nb(t.flags));
        const calls: Call[] = [];
        let vsec = big(t.vsec), vnsec = big(t.vnsec);
        // a periodic timer that expired unread shows 0 remaining: it is still armed
        if (!vsec && !vnsec && (big(t.isec) || big(t.insec))) vnsec = 1n;
        if (vsec || vnsec)
          calls.push({ nr: NR.timerfd_settime, args: [made, 0, r.put(u64s(big(t.isec), big(t.insec), vsec, vnsec)), 0], what: `timerfd_settime on fd ${fd}` });
        if (big(t.ticks)) calls.push({ nr: NR.ioctl, args: [made, TFD_IOC_SET_TICKS, r.put(u64s(big(t.ticks)))], what: `timerfd ticks on fd ${fd}` });
        r.run(tid, calls);
        break;
      }
      case TYPE.EVENTPOLL:
        made = r.one(tid, `epoll_create1 for fd ${fd}`, NR.epoll_create1, 0);
        break;
      case TYPE.INOTIFY:
        made = r.one(tid, `inotify_init1 for fd ${fd}`, NR_INOTIFY_INIT1, nb(f.ify.flags));
        this.watches(p, made, f, fd);
        break;
      case TYPE.TTY:
        // /dev/tty: what it names depends on who opens it
        made = this.ctx.ttys.openInTask(p, f);
        break;
      case FD_TYPE_FANOTIFY:
        made = makeFanotify(r, tid, p.host, f, fd);
        break;
      default:
        throw new ImageError('files.img', `id ${e.id}.type`, `type ${f.type} cannot be restored`);
    }
    const cloexec = num(e.flags) & 1;
    if (Number(made) === fd) r.one(tid, 'fcntl(F_SETFD)', NR.fcntl, fd, F_SETFD, cloexec);
    else r.run(tid, [
      { nr: NR.dup3, args: [made, fd, cloexec ? O_CLOEXEC : 0], what: `dup3 to fd ${fd}` },
      { nr: NR.close, args: [made], what: 'close' },
    ]);
  }
}

/** Injected recvmsg on the inherited socket; returns the fd numbers received (at most CHUNK). */
export function receiveFds(ctx: Ctx, p: Proc, count: number): number[] {
  const r = p.remote;
  const data = r.alloc(16);
  const iov = r.put(u64s(data, 16n));
  const ctlLen = 16 + 4 * CHUNK;
  const ctl = r.alloc(ctlLen);
  const msg = Buffer.alloc(56);
  msg.writeBigUInt64LE(iov, 16);
  msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(ctl, 32);
  msg.writeBigUInt64LE(BigInt(ctlLen), 40);
  const msgAt = r.put(msg);
  r.one(p.host, 'recvmsg(fds)', NR.recvmsg, ctx.transport.number, msgAt, O_CLOEXEC /* MSG_CMSG_CLOEXEC */);
  const c = r.read(ctl, ctlLen);
  const len = Number(c.readBigUInt64LE(0));
  const n = (len - 16) / 4;
  if (c.readInt32LE(8) !== 1 || c.readInt32LE(12) !== 1 || n !== count)
    throw new EngineError(`task ${p.img.pid}: received ${n} of ${count} descriptors`);
  return Array.from({ length: n }, (_, i) => c.readInt32LE(16 + 4 * i));
}
