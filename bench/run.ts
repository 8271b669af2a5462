// npm run bench: decode (raw and pretty) and encode throughput and peak memory of our crit on
// large generated images, side by side with Python CRIT when it is installed, with ratios.
// BENCH_SCALE=0.1 shrinks the images for a quick look; then the engine's dump and restore benches
// (bench/dump.ts, bench/engine.ts) run against CRIU 4.2's numbers on this kind of machine.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { writeImage } from '../images/files';
import type { Msg } from '../images/codec';

const ROOT = path.resolve(__dirname, '..', '..');
const CRIT = path.join(ROOT, 'bin', 'crit.js');
const PY_CRIT = process.env.PY_CRIT || '/usr/bin/crit';
const SCALE = Number(process.env.BENCH_SCALE || '1');
const haveCrit = fs.existsSync(PY_CRIT);

interface Run { seconds: number; peakKiB: number; ok: boolean }

/** Wall time and peak RSS of one command, output to a file (GNU time measures the child). */
function measure(cmd: string[], outFile: string, stdin?: string): Run {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', ...cmd], {
    stdio: [stdin ? fs.openSync(stdin, 'r') : 'ignore', fs.openSync(outFile, 'w'), 'pipe'],
  });
  const last = r.stderr.toString().trim().split('\n').pop() || '';
  const [secs, kib] = last.split(' ').map(Number);
  return { seconds: secs, peakKiB: kib, ok: r.status === 0 };
}

function best(n: number, f: () => Run): Run {
  let b: Run | undefined;
  for (let i = 0; i < n; i++) {
    const r = f();
    if (!b || r.seconds < b.seconds) b = r;
  }
  return b!;
}

function vma(i: number): Msg {
  const start = 0x7f0000000000 + i * 0x3000;
  return { start, end: start + 0x2000, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 };
}

function genMm(file: string, n: number): void {
  const vmas: Msg[] = [];
  for (let i = 0; i < n; i++) vmas.push(vma(i));
  const mm = {
    mm_start_code: 0x400000, mm_end_code: 0x401000, mm_start_data: 0x402000, mm_end_data: 0x403000,
    mm_start_stack: 0x7ffffffde000, mm_start_brk: 0x404000, mm_brk: 0x425000, mm_arg_start: 0x7fffffffe000,
    mm_arg_end: 0x7fffffffe100, mm_env_start: 0x7fffffffe100, mm_env_end: 0x7fffffffef00, exe_file_id: 1, vmas,
    mm_saved_auxv: Array.from({ length: 64 }, (_, i) => (i * 7919) % 4096),
  };
  writeImage(file, 'MM', [{ msg: mm }]);
}

function genPagemap(file: string, n: number): void {
  function* entries() {
    yield { msg: { pages_id: 1 } };
    for (let i = 0; i < n; i++) yield { msg: { vaddr: 0x7f0000000000 + i * 0x2000, compat_nr_pages: 0, flags: i % 3 === 0 ? 6 : 4, nr_pages: 1 } };
  }
  writeImage(file, 'PAGEMAP', entries());
}

function ratio(ours: Run, theirs: Run | undefined): string {
  if (!theirs || !theirs.ok) return 'n/a';
  return `${(theirs.seconds / Math.max(ours.seconds, 0.001)).toFixed(1)}x faster`;
}

function row(label: string, bytes: number, ours: Run, theirs?: Run): void {
  const mbs = (r: Run) => `${(bytes / 1e6 / Math.max(r.seconds, 0.001)).toFixed(1)} MB/s`;
  const t = theirs ? `${theirs.ok ? `${theirs.seconds.toFixed(2)} s, ${mbs(theirs)}, ${(theirs.peakKiB / 1024).toFixed(0)} MiB` : 'failed'}` : 'not installed';
  console.log(`${label.padEnd(26)} ours ${ours.seconds.toFixed(2)} s, ${mbs(ours)}, ${(ours.peakKiB / 1024).toFixed(0)} MiB | CRIT ${t} | ${ratio(ours, theirs)}`);
}

function main(): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-bench-'));
  const node = process.execPath;
  try {
    const images: [string, string][] = [];
    const mm = path.join(dir, 'mm-1.img');
    const nVma = Math.round(500000 * SCALE);
    genMm(mm, nVma);
    images.push([`mm (${nVma} VMAs)`, mm]);
    const pm = path.join(dir, 'pagemap-1.img');
    const nPm = Math.round(1000000 * SCALE);
    genPagemap(pm, nPm);
    images.push([`pagemap (${nPm} entries)`, pm]);
    console.log(`crit bench: node ${process.version}, Python CRIT ${haveCrit ? PY_CRIT : 'not installed'}, scale ${SCALE}\n`);
    const out = path.join(dir, 'out');
    for (const [label, file] of images) {
      const size = fs.statSync(file).size;
      console.log(`${label}: ${(size / 1e6).toFixed(1)} MB`);
      const json = path.join(dir, 'plain.json');
      const ours = measure([node, CRIT, 'decode', '-i', file], json);
      const theirs = haveCrit ? measure([PY_CRIT, 'decode', '-i', file], out) : undefined;
      row('  decode', size, ours, theirs);
      const oursP = measure([node, CRIT, 'decode', '--pretty', '-i', file], out);
      const theirsP = haveCrit ? measure([PY_CRIT, 'decode', '--pretty', '-i', file], out) : undefined;
      row('  decode --pretty', size, oursP, theirsP);
      const oursE = measure([node, CRIT, 'encode', '-i', json], out);
      if (Buffer.compare(fs.readFileSync(out), fs.readFileSync(file)) !== 0) console.log('  !! our encode output differs from the original');
      const theirsE = haveCrit ? measure([PY_CRIT, 'encode', '-i', json], out) : undefined;
      row('  encode', size, oursE, theirsE);
    }
    // A small real image end to end, process start included.
    const core = findSmallCore();
    if (core) {
      const size = fs.statSync(core).size;
      console.log(`\nsmall image end to end (${path.basename(core)}, ${size} bytes, best of 5, process start included):`);
      const ours = best(5, () => measure([node, CRIT, 'decode', '-i', core], out));
      const theirs = haveCrit ? best(5, () => measure([PY_CRIT, 'decode', '-i', core], out)) : undefined;
      row('  decode', size, ours, theirs);
    }
    memoryBench(dir);
    require('./lz4').runLz4Bench(SCALE);
    explorerBench();
    require('./dump').runDumpBench();
    require('./engine').runEngineBench();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A synthetic image set: one task, one anonymous VMA of `bytes`, all of it in pages-1.img. */
function genMemorySet(dir: string, bytes: number, entryPages: number, fill: (buf: Buffer, off: number) => void): number {
  fs.mkdirSync(dir, { recursive: true });
  const pid = 4242;
  const start = 0x7f0000000000;
  writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid, ppid: 0, pgid: pid, sid: pid, threads: [pid] } }]);
  const mm = { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas: [{ start, end: start + bytes, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 }] };
  writeImage(path.join(dir, `mm-${pid}.img`), 'MM', [{ msg: mm }]);
  const pages = bytes / 4096;
  function* entries() {
    yield { msg: { pages_id: 1 } };
    for (let p = 0; p < pages; p += entryPages) yield { msg: { vaddr: start + p * 4096, compat_nr_pages: 0, flags: 4, nr_pages: Math.min(entryPages, pages - p) } };
  }
  writeImage(path.join(dir, `pagemap-${pid}.img`), 'PAGEMAP', entries());
  const fd = fs.openSync(path.join(dir, 'pages-1.img'), 'w');
  const block = Buffer.alloc(16 << 20);
  for (let off = 0; off < bytes; off += block.length) {
    fill(block, off);
    fs.writeSync(fd, block, 0, Math.min(block.length, bytes - off));
  }
  fs.closeSync(fd);
  return pid;
}

function memoryBench(dir: string): void {
  const { ImageSet } = require('../images/imageset');
  const { searchMemory } = require('../images/query/search');
  // 1) lookups on a pagemap of 1,000,000 one-page entries (a 3.8 GiB address range, 4 GiB pages file made sparse)
  const nEntries = Math.round(1000000 * SCALE);
  const lookDir = path.join(dir, 'lookup');
  fs.mkdirSync(lookDir);
  const pid = 4243;
  const start = 0x7f0000000000;
  writeImage(path.join(lookDir, 'pstree.img'), 'PSTREE', [{ msg: { pid, ppid: 0, pgid: pid, sid: pid, threads: [pid] } }]);
  writeImage(path.join(lookDir, `mm-${pid}.img`), 'MM', [{ msg: { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas: [{ start, end: start + nEntries * 8192, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 }] } }]);
  function* pm() {
    yield { msg: { pages_id: 1 } };
    for (let i = 0; i < nEntries; i++) yield { msg: { vaddr: start + i * 8192, compat_nr_pages: 0, flags: 4, nr_pages: 1 } };
  }
  writeImage(path.join(lookDir, `pagemap-${pid}.img`), 'PAGEMAP', pm());
  const pfd = fs.openSync(path.join(lookDir, 'pages-1.img'), 'w');
  fs.ftruncateSync(pfd, nEntries * 4096); // sparse: the lookups read single bytes
  fs.closeSync(pfd);
  let t0 = process.hrtime.bigint();
  const set = new ImageSet(lookDir);
  const mem = set.memory(pid);
  mem.read(BigInt(start), 1);
  const openMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const n = 100000;
  let x = 12345;
  t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const page = x % nEntries;
    mem.read(BigInt(start + page * 8192 + (x & 4095)), 8);
  }
  const perUs = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  console.log(`\nmemory reader: pagemap of ${nEntries} entries indexed in ${openMs.toFixed(0)} ms; random 8-byte reads ${perUs.toFixed(1)} µs each`);
  set.close();
  // 2) search throughput over a 1 GiB pages file
  const gib = Math.round((1 << 30) * SCALE / (1 << 20)) * (1 << 20);
  const sdir = path.join(dir, 'search');
  const spid = genMemorySet(sdir, gib, 256, (b, off) => {
    for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(((off + i) * 2654435761) >>> 0, i);
    if (off + b.length >= gib) b.write('NEEDLE-AT-THE-END', b.length - 4096 - 5);
  });
  const sset = new ImageSet(sdir);
  const smem = sset.memory(spid);
  t0 = process.hrtime.bigint();
  const hits = [...searchMemory(smem, { kind: 'bytes', bytes: Buffer.from('NEEDLE-AT-THE-END') })];
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`search: ${(gib / 2 ** 30).toFixed(2)} GiB pages file in ${secs.toFixed(2)} s = ${(gib / 1e9 / secs).toFixed(2)} GB/s (target >= 1 GB/s), ${hits.length} hit(s)`);
  sset.close();
  fs.rmSync(sdir, { recursive: true, force: true });
}

function explorerBench(): void {
  const mv = path.resolve(ROOT, '..', 'shared', 'corpus', 'criu-4.2-22-g2cf8f13ca', 'manyvmas');
  if (!fs.existsSync(mv)) return;
  console.log(`\nexplorers on the manyvmas corpus set (30,021 VMAs), best of 3:`);
  const out = path.join(os.tmpdir(), `crit-bench-x-${process.pid}`);
  for (const what of ['ps', 'fds', 'mems', 'rss']) {
    const ours = best(3, () => measure([process.execPath, CRIT, 'x', mv, what], out));
    const theirs = haveCrit ? best(3, () => measure([PY_CRIT, 'x', mv, what], out)) : undefined;
    row(`  x ${what}`, fs.statSync(path.join(mv, fs.readdirSync(mv).find((f) => f.startsWith('mm-'))!)).size, ours, theirs);
  }
  fs.rmSync(out, { force: true });
}

function findSmallCore(): string | undefined {
  const corpus = path.resolve(ROOT, '..', 'shared', 'corpus', 'criu-4.2-22-g2cf8f13ca', 'counter');
  if (!fs.existsSync(corpus)) return undefined;
  const f = fs.readdirSync(corpus).find((x) => /^core-\d+\.img$/.test(x));
  return f ? path.join(corpus, f) : undefined;
}

main();
