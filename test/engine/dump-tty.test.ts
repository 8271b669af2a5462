// engine dump of terminals: a pty pair inside the tree (corpus pty/), a slave whose master is
// outside (the shell-job case: refused without --shell-job, dumped with it), and /dev/null.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../native';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, sleep, Target, dumpOk, cleanUp } from './helpers';
import { CORPUS, imageKinds, checkAllImagesDecode, fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine tty tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine dump: a pty pair inside the tree', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let child: number;
  let master: number;
  let slave: string;

  beforeAll(async () => {
    work = tempDir('pty');
    const exe = compile('pty', work);
    target = startTarget(exe, [], work);
    const m = await target.waitFor(/master=(\d+) slave=(\S+) child=(\d+)/);
    master = +m[1];
    slave = m[2];
    child = +m[3];
    await target.waitFor(/child=2\n/);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
  });

  afterAll(() => cleanUp(target, work, child));

  it('writes the image kinds of the corpus pty/ set, all decodable', () => {
    checkAllImagesDecode(dir);
    const corpus = path.join(CORPUS, 'pty');
    if (fs.existsSync(corpus)) expect(imageKinds(dir)).toEqual(imageKinds(corpus));
  });

  it('records both ends: TTY entries pointing at REG path entries and tty_info per end', () => {
    const index = Number(slave.split('/').pop());
    const infos = decode(path.join(dir, 'tty-info.img'));
    const mi = infos.find((e) => e.id === index * 2 + 1);
    const si = infos.find((e) => e.id === index * 2);
    const slaveSt = fs.statSync(slave);
    expect(mi).toMatchObject({ type: 1, pty: { index }, rdev: fs.statSync('/dev/ptmx').rdev, locked: false, packet_mode: false });
    expect(si).toMatchObject({ type: 1, pty: { index }, rdev: slaveSt.rdev, dev: slaveSt.dev, sid: child, pgrp: child });
    expect(mi.winsize).toMatchObject({ ws_row: 33, ws_col: 101 });
    expect(si.termios.c_cc).toHaveLength(19);
    expect(si.termios.c_cc[0] & 0xff).toBe(3); // VINTR = ^C, bytes packed as CRIU does
    const files = decode(path.join(dir, 'files.img'));
    const pt = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
    const [mInfo, mFile] = pt.get(master)!;
    expect(mInfo.type).toBe(11);
    expect(mFile.tty.tty_info_id).toBe(mi.id);
    expect(files.find((e) => e.id === mFile.tty.regf_id).reg.name).toBe('/dev/ptmx');
    const ct = fdTable(dir, decode(path.join(dir, `ids-${child}.img`))[0].files_id);
    const [sInfo, sFile] = ct.get(0)!;
    expect(sInfo.type).toBe(11);
    expect(sFile.tty.tty_info_id).toBe(si.id);
    const reg = files.find((e) => e.id === sFile.tty.regf_id).reg;
    expect(reg).toMatchObject({ name: slave, mode: slaveSt.mode });
    // CRIU writes the path entry before the TTY entry that refers to it
    expect(files.findIndex((e) => e.id === sFile.tty.regf_id)).toBeLessThan(files.findIndex((e) => e.id === sFile.id));
  });

  it('keeps /dev/null a REG entry, as CRIU does', () => {
    const [, f] = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id).get(0)!;
    expect(f.reg).toMatchObject({ name: '/dev/null', mode: fs.statSync('/dev/null').mode });
    expect(f.reg.size).toBeUndefined();
  });

  it('leaves both tasks running', async () => {
    const c = lastCount(target.output(), 'child');
    await target.waitFor(new RegExp(`child=${c + 3}\\n`));
    expect(consecutive(target.output(), 'child')).toBe(true);
    expect(alive(target.pid)).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine dump: a terminal from outside the tree (--shell-job)', () => {
  let work: string;
  let ptm: number, pts: number, index: number;
  let pid: number;
  let out: string;

  beforeAll(async () => {
    work = tempDir('shelljob');
    const n = native();
    ptm = fs.openSync('/dev/ptmx', fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    n.ioctl(ptm, 0x40045431, Buffer.alloc(4)); // TIOCSPTLCK 0: unlock
    const b = Buffer.alloc(4);
    n.ioctl(ptm, 0x80045430, b); // TIOCGPTN
    index = b.readInt32LE(0);
    pts = fs.openSync(`/dev/pts/${index}`, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
    const exe = compile('counter', work);
    out = path.join(work, 'out');
    const o = fs.openSync(out, 'w');
    const c = spawn(exe, [path.join(work, 'f.txt'), '20000', '4096'], { detached: true, stdio: [pts, o, o] });
    fs.closeSync(o);
    pid = c.pid!;
    for (let i = 0; i < 300 && !/count=2\n/.test(fs.readFileSync(out, 'utf8')); i++) await sleep(10);
  });

  afterAll(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    fs.closeSync(pts);
    fs.closeSync(ptm);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('refuses without --shell-job, naming the fd, and leaves the task as it was', async () => {
    const dir = path.join(work, 'no');
    const r = runEngine(['dump', '-t', String(pid), '-D', dir]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toBe(`engine: task ${pid} fd 0: /dev/pts/${index} belongs to a terminal outside the dumped tree (use --shell-job)\n`);
    expect(fs.existsSync(dir)).toBe(false);
    const before = lastCount(fs.readFileSync(out, 'utf8'));
    for (let i = 0; i < 300 && lastCount(fs.readFileSync(out, 'utf8')) < before + 3; i++) await sleep(10);
    expect(consecutive(fs.readFileSync(out, 'utf8'))).toBe(true);
    expect(fs.readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
  });

  it('dumps the slave end with --shell-job', () => {
    const dir = path.join(work, 'yes');
    const r = runEngine(['dump', '-t', String(pid), '-D', dir, '--shell-job', '--leave-running']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    checkAllImagesDecode(dir);
    const infos = decode(path.join(dir, 'tty-info.img'));
    expect(infos.map((e) => e.id)).toEqual([index * 2]);
    const [info, f] = fdTable(dir, decode(path.join(dir, `ids-${pid}.img`))[0].files_id).get(0)!;
    expect(info.type).toBe(11);
    expect(f.tty.tty_info_id).toBe(index * 2);
    expect(alive(pid)).toBe(true);
  });
});
