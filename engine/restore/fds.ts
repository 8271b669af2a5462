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
import { NR, O_ACCMODE, O_CLOEXEC, O_NONBLOCK, u64s } from './sys';

const CHUNK = 200;
const F_SETFD = 2, F_SETFL = 4, F_SETPIPE_SZ = 1031;
const O_WRONLY = 1;
/** flags that only matter when a file is created, never kept in f_flags */
const OPEN_ONLY = 0o100 | 0o200 | 0o1000 | 0o400; // O_CREAT O_EXCL O_TRUNC O_NOCTTY
const TFD_IOC_SET_TICKS = 0x40085400;
const TYPE = { REG: 1, PIPE: 2, EVENTFD: 6, EVENTPOLL: 7, SIGNALFD: 9, TIMERFD: 17 } as const;

export class FileRestorer {
  /** files.img id -> an engine fd on the same open file description */
  private held = new Map<number, number>();
  private pipes = new Map<number, { r: number; w: number; usedR: boolean; usedW: boolean }>();

  constructor(private ctx: Ctx) {}

  close(): void {
    for (const fd of this.held.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    for (const p of this.pipes.values()) for (const fd of [p.r, p.w]) try { fs.closeSync(fd); } catch { /* closed */ }
    this.held.clear();
    this.pipes.clear();
  }

  private file(id: number): Msg {
    return this.ctx.set.files.get(id)!;
  }

  /** An engine fd for a regular file or pipe end; undefined for kinds made inside a task. */
  private engineFd(id: number): number | undefined {
    const known = this.held.get(id);
    if (known !== undefined) return known;
    const f = this.file(id);
    let fd: number | undefined;
    if (num(f.type) === TYPE.REG) fd = this.openReg(id, f.reg);
    else if (num(f.type) === TYPE.PIPE) fd = this.pipeEnd(f.pipe);
    if (fd !== undefined) this.held.set(id, fd);
    return fd;
  }

  private openReg(id: number, reg: Msg): number {
    const flags = (num(reg.flags) & ~OPEN_ONLY) | O_CLOEXEC;
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
      if (queued) {
        if (queued.size) try { n.fcntl(w, F_SETPIPE_SZ, queued.size); } catch { /* keep the default size */ }
        let off = 0;
        while (off < queued.data.length) off += fs.writeSync(w, queued.data, off);
      }
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

    // 1. what the engine holds, passed in chunks, stashed high, then moved to its number
    const passed = entries.filter((e) => this.engineFd(num(e.id)) !== undefined);
    const finals: Call[] = [];
    for (let c = 0; c < passed.length; c += CHUNK) {
      const chunk = passed.slice(c, c + CHUNK);
      r.reset();
      native().sendFds(ctx.transport.engineFd, chunk.map((e) => this.engineFd(num(e.id))!), Buffer.from([1]));
      const got = this.recvFds(p, chunk.length);
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
      if (this.engineFd(num(e.id)) !== undefined) continue;
      this.create(p, e);
      made.push(e);
      const pidfd = native().pidfdOpen(p.host);
      try {
        this.held.set(num(e.id), native().pidfdGetfd(pidfd, num(e.fd)));
      } finally {
        native().close(pidfd);
      }
    }
    // 3. epoll watches, once every fd is in place
    for (const e of made) {
      const f = this.file(num(e.id));
      if (num(f.type) !== TYPE.EVENTPOLL) continue;
      r.reset();
      r.run(tid, ((f.epfd.tfd ?? []) as Msg[]).map((w) => {
        const ev = Buffer.alloc(12);
        ev.writeUInt32LE(num(w.events) >>> 0, 0);
        ev.writeBigUInt64LE(big(w.data), 4);
        return { nr: NR.epoll_ctl, args: [num(e.fd), 1, num(w.tfd), r.put(ev)], what: `epoll_ctl(ADD fd ${w.tfd}) on fd ${e.fd}` };
      }));
    }
    r.one(tid, 'close(transport)', NR.close, T);
  }

  /** Injected recvmsg on the inherited socket; returns the fd numbers received. */
  private recvFds(p: Proc, count: number): number[] {
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
    r.one(p.host, 'recvmsg(fds)', NR.recvmsg, this.ctx.transport.number, msgAt, O_CLOEXEC /* MSG_CMSG_CLOEXEC */);
    const c = r.read(ctl, ctlLen);
    const len = Number(c.readBigUInt64LE(0));
    const n = (len - 16) / 4;
    if (c.readInt32LE(8) !== 1 || c.readInt32LE(12) !== 1 || n !== count)
      throw new EngineError(`task ${p.img.pid}: received ${n} of ${count} descriptors`);
    return Array.from({ length: n }, (_, i) => c.readInt32LE(16 + 4 * i));
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
