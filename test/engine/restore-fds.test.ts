// engine dump and restore of fd state that must come back exactly: file locks (POSIX, flock, OFD;
// owner, kind, type and range, shared and inherited descriptions), pipe buffer sizes and full
// pipes, and terminals (a controlling terminal whose slave no task holds, node owners and modes,
// termios, window size, packet mode, exclusivity, the lock). Each fixture checks its own state
// after the restore and prints PASS or FAIL; what cannot be restored is refused at dump, naming
// task, fd and kind, and the tree goes on.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../native';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, Target, decode, killPid, restoreOk, dumpAndReap, until, grab } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine fd-state restore tests: ${SKIP_REASON}`);

interface Started {
  work: string;
  target: Target;
  m: RegExpMatchArray;
  pids: number[];
}

async function start(name: string, args: (work: string) => string[], ready: RegExp, more: (m: RegExpMatchArray) => number[] = () => []): Promise<Started> {
  const work = tempDir(`fds-${name}`);
  const target = startTarget(compile(name, work), args(work), work);
  try {
    const m = await target.waitFor(ready);
    return { work, target, m, pids: [target.pid, ...more(m)] };
  } catch (e) {
    target.kill();
    throw e;
  }
}

function stop(s: Started | undefined, ...extra: number[]): void {
  if (!s) return;
  s.target.kill();
  killPid(...s.pids, ...extra);
  fs.rmSync(s.work, { recursive: true, force: true });
}

/** A dump that must be refused with one line matching re; the tree goes on. */
function dumpRefused(s: Started, re: RegExp): void {
  const r = runEngine(['dump', '-t', String(s.target.pid), '-D', path.join(s.work, 'refused')]);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  for (const p of s.pids) expect(alive(p)).toBe(true);
}

/** The fixture's own verdict after SIGUSR1: every PASS line it prints, and no FAIL line. */
async function verdict(s: Started, passes: string[]): Promise<void> {
  process.kill(s.target.pid, 'SIGUSR1');
  for (const p of passes) await s.target.waitFor(new RegExp(`^(PASS ${p}|FAIL .*)$`, 'm'), 8000).catch(() => undefined);
  expect(s.target.output().split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
  for (const p of passes) expect(s.target.output()).toMatch(new RegExp(`^PASS ${p}$`, 'm'));
}

/** /proc/locks lines on the given inodes: kind, type, owner pid, inode and range. */
function procLocks(inodes: Map<number, string>): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const m = /^\d+:\s+(\S+)\s+\S+\s+(\S+)\s+(-?\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s+(\d+)\s+(\S+)$/.exec(line);
    if (m && inodes.has(Number(m[4]))) out.push(`${m[1]} ${m[2]} ${m[3]} ${inodes.get(Number(m[4]))} ${m[5]}-${m[6]}`);
  }
  return out.sort();
}

describe.skipIf(!IS_ROOT)('engine restore: file locks', () => {
  let s: Started;
  let child: number;
  let dir: string;
  let before: string[];
  let inodes: Map<number, string>;

  beforeAll(async () => {
    s = await start('locks', (w) => [w], /ready child=(\d+)/, (m) => [Number(m[1])]);
    child = Number(s.m[1]);
    inodes = new Map(['posix', 'child', 'flock', 'inherit', 'ofd', 'shared'].map((n) => [fs.statSync(path.join(s.work, `${n}.dat`)).ino, n]));
    before = procLocks(inodes);
    dir = path.join(s.work, 'images');
    await dumpAndReap(s.target.pid, dir, s.pids);
    expect(restoreOk(dir)).toBe(s.target.pid);
  });

  afterAll(() => stop(s));

  it('records each lock once: POSIX by its owner, flock and OFD by a holder of the description', () => {
    const locks = decode(path.join(dir, 'filelocks.img')).map((l) => [l.flag, l.type, l.pid, Number(l.start), Number(l.len)].join(' '));
    const parent = s.target.pid;
    expect(locks.filter((l) => l.startsWith('1 ')).sort()).toEqual([`1 0 ${parent} 200 0`, `1 1 ${child} 5 5`, `1 1 ${parent} 0 100`].sort());
    // flock.dat and the two shared.dat descriptions by the parent (their locker); inherit.dat by the child
    expect(locks.filter((l) => l.startsWith('2 ')).sort()).toEqual([`2 1 ${parent} 0 0`, `2 0 ${parent} 0 0`, `2 0 ${parent} 0 0`, `2 1 ${child} 0 0`].sort());
    expect(locks.filter((l) => l.startsWith('4 ')).sort()).toEqual([`4 0 ${parent} 100 0`, `4 1 ${parent} 10 10`]);
  });

  it('has the same locks in /proc/locks (the inherited flock now shows the child, which took it again)', () => {
    const expected = before.map((l) => (l.includes(' inherit ') ? l.replace(` ${s.target.pid} `, ` ${child} `) : l)).sort();
    expect(procLocks(inodes)).toEqual(expected);
    expect(before.filter((l) => l.startsWith('FLOCK')).length).toBe(4);
  });

  it('each process finds the other\'s locks from descriptions of its own', async () => {
    await verdict(s, ['child', 'parent']);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: pipe buffers', () => {
  let s: Started;
  let dir: string;
  let ids: number[];

  beforeAll(async () => {
    s = await start('pipes', () => [], /ready full=(\d+),(\d+) sized=(\d+),(\d+) small=(\d+),(\d+)/);
    // the fixture's own pipes (it may have inherited others)
    ids = [1, 3, 5].map((i) => Number(/\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${s.target.pid}/fd/${s.m[i]}`))![1]));
    dir = path.join(s.work, 'images');
    await dumpAndReap(s.target.pid, dir, s.pids);
    expect(restoreOk(dir)).toBe(s.target.pid);
  });

  afterAll(() => stop(s));

  it('records every pipe with its buffer size, the empty one too', () => {
    const data = new Map(decode(path.join(dir, 'pipes-data.img')).map((e) => [Number(e.pipe_id), [Number(e.size), Number(e.bytes)]]));
    expect(ids.map((id) => data.get(id))).toEqual([[1 << 20, 1 << 20], [1 << 18, 0], [65536, 10]]);
  });

  it('has the sizes back, the full pipe still full, and every byte', async () => {
    await verdict(s, ['pipes']);
  });
});

describe.skipIf(!IS_ROOT)('engine dump: pipes it refuses', () => {
  let packets: Started | undefined;
  let direct: Started | undefined;

  afterAll(() => {
    stop(packets);
    stop(direct);
  });

  it('refuses queued packets (their boundaries would be lost), naming task and fd', async () => {
    packets = await start('pipes', () => ['packets'], /ready direct=(\d+),(\d+)/);
    dumpRefused(packets, new RegExp(`^engine: task ${packets.target.pid} fd ${packets.m[1]}: pipe \\d+ holds packets written in packet mode \\(O_DIRECT\\), whose boundaries are not restored\\n$`));
  });

  it('refuses a packet-mode end, naming task and fd', async () => {
    direct = await start('pipes', () => ['direct'], /ready direct=(\d+),(\d+)/);
    // pipe2(O_DIRECT) puts the flag on the write end only
    dumpRefused(direct, new RegExp(`^engine: task ${direct.target.pid} fd ${direct.m[2]}: pipe pipe:\\[\\d+\\] in packet mode \\(O_DIRECT\\) is not supported\\n$`));
  });
});

describe.skipIf(!IS_ROOT)('engine restore: terminals', () => {
  let s: Started;
  let child: number;
  let dir: string;

  let member: number;

  beforeAll(async () => {
    s = await start('ttys', () => [], /ready child=(\d+) mA=(\d+) A=(\S+) B=(\S+)/, (m) => [Number(m[1])]);
    child = Number(s.m[1]);
    member = Number(/member=(\d+)/.exec(s.target.output())![1]);
    s.pids.push(member);
    dir = path.join(s.work, 'images');
    await dumpAndReap(s.target.pid, dir, s.pids);
    expect(restoreOk(dir)).toBe(s.target.pid);
  });

  afterAll(() => stop(s));

  it('records the closed slave of A with its session and node owner, and B\'s settings', () => {
    const infos = decode(path.join(dir, 'tty-info.img'));
    const a = Number(s.m[3].split('/').pop());
    const b = Number(s.m[4].split('/').pop());
    expect(infos.find((e) => e.id === a * 2)).toMatchObject({ sid: child, pgrp: child, uid: 13333, gid: 44444 });
    expect(infos.find((e) => e.id === a * 2 + 1)).toMatchObject({ sid: child, pgrp: child });
    expect(infos.find((e) => e.id === b * 2 + 1)).toMatchObject({ packet_mode: true, locked: true, winsize: { ws_row: 40, ws_col: 120 } });
    expect(infos.find((e) => e.id === b * 2)).toMatchObject({ exclusive: true, uid: 13334, gid: 44445 });
  });

  it('gives the child and its session member their controlling terminal back, though no task holds the slave', () => {
    const m = grab(s.target.pid, Number(s.m[2]));
    let index: number;
    try {
      const b = Buffer.alloc(4);
      native().ioctl(m, 0x80045430, b); // TIOCGPTN
      index = b.readInt32LE(0);
    } finally {
      native().close(m);
    }
    const st = fs.readFileSync(`/proc/${child}/stat`, 'utf8').split(') ')[1].split(' ');
    expect(Number(st[4])).toBe(fs.statSync(`/dev/pts/${index}`).rdev); // tty_nr
    expect(Number(st[5])).toBe(child); // tpgid
    const ms = fs.readFileSync(`/proc/${member}/stat`, 'utf8').split(') ')[1].split(' ');
    expect([Number(ms[3]), Number(ms[4]), Number(ms[5])]).toEqual([child, fs.statSync(`/dev/pts/${index}`).rdev, child]); // session, tty_nr, tpgid
  });

  it('both processes find their terminals as they were; closing A hangs the child\'s session up', async () => {
    await verdict(s, ['member', 'child', 'parent']);
    await until(() => !alive(child), 'the child to end');
  });
});

describe.skipIf(!IS_ROOT)('engine dump: terminals it refuses', () => {
  let unread: Started | undefined;
  let held: Started | undefined;
  let slave = -1;

  afterAll(() => {
    if (slave >= 0) fs.closeSync(slave);
    stop(unread);
    stop(held);
  });

  it('takes bytes queued in a pty and puts them back: the line for the slave, its echo for the master (tty-data.img; restore-ttys has the rest)', async () => {
    unread = await start('ttys', () => ['unread'], /ready master=(\d+) slave=(\d+)/);
    const dir = path.join(unread.work, 'images');
    const r = runEngine(['dump', '-t', String(unread.target.pid), '-D', dir, '--leave-running']);
    expect(r.stderr).toBe('');
    expect(decode(path.join(dir, 'tty-data.img')).map((e) => Buffer.from(e.data).toString()).sort()).toEqual(['queued\n', 'queued\r\n']);
    expect(alive(unread.target.pid)).toBe(true);
  });

  it('refuses a pty whose slave is open outside the tree, naming the process', async () => {
    held = await start('ttys', () => ['held'], /ready master=(\d+) slave=-1 name=(\S+)/);
    slave = fs.openSync(held.m[2], fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    dumpRefused(held, new RegExp(`^engine: task ${held.target.pid} fd ${held.m[1]}: the slave ${held.m[2]} of this pty is open in process ${process.pid}, outside the dumped tree \\(not supported\\)\\n$`));
  });
});
