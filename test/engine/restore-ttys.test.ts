// Terminals beyond a plain pty pair: bytes queued both ways (canonical lines with their VEOF and
// escaped line ends, the unfinished line, raw bytes holding flow-control characters under IXON
// with the master in packet mode), /dev/tty, a slave hung up by its master's close, and the
// console and a virtual terminal as controlling terminal. The process checks all of it itself,
// after a dump that left it running (the queues were taken and put back) and after a restore.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, dumpOk, restoreOk, runEngine, alive } from './helpers';
import { fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING terminal restore tests: ${SKIP_REASON}`);

const READY = /ready mA=(\d+) sA=(\d+) tty=(\d+) mB=(\d+) sB=(\d+) c1=(\d+) c2=(\d+)\n/;

function ptsIndex(pid: number, fd: number): number {
  return Number(/^\/dev\/pts\/(\d+)/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))![1]);
}

describe.skipIf(!IS_ROOT)('terminals: queued bytes, /dev/tty, a hung-up slave', () => {
  let work: string;
  let exe: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('ttyq');
    exe = compile('ttyqueues', work);
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  it('records the queues as input that makes them again, /dev/tty as CRIU\'s CTTY and the hung slave without settings', async () => {
    const t = startTarget(exe, [], work);
    targets.push(t);
    const m = await t.waitFor(READY);
    const [a, b, c] = [Number(m[2]), Number(m[5]), Number(m[6])].map((fd) => ptsIndex(t.pid, fd));
    const dir = path.join(work, 'running');
    dumpOk(t.pid, dir, '--leave-running');
    const data = new Map(decode(path.join(dir, 'tty-data.img')).map((e) => [e.tty_id, Buffer.from(e.data).toString('latin1')]));
    expect(data).toEqual(new Map([
      [a * 2 + 1, 'to-master\r\n'],
      [a * 2, 'one\ntwo\x04\x04a\x16\x04b\npar'],
      [b * 2, 'x\x13y\x11z\0'],
      [b * 2 + 1, 'out'],
    ]));
    const infos = decode(path.join(dir, 'tty-info.img'));
    expect(infos.find((e) => e.id === 2012)).toMatchObject({ type: 4, sid: t.pid, pgrp: t.pid, rdev: fs.statSync('/dev/tty').rdev });
    const hung = infos.find((e) => e.id === c * 2);
    expect(hung).toMatchObject({ type: 1, pty: { index: c }, sid: 0 });
    expect(hung.termios).toBeUndefined();
    const files = decode(path.join(dir, 'files.img'));
    const [, f] = fdTable(dir, decode(path.join(dir, `ids-${t.pid}.img`))[0].files_id).get(Number(m[6]))!;
    expect(files.find((e) => e.id === f.tty.regf_id).reg.name).toBe(`/dev/pts/${c}`);
    // taken and put back: the process finds everything as it was
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^ttyq (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ttyq ok$/m);
  });

  it('restores them: the process reads the same lines, bytes and terminals', async () => {
    const t = startTarget(exe, [], work);
    targets.push(t);
    await t.waitFor(READY);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    expect(restoreOk(dir)).toBe(t.pid);
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^ttyq (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ttyq ok$/m);
  });
});

describe.skipIf(!IS_ROOT)('terminals it refuses', () => {
  let work: string;
  let exe: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('ttyqr');
    exe = compile('ttyqueues', work);
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  const refused = async (mode: string, ready: RegExp, why: (t: Target, m: RegExpMatchArray) => RegExp) => {
    const t = startTarget(exe, [mode], work);
    targets.push(t);
    const m = await t.waitFor(ready);
    const dir = path.join(work, mode);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', dir]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(why(t, m));
    expect(fs.existsSync(dir)).toBe(false);
    expect(alive(t.pid)).toBe(true);
    return t;
  };

  it('refuses /dev/tty when it no longer names its holder\'s controlling terminal', async () => {
    await refused('notctty', /ready tty=(\d+)/, (t, m) => new RegExp(`^engine: task ${t.pid} fd ${m[1]}: /dev/tty refers to /dev/pts/\\d+, which is not the controlling terminal of task ${t.pid} \\(none\\) any more \\(not supported\\)\\n$`));
  });

  it('refuses queued bytes whose holder is set for SIGIO (putting them back would signal again)', async () => {
    await refused('async', /ready slave=(\d+)/, (t, m) => new RegExp(`^engine: task ${t.pid} fd ${m[1]}: pty \\d+ has bytes queued for its slave, whose holder is set for SIGIO \\(O_ASYNC\\).*\\(not supported\\)\\n$`));
  });

  it('refuses a queue near the 4 KiB buffer, after putting back what it read: the process finds it whole', async () => {
    const t = await refused('long', /ready slave=(\d+)/, (t, m) => new RegExp(`^engine: task ${t.pid} fd ${m[1]}: pty \\d+ has 3972 bytes queued for its slave, so many that more may be held back behind them \\(not supported\\)\\n$`));
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^ttyq (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ttyq ok$/m);
  });
});

/** A device to open, or why not (the test then skips, saying so). */
function usable(file: string): string | undefined {
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOCTTY));
    return undefined;
  } catch (e) {
    return `${file}: ${(e as NodeJS.ErrnoException).code}`;
  }
}

const VT = '/dev/tty9';
const noDevices = IS_ROOT ? usable(VT) : SKIP_REASON;
const noConsole = IS_ROOT ? usable('/dev/console') : SKIP_REASON;
if (noDevices) console.warn(`SKIPPING the virtual terminal test: no usable ${VT} (${noDevices})`);
if (!noDevices && noConsole) console.warn(`the virtual terminal test runs WITHOUT the console: ${noConsole}`);

describe.skipIf(!!noDevices)('terminals: the console, and a virtual terminal as controlling terminal', () => {
  let work: string;
  let t: Target;
  let dir: string;
  let m: RegExpMatchArray;

  beforeAll(async () => {
    work = tempDir('ttydev');
    t = startTarget(compile('ttyqueues', work), ['dev', noConsole ? '-' : '/dev/console', VT], work);
    m = await t.waitFor(/ready dev console=(-?\d+) vt=(\d+)/);
    dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
  });

  afterAll(() => cleanUp(t, work));

  it('records them as CRIU does: CONSOLE 2004, VT 2008 with the session', () => {
    const infos = decode(path.join(dir, 'tty-info.img'));
    expect(infos.find((e) => e.id === 2008)).toMatchObject({ type: 3, sid: t.pid, pgrp: t.pid, rdev: fs.statSync(VT).rdev });
    if (!noConsole) expect(infos.find((e) => e.id === 2004)).toMatchObject({ type: 2, sid: 0, rdev: fs.statSync('/dev/console').rdev });
    expect(infos.every((e) => e.pty === undefined)).toBe(true);
  });

  it('restores them: same devices, settings, and the virtual terminal is the controlling terminal again', async () => {
    expect(restoreOk(dir)).toBe(t.pid);
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor(/^ttyq (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ttyq ok$/m);
  });

  const refusedHolding = async (files: string[], why: (pid: number, fd: string) => RegExp) => {
    const h = startTarget(path.join(work, 'ttyqueues'), ['hold', ...files], work);
    try {
      const fd = (await h.waitFor(/ready fd=(\d+)/))[1];
      const r = runEngine(['dump', '-t', String(h.pid), '-D', path.join(work, 'refused')]);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(why(h.pid, fd));
      expect(alive(h.pid)).toBe(true);
    } finally {
      h.kill();
    }
  };

  it.skipIf(!!usable('/dev/tty0'))('refuses /dev/tty0 (it names whichever virtual terminal is in front)', async () => {
    await refusedHolding(['/dev/tty0'], (pid, fd) => new RegExp(`^engine: task ${pid} fd ${fd}: terminal /dev/tty0 \\(device 4:0\\) is not supported`));
  });

  it.skipIf(!!usable('/dev/tty8'))('refuses a second virtual terminal: CRIU keeps one tty_info for them all', async () => {
    await refusedHolding([VT, '/dev/tty8'], (pid, fd) => new RegExp(`^engine: task ${pid} fd ${fd}: a second virtual terminal \\(8, after 9\\).*\\(not supported\\)\\n$`));
  });
});
