// engine dump and restore of task states that a restore could get silently wrong (zdtm maps02,
// maps11, memfd04/05, stopped03, sigtrap01, sigtrap, ptrace_sig): memory advice and droppable
// mappings, executable and exec-sealed memfds, a task stopped by SIGTSTP, a SIGTRAP handler. Each
// program checks its own state after restore and prints PASS or FAIL; what cannot be restored
// exactly (a pending or ignored SIGTRAP, a traced task) is refused at dump naming the task, and
// the same states in an image set are refused at restore naming image and field.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { loadMessages, writeImage } from '../../images/files';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, Target, decode, until, gone, killPid, dumpOk, restoreOk, dumpAndReap, cleanUp } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine task-state tests: ${SKIP_REASON}`);
process.env.ENGINE_RESTORE_STATS = '1';

const MAP_PRIVATE = 0x2, MAP_DROPPABLE = 0x08, MAP_NORESERVE = 0x4000;
const MADV_WIPEONFORK = 18n, MADV_DONTDUMP = 16n;

/** Sends SIGUSR1 and waits for the program's verdict line. */
async function verdict(t: Target, pid = t.pid): Promise<string> {
  process.kill(pid, 'SIGUSR1');
  const m = await t.waitFor(/^(PASS|FAIL.*)$/m, 8000);
  return m[1];
}

function expectRefused(args: string[], re: RegExp): void {
  const r = runEngine(args);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toMatch(re);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

/** A copy of a set with one image changed. */
function edited(dir: string, name: string, image: string, magic: string, fn: (m: any[]) => void): string {
  const d = path.join(path.dirname(dir), name);
  fs.cpSync(dir, d, { recursive: true });
  const m = loadMessages(path.join(d, image));
  fn(m);
  writeImage(path.join(d, image), magic, m.map((msg) => ({ msg })));
  return d;
}

function stateOf(pid: number): string {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return st.slice(st.lastIndexOf(')') + 2).split(' ')[0];
}

describe.skipIf(!IS_ROOT)('engine: memory advice and MAP_DROPPABLE (zdtm maps02, maps11)', () => {
  let work: string, target: Target, dir: string, child = 0, droppable = 0n, wipe = 0n;

  beforeAll(async () => {
    work = tempDir('tasks-madvise');
    target = startTarget(compile('madvise', work), [], work);
    const m = await target.waitFor(/ready child=(\d+) droppable=0x([0-9a-f]+) wipeonfork=0x([0-9a-f]+)/);
    [child, droppable, wipe] = [Number(m[1]), BigInt('0x' + m[2]), BigInt('0x' + m[3])];
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, child]);
  });

  afterAll(() => cleanUp(target, work, child));

  it('records the droppable area as MAP_DROPPABLE without its pages, and the advice of each area', () => {
    for (const pid of [target.pid, child]) {
      const vmas = decode(path.join(dir, `mm-${pid}.img`))[0].vmas as any[];
      const d = vmas.find((v) => BigInt(v.start) === droppable);
      expect(d.flags & (MAP_DROPPABLE | MAP_PRIVATE | MAP_NORESERVE)).toBe(MAP_DROPPABLE | MAP_NORESERVE);
      expect(BigInt(d.madv)).toBe((1n << MADV_WIPEONFORK) | (1n << MADV_DONTDUMP));
      expect(BigInt(vmas.find((v) => BigInt(v.start) === wipe).madv)).toBe(1n << MADV_WIPEONFORK);
      const pm = decode(path.join(dir, `pagemap-${pid}.img`)).slice(1);
      expect(pm.some((e) => BigInt(e.vaddr) >= droppable && BigInt(e.vaddr) < droppable + 4n * 4096n)).toBe(false);
    }
  });

  it('comes back with the same flags and advice; the wipe-on-fork areas keep each task\'s own contents and act on a new fork', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    expect(await verdict(target)).toBe('PASS');
  });

  it('refuses advice it does not give back, naming image and field', () => {
    const d = edited(dir, 'bad-madv', `mm-${target.pid}.img`, 'MM', (m) => {
      m[0].vmas.find((v: any) => BigInt(v.start) === wipe).madv = 1n << 40n;
    });
    expectRefused(['restore', '-D', d, '-d'], new RegExp(`^engine: mm-${target.pid}\\.img: vmas\\[\\d+\\]\\.madv: advice 0x10000000000 at 0x${wipe.toString(16)} is not restored\\n$`));
  });
});

describe.skipIf(!IS_ROOT)('engine: executable memfds (zdtm memfd04, memfd05)', () => {
  let work: string, target: Target, dir: string;

  beforeAll(async () => {
    work = tempDir('tasks-memfd');
    target = startTarget(compile('memfdexec', work), [], work);
    await target.waitFor(/ready\n[^]*count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('records mode and seals of each memfd', () => {
    const byName = new Map(decode(path.join(dir, 'memfd.img')).map((e) => [e.name, e]));
    expect(byName.get('script')!.mode & 0o777).toBe(0o777);
    expect(byName.get('noexec')!.mode & 0o777).toBe(0o666);
    expect(byName.get('noexec')!.seals & 0x20).toBe(0x20);
    expect(byName.get('sealed')!.mode & 0o777).toBe(0o750);
  });

  it('comes back with execveat(memfd) working, the same modes, seals and fd flags', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    expect(await verdict(target)).toBe('PASS');
  });
});

describe.skipIf(!IS_ROOT)('engine: a task stopped by SIGTSTP (zdtm stopped03)', () => {
  let work: string, target: Target, dir: string, worker = 0, sleeper = 0;

  beforeAll(async () => {
    work = tempDir('tasks-stopped');
    target = startTarget(compile('stoppedsig', work), [], work);
    const m = await target.waitFor(/ready worker=(\d+) sleeper=(\d+)/);
    [worker, sleeper] = [Number(m[1]), Number(m[2])];
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, worker, sleeper]);
  });

  afterAll(() => cleanUp(target, work, worker, sleeper));

  it('records the stop signal (task_core.stop_signo)', () => {
    const tc = decode(path.join(dir, `core-${sleeper}.img`))[0].tc;
    expect(tc.task_state).toBe(3);
    expect(tc.stop_signo).toBe(20);
    expect(decode(path.join(dir, `core-${worker}.img`))[0].tc.task_state).toBe(1);
  });

  it('refuses a stop that the signal would not make again, before any task runs', async () => {
    const handled = edited(dir, 'handled', `core-${sleeper}.img`, 'CORE', (m) => {
      m[0].tc.sigactions[17].sigaction = 0x401000n;
    });
    expectRefused(['restore', '-D', handled, '-d'], new RegExp(`^engine: core-${sleeper}\\.img: tc\\.sigactions\\[17\\]: stopped by SIGTSTP, which has a handler or SIG_IGN`));
    const bogus = edited(dir, 'bogus', `core-${sleeper}.img`, 'CORE', (m) => {
      m[0].tc.stop_signo = 9;
    });
    expectRefused(['restore', '-D', bogus, '-d'], new RegExp(`^engine: core-${sleeper}\\.img: tc\\.stop_signo: 9 is not a stop signal\\n$`));
    // worker and sleeper in main's group: orphaned (main's parent is outside the session)
    const orphaned = edited(dir, 'orphaned', 'pstree.img', 'PSTREE', (m) => {
      for (const e of m) e.pgid = target.pid;
    });
    expectRefused(['restore', '-D', orphaned, '-d'], new RegExp(`^engine: task ${sleeper}: stopped by SIGTSTP, but its process group ${target.pid} is orphaned here`));
    await until(() => [target.pid, worker, sleeper].every(gone), 'the refused restore\'s tasks to be reaped');
  });

  it('comes back stopped by SIGTSTP: the parent sees it in waitid and waitpid, and SIGCONT wakes it', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    await until(() => stateOf(sleeper) === 'T', 'the sleeper to stop');
    expect(stateOf(worker)).not.toBe('T');
    expect(await verdict(target)).toBe('PASS');
  });
});

describe.skipIf(!IS_ROOT)('engine: SIGTRAP (zdtm sigtrap01, sigtrap)', () => {
  let work: string, exe: string;
  const started: Target[] = [];
  const start = async (mode: string) => {
    const t = startTarget(exe, [mode], work);
    started.push(t);
    await t.waitFor(/count=2\n/);
    return t;
  };

  beforeAll(() => {
    work = tempDir('tasks-sigtrap');
    exe = compile('sigtrap', work);
  });

  afterAll(() => {
    for (const t of started) t.kill();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('dumps with --leave-running without touching the handler of the running task', async () => {
    const t = await start('handler');
    dumpOk(t.pid, path.join(work, 'running'), '--leave-running');
    expect(await verdict(t)).toBe('PASS');
  });

  it('restores a SIGTRAP handler (with its flags and mask), which then runs', async () => {
    const t = await start('handler');
    const dir = path.join(work, 'handler');
    await dumpAndReap(t.pid, dir);
    const act = decode(path.join(dir, `core-${t.pid}.img`))[0].tc.sigactions[4];
    expect(BigInt(act.sigaction)).not.toBe(0n);
    const ign = edited(dir, 'ignored-image', `core-${t.pid}.img`, 'CORE', (m) => {
      m[0].tc.sigactions[4].sigaction = 1n;
    });
    expectRefused(['restore', '-D', ign, '-d'], new RegExp(`^engine: core-${t.pid}\\.img: tc\\.sigactions\\[4\\]\\.sigaction: an ignored SIGTRAP is not restored`));
    const pending = edited(dir, 'pending-image', `core-${t.pid}.img`, 'CORE', (m) => {
      const si = new Uint8Array(128);
      si[0] = 5;
      m[0].tc.signals_s = { signals: [{ siginfo: si }] };
    });
    expectRefused(['restore', '-D', pending, '-d'], new RegExp(`^engine: core-${t.pid}\\.img: tc\\.signals_s: a pending SIGTRAP is not restored`));
    expect(restoreOk(dir)).toBe(t.pid);
    expect(await verdict(t)).toBe('PASS');
  });

  it('refuses a pending SIGTRAP at dump, naming the task, and leaves it pending with its siginfo', async () => {
    const t = await start('pending');
    expectRefused(['dump', '-t', String(t.pid), '-D', path.join(work, 'pending')], new RegExp(`^engine: task ${t.pid}: a SIGTRAP is pending; it cannot be dumped`));
    expect(fs.existsSync(path.join(work, 'pending'))).toBe(false);
    expect(await verdict(t)).toBe('PASS');
  });

  it('refuses an ignored SIGTRAP at dump, naming the task, and leaves it ignored', async () => {
    const t = await start('ignored');
    expectRefused(['dump', '-t', String(t.pid), '-D', path.join(work, 'ignored')], new RegExp(`^engine: task ${t.pid}: SIGTRAP is ignored \\(SIG_IGN\\)`));
    expect(await verdict(t)).toBe('PASS');
  });
});

describe.skipIf(!IS_ROOT)('engine: a task traced by another (zdtm ptrace_sig)', () => {
  let work: string, target: Target, child = 0;

  beforeAll(async () => {
    work = tempDir('tasks-traced');
    target = startTarget(compile('traced', work), [], work);
    child = Number((await target.waitFor(/ready child=(\d+)/))[1]);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => cleanUp(target, work, child));

  it('refuses the dump naming the traced task and its tracer, and leaves both as they were', async () => {
    expectRefused(['dump', '-t', String(target.pid), '-D', path.join(work, 'images')], new RegExp(`^engine: task ${child}: traced by process ${target.pid} \\(TracerPid\\); traced tasks cannot be dumped\\n$`));
    expect(await verdict(target)).toBe('PASS');
    await until(() => gone(child) || stateOf(child) === 'Z', 'the child to exit');
    killPid(child);
  });
});
