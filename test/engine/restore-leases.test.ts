// engine dump and restore of file leases (filelocks.img entries of kind 8, as CRIU 4.2 writes
// them): read and write leases, leases breaking to a read lease or to unlocked, and an opener of
// the tree waiting for a break. The fixture checks after the restore that each lease is what it
// was (F_GETLEASE), that the restore sent it no break signal, and that conflicting opens break
// them as before. What the image cannot hold is refused at dump, naming task, fd and kind, and
// the tree goes on with its leases untouched.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive, until, killPid } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine lease tests: ${SKIP_REASON}`);

const F_RDLCK = 0, F_WRLCK = 1, BREAKING = 4, F_UNLCK = 2;

/** The lease lines of /proc/locks on the given inodes: state, type, holder and waiters. */
function procLeases(inodes: Map<number, string>): string[] {
  const out: string[] = [];
  let last = '';
  for (const line of fs.readFileSync('/proc/locks', 'utf8').split('\n')) {
    const m = /^\d+:\s+(->\s+)?LEASE\s+(\S+)\s+(\S+)\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)/.exec(line);
    const w = /^\d+:\s+->\s+LEASE\s+BREAKER\s+(\S+)\s+(\d+)/.exec(line);
    if (m && !m[1] && inodes.has(Number(m[5]))) out.push((last = `${inodes.get(Number(m[5]))} ${m[2]} ${m[3]} ${m[4]}`));
    else if (w && last) out.push(`${last} <- ${w[1]} ${w[2]}`);
    else if (!w) last = '';
  }
  return out.sort();
}

/** A dump that must be refused with one line matching re; the tree goes on. */
function dumpRefused(target: Target, work: string, re: RegExp): void {
  const r = runEngine(['dump', '-t', String(target.pid), '-D', path.join(work, 'refused')]);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(fs.existsSync(path.join(work, 'refused'))).toBe(false);
  expect(alive(target.pid)).toBe(true);
}

describe.skipIf(!IS_ROOT)('engine restore: file leases', () => {
  let work: string;
  let target: Target;
  let child: number;
  let fds: number[];
  let dir: string;
  let before: string[];
  let inodes: Map<number, string>;

  beforeAll(async () => {
    work = tempDir('leases');
    target = startTarget(compile('leases', work), [work], work);
    const m = await target.waitFor(/ready child=(\d+) fds=(\d+),(\d+),(\d+),(\d+),(\d+)/);
    child = Number(m[1]);
    fds = m.slice(2, 7).map(Number);
    inodes = new Map(['rd', 'wr', 'down', 'gone', 'wait'].map((n) => [fs.statSync(path.join(work, `${n}.dat`)).ino, n]));
    before = procLeases(inodes);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, child]);
    expect(restoreOk(dir)).toBe(target.pid);
  });

  afterAll(() => cleanUp(target, work, child));

  it('records one entry per lease, with its task and fd, a breaking one with the type it goes to', () => {
    const leases = decode(path.join(dir, 'filelocks.img')).map((l) => [l.flag, l.type, l.pid, l.fd, Number(l.start), Number(l.len)]);
    const [rd, wr, down, gone, wait] = fds;
    expect(leases).toEqual([
      [8, F_RDLCK, target.pid, rd, 0, 0],
      [8, F_WRLCK, target.pid, wr, 0, 0],
      [8, BREAKING | F_RDLCK, target.pid, down, 0, 0],
      [8, BREAKING | F_UNLCK, target.pid, gone, 0, 0],
      [8, BREAKING | F_RDLCK, target.pid, wait, 0, 0],
    ]);
  });

  it('has the same leases in /proc/locks, and the child waits for wait.dat again', () => {
    expect(before).toContain(`wait BREAKING READ ${target.pid} <- READ ${child}`);
    expect(procLeases(inodes)).toEqual(before);
  });

  it('the leases are as they were, took no signal, and break as before', async () => {
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/^(PASS|FAIL) leases$/m, 8000);
    expect(target.output().split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
    await until(() => !alive(child), 'the child to end once wait.dat is released');
  });
});

describe.skipIf(!IS_ROOT)('engine dump: leases it refuses', () => {
  let work: string;
  const targets: Target[] = [];
  let opener: ChildProcess | undefined;

  beforeAll(() => {
    work = tempDir('leaserefuse');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    killPid(opener?.pid);
    cleanUp(undefined, work);
  });

  it('refuses a breaking write lease on a read-only description (the image cannot tell it from a read lease), leaving it as it was', async () => {
    const t = startTarget(compile('leases', work), [work, 'wrrdonly'], work);
    targets.push(t);
    const m = await t.waitFor(/ready ro=(\d+) signals=1/);
    dumpRefused(t, work, new RegExp(`^engine: task ${t.pid} fd ${m[1]}: breaking write lease on a read-only description \\(.*LEASE\\s+BREAKING\\s+UNLCK.*\\): .* \\(not supported\\)\\n$`));
    // the check opened nothing that broke it further: no signal, still a write lease
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^(PASS|FAIL) wrrdonly$/m);
    expect(t.output()).toMatch(/^PASS wrrdonly$/m);
  });

  it('refuses a lease breaking for an opener outside the tree, naming it', async () => {
    const sub = path.join(work, 'outside');
    fs.mkdirSync(sub);
    const t = startTarget(compile('leases', work), [sub, 'plain'], sub);
    targets.push(t);
    const m = await t.waitFor(/ready wr=(\d+)/);
    // an opener of ours, blocked until the lease is released or its break time runs out
    opener = spawn('cat', [path.join(sub, 'wr.dat')], { stdio: 'ignore' });
    await until(() => /->\s+LEASE\s+BREAKER/.test(fs.readFileSync('/proc/locks', 'utf8')), 'the opener to wait');
    dumpRefused(t, work, new RegExp(`^engine: task ${t.pid} fd ${m[1]}: lease breaking to read \\(.*\\) is waited for by process ${opener.pid} outside the dumped tree \\(not supported\\)\\n$`));
  });
});
