// Tasks that unmapped their vDSO block (zdtm vdso02): the dump runs its calls through a `syscall`
// instruction of the task's own text and records no VDSO/VVAR area (as CRIU does); the restore
// works through the stub's vDSO and unmaps it with its last call, so the task ends without one.
// A task that kept only a part of the block is refused at dump.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ROOT, IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive, consecutive, lastCount, readMaps } from './helpers';
import { VMA } from '../../images/flags';

if (!IS_ROOT) console.warn(`SKIPPING vDSO-less task tests: ${SKIP_REASON}`);

const SPECIAL = ['[vdso]', '[vvar]', '[vvar_vclock]'];

/** The "maps" line each of R, C and D prints on SIGUSR1 (sent to the whole group). */
async function reports(t: Target): Promise<string[]> {
  const before = t.output().length;
  process.kill(-t.pid, 'SIGUSR1');
  const out: string[] = [];
  for (const who of ['R', 'C', 'D']) {
    for (let i = 0; ; i++) {
      const m = t.output().slice(before).match(new RegExp(`^maps ${who} .*$`, 'm'));
      if (m) {
        out.push(m[0]);
        break;
      }
      if (i > 500) throw new Error(`no maps line from ${who} (output: ${t.output().slice(-300)})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return out;
}

describe.skipIf(!IS_ROOT)('engine restore: tasks without a vDSO', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let c: number, d: number;
  let before: string[];

  beforeAll(async () => {
    work = tempDir('novdso');
    target = startTarget(compile('novdso', work), [], work);
    [c, d] = (await target.waitFor(/ready C=(\d+) D=(\d+)/)).slice(1, 3).map(Number);
    for (const k of ['r', 'c', 'd']) await target.waitFor(new RegExp(`^${k}=2$`, 'm'));
    before = await reports(target);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, c, d]);
  });

  afterAll(() => cleanUp(target, work));

  it('saw R and D without the block and C with it', () => {
    expect(before[0]).toBe('maps R vdso=0 vvar=0 vclock=0 ehdr=none');
    expect(before[1]).toMatch(/^maps C vdso=1 vvar=1 vclock=[01] ehdr=ok$/);
    expect(before[2]).toBe('maps D vdso=0 vvar=0 vclock=0 ehdr=none');
  });

  it('records no VDSO or VVAR area for R and D, both for C', () => {
    const specials = (pid: number) => (decode(path.join(dir, `mm-${pid}.img`))[0].vmas as { status: number }[])
      .filter((v) => v.status & (VMA.VDSO | VMA.VVAR)).map((v) => v.status & (VMA.VDSO | VMA.VVAR));
    expect(specials(target.pid)).toEqual([]);
    expect(specials(d)).toEqual([]);
    expect(specials(c).sort((a, b) => a - b)).toEqual([VMA.VDSO, VMA.VVAR]);
  });

  it('comes back with no vDSO in R and D, C\'s at its place, and all three running on', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    for (const pid of [target.pid, d]) expect(readMaps(pid).filter((m) => SPECIAL.includes(m.name))).toEqual([]);
    expect(readMaps(c).some((m) => m.name === '[vdso]')).toBe(true);
    expect(await reports(target)).toEqual(before);
    const last = Object.fromEntries(['r', 'c', 'd'].map((k) => [k, lastCount(target.output(), k)]));
    for (const k of ['r', 'c', 'd']) await target.waitFor(new RegExp(`^${k}=${last[k] + 3}$`, 'm'));
    for (const k of ['r', 'c', 'd']) expect(consecutive(target.output(), k)).toBe(true);
    expect(target.output()).not.toMatch(/clock went back/);
    expect([target.pid, c, d].every(alive)).toBe(true);
  });
});

/** `engine restore -d` without address space randomization (the stub's layout is then fixed). */
function restoreNoAslr(dir: string): number {
  const r = spawnSync('setarch', ['-R', process.execPath, '-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))", 'restore', '-D', dir, '-d'], {
    cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ENGINE_RESTORE_STATS: '1' },
  });
  if (r.stderr !== '' || r.status !== 0) throw new Error(`engine restore failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!).pid;
}

// Without randomization a stub's vDSO block sits at the top of the mmap area, where a dynamic
// program has its ld.so: the block must be moved out of the way before the task's areas come.
describe.skipIf(!IS_ROOT)('engine restore: a task without a vDSO where the stub has its own', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let c: number, d: number;
  let before: string[];

  beforeAll(async () => {
    work = tempDir('novdso-noaslr');
    target = startTarget('/usr/bin/setarch', ['-R', compile('novdso', work)], work);
    [c, d] = (await target.waitFor(/ready C=(\d+) D=(\d+)/)).slice(1, 3).map(Number);
    for (const k of ['r', 'c', 'd']) await target.waitFor(new RegExp(`^${k}=2$`, 'm'));
    before = await reports(target);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, c, d]);
  });

  afterAll(() => cleanUp(target, work));

  it('comes back whole although the stub\'s block lay inside its areas', async () => {
    // where a stub's block is without randomization: that of a static program run so
    const probe = spawnSync('setarch', ['-R', compile('vdsoat', work, ['-static'])], { encoding: 'utf8' });
    const [lo, hi] = /^block ([0-9a-f]+) ([0-9a-f]+)$/m.exec(probe.stdout)!.slice(1, 3).map((h) => BigInt(`0x${h}`));
    const vmas = decode(path.join(dir, `mm-${target.pid}.img`))[0].vmas as { start: bigint; end: bigint }[];
    expect(vmas.some((v) => BigInt(v.start) < hi && lo < BigInt(v.end))).toBe(true);
    expect(restoreNoAslr(dir)).toBe(target.pid);
    for (const pid of [target.pid, d]) expect(readMaps(pid).filter((m) => SPECIAL.includes(m.name))).toEqual([]);
    expect(await reports(target)).toEqual(before);
    const last = Object.fromEntries(['r', 'c', 'd'].map((k) => [k, lastCount(target.output(), k)]));
    for (const k of ['r', 'c', 'd']) await target.waitFor(new RegExp(`^${k}=${last[k] + 3}$`, 'm'));
    for (const k of ['r', 'c', 'd']) expect(consecutive(target.output(), k)).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine dump: a task with part of its vDSO block', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('partvdso');
    target = startTarget(compile('novdso', work), ['partial'], work);
    await target.waitFor(/ready C=\d+ D=\d+/);
  });

  afterAll(() => cleanUp(target, work));

  it('refuses it, naming the task, and leaves the tree running', async () => {
    const out = path.join(work, 'refused');
    const r = runEngine(['dump', '-t', String(target.pid), '-D', out]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toBe(`engine: task ${target.pid}: has [vvar] without [vdso]; a partly unmapped vDSO block is not restored\n`);
    expect(fs.existsSync(out)).toBe(false);
    const n = lastCount(target.output(), 'r');
    await target.waitFor(new RegExp(`^r=${n + 2}$`, 'm'));
  });
});
