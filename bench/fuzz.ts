// npm run fuzz -- --iterations N [--seed S] [--out DIR] [--workers W] [--time SECONDS]
//                 [--only I] [--no-corpus] [--weights D,E,S] [--json]
// Mutates the fixture and corpus images and runs them through decode (plain and --pretty),
// encode (every clean encode decoded back and re-encoded), and check / x / xray / diff on
// damaged sets. Workers run the iterations; this process watches them, so an input that hangs
// or crashes a worker is recorded (and regenerated from seed and index) instead of stopping
// the run. One reproducer per distinct failure goes to DIR. Exit 1 when anything failed.
import * as fs from 'fs';
import * as path from 'path';
import { fork, spawnSync, ChildProcess } from 'child_process';
import { loadPool, Fuzzer, scratchDir, writeReproducers, regenerate, Counts, Failure, newCounts } from './fuzz/core';

interface Args {
  iterations: number;
  seed: number;
  out: string;
  workers: number;
  time?: number;
  only?: number;
  corpus: boolean;
  weights: [number, number, number];
  json: boolean;
  worker?: { start: number; step: number; end: number; status: string; deadline?: number };
}

function parse(argv: string[]): Args {
  const a: Args = { iterations: 1000, seed: 1, out: 'fuzz-out', workers: 1, corpus: true, weights: [76, 20, 4], json: false };
  const num = (v: string | undefined, what: string) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n)) throw new Error(`${what}: expected a number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--iterations' || k === '-n') a.iterations = num(v(), k);
    else if (k === '--seed') a.seed = num(v(), k);
    else if (k === '--out') a.out = v();
    else if (k === '--workers') a.workers = Math.max(1, num(v(), k));
    else if (k === '--time') a.time = num(v(), k);
    else if (k === '--only') a.only = num(v(), k);
    else if (k === '--no-corpus') a.corpus = false;
    else if (k === '--json') a.json = true;
    else if (k === '--weights') a.weights = v().split(',').map(Number) as [number, number, number];
    else if (k === '--worker') {
      const [start, step, end, status, deadline] = v().split(':');
      a.worker = { start: Number(start), step: Number(step), end: Number(end), status, deadline: deadline ? Number(deadline) : undefined };
    } else throw new Error(`unknown option ${k}`);
  }
  return a;
}

// ---- worker ---------------------------------------------------------------------------------

function runWorker(a: Args): void {
  const w = a.worker!;
  const scratch = scratchDir('w');
  const pool = loadPool(scratch, { corpus: a.corpus });
  const fz = new Fuzzer(pool, scratch, a.seed, a.weights);
  const status = fs.openSync(w.status, 'w');
  const mark = Buffer.alloc(16);
  let i = w.start;
  let sent = 0;
  const send = (type: string) => {
    const fresh = fz.failures.slice(sent).map((f) => ({ ...f, input: f.input && { name: f.input.name, data: f.input.data.toString('base64') } }));
    sent = fz.failures.length;
    process.send!({ type, counts: fz.counts, failures: fresh, next: i, rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed });
  };
  const finish = (type: string) => {
    send(type);
    fz.close();
    fs.rmSync(scratch, { recursive: true, force: true });
    process.disconnect();
  };
  const chunk = () => {
    const t = Date.now();
    while (i < w.end) {
      if (w.deadline && Date.now() > w.deadline) return finish('done');
      mark.fill(32);
      mark.write(String(i));
      fs.writeSync(status, mark, 0, 16, 0);
      fz.iteration(i);
      i += w.step;
      // a worker that has grown large is replaced (the supervisor restarts it at `next`)
      const rss = process.memoryUsage().rss;
      if (rss > 1536 << 20) {
        if (process.env.FUZZ_DEBUG) process.stderr.write(`fuzz: worker recycles after iteration ${i - w.step}: rss ${rss >> 20} MB, peak ${process.resourceUsage().maxRSS >> 10} MB\n`);
        return finish('recycle');
      }
      if (Date.now() - t > 250) {
        send('progress');
        setImmediate(chunk);
        return;
      }
    }
    finish('done');
  };
  send('progress');
  setImmediate(chunk);
}

// ---- supervisor -----------------------------------------------------------------------------

const KILL_MS = 20_000;

async function supervise(a: Args): Promise<number> {
  const out = path.resolve(a.out);
  fs.mkdirSync(out, { recursive: true });
  const seen = new Set<string>();
  const stalls: number[] = [];
  const all: Failure[] = [];
  const total = newCounts();
  const add = (c: Counts, k: 1 | -1) => { for (const key of Object.keys(total) as (keyof Counts)[]) total[key] += k * c[key]; };
  const t0 = Date.now();
  const deadline = a.time ? t0 + a.time * 1000 : undefined;
  let regenFuzzer: Fuzzer | undefined;
  const regen = (i: number) => {
    if (!regenFuzzer) {
      const s = scratchDir('regen');
      regenFuzzer = new Fuzzer(loadPool(s, { corpus: a.corpus }), s, a.seed, a.weights);
    }
    return regenerate(regenFuzzer, i);
  };
  const record = (fs_: Failure[]) => {
    all.push(...fs_);
    total.failures += 0;
    for (const f of writeReproducers(out, fs_, seen, a.seed)) process.stderr.write(`fuzz: new failure ${f}\n`);
  };
  const runOne = (w: number, start: number) =>
    new Promise<void>((resolve) => {
      const status = path.join(out, `.status-${w}`);
      const child: ChildProcess = fork(__filename, ['--worker', `${start}:${a.workers}:${a.iterations}:${status}${deadline ? ':' + deadline : ''}`, '--seed', String(a.seed), ...(a.corpus ? [] : ['--no-corpus']), '--weights', a.weights.join(',')], {
        execArgv: ['--max-old-space-size=2048'],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      let last = Date.now();
      let counts = newCounts();
      let next = start;
      let finished = false;
      let lastLog = 0;
      child.on('message', (m: any) => {
        last = Date.now();
        if (process.env.FUZZ_DEBUG && last - lastLog > 5000) {
          lastLog = last;
          process.stderr.write(`fuzz: worker ${w} at ${m.next}: rss ${m.rss >> 20} MB heap ${m.heap >> 20} MB\n`);
        }
        add(counts, -1);
        counts = m.counts;
        add(counts, 1);
        next = m.next;
        record(m.failures.map((f: any) => ({ ...f, input: f.input && { name: f.input.name, data: Buffer.from(f.input.data, 'base64') } })));
        if (m.type === 'done' || m.type === 'recycle') finished = m.type === 'done';
      });
      const watch = setInterval(() => {
        if (Date.now() - last > KILL_MS) child.kill('SIGKILL');
      }, 1000);
      child.on('exit', (code, signal) => {
        clearInterval(watch);
        if (process.env.FUZZ_DEBUG) process.stderr.write(`fuzz: worker ${w} (from ${start}) exited code ${code} signal ${signal} finished ${finished} next ${next} counts ${counts.iterations}\n`);
        if (finished) return resolve();
        if (deadline && Date.now() > deadline) return resolve();
        // killed (hang), crashed, or recycled: which iteration was it in?
        let inFlight = next;
        try {
          inFlight = Number(fs.readFileSync(status, 'utf8').trim());
        } catch { /* no status yet */ }
        const recycled = code === 0 && signal === null;
        if (!recycled) {
          // a stall can be the machine (other work on it): replay the input alone to tell
          const replay = spawnSync(process.execPath, [__filename, '--only', String(inFlight), '--seed', String(a.seed), '--weights', a.weights.join(','), ...(a.corpus ? [] : ['--no-corpus']), '--out', path.join(out, '.replay')], { timeout: KILL_MS, stdio: 'ignore' });
          const again = replay.error || replay.signal ? 'again in a replay' : `not in a replay (exit ${replay.status})`;
          const kind = signal === 'SIGKILL' ? 'hang' : 'crash';
          if (replay.error || replay.signal || kind === 'crash') {
            const f: Failure = { signature: '', kind, op: 'worker', iteration: inFlight, message: `${kind === 'hang' ? `no progress for ${KILL_MS / 1000} s` : `worker exited (code ${code}, signal ${signal})`}, ${again}`, input: regen(inFlight) };
            f.signature = `${kind}-${a.seed}-${inFlight} ${kind}|iteration ${inFlight}`;
            total.failures++;
            record([f]);
          } else {
            stalls.push(inFlight);
            process.stderr.write(`fuzz: worker ${w} stalled at iteration ${inFlight}, which replays in time alone (a busy machine): not a failure\n`);
          }
          inFlight += a.workers;
        } else inFlight = next;
        total.iterations += 0;
        if (inFlight >= a.iterations) return resolve();
        runOne(w, inFlight).then(resolve);
      });
    });
  const progress = setInterval(() => {
    const s = (Date.now() - t0) / 1000;
    process.stderr.write(`fuzz: ${s.toFixed(0)} s: ${total.iterations} iterations (${total.decodeInputs} decode inputs, ${total.encodeInputs} encode inputs, ${total.setOps} set ops), ${total.failures} failures, ${seen.size} distinct\n`);
  }, 30_000);
  await Promise.all(Array.from({ length: a.workers }, (_, w) => runOne(w, w)));
  clearInterval(progress);
  regenFuzzer?.close();
  for (let w = 0; w < a.workers; w++) fs.rmSync(path.join(out, `.status-${w}`), { force: true });
  const secs = (Date.now() - t0) / 1000;
  fs.rmSync(path.join(out, '.replay'), { recursive: true, force: true });
  const summary = { seed: a.seed, seconds: Math.round(secs), ...total, distinct: seen.size, signatures: [...seen], stalls, out };
  if (a.json) process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  else {
    process.stdout.write(`fuzz: seed ${a.seed}, ${total.iterations} iterations in ${secs.toFixed(1)} s: ${total.decodeInputs} decode inputs (${total.decodeRuns} decode runs), ${total.encodeInputs} encode inputs (${total.encodeRuns} encode runs), ${total.setOps} set operations\n`);
    process.stdout.write(`fuzz: ${total.decodedOk} mutated images decoded, ${total.encodedOk} mutated documents encoded\n`);
    process.stdout.write(`fuzz: ${total.clean} without failure (${total.errors} clean errors), ${total.failures} failures, ${seen.size} distinct${seen.size ? ` (reproducers in ${out})` : ''}\n`);
    for (const s of seen) process.stdout.write(`  ${s}\n`);
    if (stalls.length) process.stdout.write(`fuzz: ${stalls.length} stalls that replayed in time (iterations ${stalls.join(', ')})\n`);
  }
  return total.failures ? 1 : 0;
}

function only(a: Args): number {
  const scratch = scratchDir('only');
  const fz = new Fuzzer(loadPool(scratch, { corpus: a.corpus }), scratch, a.seed, a.weights);
  fz.iteration(a.only!);
  const input = regenerate(fz, a.only!);
  if (input) {
    fs.mkdirSync(a.out, { recursive: true });
    fs.writeFileSync(path.join(a.out, `only-${a.only}-${input.name}`), input.data);
  }
  process.stdout.write(JSON.stringify({ iteration: a.only, counts: fz.counts, failures: fz.failures.map((f) => ({ ...f, input: f.input?.name })), input: input && path.join(a.out, `only-${a.only}-${input.name}`) }, null, 2) + '\n');
  fz.close();
  fs.rmSync(scratch, { recursive: true, force: true });
  return fz.failures.length ? 1 : 0;
}

if (require.main === module) {
  const a = parse(process.argv.slice(2));
  if (a.worker) runWorker(a);
  else if (a.only !== undefined) process.exitCode = only(a);
  else supervise(a).then((code) => { process.exitCode = code; });
}
