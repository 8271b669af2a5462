// engine dump of eventfd, timerfd, signalfd, inotify (with its watch and file handle) and epoll
// (with its targets): values from /proc truth, fields as CRIU 4.2 writes them (corpus fdkinds/).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, Target, dumpOk } from './helpers';
import { CORPUS, checkAllImagesDecode, fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine fd kind tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine dump: eventfd, timerfd, signalfd, inotify, epoll', () => {
  let work: string;
  let watched: string;
  let target: Target;
  let dir: string;
  let fd: Record<string, number>;
  let table: Map<number, [any, any]>;
  const fdinfoBefore = new Map<number, string>();

  beforeAll(async () => {
    work = tempDir('fdkinds');
    watched = path.join(work, 'watched');
    fs.mkdirSync(watched);
    const exe = compile('fdkinds', work);
    target = startTarget(exe, [watched], work);
    const m = await target.waitFor(/fds efd=(\d+) tfd=(\d+) sfd=(\d+) ifd=(\d+) ep=(\d+) wd=(\d+)/);
    fd = { efd: +m[1], tfd: +m[2], sfd: +m[3], ifd: +m[4], ep: +m[5] };
    await target.waitFor(/count=2\n/);
    for (const n of Object.values(fd)) fdinfoBefore.set(n, fs.readFileSync(`/proc/${target.pid}/fdinfo/${n}`, 'utf8'));
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
    table = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
  });

  afterAll(() => {
    target?.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('decodes everywhere and uses the fields CRIU 4.2 writes for each kind', () => {
    checkAllImagesDecode(dir);
    const corpus = path.join(CORPUS, 'fdkinds', 'files.img');
    if (!fs.existsSync(corpus)) return;
    const theirs = new Map(decode(corpus).map((e) => [e.type, e]));
    for (const [type, field] of [[6, 'efd'], [17, 'tfd'], [9, 'sgfd'], [8, 'ify'], [7, 'epfd']] as const) {
      const ours = [...table.values()].find(([i]) => i.type === type)![1];
      expect(Object.keys(ours[field]).sort(), field).toEqual(Object.keys(theirs.get(type)[field]).sort());
    }
    const ourWd = table.get(fd.ifd)![1].ify.wd[0];
    const theirWd = theirs.get(8).ify.wd[0];
    expect(Object.keys(ourWd).sort()).toEqual(Object.keys(theirWd).sort());
    expect(Object.keys(ourWd.f_handle).sort()).toEqual(Object.keys(theirWd.f_handle).sort());
  });

  it('eventfd: counter and flags', () => {
    const [info, f] = table.get(fd.efd)!;
    expect(info).toMatchObject({ type: 6, flags: 1 });
    expect(Number(f.efd.counter)).toBe(42);
    expect(f.efd.flags).toBe(0o4002); // O_RDWR | O_NONBLOCK
  });

  it('timerfd: clock, interval and a remaining time that only went down', () => {
    const [info, f] = table.get(fd.tfd)!;
    expect(info.type).toBe(17);
    expect(f.tfd).toMatchObject({ clockid: 1, settime_flags: 0, isec: 0, insec: 500000000 });
    const left = Number(f.tfd.vsec) + Number(f.tfd.vnsec) / 1e9;
    expect(left).toBeGreaterThan(20);
    expect(left).toBeLessThan(30);
  });

  it('signalfd: the mask of SIGUSR1', () => {
    const [info, f] = table.get(fd.sfd)!;
    expect(info.type).toBe(9);
    expect(BigInt(f.sgfd.sigmask)).toBe(1n << 9n);
  });

  it('inotify: the watch with its handle and the watched path', () => {
    const [info, f] = table.get(fd.ifd)!;
    expect(info.type).toBe(8);
    expect(f.ify.flags).toBe(0o4000);
    const wd = f.ify.wd;
    expect(wd).toHaveLength(1);
    const line = fdinfoBefore.get(fd.ifd)!.split('\n').find((l) => l.startsWith('inotify'))!;
    const st = fs.statSync(watched);
    expect(BigInt(wd[0].i_ino)).toBe(BigInt(st.ino));
    expect(wd[0]).toMatchObject({ wd: 1, mask: 0x300, ignored_mask: 0 });
    expect(line).toContain(`sdev:${wd[0].s_dev.toString(16)}`);
    const handleHex = /f_handle:([0-9a-f]+)/.exec(line)![1];
    const words = wd[0].f_handle.handle.map((w: bigint | number) => BigInt(w));
    expect(words).toHaveLength(16);
    const bytes = Buffer.alloc(words.length * 8);
    words.forEach((w: bigint, i: number) => bytes.writeBigUInt64LE(w, i * 8));
    expect(bytes.subarray(0, wd[0].f_handle.bytes).toString('hex')).toBe(handleHex);
    expect(wd[0].f_handle.path).toBe(watched);
  });

  it('epoll: every target with its events and exact 64-bit data', () => {
    const [info, f] = table.get(fd.ep)!;
    expect(info.type).toBe(7);
    const byFd = new Map(f.epfd.tfd.map((t: any) => [t.tfd, t]));
    expect([...byFd.keys()].sort()).toEqual([fd.efd, fd.tfd].sort());
    expect(BigInt((byFd.get(fd.efd) as any).data)).toBe(0x1122334455667788n);
    expect(((byFd.get(fd.efd) as any).events & 0x80000001) >>> 0).toBe(0x80000001); // EPOLLET | EPOLLIN
    expect(BigInt((byFd.get(fd.tfd) as any).data)).toBe(BigInt(fd.tfd));
  });

  it('leaves the target and its fds as they were', async () => {
    expect(alive(target.pid)).toBe(true);
    const c = lastCount(target.output());
    await target.waitFor(new RegExp(`count=${c + 3}\\n`));
    expect(consecutive(target.output())).toBe(true);
    expect(fs.readFileSync(`/proc/${target.pid}/fdinfo/${fd.efd}`, 'utf8')).toMatch(/eventfd-count:\s+2a/);
  });

  it('refuses inotify events queued and not read yet, naming task and fd', () => {
    fs.writeFileSync(path.join(watched, 'new'), ''); // IN_CREATE, which the target never reads
    const r = runEngine(['dump', '-t', String(target.pid), '-D', path.join(work, 'queued'), '--leave-running']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${target.pid} fd ${fd.ifd}: inotify instance with \\d+ bytes of events queued and not read yet`));
    expect(alive(target.pid)).toBe(true);
  });
});
