// Restore benchmark of the engine: wall time of `engine restore -d` (process start included, as
// CRIU's wall time is) and time-to-running (inside the engine, from its start to the moment the
// last thread runs) for the C counter and a 256 MiB process, beside CRIU 4.2's restore wall times
// on this kind of machine. Needs root; prints why when it cannot run. BENCH_RUNS sets the runs.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

function findRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json')) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

const ROOT = findRoot();
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS || '5'));

/** CRIU 4.2 restore wall times, median (../shared/spec/engine.md, last table) */
const CRIU = { counter: 49, bigmem: 269 };

function engineCmd(): string[] {
  const built = path.join(ROOT, 'dist', 'engine', 'cli.js');
  // from dist when the bench itself runs from dist (npm run bench builds first)
  if (!__filename.endsWith('.ts') && fs.existsSync(built)) return [process.execPath, path.join(ROOT, 'bin', 'engine.js')];
  return [process.execPath, '-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))"];
}

function engine(args: string[], env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string; ms: number } {
  const [cmd, ...pre] = engineCmd();
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, [...pre, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function waitFor(what: string, cond: () => boolean, ms = 20_000): void {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleepMs(10);
  }
}

const gone = (pid: number) => !fs.existsSync(`/proc/${pid}`);

interface Sample {
  wallMs: number;
  runningMs: number;
  calls: number;
  phases: string;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Dumps the program once, then restores the same images RUNS times (each restored copy is killed). */
function benchOne(work: string, exe: string, args: string[], ready: RegExp): Sample[] {
  const out = path.join(work, `${path.basename(exe)}.out`);
  // started through a shell that exits at once (this synchronous process could never reap it);
  // appending output, whose file size is then not part of the image (restored again and again)
  const pid = Number(execFileSync('/bin/sh', ['-c', 'setsid "$@" >> "$OUT" 2>&1 < /dev/null & echo $!', 'sh', exe, ...args],
    { cwd: work, env: { ...process.env, OUT: out }, encoding: 'utf8' }).trim());
  const samples: Sample[] = [];
  try {
    waitFor(`${exe} to start`, () => ready.test(fs.readFileSync(out, 'utf8')));
    const dir = path.join(work, `${path.basename(exe)}-images`);
    const d = engine(['dump', '-t', String(pid), '-D', dir]);
    if (d.status !== 0) throw new Error(`dump failed: ${d.stderr.trim()}`);
    // a warm-up restore (page cache, first touch of guest memory), then the measured ones
    for (let i = 0; i <= RUNS; i++) {
      waitFor(`PID ${pid} to be free`, () => gone(pid));
      const r = engine(['restore', '-D', dir, '-d', '-v'], { ENGINE_RESTORE_STATS: '1' });
      if (r.status !== 0) throw new Error(`restore failed: ${r.stderr.trim().split('\n').pop()}`);
      const stats = JSON.parse(r.stdout.trim().split('\n').pop()!);
      const phases = r.stderr.split('\n').filter((l) => / at [\d.]+ ms$/.test(l) && !/task \d+: memory/.test(l))
        .map((l) => l.replace(/^engine: /, '').replace(/ at ([\d.]+) ms$/, ' $1')).join(', ');
      if (i > 0) samples.push({ wallMs: r.ms, runningMs: stats.toRunningMs, calls: stats.injectedCalls, phases });
      // it runs: the output goes on
      const before = fs.statSync(out).size;
      waitFor('the restored process to print', () => fs.statSync(out).size > before);
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  } finally {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  return samples;
}

function report(label: string, criuMs: number, s: Sample[]): void {
  const wall = median(s.map((x) => x.wallMs)), run = median(s.map((x) => x.runningMs));
  const best = Math.min(...s.map((x) => x.wallMs));
  console.log(`${label.padEnd(18)} restore wall ${wall.toFixed(0)} ms (best ${best.toFixed(0)}), time-to-running ${run.toFixed(1)} ms, ${s[0].calls} injected calls | CRIU 4.2 wall ${criuMs} ms | wall ${(wall / criuMs).toFixed(2)}x, in-engine ${(run / criuMs).toFixed(2)}x`);
  console.log(`${''.padEnd(18)} phases (ms since start, one run): ${s[Math.floor(s.length / 2)].phases}`);
}

export function runEngineBench(): void {
  console.log(`\nengine restore bench: median of ${RUNS} restores after a warm-up (wall includes node start-up, like CRIU's)`);
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    console.log('  skipped: needs root (ptrace, clone3 with set_tid)');
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'engine-bench-'));
  try {
    const build = (name: string) => {
      const exe = path.join(work, name);
      execFileSync('gcc', ['-O1', '-o', exe, path.join(ROOT, 'fixtures', 'engine', `${name}.c`)]);
      return exe;
    };
    const nodeStart = (() => {
      const t0 = process.hrtime.bigint();
      spawnSync(process.execPath, ['-e', '0']);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    })();
    console.log(`  (a bare \`node -e 0\` takes ${nodeStart.toFixed(0)} ms here)`);
    report('counter', CRIU.counter, benchOne(work, build('counter'), [path.join(work, 'counter.txt'), '20000'], /count=2\n/));
    report('256 MiB (bigmem)', CRIU.bigmem, benchOne(work, build('bigmem'), ['256'], /count=1 /));
  } catch (e) {
    console.log(`  failed: ${(e as Error).message}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) runEngineBench();
