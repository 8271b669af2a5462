// Dump benchmark of the engine: `engine dump --leave-running` of the C counter and of a 256 MiB
// process: wall time (process start included, as CRIU's is), frozen time and memdump MB/s from
// the stats-dump it writes, beside the process_vm_readv rate measured on the same process in the
// same run, and CRIU 4.2's numbers on this kind of machine. Needs root; says why when it cannot.
import { execFileSync, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadMessages } from '../images/files';
import { native } from '../native';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS || '5'));
/** CRIU 4.2 dump wall and frozen times in ms (../shared/spec/engine.md, last table) */
const CRIU = { counter: { wall: 71, frozen: 7 }, bigmem: { wall: 287, frozen: 229 } };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** process_vm_readv throughput over the largest writable anonymous mapping of pid, in MB/s. */
function vmReadvRate(pid: number): number {
  const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  let best: [bigint, bigint] | undefined;
  for (const l of maps) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p 00000000 00:00 0\s*$/.exec(l);
    if (!m) continue;
    const a = BigInt('0x' + m[1]), b = BigInt('0x' + m[2]);
    if (!best || b - a > best[1] - best[0]) best = [a, b];
  }
  if (!best) return 0;
  const len = Number(best[1] - best[0]);
  const buf = Buffer.allocUnsafe(Math.min(len, 64 << 20));
  const n = native();
  let total = 0;
  const t0 = process.hrtime.bigint();
  for (let off = 0; off < len; off += buf.length) total += n.readMemory(pid, best[0] + BigInt(off), buf, 0, Math.min(buf.length, len - off));
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return total / 1e6 / s;
}

/** The frozen times of the last benchOne, for comparisons between programs. */
let lastFrozenMs = 0;

function benchOne(work: string, label: string, exe: string, args: string[], ready: RegExp, criu?: { wall: number; frozen: number }, dumpArgs: string[] = []): void {
  const out = path.join(work, `${label}.out`);
  const fd = fs.openSync(out, 'w');
  const child = spawn(exe, args, { detached: true, stdio: ['ignore', fd, fd], cwd: work });
  fs.closeSync(fd);
  try {
    const until = Date.now() + 20_000;
    while (!ready.test(fs.readFileSync(out, 'utf8'))) {
      if (Date.now() > until) throw new Error(`${label} did not start`);
      sleepMs(10);
    }
    const big = /MiB/.test(label);
    const rate = big ? vmReadvRate(child.pid!) : 0;
    const walls: number[] = [], frozen: number[] = [], mbs: number[] = [];
    let pages = 0;
    for (let i = 0; i < RUNS + 1; i++) {
      const dir = path.join(work, `img-${label}-${i}`);
      const t0 = process.hrtime.bigint();
      // options only criu's command line has go through it (the same engine)
      const cli = dumpArgs.length ? [path.join(ROOT, 'bin', 'criu.js'), 'dump', '-t', String(child.pid), '-D', dir, '--leave-running', ...dumpArgs]
        : [path.join(ROOT, 'bin', 'engine.js'), 'dump', '-t', String(child.pid), '-D', dir, '--leave-running'];
      if (dumpArgs.length) fs.mkdirSync(dir, { recursive: true });
      const r = spawnSync(process.execPath, cli, { encoding: 'utf8', timeout: 120_000 });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`engine dump failed: ${r.stderr.trim()}`);
      const st = loadMessages(path.join(dir, 'stats-dump'))[0].dump;
      fs.rmSync(dir, { recursive: true, force: true });
      if (i === 0) continue; // warm-up
      walls.push(ms);
      frozen.push(Number(st.frozen_time) / 1000);
      pages = Number(st.pages_written);
      // memwrite is where pages are copied out of the process (process_vm_readv into the pages file)
      mbs.push((pages * 4096) / 1e6 / (Number(st.memwrite_time) / 1e6));
    }
    const w = median(walls), f = median(frozen), m = median(mbs);
    lastFrozenMs = f;
    console.log(`${label.padEnd(18)} dump wall ${w.toFixed(0)} ms, frozen ${f.toFixed(1)} ms, ${pages} pages, copied at ${m.toFixed(0)} MB/s${big ? ` (process_vm_readv alone here: ${rate.toFixed(0)} MB/s, so ${((m / rate) * 100).toFixed(0)}%)` : ''}${criu ? ` | CRIU 4.2 wall ${criu.wall} ms, frozen ${criu.frozen} ms` : ''}`);
  } finally {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
  }
}

export function runDumpBench(): void {
  console.log(`\nengine dump bench: median of ${RUNS} dumps (--leave-running) after a warm-up; wall includes node start-up, like CRIU's`);
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    console.log('  skipped: needs root (ptrace)');
    return;
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'engine-dump-bench-'));
  try {
    const build = (name: string) => {
      const exe = path.join(work, name);
      execFileSync('gcc', ['-O1', '-o', exe, path.join(ROOT, 'fixtures', 'engine', `${name}.c`)]);
      return exe;
    };
    benchOne(work, 'counter', build('counter'), [path.join(work, 'counter.txt'), '20000'], /count=2\n/, CRIU.counter);
    benchOne(work, '256 MiB (bigmem)', build('bigmem'), ['256'], /count=1 /, CRIU.bigmem);
    // what TCP repair adds: the same program with none and with 1,000 connections (500 pairs)
    if (spawnSync('nft', ['--version']).status === 0) {
      const many = build('tcpmany');
      benchOne(work, '0 TCP connections', many, ['0'], /ready/, undefined, ['--tcp-established']);
      const none = lastFrozenMs;
      benchOne(work, '1,000 TCP conns', many, ['500'], /ready/, undefined, ['--tcp-established']);
      console.log(`${''.padEnd(18)} TCP repair of 1,000 established connections adds ${(lastFrozenMs - none).toFixed(0)} ms of frozen time`);
    } else console.log('  TCP connections: skipped (no nft, which locks them)');
  } catch (e) {
    console.log(`  failed: ${(e as Error).message}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) runDumpBench();
