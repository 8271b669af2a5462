// engine dump of a FIFO with buffered bytes (files.img REG + FIFO entries, fifo-data.img) and of
// POSIX and flock locks (filelocks.img), as CRIU 4.2 writes them (corpus fifo-flock/). The bytes
// stay in the FIFO and the locks stay held.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadImage } from '../../images/files';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, consecutive, Target, dumpOk } from './helpers';
import { CORPUS, checkAllImagesDecode, fdTable, imageKinds } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine fifo/lock tests: ${SKIP_REASON}`);

const PATTERN = Buffer.from(Array.from({ length: 100 }, (_, i) => 97 + ((i * 7) % 26)));

describe.skipIf(!IS_ROOT)('engine dump: FIFO data and file locks', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let fds: { r: number; w: number; posix: number; flock: number };
  let table: Map<number, [any, any]>;
  let files: any[];

  beforeAll(async () => {
    work = tempDir('fifolock');
    const exe = compile('fifolock', work);
    target = startTarget(exe, [work], work);
    const m = await target.waitFor(/fifo r=(\d+) w=(\d+) posix=(\d+) flock=(\d+)/);
    fds = { r: +m[1], w: +m[2], posix: +m[3], flock: +m[4] };
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
    table = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
    files = decode(path.join(dir, 'files.img'));
  });

  afterAll(() => {
    target?.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('writes the image kinds of the corpus fifo-flock/ set, all decodable', () => {
    checkAllImagesDecode(dir);
    const ours = imageKinds(dir);
    for (const k of ['fifo-data.img', 'filelocks.img']) expect(ours).toContain(k);
    const corpus = path.join(CORPUS, 'fifo-flock');
    if (fs.existsSync(corpus)) for (const k of imageKinds(corpus)) expect(ours).toContain(k);
  });

  it('FIFO fds: a FIFO entry per description pointing at a REG entry of the path', () => {
    const ino = fs.statSync(path.join(work, 'test.fifo')).ino;
    for (const [fd, flags] of [[fds.r, 0o104000], [fds.w, 0o100001]]) {
      const [info, f] = table.get(fd)!;
      expect(info.type).toBe(3);
      expect(f.type).toBe(3);
      expect(f.fifo.pipe_id).toBe(ino);
      const reg = files.find((e) => e.id === f.fifo.regf_id).reg;
      expect(reg).toMatchObject({ name: path.join(work, 'test.fifo'), flags, pos: 0, mode: 0o10644 });
      expect(reg.size).toBeUndefined();
      // CRIU writes the REG entry right before its FIFO entry
      expect(files.findIndex((e) => e.id === f.fifo.regf_id) + 1).toBe(files.findIndex((e) => e.type === 3 && e.id === f.id));
    }
    const corpus = path.join(CORPUS, 'fifo-flock', 'files.img');
    if (fs.existsSync(corpus)) {
      const theirs = decode(corpus).find((e) => e.type === 3);
      const ours = table.get(fds.r)![1];
      expect(Object.keys(ours.fifo).sort()).toEqual(Object.keys(theirs.fifo).sort());
      const theirReg = decode(corpus).find((e) => e.id === theirs.fifo.regf_id).reg;
      expect(Object.keys(files.find((e) => e.id === ours.fifo.regf_id).reg).sort()).toEqual(Object.keys(theirReg).sort());
    }
  });

  it('fifo-data.img holds the 100 buffered bytes once, and they are still in the FIFO', () => {
    const data = decode(path.join(dir, 'fifo-data.img'));
    expect(data).toHaveLength(1);
    expect(data[0]).toMatchObject({ pipe_id: fs.statSync(path.join(work, 'test.fifo')).ino, bytes: 100, size: 65536 });
    const extra = loadImage(path.join(dir, 'fifo-data.img')).entries[0].extra;
    expect(extra?.kind).toBe('blob');
    expect(Buffer.from((extra as { data: Uint8Array }).data)).toEqual(PATTERN);
    // not consumed: read them now through the FIFO itself
    const fd = fs.openSync(path.join(work, 'test.fifo'), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const buf = Buffer.alloc(200);
      expect(fs.readSync(fd, buf)).toBe(100);
      expect(buf.subarray(0, 100)).toEqual(PATTERN);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('filelocks.img: POSIX write and read ranges and the flock, with owner pid and fd', () => {
    const locks = decode(path.join(dir, 'filelocks.img'));
    const n = (v: unknown) => Number(v);
    expect(locks.map((l) => [l.flag, l.type, l.pid, l.fd, n(l.start), n(l.len)])).toEqual([
      [1, 1, target.pid, fds.posix, 0, 100],
      [1, 0, target.pid, fds.posix, 200, 0],
      [2, 1, target.pid, fds.flock, 0, 0],
    ]);
    const corpus = path.join(CORPUS, 'fifo-flock', 'filelocks.img');
    if (fs.existsSync(corpus)) {
      const theirs = decode(corpus);
      expect(Object.keys(locks[0]).sort()).toEqual(Object.keys(theirs[0]).sort());
      expect([theirs[0].flag, theirs[0].type, n(theirs[0].len)]).toEqual([1, 1, 100]);
      expect([theirs[1].flag, theirs[1].type, n(theirs[1].len)]).toEqual([2, 1, 0]);
    }
  });

  it('the locks are still held and the task goes on', async () => {
    const r = spawnSync('flock', ['-n', path.join(work, 'lock-flock.txt'), 'true']);
    expect(r.status).toBe(1); // would block: still locked by the target
    expect(fs.readFileSync('/proc/locks', 'utf8')).toMatch(new RegExp(`POSIX\\s+ADVISORY\\s+WRITE\\s+${target.pid}\\s+\\S+ 0 99`));
    const before = Number(/count=(\d+)\n$/.exec(target.output())![1]);
    await target.waitFor(new RegExp(`count=${before + 3}\\n`));
    expect(alive(target.pid)).toBe(true);
    expect(consecutive(target.output())).toBe(true);
  });
});
