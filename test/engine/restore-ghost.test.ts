// Unlinked files (ghost files): a file open after unlink, a sparse one mapped shared, and a
// removed directory as cwd are saved in CRIU's ghost-file images (holes kept) and made again at
// restore under their old names, then unlinked again; the program finds every one as it was.
// A ghost larger than --ghost-limit is refused at dump naming task and fd.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runCriu, runEngine, alive, Target, decode, until, gone, cleanUp, pyCritDecode } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING ghost file tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('ghost files', () => {
  let work: string;
  let exe: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('ghost');
    exe = compile('ghost', work);
    target = startTarget(exe, [work], work);
    await target.waitFor(/ready\n/);
    dir = path.join(work, 'images');
  });

  afterAll(() => cleanUp(target, work));

  it('refuses a ghost over the limit, naming task and fd, and leaves the task as it was', () => {
    const d = path.join(work, 'refused');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-D', d, '-o', 'dump.log', '-t', String(target.pid), '--ghost-limit', '16K']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(new RegExp(`^Error \\(dump\\): task ${target.pid} (fd \\d+|mapping [0-9a-f-]+): unlinked file .*ghost-sparse holds \\d+ bytes, more than the ghost limit of 16384`, 'm'));
    expect(alive(target.pid)).toBe(true);
  });

  it('writes CRIU\'s remap-fpath and ghost-file images, holes left out', async () => {
    const r = runEngine(['dump', '-t', String(target.pid), '-D', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const remaps = decode(path.join(dir, 'remap-fpath.img'));
    expect(remaps.every((m) => m.remap_type === 1)).toBe(true);
    const files = new Map(decode(path.join(dir, 'files.img')).map((f) => [Number(f.id), f]));
    const names = remaps.map((m) => files.get(Number(m.orig_id))!.reg.name as string);
    expect(new Set(names)).toEqual(new Set(['ghost-small', 'ghost-sparse', 'ghost-cwd'].map((n) => path.join(work, n))));
    const ghosts = fs.readdirSync(dir).filter((f) => f.startsWith('ghost-file-'));
    expect(ghosts.length).toBe(3);
    const sparse = ghosts.map((g) => decode(path.join(dir, g))).find((e) => e[0].chunks)!;
    expect(Number(sparse[0].size)).toBe(2 << 20);
    expect(sparse.slice(1).reduce((s, c) => s + Number(c.len), 0)).toBeLessThan(256 * 1024);
    for (const g of ghosts) {
      const py = pyCritDecode(path.join(dir, g));
      if (py) expect(py.err).toBe('');
    }
    await until(() => gone(target.pid), 'the dumped task to be reaped');
  });

  it('restores them: unlinked, same names, same contents, same position; nothing left on disk', async () => {
    const pidfile = path.join(work, 'pid');
    const r = runCriu(['restore', '-D', dir, '-d', '--pidfile', pidfile]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(Number(fs.readFileSync(pidfile, 'utf8'))).toBe(target.pid);
    expect(fs.readdirSync(work).filter((f) => /^ghost-(small|sparse|cwd)/.test(f))).toEqual([]);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL.*)\n/);
    expect(target.output()).toMatch(/^ready\nPASS\n$/);
  });
});

describe.skipIf(!IS_ROOT)('ghost device nodes, symlinks, and a directory whose parent is gone too', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('ghostnodes');
    target = startTarget(compile('ghostnodes', work), [], work);
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    const r = runEngine(['dump', '-t', String(target.pid), '-D', dir]);
    expect(r.stderr).toBe('');
    await until(() => gone(target.pid), 'the dumped task to exit');
  });

  afterAll(() => cleanUp(target, work));

  it('records the device numbers and the link target in the ghost images', () => {
    const ghosts = fs.readdirSync(dir).filter((f) => f.startsWith('ghost-file-')).map((f) => decode(path.join(dir, f))[0]);
    const dev = ghosts.find((g) => (g.mode & 0o170000) === 0o020000);
    const lnk = ghosts.find((g) => (g.mode & 0o170000) === 0o120000);
    expect(dev.rdev).toBe(0x103); // 1:3 as dev_t packs it
    expect(lnk.symlnk_target).toBe('somewhere/else');
  });

  it('makes them again: the process finds the same device, link and directory, their names gone', async () => {
    const r = runEngine(['restore', '-D', dir, '-d']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^nodes (ok|fail.*)$/m);
    expect(target.output()).toMatch(/^nodes ok$/m);
  });
});

describe.skipIf(!IS_ROOT)('link remap (--link-remap)', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('linkremap');
    target = startTarget(compile('linkremap', work), [], work);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => cleanUp(target, work));

  it('refuses a file unlinked but linked elsewhere without it, naming task and fd', () => {
    const d = path.join(work, 'refused');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-D', d, '-o', 'dump.log', '-t', String(target.pid)]);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(new RegExp(`^Error \\(dump\\): task ${target.pid} fd 3: ${work}/data was unlinked but is still linked elsewhere \\(dump it with --link-remap\\)`, 'm'));
    expect(alive(target.pid)).toBe(true);
  });

  it('links it again as link_remap.<id> beside its old name, recorded as CRIU does', async () => {
    const d = path.join(work, 'images');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-D', d, '-o', 'dump.log', '-t', String(target.pid), '--link-remap']);
    expect(r.status).toBe(0);
    await until(() => gone(target.pid), 'the dumped task to exit');
    const remaps = decode(path.join(d, 'remap-fpath.img'));
    expect(remaps).toHaveLength(1);
    expect(remaps[0].remap_type).toBe(0);
    const files = new Map(decode(path.join(d, 'files.img')).map((f) => [f.id, f]));
    expect(files.get(remaps[0].orig_id).reg.name).toBe(path.join(work, 'data'));
    const linked = files.get(remaps[0].remap_id).reg.name;
    expect(linked).toBe(path.join(work, `link_remap.${remaps[0].remap_id}`));
    expect(fs.statSync(linked).ino).toBe(fs.statSync(path.join(work, 'data.link')).ino);
  });

  it('restores the same inode through it and removes the name', async () => {
    const r = runCriu(['restore', '-D', path.join(work, 'images'), '-d', '-o', 'restore.log']);
    expect(r.status).toBe(0);
    expect(fs.readdirSync(work).filter((f) => f.startsWith('link_remap'))).toEqual([]);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^link (ok|fail.*)$/m);
    expect(target.output()).toMatch(/^link ok$/m);
  });
});
