// What waits in unix sockets' queues: files in flight (SCM_RIGHTS), dumped as files of their own
// and named by the packet's scm entry as CRIU does, then sent again with their messages, so the
// process receives the same pipe, file, socket, memfd, epoll and eventfd it sent (the last two
// made by the task that holds the socket, once its fds are in place).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING unix queue tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('files in flight over unix sockets', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('scmflight');
    target = startTarget(compile('scmflight', work), [], work);
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('names the files each message carries, as files of their own', () => {
    const files = new Map(decode(path.join(dir, 'files.img')).map((f) => [f.id, f]));
    const queues = decode(path.join(dir, 'sk-queues.img'));
    const carried = queues.map((q) => (q.scm ?? []).flatMap((s: { type: number; rights: number[] }) => (expect(s.type).toBe(1), s.rights)));
    const kinds = carried.map((ids) => ids.map((id: number) => files.get(id)?.type));
    // datagrams: pipe; file + pipe; socket; epoll + eventfd; the stream: "x" with the memfd, then "yz"
    expect(kinds).toEqual([[2], [1, 2], [5], [7, 6], [18], []]);
    expect(queues.map((q) => q.length)).toEqual([1, 1, 1, 1, 1, 2]);
    // the epoll's watch names the fd the process keeps the socket's other end at
    const ep = files.get(carried[3][0]).epfd;
    expect(ep.tfd.map((t: { tfd: number; data: bigint }) => [t.id, Number(t.data)])).toEqual([[0, 77]]);
    expect(files.get(carried[1][0]).reg).toMatchObject({ name: path.join(work, 'data'), pos: 3 });
    // no task holds them
    const held = new Set(decode(path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('fdinfo-'))!)).map((e) => e.id));
    for (const id of carried.flat()) expect(held.has(id)).toBe(false);
  });

  it('sends them again: the process receives the same pipe, file, socket, epoll, eventfd and memfd', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^scm (ok|fail.*)$/m);
    expect(target.output()).toMatch(/^scm ok$/m);
  });
});

describe.skipIf(!IS_ROOT)('files in flight that cannot be placed exactly', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('scmbehind');
    target = startTarget(compile('scmflight', work), ['behind'], work);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => cleanUp(target, work));

  it('refuses files riding behind other bytes of a stream, naming task and fd, and the task runs on', async () => {
    const r = runEngine(['dump', '-t', String(target.pid), '-D', path.join(work, 'images')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${target.pid} fd \\d+: files in flight \\(SCM_RIGHTS\\) in a stream queue behind 3 other bytes`));
    expect(fs.existsSync(path.join(work, 'images'))).toBe(false);
    expect(alive(target.pid)).toBe(true);
    const c = Number([...target.output().matchAll(/^count=(\d+)$/gm)].pop()![1]);
    await target.waitFor(new RegExp(`count=${c + 2}\n`));
  });
});

describe.skipIf(!IS_ROOT)('the end of a seqpacket queue', () => {
  let work: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('seqeof');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  it('keeps the records before a peer shutdown, and the end of file after them', async () => {
    const t = startTarget(compile('seqeof', work), [], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    expect(decode(path.join(dir, 'sk-queues.img')).map((q) => q.length)).toEqual([3, 4]);
    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^seq (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^seq ok$/m);
  });

  it('refuses a zero-length datagram, naming task and fd, and the task runs on', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    const t = startTarget(compile('seqeof', work), ['zero'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'zero')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd \\d+: zero-length datagrams in the queue are not supported`));
    expect(alive(t.pid)).toBe(true);
  });
});
