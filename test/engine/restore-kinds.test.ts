// engine restore of what the engine itself makes for the tasks: shared anonymous memory and
// memfds (still shared between parent and child), unix sockets with their queues and connections,
// ptys (inside the tree, and the caller's terminal with --shell-job), inotify watches, SIGIO
// owners, GDT TLS slots and seccomp filters; each program goes on from where it was, and the
// things still not restorable are refused naming image and field.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadMessages, writeImage } from '../../images/files';
import { native, isNativeError } from '../../native';
import { collectUnixSockets } from '../../engine/dump/netlink';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, lastCount, consecutive, sleep, Target, decode, until, gone, killPid, dumpOk, restoreOk, readMem, dumpAndReap, grab } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine restore tests: ${SKIP_REASON}`);
process.env.ENGINE_RESTORE_STATS = '1';

const MSG_DONTWAIT = 0x40;

function expectRefused(dir: string, re: RegExp, pids: number[], extra: string[] = []): void {
  const r = runEngine(['restore', '-D', dir, '-d', ...extra]);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  for (const p of pids) expect(gone(p)).toBe(true);
}

/** Every message queued at a socket (consumed), without blocking. */
function drain(sock: number): string[] {
  const out: string[] = [];
  for (;;) {
    try {
      const r = native().recvmsg(sock, 65536, MSG_DONTWAIT);
      if (r.bytes === 0) break;
      out.push(r.data.toString('latin1'));
    } catch (e) {
      if (isNativeError(e) && e.code === 'EAGAIN') break;
      throw e;
    }
  }
  return out;
}

function writeMem(pid: number, addr: bigint, data: Buffer): void {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, Number(addr));
  } finally {
    fs.closeSync(fd);
  }
}

/** A copy of a set, changed by fn. */
function damaged(dir: string, name: string, fn: (d: string) => void): string {
  const d = path.join(path.dirname(dir), name);
  fs.cpSync(dir, d, { recursive: true });
  fn(d);
  return d;
}

function edit(file: string, magic: string, fn: (m: any[]) => void): void {
  const m = loadMessages(file);
  fn(m);
  writeImage(file, magic, m.map((msg) => ({ msg })));
}

/** Starts a fixture, dumps it (killed) and waits until its PIDs are free. */
async function dumped(name: string, args: (work: string) => string[], ready: RegExp, extraPids: (m: RegExpMatchArray) => number[] = () => []) {
  const work = tempDir(`restore-${name}`);
  const target = startTarget(compile(name, work), args(work), work);
  let pids = [target.pid];
  try {
    const m = await target.waitFor(ready);
    pids = [target.pid, ...extraPids(m)];
    await target.waitFor(/count=2[\n ]/);
    const dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, pids);
    return { work, target, m, pids, dir };
  } catch (e) {
    killPid(...pids);
    throw e;
  }
}

describe.skipIf(!IS_ROOT)('engine restore: shared anonymous memory and memfds', () => {
  let s: Awaited<ReturnType<typeof dumped>>;
  let anon: bigint, mem: bigint, fds: number[], child: number;

  beforeAll(async () => {
    s = await dumped('shmem', () => [], /anon=0x([0-9a-f]+) memfd=0x([0-9a-f]+) fds=(\d+),(\d+) child=(\d+)/, (m) => [Number(m[5])]);
    [anon, mem] = [BigInt('0x' + s.m[1]), BigInt('0x' + s.m[2])];
    fds = [Number(s.m[3]), Number(s.m[4])];
    child = Number(s.m[5]);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  it('restores parent and child, which go on counting', async () => {
    expect(restoreOk(s.dir)).toBe(s.target.pid);
    const [c, k] = [lastCount(s.target.output()), lastCount(s.target.output(), 'child')];
    await s.target.waitFor(new RegExp(`count=${c + 4}\\n`));
    await s.target.waitFor(new RegExp(`child=${k + 4}\\n`));
    expect(consecutive(s.target.output())).toBe(true);
    expect(consecutive(s.target.output(), 'child')).toBe(true);
    expect(alive(child)).toBe(true);
  });

  it('has the contents back, and the memory is shared again: a write by one task is seen by the other', () => {
    const a = readMem(child, anon, 65535);
    for (let i = 0; i < 65535; i += 97) expect(a[i]).toBe((i * 13 + 5) & 0xff);
    const m = readMem(s.target.pid, mem, 8 * 4096);
    for (let i = 0; i < 5 * 4096; i += 89) expect(m[i]).toBe((i * 3 + 1) & 0xff);
    expect(m.subarray(5 * 4096).every((x) => x === 0)).toBe(true); // holes stay zero
    for (const [writer, reader, addr] of [[child, s.target.pid, anon + 4096n], [s.target.pid, child, mem + 6n * 4096n]] as const) {
      const mark = Buffer.from(`written by ${writer}`);
      writeMem(writer, addr, mark);
      expect(readMem(reader, addr, mark.length).toString()).toBe(mark.toString());
    }
    const maps = fs.readFileSync(`/proc/${child}/maps`, 'utf8');
    expect(maps).toMatch(new RegExp(`^${mem.toString(16)}-\\S+ rw-s .*/memfd:engine-memfd \\(deleted\\)$`, 'm'));
    const ino = (pid: number, a: bigint) => fs.statSync(`/proc/${pid}/map_files/${a.toString(16)}-${(a + 65536n).toString(16)}`).ino;
    expect(ino(child, anon)).toBe(ino(s.target.pid, anon));
  });

  it('has the memfd fds with their flags, offsets and contents', () => {
    const pid = s.target.pid;
    expect(fs.readlinkSync(`/proc/${pid}/fd/${fds[0]}`)).toBe('/memfd:engine-memfd (deleted)');
    const flags = parseInt(/^flags:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fds[0]}`, 'utf8'))![1], 8);
    expect(flags & 0o2000003).toBe(0o2000002); // O_CLOEXEC|O_RDWR
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fds[1]}`, 'utf8');
    expect(info).toMatch(/^pos:\s+22$/m);
    expect(fs.readFileSync(`/proc/${pid}/fd/${fds[1]}`, 'utf8')).toBe('abcdefghijklmnopqrstuvwxyz'.repeat(3).slice(0, 72));
    // the fd and the mapping are one object
    expect(fs.statSync(`/proc/${pid}/fd/${fds[0]}`).ino).toBe(fs.statSync(`/proc/${pid}/map_files/${mem.toString(16)}-${(mem + 32768n).toString(16)}`).ino);
  });

  it('refuses what is still not restorable, naming image and field', () => {
    const d = damaged(s.dir, 'sysv', (x) => edit(path.join(x, `mm-${child}.img`), 'MM', (m) => {
      const i = m[0].vmas.findIndex((v: any) => BigInt(v.start) === anon);
      m[0].vmas[i].status = 0x401; // VMA_AREA_REGULAR | VMA_AREA_SYSVIPC
    }));
    expectRefused(d, new RegExp(`^engine: mm-${child}\\.img: vmas\\[\\d+\\]\\.status: 0x401 at 0x${anon.toString(16)}: System V shared memory are not restored\\n$`), []);
    const t = damaged(s.dir, 'truncated-shmem', (x) => {
      const pm = fs.readdirSync(x).find((f) => /^pagemap-shmem-\d+\.img$/.test(f) && decode(path.join(x, f)).length > 1)!;
      const f = path.join(x, `pages-${decode(path.join(x, pm))[0].pages_id}.img`);
      fs.truncateSync(f, fs.statSync(f).size - 4096);
    });
    expectRefused(t, /^engine: pages-\d+\.img: size: truncated: pagemap-shmem-\d+\.img needs \d+ bytes/, []);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: unix sockets', () => {
  let s: Awaited<ReturnType<typeof dumped>>;
  let fd: Record<string, number>;
  let child: number;

  beforeAll(async () => {
    s = await dumped('unix', (w) => [w], /fds lis=(\d+) cli=(\d+) da=(\d+) db=(\d+) dc=(\d+) dd=(\d+) sp=(\d+),(\d+) kp=(\d+) child=(\d+)/, (m) => [Number(m[10])]);
    const m = s.m;
    fd = { lis: +m[1], cli: +m[2], da: +m[3], db: +m[4], dc: +m[5], dd: +m[6], sp0: +m[7], sp1: +m[8], kp: +m[9] };
    child = +m[10];
    expect(restoreOk(s.dir)).toBe(s.target.pid);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  it('goes on running, parent and child', async () => {
    const c = lastCount(s.target.output());
    await s.target.waitFor(new RegExp(`count=${c + 3}\\n`));
    expect(consecutive(s.target.output())).toBe(true);
    expect(consecutive(s.target.output(), 'child')).toBe(true);
  });

  it('re-binds path and abstract names, listens, and keeps the pending connection', () => {
    const pid = s.target.pid;
    const ino = (n: number) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/fd/${n}`))![1]);
    const diag = collectUnixSockets();
    const lis = diag.get(ino(fd.lis))!;
    expect(lis.state).toBe(10);
    expect(lis.name.toString()).toBe(path.join(s.work, 'listen.sock') + '\0');
    expect(lis.icons).toHaveLength(1);
    expect(fs.statSync(path.join(s.work, 'listen.sock')).ino).toBe(lis.vfs!.ino);
    expect(diag.get(ino(fd.da))!.name).toEqual(Buffer.from(`\0engine-abstract-A-${pid}`, 'latin1'));
    expect(diag.get(ino(fd.db))!.peer).toBe(ino(fd.da));
    expect(diag.get(ino(fd.dd))!.peer).toBe(ino(fd.dc));
    expect(diag.get(ino(fd.sp0))!.peer).toBe(ino(fd.sp1));
  });

  it('carries the queued bytes, in order, one datagram each, and the sockets stay connected', () => {
    const pid = s.target.pid;
    const g = (n: number, p = pid) => grab(p, n);
    const [da, db, dc, dd, sp0, sp1, kp] = [g(fd.da), g(fd.db), g(fd.dc), g(fd.dd), g(fd.sp0), g(fd.sp1), g(fd.kp)];
    const kidEnd = fs.readdirSync(`/proc/${child}/fd`).map(Number).find((n) => {
      try { return /^socket:/.test(fs.readlinkSync(`/proc/${child}/fd/${n}`)) && collectUnixSockets().get(Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${child}/fd/${n}`))![1]))!.peer === Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd.kp}`))![1]); } catch { return false; }
    })!;
    const kid = g(kidEnd, child);
    try {
      expect(drain(da)).toEqual(['dgram-11', 'dgram-12']);
      expect(drain(dc)).toEqual(['named-dgram-payload']);
      const alpha = (base: number) => Array.from({ length: 500 }, (_, i) => String.fromCharCode(base + (i % 26))).join('');
      expect(drain(sp0).join('')).toBe(alpha(65));
      expect(drain(sp1).join('')).toBe(alpha(97));
      expect(drain(kp).join('')).toBe('from-kid\n');
      // still connected: each sends to its peer again
      native().sendTo(db, Buffer.from('again'));
      expect(drain(da)).toEqual(['again']);
      native().sendTo(dd, Buffer.from('again-named'));
      expect(drain(dc)).toEqual(['again-named']);
      native().sendTo(sp1, Buffer.from('pair'));
      expect(drain(sp0).join('')).toBe('pair');
      native().sendTo(kid, Buffer.from('to-parent'));
      expect(drain(kp).join('')).toBe('to-parent');
    } finally {
      for (const x of [da, db, dc, dd, sp0, sp1, kp, kid]) native().close(x);
    }
  });
});

describe.skipIf(!IS_ROOT)('engine restore: a pty pair inside the tree', () => {
  let s: Awaited<ReturnType<typeof dumped>>;
  let master: number, slave: string, child: number;

  beforeAll(async () => {
    s = await dumped('pty', () => [], /master=(\d+) slave=(\S+) child=(\d+)/, (m) => [Number(m[3])]);
    [master, slave, child] = [Number(s.m[1]), s.m[2], Number(s.m[3])];
    expect(restoreOk(s.dir)).toBe(s.target.pid);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  it('gives the child its controlling terminal and foreground group back; both count on', async () => {
    const st = fs.readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ');
    const slaveNow = fs.readlinkSync(`/proc/${child}/fd/0`);
    expect(slaveNow).toMatch(/^\/dev\/pts\/\d+$/);
    if (fs.existsSync(slave) && slaveNow !== slave) console.warn(`pty index ${slave} was taken: restored as ${slaveNow}`);
    expect(Number(st[4])).toBe(fs.statSync(slaveNow).rdev); // tty_nr
    expect(Number(st[5])).toBe(child); // tpgid
    expect(fs.readlinkSync(`/proc/${s.target.pid}/fd/${master}`)).toBe('/dev/ptmx');
    const c = lastCount(s.target.output(), 'child');
    await s.target.waitFor(new RegExp(`child=${c + 3}\\n`));
    expect(consecutive(s.target.output(), 'child')).toBe(true);
  });

  it('keeps the window size and termios, and relays both ways', async () => {
    const n = native();
    const m = grab(s.target.pid, master);
    const sl = grab(child, 0);
    try {
      const ws = Buffer.alloc(8);
      n.ioctl(m, 0x5413, ws); // TIOCGWINSZ
      expect([ws.readUInt16LE(0), ws.readUInt16LE(2)]).toEqual([33, 101]);
      const t = Buffer.alloc(36);
      n.ioctl(sl, 0x5401, t); // TCGETS
      expect(t[17]).toBe(3); // VINTR = ^C
      fs.writeSync(m, 'ping\n');
      const fl = n.fcntl(sl, 3);
      n.fcntl(sl, 4, fl | 0o4000);
      n.fcntl(m, 4, n.fcntl(m, 3) | 0o4000);
      let got = '';
      await until(() => {
        try { const b = Buffer.alloc(64); got += b.subarray(0, fs.readSync(sl, b, 0, 64, null)).toString(); } catch { /* EAGAIN */ }
        return got.includes('ping');
      }, 'the slave to read what the master wrote');
      fs.writeSync(sl, 'pong\n');
      let back = '';
      await until(() => {
        try { const b = Buffer.alloc(64); back += b.subarray(0, fs.readSync(m, b, 0, 64, null)).toString(); } catch { /* EAGAIN */ }
        return back.includes('pong\r\n');
      }, 'the master to read what the slave wrote');
      n.fcntl(sl, 4, fl);
    } finally {
      n.close(m);
      n.close(sl);
    }
  });
});

describe.skipIf(!IS_ROOT)('engine restore: the caller\'s terminal (--shell-job)', () => {
  let work: string;
  let ptm: number, index: number;
  let pid = 0;
  let out: string;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('restore-shelljob');
    const n = native();
    ptm = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    n.ioctl(ptm, 0x40045431, Buffer.alloc(4));
    const b = Buffer.alloc(4);
    n.ioctl(ptm, 0x80045430, b);
    index = b.readInt32LE(0);
    const pts = fs.openSync(`/dev/pts/${index}`, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    out = path.join(work, 'out');
    const o = fs.openSync(out, 'w');
    const c = spawn(compile('counter', work), [path.join(work, 'f.txt'), '20000', '4096'], { detached: true, stdio: [pts, o, o] });
    fs.closeSync(o);
    fs.closeSync(pts);
    pid = c.pid!;
    await until(() => /count=2\n/.test(fs.readFileSync(out, 'utf8')), 'the counter to start');
    dir = path.join(work, 'images');
    dumpOk(pid, dir, ['--shell-job']);
    await until(() => gone(pid), 'the dumped counter to be reaped');
  });

  afterAll(() => {
    if (pid) killPid(pid);
    fs.closeSync(ptm);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('refuses without --shell-job, naming the terminal', () => {
    expectRefused(dir, new RegExp(`^engine: tty-info\\.img: id ${index * 2}: /dev/pts/${index} belongs to a terminal outside the image set \\(use --shell-job\\)\\n$`), [pid]);
  });

  it('puts the terminal back with --shell-job: the process reads what the master writes', async () => {
    expect(restoreOk(dir, ['--shell-job'])).toBe(pid);
    expect(fs.readlinkSync(`/proc/${pid}/fd/0`)).toBe(`/dev/pts/${index}`);
    const at = lastCount(fs.readFileSync(out, 'utf8'));
    await until(() => lastCount(fs.readFileSync(out, 'utf8')) >= at + 3, 'the counter to go on');
    expect(consecutive(fs.readFileSync(out, 'utf8'))).toBe(true);
    fs.writeSync(ptm, 'hello\n');
    const sl = grab(pid, 0);
    try {
      native().fcntl(sl, 4, native().fcntl(sl, 3) | 0o4000);
      let got = '';
      await until(() => {
        try { const b = Buffer.alloc(64); got += b.subarray(0, fs.readSync(sl, b, 0, 64, null)).toString(); } catch { /* EAGAIN */ }
        return got.includes('hello');
      }, 'the restored end to read the line');
    } finally {
      native().close(sl);
    }
  });
});

describe.skipIf(!IS_ROOT)('engine restore: inotify watches', () => {
  let s: Awaited<ReturnType<typeof dumped>>;
  let ifd: number, watched: string;

  beforeAll(async () => {
    s = await dumped('fdkinds', (w) => { fs.mkdirSync(path.join(w, 'watched')); return [path.join(w, 'watched')]; }, /ifd=(\d+) ep=\d+ wd=1/);
    ifd = Number(s.m[1]);
    watched = path.join(s.work, 'watched');
    expect(restoreOk(s.dir)).toBe(s.target.pid);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  it('keeps the watch descriptor and mask, and still reports events', async () => {
    expect(fs.readFileSync(`/proc/${s.target.pid}/fdinfo/${ifd}`, 'utf8')).toMatch(/^inotify wd:1 .* mask:300 /m);
    const dup = grab(s.target.pid, ifd);
    try {
      fs.writeFileSync(path.join(watched, 'new-file'), 'x');
      let ev = Buffer.alloc(0);
      await until(() => {
        try { const b = Buffer.alloc(4096); ev = Buffer.concat([ev, b.subarray(0, fs.readSync(dup, b, 0, 4096, null))]); } catch { /* EAGAIN: nonblocking as dumped */ }
        return ev.length >= 16;
      }, 'an inotify event');
      expect(ev.readInt32LE(0)).toBe(1); // wd
      expect(ev.readUInt32LE(4)).toBe(0x100); // IN_CREATE
      expect(ev.subarray(16, 16 + ev.readUInt32LE(12)).toString().replace(/\0+$/, '')).toBe('new-file');
    } finally {
      native().close(dup);
    }
    const c = lastCount(s.target.output());
    await s.target.waitFor(new RegExp(`count=${c + 3}\\n`));
    expect(consecutive(s.target.output())).toBe(true);
  });

  it('refuses a watch whose file is gone, naming image and field', () => {
    const d = damaged(s.dir, 'moved', (x) => edit(path.join(x, 'files.img'), 'FILES', (m) => {
      m.find((e) => e.type === 8).ify.wd[0].f_handle.path = path.join(s.work, 'nowhere');
    }));
    expectRefused(d, new RegExp(`^engine: files\\.img: id \\d+\\.ify\\.wd\\[0\\]\\.f_handle\\.path: watched ${s.work}/nowhere no longer exists\\n$`), []);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: SIGIO owner, GDT TLS, seccomp', () => {
  let s: Awaited<ReturnType<typeof dumped>>;
  let rd: number, wr: number;

  beforeAll(async () => {
    s = await dumped('guarded', () => [], /pipe=(\d+),(\d+) sel=99/);
    [rd, wr] = [Number(s.m[1]), Number(s.m[2])];
    expect(restoreOk(s.dir)).toBe(s.target.pid);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  const last = () => [...s.target.output().matchAll(/^count=(\d+) denied=(\d) tls=([0-9a-f]+) sigio=(\d+)$/gm)].pop()!;

  it('still denies getitimer, still reads its TLS segment, and counts on', async () => {
    const c = Number(last()[1]);
    await s.target.waitFor(new RegExp(`count=${c + 3} `));
    const l = last();
    expect([l[2], l[3]]).toEqual(['1', 'feed1234']);
    expect(consecutive(s.target.output().replace(/^(count=\d+) .*$/gm, '$1'))).toBe(true);
    const st = fs.readFileSync(`/proc/${s.target.pid}/status`, 'utf8');
    expect(st).toMatch(/^Seccomp:\s+2$/m);
    expect(st).toMatch(/^Seccomp_filters:\s+1$/m);
    expect(st).toMatch(/^NoNewPrivs:\s+1$/m);
  });

  it('keeps the SIGIO owner: a write into the pipe raises its signal in the process', async () => {
    const dup = grab(s.target.pid, rd);
    try {
      expect(native().getOwnerEx(dup)).toEqual({ type: 1, pid: s.target.pid });
      expect(native().fcntl(dup, 11)).toBe(10); // F_GETSIG: SIGUSR1
    } finally {
      native().close(dup);
    }
    const before = Number(last()[4]);
    fs.writeFileSync(`/proc/${s.target.pid}/fd/${wr}`, 'x');
    await until(() => Number(last()[4]) > before, 'SIGUSR1 from the owned pipe');
  });

  it('refuses a broken seccomp chain, naming image and field', () => {
    const d = damaged(s.dir, 'seccomp', (x) => edit(path.join(x, `core-${s.target.pid}.img`), 'CORE', (m) => { m[0].thread_core.seccomp_filter = 7; }));
    expectRefused(d, /^engine: seccomp\.img: seccomp_filters\[7\]: filter 7 does not exist\n$/, []);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: seccomp filters shared between threads', () => {
  let s: Awaited<ReturnType<typeof dumped>>;

  beforeAll(async () => {
    s = await dumped('seccompthreads', () => [], /threads ready/);
    expect(restoreOk(s.dir)).toBe(s.target.pid);
  });

  afterAll(() => {
    killPid(...(s?.pids ?? []));
    if (s?.work) fs.rmSync(s.work, { recursive: true, force: true });
  });

  it('keeps the filter all threads had as one: a TSYNC install from one thread reaches the others', async () => {
    const c = Number([...s.target.output().matchAll(/^count=(\d+) /gm)].pop()![1]);
    await s.target.waitFor(new RegExp(`count=${c + 2} itimer=1 pgid=0 prio=0\\n`));
    fs.writeFileSync(path.join(s.work, 'go'), '');
    // TSYNC returns 0, or the tid of a thread whose filters are not the caller's ancestors
    await s.target.waitFor(/^tsync=0$/m);
    // the main thread now has thread 2's own filter and the new one on top of the shared one
    await s.target.waitFor(/count=\d+ itimer=1 pgid=13 prio=38\n/);
    expect(consecutive(s.target.output().replace(/^(count=\d+) .*$/gm, '$1').replace(/^(tsync|threads).*\n/gm, ''))).toBe(true);
  });
});
