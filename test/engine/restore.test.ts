// engine restore against real processes: dump, kill, restore, and the program goes on from
// where it was, with the same PIDs/TIDs, memory, fds, timers; three cycles; --pidns.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, readMaps, alive, lastCount, consecutive, sleep, Target, decode, until, gone, killPid, dumpOk, restoreOk, readMem, dumpAndReap, cleanUp } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine restore tests: ${SKIP_REASON}`);
process.env.ENGINE_RESTORE_STATS = '1';

/** engine restore -d; returns the restored root's PID in our namespace. */

function status(pid: number, tid = pid): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').split('\n')) {
    const i = l.indexOf(':');
    if (i > 0) m.set(l.slice(0, i), l.slice(i + 1).trim());
  }
  return m;
}

describe.skipIf(!IS_ROOT)('engine restore: the counter', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let addrs: { data: bigint; heap: bigint; heapLen: number; pipe: number; file: number };
  let mapsBefore: ReturnType<typeof readMaps>;
  let countAtDump: number;

  beforeAll(async () => {
    work = tempDir('restore-counter');
    const exe = compile('counter', work);
    target = startTarget(exe, [path.join(work, 'file.txt'), '20000', String(256 * 1024)], work);
    const m = await target.waitFor(/data=0x([0-9a-f]+) heap=0x([0-9a-f]+) heaplen=(\d+) pipe=(\d+),\d+ file=(\d+)/);
    addrs = { data: BigInt('0x' + m[1]), heap: BigInt('0x' + m[2]), heapLen: Number(m[3]), pipe: Number(m[4]), file: Number(m[5]) };
    await target.waitFor(/count=3\n/);
    mapsBefore = readMaps(target.pid);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir);
    countAtDump = lastCount(target.output());
    await until(() => gone(target.pid), 'the dumped counter to be reaped');
  });

  afterAll(() => cleanUp(target, work));

  it('comes back with its PID and its output continues the sequence', async () => {
    const pid = restoreOk(dir);
    expect(pid).toBe(target.pid);
    await target.waitFor(new RegExp(`count=${countAtDump + 5}\\n`));
    expect(consecutive(target.output())).toBe(true);
    const st = status(pid);
    expect(st.get('TracerPid')).toBe('0');
    expect(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('counter');
    expect(fs.readlinkSync(`/proc/${pid}/exe`)).toBe(path.join(work, 'counter'));
    expect(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')).toMatch(new RegExp(`^${pid} \\(counter\\) [RS] \\d+ ${pid} ${pid} `));
  });

  it('has its memory patterns and address space back', () => {
    const data = readMem(target.pid, addrs.data, 3 * 4096);
    for (let i = 0; i < data.length; i++) if (data[i] !== ((i * 7 + 1) & 0xff)) throw new Error(`data pattern differs at ${i}`);
    const heap = readMem(target.pid, addrs.heap, addrs.heapLen);
    for (let i = 0; i < heap.length; i++) if (heap[i] !== (0xa5 ^ ((i >> 12) & 0xff))) throw new Error(`heap pattern differs at ${i}`);
    const after = readMaps(target.pid);
    // identical layout up to merges of adjacent anonymous areas
    for (const m of mapsBefore.filter((x) => x.name.startsWith('/') || x.name.startsWith('['))) {
      const same = after.find((a) => a.start <= m.start && a.end >= m.end && a.perms === m.perms);
      expect(same, `${m.name} ${m.start.toString(16)}`).toBeDefined();
      if (m.name) expect(same!.name).toBe(m.name);
    }
    expect(fs.readFileSync(`/proc/${target.pid}/cmdline`, 'utf8').split('\0')[0]).toBe(path.join(work, 'counter'));
  });

  it('has its fds: the file at its offset, the pipe with its queued bytes', () => {
    const info = fs.readFileSync(`/proc/${target.pid}/fdinfo/${addrs.file}`, 'utf8');
    expect(info).toMatch(/^pos:\s+3$/m);
    expect(info).toMatch(/^flags:\s+0100002$/m);
    expect(fs.readlinkSync(`/proc/${target.pid}/fd/${addrs.file}`)).toBe(path.join(work, 'file.txt'));
    const rd = fs.openSync(`/proc/${target.pid}/fd/${addrs.pipe}`, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const b = Buffer.alloc(64);
      const n = fs.readSync(rd, b, 0, 64, null);
      expect(b.subarray(0, n).toString()).toBe('hello-pipe');
    } finally {
      fs.closeSync(rd);
    }
    expect(fs.readdirSync(`/proc/${target.pid}/fd`).map(Number).sort((a, b) => a - b))
      .toEqual(decode(path.join(dir, 'fdinfo-2.img')).map((f) => f.fd).sort((a: number, b: number) => a - b));
  });

  it('survives three more dump/restore cycles in a row', async () => {
    for (let cycle = 1; cycle <= 3; cycle++) {
      const d = path.join(work, `images-${cycle}`);
      dumpOk(target.pid, d);
      const at = lastCount(target.output());
      await until(() => gone(target.pid), 'the dumped counter to be reaped');
      expect(restoreOk(d)).toBe(target.pid);
      await target.waitFor(new RegExp(`count=${at + 3}\\n`));
    }
    expect(consecutive(target.output())).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: threads', () => {
  let work: string;
  let target: Target;
  let tids: number[];
  let masks: Map<number, string>;

  beforeAll(async () => {
    work = tempDir('restore-threads');
    target = startTarget(compile('threads', work, ['-pthread']), [], work);
    await target.waitFor(/tick=2\n/);
    tids = fs.readdirSync(`/proc/${target.pid}/task`).map(Number).sort((a, b) => a - b);
    masks = new Map(tids.map((t) => [t, status(target.pid, t).get('SigBlk')!]));
    const dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
    expect(restoreOk(dir)).toBe(target.pid);
  });

  afterAll(() => cleanUp(target, work));

  it('keeps every TID, name and signal mask, and all threads run on', async () => {
    expect(fs.readdirSync(`/proc/${target.pid}/task`).map(Number).sort((a, b) => a - b)).toEqual(tids);
    const names = tids.map((t) => fs.readFileSync(`/proc/${target.pid}/task/${t}/comm`, 'utf8').trim());
    expect(names.sort()).toEqual(['threads', 'worker0', 'worker1', 'worker2', 'worker3']);
    for (const t of tids) expect(status(target.pid, t).get('SigBlk')).toBe(masks.get(t));
    const before = lastCount(target.output(), 'tick');
    // workers keep counting: their CPU time grows
    const cpu = (t: number) => { const f = fs.readFileSync(`/proc/${target.pid}/task/${t}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
    const c0 = tids.map(cpu);
    await target.waitFor(new RegExp(`tick=${before + 5}\\n`));
    await sleep(100);
    const c1 = tids.map(cpu);
    expect(c1.filter((c, i) => c > c0[i]).length).toBeGreaterThanOrEqual(2);
    expect(consecutive(target.output(), 'tick')).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: a tree with a zombie and its own process group', () => {
  let work: string;
  let target: Target;
  let c1: number, c2: number;

  beforeAll(async () => {
    work = tempDir('restore-tree');
    target = startTarget(compile('tree', work), [], work);
    const m = await target.waitFor(/children=(\d+),(\d+)/);
    c1 = Number(m[1]);
    c2 = Number(m[2]);
    await target.waitFor(/child=2\n/);
    const dir = path.join(work, 'images');
    dumpOk(target.pid, dir);
    await until(() => gone(target.pid) && !alive(c1), 'the dumped tree to die');
    expect(restoreOk(dir)).toBe(target.pid);
  });

  afterAll(() => {
    if (target) killPid(target.pid);
    killPid(c1);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('rebuilds parentage, groups, session and the zombie; both processes go on', async () => {
    const stat = (pid: number) => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    const [s1, s2, s0] = [stat(c1), stat(c2), stat(target.pid)];
    expect(s0.slice(2, 4).map(Number)).toEqual([target.pid, target.pid]);
    expect(s1.slice(1, 4).map(Number)).toEqual([target.pid, c1, target.pid]);
    expect(s2[0]).toBe('Z');
    expect(s2.slice(1, 4).map(Number)).toEqual([target.pid, target.pid, target.pid]);
    const p = lastCount(target.output(), 'parent'), c = lastCount(target.output(), 'child');
    await target.waitFor(new RegExp(`parent=${p + 4}\\n`));
    await target.waitFor(new RegExp(`child=${c + 4}\\n`));
    expect(consecutive(target.output(), 'parent')).toBe(true);
    expect(consecutive(target.output(), 'child')).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine restore: timers and event fds', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('restore-timers');
    target = startTarget(compile('timers', work, ['-lrt']), [], work);
    await target.waitFor(/tick=5 /);
    const dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
    expect(restoreOk(dir)).toBe(target.pid);
  });

  afterAll(() => cleanUp(target, work));

  it('keeps POSIX timer ids, and every timer still fires', async () => {
    const m = target.output().match(/timer=(\d+) tfd=(\d+) efd=(\d+) sfd=(\d+) ep=(\d+)/)!;
    const last = () => [...target.output().matchAll(/^tick=(\d+) posix=(\d+) alarm=(\d+)$/gm)].pop()!.slice(1).map(Number);
    const [t0, p0, a0] = last();
    await target.waitFor(new RegExp(`tick=${t0 + 10} `));
    const [, p1, a1] = last();
    expect(p1).toBeGreaterThan(p0 + 3);
    expect(a1).toBeGreaterThan(a0 + 3);
    expect(consecutive(target.output().replace(/^(tick=\d+) .*$/gm, '$1'), 'tick')).toBe(true);
    const timers = fs.readFileSync(`/proc/${target.pid}/timers`, 'utf8');
    expect([...timers.matchAll(/^ID: (\d+)$/gm)].map((x) => Number(x[1])).sort()).toEqual([0, 1]);
    expect(fs.readFileSync(`/proc/${target.pid}/fdinfo/${m[3]}`, 'utf8')).toMatch(/eventfd-count:\s+5$/m);
    expect(fs.readFileSync(`/proc/${target.pid}/fdinfo/${m[4]}`, 'utf8')).toMatch(/sigmask:\s+0000000000000800$/m);
    expect(fs.readFileSync(`/proc/${target.pid}/fdinfo/${m[5]}`, 'utf8')).toMatch(new RegExp(`^tfd:\\s+${m[2]} events:\\s+19 data:\\s+1234 `, 'm'));
  });
});

describe.skipIf(!IS_ROOT)('engine restore --pidns while the original runs', () => {
  let work: string;
  let pid: number;
  let restored = 0;
  let outFile: string;

  beforeAll(async () => {
    work = tempDir('restore-pidns');
    const exe = compile('counter', work);
    outFile = path.join(work, 'out.txt');
    // O_APPEND: both copies write to the end of one file
    const out = fs.openSync(outFile, 'a');
    const child = spawn(exe, [path.join(work, 'file.txt'), '20000'], { detached: true, stdio: ['ignore', out, out], cwd: work });
    fs.closeSync(out);
    pid = child.pid!;
    await until(() => /count=3\n/.test(fs.readFileSync(outFile, 'utf8')), 'the counter to start');
  });

  afterAll(() => {
    killPid(pid);
    if (restored) killPid(restored);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('restores a second copy with the same PID inside a new PID namespace', async () => {
    const dir = path.join(work, 'images');
    dumpOk(pid, dir, ['--leave-running']);
    const at = lastCount(fs.readFileSync(outFile, 'utf8'));
    restored = restoreOk(dir, ['--pidns']);
    expect(restored).not.toBe(pid);
    expect(alive(pid)).toBe(true);
    expect(status(restored).get('NSpid')!.split(/\s+/).map(Number)).toEqual([restored, pid]);
    // both copies count on from the dump: the numbers after it appear twice
    await until(() => {
      const all = [...fs.readFileSync(outFile, 'utf8').matchAll(/^count=(\d+)$/gm)].map((x) => Number(x[1]));
      return all.filter((v) => v === at + 5).length === 2;
    }, 'both copies to print the same count');
  });
});
