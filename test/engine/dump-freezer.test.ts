// Freezing with the cgroup v2 freezer when the tree has a cgroup of its own, ptrace alone
// otherwise: both must give the same images of the same (idle) tree, apart from timing fields.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, ROOT, tempDir, compile, startTarget, decode, sleep, Target, EngineRun, CG2 } from './helpers';

const USABLE = IS_ROOT && CG2 !== undefined && fs.existsSync(path.join(CG2, 'cgroup.procs'));
if (!USABLE) console.warn(`SKIPPING engine freezer tests: ${IS_ROOT ? 'no writable cgroup2 mount' : SKIP_REASON}`);

function engine(args: string[], env: Record<string, string> = {}): EngineRun {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))", ...args], {
    cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env },
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

/**
 * The pages file of a process with the rseq fields of its threads that the kernel rewrites each
 * time a thread returns to user space (cpu_id_start, cpu_id, node_id, mm_cid) zeroed: they say
 * on which CPU the thread last ran, a scheduling accident like the timing fields.
 */
function pagesWithoutRseqCpu(dir: string, pid: number, threads: number[]): Buffer {
  const pm = decode(path.join(dir, `pagemap-${pid}.img`));
  const pages = Buffer.from(fs.readFileSync(path.join(dir, `pages-${pm[0].pages_id}.img`)));
  for (const tid of threads) {
    const rseq = decode(path.join(dir, `core-${tid}.img`))[0].thread_core.rseq_entry;
    if (!rseq || BigInt(rseq.rseq_abi_pointer) === 0n) continue;
    for (const field of [0, 4, 20, 24]) {
      const addr = BigInt(rseq.rseq_abi_pointer) + BigInt(field);
      let off = 0;
      for (const e of pm.slice(1)) {
        const bytes = Number(e.nr_pages) * 4096;
        const at = addr - BigInt(e.vaddr);
        if (at >= 0n && at + 4n <= BigInt(bytes)) pages.writeUInt32LE(0, off + Number(at));
        off += bytes;
      }
    }
  }
  return pages;
}

/** Images of two dumps, compared file by file; timing, run-id and rseq CPU fields excluded. */
function expectSameImages(a: string, b: string): void {
  const names = fs.readdirSync(a).sort();
  expect(fs.readdirSync(b).sort()).toEqual(names);
  const pages = new Map<string, number>();
  const tree = decode(path.join(a, 'pstree.img'));
  for (const p of tree) pages.set(`pages-${decode(path.join(a, `pagemap-${p.pid}.img`))[0].pages_id}.img`, p.pid);
  for (const n of names) {
    if (n === 'stats-dump' || n === 'timens-0.img') continue; // times of the dump itself
    if (n === 'inventory.img') {
      const strip = (d: string) => ({ ...decode(path.join(d, n))[0], dump_criu_run_id: undefined });
      expect(strip(b), n).toEqual(strip(a));
      continue;
    }
    const pid = pages.get(n);
    if (pid !== undefined) {
      const threads = tree.find((p) => p.pid === pid).threads;
      expect(pagesWithoutRseqCpu(b, pid, threads).equals(pagesWithoutRseqCpu(a, pid, threads)), `${n} differs`).toBe(true);
      continue;
    }
    expect(fs.readFileSync(path.join(b, n)).equals(fs.readFileSync(path.join(a, n))), `${n} differs`).toBe(true);
  }
}

describe.skipIf(!USABLE)('engine dump: cgroup v2 freezer', () => {
  let work: string;
  let exe: string;
  const targets: Target[] = [];
  const cgroups: string[] = [];

  beforeAll(() => {
    work = tempDir('freezer');
    exe = compile('idle', work, ['-pthread']);
  });

  afterAll(async () => {
    for (const t of targets) t.kill();
    for (const cg of cgroups) {
      for (let i = 0; i < 200 && fs.existsSync(cg); i++) {
        try {
          fs.rmdirSync(cg);
        } catch {
          await sleep(10); // killed members not gone yet
        }
      }
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** idle, started inside a new cgroup of its own; `extra` more commands join the same cgroup. */
  async function startInCgroup(name: string, extra = 0): Promise<{ t: Target; cg: string; others: Target[] }> {
    const cg = path.join(CG2!, `engine-test-${process.pid}-${name}`);
    fs.mkdirSync(cg);
    cgroups.push(cg);
    const t = startTarget('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec ${exe}`], work);
    targets.push(t);
    await t.waitFor(/ready child=\d+/);
    const others: Target[] = [];
    for (let i = 0; i < extra; i++) {
      const o = startTarget('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec sleep 1000`], work);
      targets.push(o);
      others.push(o);
    }
    for (let i = 0; i < 200 && fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').trim().split('\n').length < 2 + extra; i++) await sleep(10);
    return { t, cg, others };
  }

  it('freezes a tree that owns its cgroup with the freezer, and gives the images of the ptrace loop', async () => {
    const { t, cg } = await startInCgroup('own');
    const viaCg = path.join(work, 'via-cgroup');
    const viaPt = path.join(work, 'via-ptrace');
    const r1 = engine(['dump', '-t', String(t.pid), '-D', viaCg, '--leave-running', '-v']);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stderr).toContain(`(cgroup ${cg})`);
    expect(fs.readFileSync(path.join(cg, 'cgroup.freeze'), 'utf8').trim()).toBe('0');
    expect(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8')).toMatch(/^frozen 0$/m);
    const r2 = engine(['dump', '-t', String(t.pid), '-D', viaPt, '--leave-running', '-v'], { ENGINE_FREEZE: 'ptrace' });
    expect(r2.status, r2.stderr).toBe(0);
    expect(r2.stderr).toContain('(ptrace)');
    // 2 processes, 3 threads, all in both sets
    const ps = decode(path.join(viaCg, 'pstree.img'));
    expect(ps).toHaveLength(2);
    expect(ps[0].threads).toHaveLength(2);
    expectSameImages(viaCg, viaPt);
    for (const p of ps) expect(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
  });

  it('falls back to ptrace when the cgroup holds a task outside the tree; ENGINE_FREEZE=cgroup then refuses', async () => {
    const { t, cg, others } = await startInCgroup('shared', 1);
    const r1 = engine(['dump', '-t', String(t.pid), '-D', path.join(work, 'shared-1'), '--leave-running', '-v']);
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stderr).toContain(`cgroup freezer not used: ${cg} also holds task ${others[0].pid}`);
    expect(r1.stderr).toContain('(ptrace)');
    const dir2 = path.join(work, 'shared-2');
    const r2 = engine(['dump', '-t', String(t.pid), '-D', dir2, '--leave-running'], { ENGINE_FREEZE: 'cgroup' });
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toBe(`engine: cannot use the cgroup freezer: ${cg} also holds task ${others[0].pid}, which is not in the tree\n`);
    expect(fs.existsSync(dir2)).toBe(false);
    expect(fs.readFileSync(`/proc/${others[0].pid}/status`, 'utf8')).toMatch(/State:\s+S/);
  });
});
