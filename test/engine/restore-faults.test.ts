// Damaged or inconsistent image sets are refused with the named reason, before any process
// exists; a restore that fails half way kills and reaps everything it created.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { loadMessages, writeImage } from '../../images/files';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, sleep, Target, until, gone } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine restore fault tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine restore: refusals and failures', () => {
  let work: string;
  let dir: string;
  let pid: number;
  const targets: Target[] = [];

  beforeAll(async () => {
    work = tempDir('restore-faults');
    const exe = compile('counter', work);
    const t = startTarget(exe, [path.join(work, 'file.txt'), '20000'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    pid = t.pid;
    dir = path.join(work, 'images');
    const r = runEngine(['dump', '-t', String(pid), '-D', dir]);
    expect(r.stderr).toBe('');
    await until(() => gone(pid), 'the dumped counter to be reaped');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** A copy of the good set, damaged by fn. */
  function damaged(name: string, fn: (d: string) => void): string {
    const d = path.join(work, name);
    fs.cpSync(dir, d, { recursive: true });
    fn(d);
    return d;
  }

  function expectRefused(d: string, re: RegExp, extra: string[] = []): void {
    const r = runEngine(['restore', '-D', d, '-d', ...extra]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(gone(pid)).toBe(true);
  }

  it('refuses a set without a core image', () => {
    const d = damaged('no-core', (x) => fs.unlinkSync(path.join(x, `core-${pid}.img`)));
    expectRefused(d, new RegExp(`^engine: core-${pid}\\.img: missing from the image set`));
  });

  it('refuses a truncated pages file', () => {
    const d = damaged('truncated', (x) => {
      const f = path.join(x, 'pages-1.img');
      fs.truncateSync(f, fs.statSync(f).size - 4096);
    });
    expectRefused(d, /^engine: pages-1\.img: size: truncated: pagemap-\d+\.img needs \d+ bytes, the file has \d+/);
  });

  it('refuses when a file changed size since the dump', () => {
    const file = path.join(work, 'file.txt');
    const saved = fs.readFileSync(file);
    fs.appendFileSync(file, 'xx');
    try {
      expectRefused(dir, new RegExp(`^engine: files\\.img: id \\d+\\.size: ${file} \\(fd 5 of task ${pid}\\) is 12 bytes, the image records 10`));
    } finally {
      fs.writeFileSync(file, saved);
    }
  });

  it('refuses an inconsistent pagemap (pages outside every VMA)', () => {
    const d = damaged('outside', (x) => {
      const f = path.join(x, `pagemap-${pid}.img`);
      const m = loadMessages(f);
      m[1].vaddr = 0x1000;
      writeImage(f, 'PAGEMAP', m.map((msg) => ({ msg })));
    });
    expectRefused(d, new RegExp(`^engine: pagemap-${pid}\\.img: entry at 0x1000: page 0x1000 is outside every VMA`));
  });

  it('refuses a PID taken by a running process', async () => {
    const t = startTarget(compile('counter', work), [path.join(work, 'file2.txt'), '20000'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const d = path.join(work, 'live');
    const r = runEngine(['dump', '-t', String(t.pid), '-D', d, '--leave-running']);
    expect(r.stderr).toBe('');
    const refused = runEngine(['restore', '-D', d, '-d']);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`^engine: PID ${t.pid} is in use \\(held by the running process "counter"\\); restore with --pidns`));
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    // nothing was created: a stub would be a fork of the engine, its command line naming the set
    const stubs = fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).filter((x) => {
      try {
        return fs.readFileSync(`/proc/${x}/cmdline`, 'utf8').split('\0').includes(d);
      } catch {
        return false;
      }
    });
    expect(stubs).toEqual([]);
  });

  it('kills and reaps everything when a restore fails half way', () => {
    // the first mapping now names a directory: consistent on paper, refused by mmap (ENODEV)
    const d = damaged('midway', (x) => {
      const f = path.join(x, `mm-${pid}.img`);
      const mm = loadMessages(f)[0];
      const fsImg = loadMessages(path.join(x, `fs-${pid}.img`))[0];
      mm.vmas[0].shmid = fsImg.cwd_id;
      writeImage(f, 'MM', [{ msg: mm }]);
    });
    const r = runEngine(['restore', '-D', d, '-d']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${pid}: mmap\\(0x[0-9a-f]+, \\d+ pages\\) of mm-${pid}\\.img vmas\\[0\\] failed: ENODEV`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(gone(pid)).toBe(true);
  });
});

const CORPUS = path.resolve(__dirname, '..', '..', '..', 'shared', 'corpus');

describe.skipIf(!IS_ROOT || !fs.existsSync(CORPUS))('engine restore: CRIU image sets of the corpus', () => {
  // written by CRIU 4.2/4.1 on another machine: they load, and whatever stops them is named
  const sets = fs.existsSync(CORPUS)
    ? fs.readdirSync(CORPUS).flatMap((v) => fs.statSync(path.join(CORPUS, v)).isDirectory() ? fs.readdirSync(path.join(CORPUS, v)).map((s) => path.join(CORPUS, v, s)) : [])
      .filter((d) => fs.existsSync(path.join(d, 'inventory.img')))
    : [];
  it.each(sets)('%s is refused up front with the image and field named', (d) => {
    const r = runEngine(['restore', '-D', d, '-d']);
    expect(r.status).not.toBe(0);
    // "<image>: <field>: <why>", or "<image>: missing ..."
    expect(r.stderr).toMatch(/^engine: [\w.-]+\.img: (missing from the image set.*|[^:\n]+: .+)\n$/);
  });
});
