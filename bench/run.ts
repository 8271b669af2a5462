// npm run bench: decode (raw and pretty) and encode throughput and peak memory of our crit on
// large generated images, side by side with Python CRIT when it is installed, with ratios.
// BENCH_SCALE=0.1 shrinks the images for a quick look.
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
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function findSmallCore(): string | undefined {
  const corpus = path.resolve(ROOT, '..', 'shared', 'corpus', 'criu-4.2-22-g2cf8f13ca', 'counter');
  if (!fs.existsSync(corpus)) return undefined;
  const f = fs.readdirSync(corpus).find((x) => /^core-\d+\.img$/.test(x));
  return f ? path.join(corpus, f) : undefined;
}

main();
