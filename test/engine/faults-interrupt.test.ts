// Faults in the middle of a dump, made exact by the engine's ENGINE_TEST_HOLD point (the dump
// waits, tree frozen, until the test removes a marker file): the engine itself is interrupted
// (SIGINT, SIGTERM), a task of the tree dies, a task receives a signal. Every failure must end
// with one line on stderr, no image directory, and the rest of the tree running as before.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, ROOT, tempDir, compile, startTarget, alive, lastCount, consecutive, decode, sleep, Target, EngineRun, until } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine interrupt tests: ${SKIP_REASON}`);

interface HeldEngine {
  /** resolves with the engine's pid once the dump reached the hold point */
  held: Promise<number>;
  release(): void;
  done: Promise<EngineRun>;
}

const engines: number[] = [];

/** Starts `engine dump` asynchronously, to hold at `stage`. */
function dumpHeldAt(stage: string, args: string[], marker: string): HeldEngine {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))", 'dump', ...args], {
    cwd: ROOT,
    env: { ...process.env, ENGINE_TEST_HOLD: `${stage}:${marker}` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  engines.push(child.pid!);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<EngineRun>((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr, ms: Date.now() - t0 })));
  let finished = false;
  void done.then(() => {
    finished = true;
    engines.splice(engines.indexOf(child.pid!), 1);
  });
  const held = (async () => {
    const until = Date.now() + 30_000;
    while (!fs.existsSync(marker)) {
      if (finished) throw new Error(`engine finished before reaching ${stage}: ${stderr}`);
      if (Date.now() > until) throw new Error(`engine did not reach ${stage}`);
      await sleep(5);
    }
    return Number(fs.readFileSync(marker, 'utf8').trim()) || child.pid!;
  })();
  return { held, release: () => fs.rmSync(marker, { force: true }), done };
}

function tracerOf(pid: number): number {
  return Number(/TracerPid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** The process whose (tracer) thread traces pid. */
function tracerProcessOf(pid: number): number {
  const tid = tracerOf(pid);
  return tid ? Number(/Tgid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${tid}/status`, 'utf8'))![1]) : 0;
}

describe.skipIf(!IS_ROOT)('engine dump: interrupted or disturbed in the middle', () => {
  let work: string;
  let exe: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('interrupt');
    exe = compile('sigtree', work);
  });

  afterAll(() => {
    // an engine still held after a failed assertion
    for (const pid of engines) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const t of targets) t.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function start(): Promise<{ t: Target; parent: number; child: number }> {
    const t = startTarget(exe, [], work);
    targets.push(t);
    const child = Number((await t.waitFor(/child pid=(\d+)/))[1]);
    await t.waitFor(/parent=2\n/);
    await t.waitFor(/child=2\n/);
    return { t, parent: t.pid, child };
  }

  /** pid keeps counting under `key` without a gap, untraced, with the same mappings as before. */
  async function expectResumed(t: Target, pid: number, key: string, mapsBefore: string): Promise<void> {
    expect(alive(pid)).toBe(true);
    expect(tracerOf(pid)).toBe(0);
    const before = lastCount(t.output(), key);
    await t.waitFor(new RegExp(`^${key}=${before + 3}$`, 'm'));
    expect(consecutive(t.output(), key)).toBe(true);
    expect(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')).toBe(mapsBefore);
  }

  function expectNothingLeft(dir: string): void {
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readdirSync(path.dirname(dir)).filter((n) => n.includes('.tmp'))).toEqual([]);
  }

  for (const [signal, stage] of [['SIGINT', 'collected'], ['SIGTERM', 'frozen'], ['SIGHUP', 'written']] as const) {
    it(`${signal} to the engine at "${stage}" resumes the tree and removes the partial output`, async () => {
      const { t, parent, child } = await start();
      const maps = [fs.readFileSync(`/proc/${parent}/maps`, 'utf8'), fs.readFileSync(`/proc/${child}/maps`, 'utf8')];
      const dir = path.join(work, `img-${signal}`);
      const e = dumpHeldAt(stage, ['-t', String(parent), '-D', dir], path.join(work, `hold-${signal}`));
      const enginePid = await e.held;
      expect(tracerProcessOf(parent)).toBe(enginePid);
      expect(tracerProcessOf(child)).toBe(enginePid);
      process.kill(enginePid, signal);
      const r = await e.done;
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`^engine: interrupted by ${signal}: the tree was resumed`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expectNothingLeft(dir);
      await expectResumed(t, parent, 'parent', maps[0]);
      await expectResumed(t, child, 'child', maps[1]);
      t.kill();
    });
  }

  it('a task of the tree exiting mid-dump fails the dump cleanly and resumes the others', async () => {
    const { t, parent, child } = await start();
    const maps = fs.readFileSync(`/proc/${parent}/maps`, 'utf8');
    const dir = path.join(work, 'img-exit');
    const e = dumpHeldAt('collected', ['-t', String(parent), '-D', dir], path.join(work, 'hold-exit'));
    await e.held;
    process.kill(child, 'SIGKILL'); // dies although ptrace-stopped; its pages are not copied yet
    await until(() => !alive(child), 'the child to die'); // the kill is asynchronous
    e.release();
    const r = await e.done;
    expect(r.status).not.toBe(0);
    expect(r.stderr).toBe(`engine: task ${child} exited during the dump; the rest of the tree was resumed and no images were written\n`);
    expectNothingLeft(dir);
    expect(alive(child)).toBe(false);
    await expectResumed(t, parent, 'parent', maps);
    t.kill();
  });

  it('the root exiting mid-dump leaves its child running', async () => {
    const { t, parent, child } = await start();
    const maps = fs.readFileSync(`/proc/${child}/maps`, 'utf8');
    const dir = path.join(work, 'img-root-exit');
    const e = dumpHeldAt('frozen', ['-t', String(parent), '-D', dir], path.join(work, 'hold-root-exit'));
    await e.held;
    process.kill(parent, 'SIGKILL');
    e.release();
    const r = await e.done;
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${parent} exited during the dump`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expectNothingLeft(dir);
    await expectResumed(t, child, 'child', maps);
    t.kill();
  });

  it('a signal sent to a frozen task stays pending: recorded in the images, handled once after resume', async () => {
    const { t, parent, child } = await start();
    const dir = path.join(work, 'img-signal');
    const e = dumpHeldAt('frozen', ['-t', String(parent), '-D', dir, '--leave-running'], path.join(work, 'hold-signal'));
    await e.held;
    process.kill(child, 'SIGUSR1');
    await sleep(50);
    expect(t.output()).not.toMatch(/usr1 child/); // not delivered while frozen
    e.release();
    const r = await e.done;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const core = decode(path.join(dir, `core-${child}.img`))[0];
    const pending = [...(core.tc.signals_s?.signals ?? []), ...(core.thread_core.signals_p?.signals ?? [])];
    expect(pending.map((s: { siginfo: Uint8Array }) => Buffer.from(s.siginfo).readInt32LE(0))).toEqual([10]);
    expect(decode(path.join(dir, `core-${parent}.img`))[0].tc.signals_s?.signals ?? []).toEqual([]);
    await t.waitFor(/^usr1 child 1$/m);
    const before = lastCount(t.output(), 'child');
    await t.waitFor(new RegExp(`^child=${before + 3}$`, 'm'));
    expect(t.output().match(/^usr1 /gm)).toHaveLength(1);
    expect(consecutive(t.output(), 'child')).toBe(true);
    expect(consecutive(t.output(), 'parent')).toBe(true);
    expect(tracerOf(parent)).toBe(0);
    expect(tracerOf(child)).toBe(0);
    t.kill();
  });
});
