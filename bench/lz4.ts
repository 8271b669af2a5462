// LZ4 pages (CRIU 2026 compressed sets): liblz4's decode speed on its own, then the memory
// reader's read and search throughput on a compressed set against the same set uncompressed.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeImage } from '../images/files';
import { ImageSet } from '../images/imageset';
import { searchMemory } from '../images/query/search';
import { compressSet } from '../images/memory/convert';
import { lz4Encode, lz4Bound, lz4DecodeExact, lz4DecodeBatch, lz4Version } from '../images/memory/lz4';

const PAGE = 4096;
const WORDS = 'the quick brown fox jumps over a lazy dog while criu dumps its memory pages into images and restores them later '.split(' ');

/** One page of a mix that looks like process memory: text, small structs, zeros, random bytes. */
function fillPage(b: Buffer, at: number, page: number): void {
  let x = (page * 2654435761) >>> 0;
  const rnd = () => (x = (x * 1103515245 + 12345) >>> 0);
  const kind = page % 10;
  if (kind < 4) {
    let p = at;
    while (p < at + PAGE) {
      const w = `${WORDS[rnd() % WORDS.length]}${rnd() % 7 === 0 ? ` ${rnd() % 1000}` : ''} `;
      p += b.write(w, p, Math.min(w.length, at + PAGE - p), 'latin1');
    }
  } else if (kind < 7) {
    // structs: a pointer-like u64 (shared upper bytes), two small counters
    for (let p = at; p < at + PAGE; p += 16) {
      b.writeUInt32LE(0x55c94000 + (rnd() & 0xfff0), p);
      b.writeUInt32LE(0x00007f15, p + 4);
      b.writeUInt32LE(rnd() % 64, p + 8);
      b.writeUInt32LE(page & 0xff, p + 12);
    }
  } else if (kind < 9) b.fill(0, at, at + PAGE);
  else for (let p = at; p < at + PAGE; p += 4) b.writeUInt32LE(rnd(), p);
}

function genSet(dir: string, bytes: number): number {
  fs.mkdirSync(dir, { recursive: true });
  const pid = 4244;
  const start = 0x7f0000000000;
  writeImage(path.join(dir, 'inventory.img'), 'INVENTORY', [{ msg: { img_version: 2 } }]);
  writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid, ppid: 0, pgid: pid, sid: pid, threads: [pid] } }]);
  const mm = { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas: [{ start, end: start + bytes, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 }] };
  writeImage(path.join(dir, `mm-${pid}.img`), 'MM', [{ msg: mm }]);
  const pages = bytes / PAGE;
  function* entries() {
    yield { msg: { pages_id: 1 } };
    for (let p = 0; p < pages; p += 512) yield { msg: { vaddr: start + p * PAGE, compat_nr_pages: 0, flags: 4, nr_pages: Math.min(512, pages - p) } };
  }
  writeImage(path.join(dir, `pagemap-${pid}.img`), 'PAGEMAP', entries());
  const fd = fs.openSync(path.join(dir, 'pages-1.img'), 'w');
  const block = Buffer.alloc(16 << 20);
  for (let off = 0; off < bytes; off += block.length) {
    const n = Math.min(block.length, bytes - off);
    for (let a = 0; a < n; a += PAGE) fillPage(block, a, (off + a) / PAGE);
    if (off + n >= bytes) block.write('NEEDLE-AT-THE-END', n - PAGE - 40, 'latin1');
    fs.writeSync(fd, block, 0, n);
  }
  fs.closeSync(fd);
  return pid;
}

const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;
const gbs = (bytes: number, s: number) => `${(bytes / 1e9 / s).toFixed(2)} GB/s`;

/** liblz4 alone: blocks of `blockBytes` of the sample, decoded again and again (output bytes per second). */
function decodeOnly(sample: Buffer, blockBytes: number): string {
  const blocks: { lz: Buffer; d: number }[] = [];
  const dst = Buffer.alloc(lz4Bound(blockBytes));
  let decoded = 0;
  for (let off = 0; off + blockBytes <= sample.length; off += blockBytes) {
    const src = sample.subarray(off, off + blockBytes);
    const n = lz4Encode(src, dst, 1);
    if (n < Math.floor((blockBytes * 7) / 8)) { blocks.push({ lz: Buffer.from(dst.subarray(0, n)), d: blockBytes }); decoded += blockBytes; }
  }
  const out = Buffer.alloc(blockBytes);
  let rounds = 0;
  let t0 = process.hrtime.bigint();
  do {
    for (const b of blocks) lz4DecodeExact(b.lz, out.subarray(0, b.d));
    rounds++;
  } while (secs(t0) < 1);
  const one = gbs(decoded * rounds, secs(t0));
  // batched as the reader does: the blocks of one window decoded by one call
  const src = Buffer.concat(blocks.map((b) => b.lz));
  const per = Math.max(1, Math.floor((8 << 20) / blockBytes));
  const many = Buffer.alloc(per * blockBytes);
  const plans: Float64Array[] = [];
  for (let k = 0, so = 0; k < blocks.length; k += per) {
    const p = new Float64Array(4 * Math.min(per, blocks.length - k));
    for (let m = 0; m < p.length / 4; m++) {
      const b = blocks[k + m];
      p.set([so, b.lz.length, m * blockBytes, b.d], 4 * m);
      so += b.lz.length;
    }
    plans.push(p);
  }
  rounds = 0;
  t0 = process.hrtime.bigint();
  do {
    for (const p of plans) if (lz4DecodeBatch(src, many, p, p.length / 4) !== p.length / 4) throw new Error('batch decode failed');
    rounds++;
  } while (secs(t0) < 1);
  return `${one} one call per block, ${gbs(decoded * rounds, secs(t0))} batched`;
}

function readAll(dir: string, pid: number): { seconds: number; bytes: number } {
  const set = new ImageSet(dir);
  const mem = set.memory(pid);
  const buf = Buffer.allocUnsafe(8 << 20);
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  for (const r of mem.presentRanges()) {
    for (let a = r.start; a < r.end; ) {
      const n = Number(r.end - a < BigInt(buf.length) ? r.end - a : BigInt(buf.length));
      mem.readInto(a, buf, 0, n);
      a += BigInt(n);
      bytes += n;
    }
  }
  const s = secs(t0);
  set.close();
  return { seconds: s, bytes };
}

function search(dir: string, pid: number): number {
  const set = new ImageSet(dir);
  const t0 = process.hrtime.bigint();
  const hits = [...searchMemory(set.memory(pid), { kind: 'bytes', bytes: Buffer.from('NEEDLE-AT-THE-END') })];
  const s = secs(t0);
  set.close();
  if (hits.length !== 1) console.log(`  !! search found ${hits.length} needles, not 1`);
  return s;
}

export function runLz4Bench(scale = 1): void {
  const bytes = Math.max(16, Math.round((512 * scale))) << 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-bench-lz4-'));
  try {
    const plain = path.join(dir, 'plain');
    const pid = genSet(plain, bytes);
    const sample = fs.readFileSync(path.join(plain, 'pages-1.img')).subarray(0, 64 << 20);
    console.log(`\nLZ4 pages (liblz4 ${lz4Version()} through the native addon), ${(bytes / 2 ** 20).toFixed(0)} MiB of mixed memory (text, structs, zero and random pages):`);
    console.log(`  liblz4 decode alone (output bytes, target >= 1 GB/s): 4 KiB blocks ${decodeOnly(sample, PAGE)}; 256 KiB blocks ${decodeOnly(sample, 256 << 10)}`);
    const base = readAll(plain, pid);
    const baseSearch = search(plain, pid);
    console.log(`  uncompressed set:        read ${gbs(base.bytes, base.seconds)}, search ${gbs(base.bytes, baseSearch)}`);
    for (const [label, opts] of [['G1 per page', { schema: 'g1' as const }], ['G2 256 KiB blocks', { schema: 'g2' as const, blockBytes: 256 << 10 }]] as const) {
      const out = path.join(dir, label.replace(/\W+/g, '-'));
      let t0 = process.hrtime.bigint();
      const rep = compressSet(plain, out, opts);
      const cs = secs(t0);
      const stored = fs.statSync(path.join(out, 'pages-1.img')).size;
      const r = readAll(out, pid);
      t0 = process.hrtime.bigint();
      const ss = search(out, pid);
      void t0;
      console.log(`  ${label.padEnd(18)} compress ${gbs(bytes, cs)} (${(stored / 2 ** 20).toFixed(0)} MiB stored, ${rep.pagemaps[0].lz4Blocks} LZ4 blocks); read ${gbs(r.bytes, r.seconds)}, search ${gbs(r.bytes, ss)} (decoded bytes)`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) runLz4Bench(Number(process.env.BENCH_SCALE || '1'));
