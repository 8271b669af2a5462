// engine restore of what processes share: private memory a forked child still shares
// copy-on-write with its parent (the same physical pages after restore, checked through
// /proc/PID/pagemap by the programs themselves), and fd tables and fs structs shared through
// clone(CLONE_FILES) / clone(CLONE_FS); sharing no clone order can make again is refused.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { loadMessages, writeImage } from '../../images/files';
import {
  IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, decode, restoreOk, dumpAndReap, cleanUp, gone, until, Target,
} from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine sharing tests: ${SKIP_REASON}`);
process.env.ENGINE_RESTORE_STATS = '1';

/** `engine restore -d`, asserting a clean run; returns its statistics. */
function restoreStats(dir: string): { pid: number; pagesCompared: number; pagesSkippedCow: number; pagesRestored: number } {
  const r = runEngine(['restore', '-D', dir, '-d']);
  if (r.stderr !== '' || r.status !== 0) throw new Error(`engine restore failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function expectRestoreRefused(dir: string, re: RegExp): void {
  const r = runEngine(['restore', '-D', dir, '-d']);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

describe.skipIf(!IS_ROOT)('engine restore: memory shared copy-on-write after fork', () => {
  let work: string;
  let target: Target | undefined;
  let child = 0;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('cowshare');
    target = startTarget(compile('cowshare', work), [], work);
    child = Number((await target.waitFor(/ready child=(\d+)/))[1]);
    expect(target.output()).not.toMatch(/not shared before the dump/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, child]);
  });

  afterAll(() => cleanUp(target, work, child));

  it('writes only the pages that differ from the parent\'s; the others are the parent\'s physical pages again', async () => {
    const stats = restoreStats(dir);
    expect(stats.pid).toBe(target!.pid);
    expect(alive(child)).toBe(true);
    // CRIU's stats-restore figures: the child's pages were compared, most left shared
    expect(stats.pagesSkippedCow).toBeGreaterThanOrEqual(7);
    expect(stats.pagesCompared).toBeGreaterThan(stats.pagesSkippedCow);
    process.kill(target!.pid, 'SIGUSR1');
    process.kill(child, 'SIGUSR1');
    await target!.waitFor(/child (PASS|FAIL)/);
    await target!.waitFor(/parent (PASS|FAIL)/);
    expect(target!.output()).not.toMatch(/FAIL/);
    expect(target!.output()).toMatch(/^parent PASS$/m);
    expect(target!.output()).toMatch(/^child PASS$/m);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: fd tables and fs structs shared between processes', () => {
  let work: string;
  let target: Target | undefined;
  let pids: number[] = [];
  let kids: Record<string, number> = {};
  let dir: string;

  beforeAll(async () => {
    work = tempDir('fdtshare');
    target = startTarget(compile('fdtshare', work), [], work);
    const m = await target.waitFor(/ready B=(\d+) C=(\d+) D=(\d+)/);
    const e = await target.waitFor(/E=(\d+)/);
    kids = { A: target.pid, B: +m[1], C: +m[2], D: +m[3], E: +e[1] };
    pids = Object.values(kids);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, pids);
  });

  afterAll(() => cleanUp(target, work, ...pids));

  it('records the sharing in ids-<pid>.img and dumps a shared table once', () => {
    const ids = (k: string) => decode(path.join(dir, `ids-${kids[k]}.img`))[0];
    const files = (k: string) => Number(ids(k).files_id), fsId = (k: string) => Number(ids(k).fs_id);
    expect(files('B')).toBe(files('A'));
    expect(files('E')).toBe(files('A'));
    expect(new Set([files('A'), files('C'), files('D')]).size).toBe(3);
    expect(fsId('C')).toBe(fsId('A'));
    expect(fsId('E')).toBe(fsId('B'));
    expect(new Set([fsId('A'), fsId('B'), fsId('D')]).size).toBe(3);
    const fdinfos = fs.readdirSync(dir).filter((f) => /^fdinfo-\d+\.img$/.test(f));
    expect(fdinfos.sort()).toEqual([files('A'), files('C'), files('D')].map((i) => `fdinfo-${i}.img`).sort());
  });

  it('restores one table and one fs struct per group: what one member changes the others see', async () => {
    expect(restoreOk(dir)).toBe(target!.pid);
    for (const p of pids) expect(alive(p)).toBe(true);
    process.kill(target!.pid, 'SIGUSR1');
    await target!.waitFor(/all PASS|A FAIL/);
    expect(target!.output()).not.toMatch(/FAIL/);
    for (const k of ['B', 'C', 'D', 'E']) expect(target!.output()).toMatch(new RegExp(`^${k} PASS$`, 'm'));
    await until(() => pids.every(gone), 'the restored tree to finish');
  });

  it('refuses images whose sharing no clone order makes again (two tops of one group)', () => {
    const d = path.join(work, 'siblings');
    fs.cpSync(dir, d, { recursive: true });
    // C and D both claim one fs struct their parent A does not have
    for (const k of ['C', 'D']) {
      const f = path.join(d, `ids-${kids[k]}.img`);
      const m = loadMessages(f);
      m[0].fs_id = 999;
      writeImage(f, 'IDS', m.map((msg) => ({ msg })));
    }
    expectRestoreRefused(d, new RegExp(`^engine: ids-${kids.D}\\.img: fs_id: tasks ${kids.C}, ${kids.D} share one fs struct: cwd, root and umask \\(CLONE_FS\\) \\(fs_id 999\\) that none of them got from its parent`));
  });
});

describe.skipIf(!IS_ROOT)('engine dump: sharing that cannot be restored is refused', () => {
  let work: string;
  const started: Target[] = [];

  beforeAll(() => {
    work = tempDir('sharerefuse');
    compile('sharerefuse', work, ['-pthread']);
  });

  afterAll(() => {
    for (const t of started) t.kill();
    cleanUp(undefined, work);
  });

  async function refused(mode: string, re: (m: RegExpMatchArray, pid: number) => RegExp): Promise<void> {
    const t = startTarget(path.join(work, 'sharerefuse'), [mode], work);
    started.push(t);
    const m = await t.waitFor(/ready( \d+)*\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, `images-${mode}`)]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(re(m, t.pid));
    // a refused dump leaves the tree running and writes nothing
    expect(alive(t.pid)).toBe(true);
    expect(fs.existsSync(path.join(work, `images-${mode}`))).toBe(false);
    t.kill();
  }

  it('two siblings sharing an fd table their parent left', async () => {
    await refused('siblings', (m) => {
      const [b, c] = m[0].match(/\d+/g)!;
      return new RegExp(`^engine: tasks ${b}, ${c} share one fd table \\(CLONE_FILES\\) \\(files_id \\d+\\) that none of them got from its parent; no clone order makes it again\\n$`);
    });
  });

  it('a thread with an fd table of its own', async () => {
    await refused('thread', (_m, pid) => {
      const tid = fs.readdirSync(`/proc/${pid}/task`).map(Number).find((x) => x !== pid);
      return new RegExp(`^engine: task ${pid} thread ${tid}: has an fd table of its own \\(unshared from its process\\), which is not restored\\n$`);
    });
  });

  it('a child sharing its parent\'s address space (CLONE_VM without CLONE_THREAD)', async () => {
    await refused('vm', (m, pid) => new RegExp(`^engine: tasks ${pid}, ${m[0].match(/\d+/)![0]} share one address space \\(CLONE_VM without CLONE_THREAD\\) \\(vm_id \\d+\\), which is not restored\\n$`));
  });
});
