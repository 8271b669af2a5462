// epoll watches are keyed by file and the fd number they were added with; that number may hold
// another file by now. The dump finds each watched file with kcmp(KCMP_EPOLL_TFD), the restore
// adds every watch with its own file under its own number.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive, killPid } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING epoll tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('epoll watches whose fd number holds another file now', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('epollkeys');
    target = startTarget(compile('epollkeys', work), [], work);
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('records both watches under fd 50, each naming the file it watches', () => {
    const files = decode(path.join(dir, 'files.img'));
    const ep = files.find((f) => f.type === 7).epfd;
    expect(ep.tfd.map((t: { tfd: number }) => t.tfd)).toEqual([50, 50]);
    const fdinfo = decode(path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('fdinfo-'))!));
    const at50 = fdinfo.find((e) => e.fd === 50).id;
    // neither watched file is the one at 50 now: both name a pipe end the task holds elsewhere
    for (const t of ep.tfd) {
      expect(t.id).not.toBe(at50);
      expect(fdinfo.some((e) => e.id === t.id && e.fd !== 50)).toBe(true);
    }
  });

  it('adds each watch with its own file under fd 50 again', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^epoll (ok|fail.*)$/m);
    expect(target.output()).toMatch(/^epoll ok$/m);
  });
});

describe.skipIf(!IS_ROOT)('epoll watches it refuses', () => {
  let work: string;
  let target: Target;
  let child = 0;

  beforeAll(async () => {
    work = tempDir('epollelsewhere');
    target = startTarget(compile('epollkeys', work), ['elsewhere'], work);
    child = Number((await target.waitFor(/child=(\d+)\n/))[1]);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => {
    killPid(child);
    cleanUp(target, work);
  });

  it('refuses a watched file no fd of the task holds, naming task and fd, and the tree runs on', () => {
    const r = runEngine(['dump', '-t', String(target.pid), '-D', path.join(work, 'images')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${target.pid} fd \\d+: epoll watches a file added as fd 50 that no fd of the task holds any more`));
    expect(alive(target.pid) && alive(child)).toBe(true);
  });
});
