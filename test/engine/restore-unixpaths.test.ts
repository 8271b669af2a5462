// Unix sockets bound to a relative name, or whose file was unlinked (and replaced by another
// file), dumped as CRIU does (name_dir, deleted) and restored with the same names, the paths as
// they were, and every connection carrying data.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, runCriu, alive, until, gone } from './helpers';
import { native } from '../../native';

if (!IS_ROOT) console.warn(`SKIPPING unix socket path tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('unix sockets with relative or unlinked names', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('unixpaths');
    target = startTarget(compile('unixpaths', work), [work], work);
    await target.waitFor(/ready\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('records name_dir for the relative name and deleted for the unlinked ones', () => {
    const usk = decode(path.join(dir, 'files.img')).filter((f) => f.type === 5).map((f) => f.usk);
    const byName = (n: string) => usk.filter((u) => Buffer.from(u.name ?? []).toString().replace(/\0+$/, '') === n);
    expect(byName('rel.sock').find((u) => u.name_dir)?.name_dir).toBe(work);
    expect(byName(path.join(work, 'gone.sock')).some((u) => u.deleted)).toBe(true);
    expect(byName(path.join(work, 'replaced.sock')).some((u) => u.deleted)).toBe(true);
  });

  it('come back with their names, the paths as they were, and their connections', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    expect(fs.existsSync(path.join(work, 'gone.sock'))).toBe(false);
    expect(fs.statSync(path.join(work, 'replaced.sock')).isFIFO()).toBe(true);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL.*)\n/);
    expect(target.output()).toMatch(/^ready\nPASS\n$/);
  });
});

describe.skipIf(!IS_ROOT)('unix connections not accepted yet', () => {
  let work: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('pendingunix');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  for (const [mode, why] of [['data', /data sent on a connection not accepted yet/], ['closed', /connection not accepted yet whose connecting socket \d+ is closed/]] as const) {
    it(`refuses a pending connection with ${mode === 'data' ? 'bytes in it' : 'its connecting end closed'}, and the task runs on`, async () => {
      const exe = compile('pendingunix', work);
      const d = path.join(work, mode);
      fs.mkdirSync(d);
      const t = startTarget(exe, [d, mode], d);
      targets.push(t);
      await t.waitFor(/ready\n/);
      const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(d, 'images')]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd \\d+: .*${why.source}`));
      expect(alive(t.pid)).toBe(true);
    });
  }

  it('dumps and restores a plain pending connection', async () => {
    const exe = compile('pendingunix', work);
    const d = path.join(work, 'plain');
    fs.mkdirSync(d);
    const t = startTarget(exe, [d, 'plain'], d);
    targets.push(t);
    await t.waitFor(/ready\n/);
    await dumpAndReap(t.pid, path.join(d, 'images'));
    expect(restoreOk(path.join(d, 'images'))).toBe(t.pid);
  });
});

describe.skipIf(!IS_ROOT)('unix sockets connected outside the tree (--ext-unix-sk)', () => {
  let work: string;
  let target: Target;
  let outside: number;

  beforeAll(async () => {
    work = tempDir('extunix');
    outside = native().unixSocket(2);
    native().unixBind(outside, Buffer.from(path.join(work, 'outside.sock')));
    target = startTarget(compile('extunix', work), [path.join(work, 'outside.sock')], work);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => {
    native().close(outside);
    cleanUp(target, work);
  });

  it('refuses the connection without --ext-unix-sk, naming the sockets, and the task runs on', () => {
    const d = path.join(work, 'refused');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-D', d, '-o', 'dump.log', '-t', String(target.pid)]);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(/^Error \(dump\): unix socket \d+ is connected to socket \d+ outside the dumped tree \(dump it with --ext-unix-sk\)/m);
    expect(alive(target.pid)).toBe(true);
  });

  it('keeps it with --ext-unix-sk: the peer recorded as external, connected to again by name', async () => {
    const d = path.join(work, 'images');
    fs.mkdirSync(d);
    expect(runCriu(['dump', '-D', d, '-o', 'dump.log', '-t', String(target.pid), '--ext-unix-sk']).status).toBe(0);
    await until(() => gone(target.pid), 'the dumped task to exit');
    const usk = decode(path.join(d, 'files.img')).filter((f) => f.type === 5).map((f) => f.usk);
    const ext = usk.find((u) => u.uflags === 1);
    expect(Buffer.from(ext.name).toString().replace(/\0+$/, '')).toBe(path.join(work, 'outside.sock'));
    expect(usk.find((u) => u.uflags === 0).peer).toBe(ext.ino);
    expect(runCriu(['restore', '-D', d, '-d', '-o', 'restore.log']).status).toBe(0);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^(sent|ext fail.*)$/m);
    expect(target.output()).toMatch(/^sent$/m);
    expect(native().recvmsg(outside, 16, 0x40).data.toString()).toBe('H');
  });
});
