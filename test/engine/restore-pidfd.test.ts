// pidfds of a child, of the process itself and of a process that had died, dumped and restored:
// each still refers to the same process (or to a dead one), with its flags; a pidfd of a process
// outside the tree is refused at dump.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING pidfd tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('pidfds', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let live = 0;

  beforeAll(async () => {
    work = tempDir('pidfd');
    target = startTarget(compile('pidfd', work), [], work);
    live = Number((await target.waitFor(/ready live=(\d+)\n/))[1]);
  });

  afterAll(() => cleanUp(target, work, live));

  it('refuses a pidfd of a process outside the dumped tree (the child alone)', () => {
    const r = runEngine(['dump', '-t', String(live), '-D', path.join(work, 'refused'), '-R']);
    expect(r.status).toBe(1);
    expect(alive(live)).toBe(true);
  });

  it('are dumped as PIDFD entries, the dead ones with pid -1 and one inode', async () => {
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, live]);
    const p = decode(path.join(dir, 'files.img')).filter((f) => f.type === 20).map((f) => f.pidfd);
    expect(p.map((e) => e.nspid).sort()).toEqual([-1, -1, live, target.pid].sort());
    const dead = p.filter((e) => e.nspid === -1);
    expect(dead[0].ino).toBe(dead[1].ino);
  });

  it('come back referring to the same processes, with their flags', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL.*)\n/);
    expect(target.output()).toMatch(/\nPASS\n$/);
  });
});
