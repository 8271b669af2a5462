// crit compress / crit decompress: a copy of an images directory with its pages stored LZ4-
// compressed (CRIU 2026 layout, either schema) or plainly, as CRIU's CRIT transforms do
// (spec compressed-pages.md §11): pagemaps and pages files re-encoded, the inventory's compress
// fields and version adjusted, every other file copied. The copy is built in a temporary
// directory beside OUT, fsynced and renamed: OUT appears complete or not at all.
import * as fs from 'fs';
import * as path from 'path';
import { loadImage, writeImage } from '../files';
import { ImageError } from '../image';
import type { Msg } from '../codec';
import { entryPages, entryFlags } from '../imageset';
import { PE, VMA } from '../flags';
import { AtomicDir } from '../atomic';
import { analysePagemap, hasMeta, withMeta, withoutMeta, Schema, SCHEMA_LABEL, MAX_BLOCK_BYTES, BlockMeta } from './compressed';
import { LayoutPageSource } from './pagesource';
import { lz4Encode, lz4Bound } from './lz4';

export class ConvertError extends Error {}

export interface CompressOptions {
  /** default g1, as CRIU's CRIT writes */
  schema?: Schema;
  /** block size in bytes (a multiple of the page size, at most 4 MiB); default one page */
  blockBytes?: number;
  /** G2 only: every non-empty block padded to a page boundary (CRIU does so with O_DIRECT) */
  padded?: boolean;
  /** LZ4 acceleration, 1..65537 (1 = CRIU's default) */
  acceleration?: number;
  pageSize?: number;
}

export interface PagemapReport {
  name: string;
  pages: number;
  /** bytes of the pages file before and after (padding included) */
  inBytes: number;
  outBytes: number;
  blocks?: number;
  lz4Blocks?: number;
}

export interface ConvertReport {
  dir: string;
  out: string;
  /** the set was already in the requested state: OUT is a plain copy */
  already: boolean;
  pagemaps: PagemapReport[];
  /** subdirectories of DIR that were not copied */
  skipped: string[];
}

interface Pair {
  name: string;
  pagesName: string;
  entries: { msg: Msg; offset: number }[];
  head: Msg;
}

const fail = (msg: string): never => { throw new ConvertError(msg); };

function readInventory(dir: string): Msg {
  const p = path.join(dir, 'inventory.img');
  if (!fs.existsSync(p)) fail(`${p}: no such file (not an images directory?)`);
  const img = loadImage(p);
  const inv = img.entries[0]?.msg;
  if (!inv) fail(`${p}: has no entry`);
  const v = Number(inv.img_version);
  if (v !== 2 && v !== 3) fail(`${p}: img_version ${v}; only images of version 2 or 3 can be converted`);
  const c = Number(inv.compress ?? 0);
  if (c !== 0 && c !== 1 && c !== 2) fail(`${p}: compress ${c} is not a known mode (0 off, 1 per-page/block, 2 region)`);
  if (c !== 0 && v !== 3) fail(`${p}: compress ${c} needs img_version 3, but it is ${v}`);
  return inv;
}

/** Pagemaps of the set, sorted by name, each with its head and an existing pages file. */
function readPairs(dir: string): Pair[] {
  const names = fs.readdirSync(dir).filter((n) => /^pagemap-(shmem-)?\d+\.img$/.test(n)).sort();
  const users = new Map<number, string>();
  const out: Pair[] = [];
  for (const name of names) {
    const img = loadImage(path.join(dir, name));
    const head = img.entries[0];
    if (!head) fail(`${path.join(dir, name)}: has no pagemap head`);
    const id = Number(head.msg.pages_id);
    if (users.has(id)) fail(`${path.join(dir, name)}: at byte ${head.offset}, entry 0: pages_id ${id} is also used by ${users.get(id)}`);
    users.set(id, name);
    const pagesName = `pages-${id}.img`;
    if (!fs.existsSync(path.join(dir, pagesName))) fail(`${path.join(dir, pagesName)}: missing (${name} needs it)`);
    out.push({ name, pagesName, head: head.msg, entries: img.entries.slice(1).map((e) => ({ msg: e.msg, offset: e.offset })) });
  }
  return out;
}

/** Ranges CRIT keeps raw when compressing (§8.3): hugetlb and device-plugin VMAs, per pagemap. */
function forcedRawRanges(dir: string): Map<string, [bigint, bigint][]> {
  const out = new Map<string, [bigint, bigint][]>();
  const add = (pm: string, a: bigint, b: bigint) => { const l = out.get(pm) ?? []; l.push([a, b]); out.set(pm, l); };
  for (const n of fs.readdirSync(dir)) {
    const m = /^mm-(\d+)\.img$/.exec(n);
    if (!m) continue;
    const mm = loadImage(path.join(dir, n)).entries[0]?.msg;
    for (const v of mm?.vmas ?? []) {
      const flags = Number(v.flags);
      const status = Number(v.status);
      if (!(flags & 0x40000) && !(status & VMA.EXT_PLUGIN)) continue; // MAP_HUGETLB, VMA_EXT_PLUGIN
      const start = BigInt(v.start);
      const end = BigInt(v.end);
      const shared = flags & 1 || status & (VMA.FILE_SHARED | VMA.ANON_SHARED | VMA.SYSVIPC);
      if (shared) {
        const off = BigInt(v.pgoff ?? 0);
        add(`pagemap-shmem-${v.shmid}.img`, off, off + (end - start));
      } else add(`pagemap-${m[1]}.img`, start, end);
    }
  }
  return out;
}

function inRanges(rs: [bigint, bigint][] | undefined, a: bigint, b: bigint): boolean {
  if (!rs) return false;
  // 32-bit compat tasks: sign-extended pagemap addresses against unsigned VMA bounds
  const alt = a >> 32n === 0xffffffffn ? [a & 0xffffffffn, b - (a - (a & 0xffffffffn))] : undefined;
  return rs.some(([s, e]) => (a < e && s < b) || (alt !== undefined && alt[0] < e && s < alt[1]));
}

/** A file written in large sequential pieces. */
class Out {
  fd: number;
  pos = 0;
  private buf = Buffer.allocUnsafe(1 << 20);
  private n = 0;
  constructor(file: string, mode: number) {
    this.fd = fs.openSync(file, 'w', mode & 0o7777);
  }
  write(data: Uint8Array): void {
    this.pos += data.length;
    if (this.n + data.length > this.buf.length) this.flush();
    if (data.length >= this.buf.length) return this.put(data);
    this.buf.set(data, this.n);
    this.n += data.length;
  }
  zeros(len: number): void {
    while (len > 0) {
      const k = Math.min(len, ZERO.length);
      this.write(ZERO.subarray(0, k));
      len -= k;
    }
  }
  private put(d: Uint8Array): void {
    let off = 0;
    while (off < d.length) off += fs.writeSync(this.fd, d, off, d.length - off);
  }
  flush(): void {
    if (this.n) this.put(this.buf.subarray(0, this.n));
    this.n = 0;
  }
  close(): void {
    this.flush();
    fs.closeSync(this.fd);
  }
}

const ZERO = Buffer.alloc(MAX_BLOCK_BYTES);

/** Sequential reads of a pages file, in pieces of up to 4 MiB. */
class In {
  private fd: number;
  private buf = Buffer.allocUnsafe(8 << 20);
  private start = 0;
  private len = 0;
  pos = 0;
  constructor(readonly file: string, readonly size: number) {
    this.fd = fs.openSync(file, 'r');
  }
  take(n: number): Buffer {
    if (this.pos + n > this.size) fail(`${this.file}: at byte ${this.pos}: needs ${n} more bytes but the file ends after ${this.size}`);
    if (this.pos + n > this.start + this.len) {
      const want = Math.min(this.buf.length, this.size - this.pos);
      let got = 0;
      while (got < want) {
        const k = fs.readSync(this.fd, this.buf, got, want - got, this.pos + got);
        if (k === 0) fail(`${this.file}: unexpected end of file at byte ${this.pos + got}`);
        got += k;
      }
      this.start = this.pos;
      this.len = want;
    }
    const b = this.buf.subarray(this.pos - this.start, this.pos - this.start + n);
    this.pos += n;
    return b;
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

const roundUp = (v: number, ps: number) => Math.ceil(v / ps) * ps;

function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Copies the files the conversion does not rewrite; returns the subdirectories left out. */
function copyRest(dir: string, out: AtomicDir, rewritten: Set<string>): string[] {
  const skipped: string[] = [];
  for (const n of fs.readdirSync(dir).sort()) {
    if (rewritten.has(n)) continue;
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) {
      // `parent` of an incremental dump is usually relative: keep it pointing at the same set
      const t = fs.readlinkSync(p);
      const abs = path.resolve(dir, t);
      fs.symlinkSync(path.isAbsolute(t) ? t : path.relative(path.resolve(out.target), abs) || '.', out.path(n));
    } else if (st.isFile()) {
      fs.copyFileSync(p, out.path(n), fs.constants.COPYFILE_FICLONE);
      fs.chmodSync(out.path(n), st.mode & 0o7777);
    } else if (st.isDirectory()) skipped.push(n);
  }
  return skipped;
}

function prepareOut(dir: string, out: string): AtomicDir {
  const a = path.resolve(dir);
  const b = path.resolve(out);
  if (a === b) fail(`${out}: the output must be a new directory, not DIR itself`);
  if (fs.existsSync(b)) {
    if (!fs.statSync(b).isDirectory()) fail(`${out}: exists and is not a directory`);
    if (fs.readdirSync(b).length) fail(`${out}: exists and is not empty (refusing to overwrite)`);
  }
  return new AtomicDir(b);
}

function writeInventory(out: AtomicDir, inv: Msg, dir: string): void {
  const mode = fs.statSync(path.join(dir, 'inventory.img')).mode;
  writeImage(out.path('inventory.img'), 'INVENTORY', [{ msg: inv }]);
  fs.chmodSync(out.path('inventory.img'), mode & 0o7777);
}

function run(dir: string, outDir: string, body: (out: AtomicDir) => { already: boolean; pagemaps: PagemapReport[]; rewritten: Set<string> }): ConvertReport {
  const out = prepareOut(dir, outDir);
  try {
    const r = body(out);
    const skipped = copyRest(dir, out, r.rewritten);
    out.commit();
    return { dir, out: outDir, already: r.already, pagemaps: r.pagemaps, skipped };
  } catch (e) {
    out.abort();
    if (e instanceof ImageError) throw new ConvertError(e.message);
    throw e;
  }
}

/** Every present entry's pages must be plain (no metadata, no alignment) and fill the file exactly. */
function checkPlain(dir: string, p: Pair, ps: number): number {
  let total = 0;
  p.entries.forEach((e, i) => {
    const at = `${path.join(dir, p.name)}: at byte ${e.offset}, entry ${i + 1}`;
    const f = entryFlags(e.msg);
    if (hasMeta(e.msg)) fail(`${at}: already carries compression metadata`);
    if (f & PE.PAYLOAD_ALIGNED) fail(`${at}: PE_PAYLOAD_ALIGNED on an uncompressed set`);
    if (f & PE.PRESENT && f & PE.PARENT) fail(`${at}: PE_PRESENT and PE_PARENT together`);
    if (f & PE.PRESENT) total += entryPages(e.msg) * ps;
  });
  const size = fs.statSync(path.join(dir, p.pagesName)).size;
  if (size < total) fail(`${path.join(dir, p.pagesName)}: file ends after ${size} bytes but ${p.name} describes ${total}`);
  if (size > total) fail(`${path.join(dir, p.pagesName)}: at byte ${total}: unexpected trailing data (${size - total} bytes after the ${total} that ${p.name} describes)`);
  return total;
}

export function compressSet(dir: string, outDir: string, opts: CompressOptions = {}): ConvertReport {
  const ps = opts.pageSize ?? 4096;
  const schema = opts.schema ?? 'g1';
  const blockBytes = opts.blockBytes ?? ps;
  if (blockBytes % ps || blockBytes < ps || blockBytes > MAX_BLOCK_BYTES) fail(`block size ${blockBytes} must be a multiple of the ${ps}-byte page size, at most ${MAX_BLOCK_BYTES}`);
  const accel = opts.acceleration ?? 1;
  if (!Number.isInteger(accel) || accel < 1 || accel > 65537) fail(`acceleration ${accel} is outside 1..65537`);
  if (opts.padded && schema !== 'g2') fail('padded blocks exist only in the G2 schema (--schema g2)');
  const ppb = blockBytes / ps;
  const region = opts.blockBytes !== undefined; // G1 region mode, the inventory says so
  const inv = readInventory(dir);
  return run(dir, outDir, (out) => {
    if (Number(inv.compress ?? 0) !== 0) return { already: true, pagemaps: [], rewritten: new Set() };
    const pairs = readPairs(dir);
    if (!pairs.length) fail(`No pagemap files found in ${dir}`);
    const sizes = pairs.map((p) => checkPlain(dir, p, ps));
    const forced = forcedRawRanges(dir);
    const scratch = Buffer.allocUnsafe(lz4Bound(blockBytes));
    const reports: PagemapReport[] = [];
    const rewritten = new Set<string>(['inventory.img']);
    pairs.forEach((p, pi) => {
      const src = path.join(dir, p.pagesName);
      const inp = new In(src, sizes[pi]);
      const o = new Out(out.path(p.pagesName), fs.statSync(src).mode);
      const entries: Msg[] = [];
      let pages = 0, blocks = 0, lz4Blocks = 0;
      try {
        for (const { msg } of p.entries) {
          const f = entryFlags(msg);
          if (!(f & PE.PRESENT)) { entries.push(msg); continue; }
          const n = entryPages(msg);
          pages += n;
          const sizesOut: number[] = [];
          let aligned = false;
          let started = false;
          const va = BigInt(msg.vaddr);
          for (let b = 0; b * ppb < n; b++) {
            const bp = Math.min(ppb, n - b * ppb);
            const d = bp * ps;
            const data = inp.take(d);
            const a0 = va + BigInt(b * ppb * ps);
            let s: number;
            let payload: Uint8Array | undefined;
            if (data.equals(ZERO.subarray(0, d))) s = 0;
            else if (inRanges(forced.get(p.name), a0, a0 + BigInt(d))) { s = d; payload = data; }
            else {
              const k = lz4Encode(data, scratch, accel);
              // CRIU's threshold: an LZ4 block must save at least an eighth
              if (k >= Math.floor((d * 7) / 8)) { s = d; payload = data; } else { s = k; payload = scratch.subarray(0, k); }
            }
            if (s && !started) {
              started = true;
              if (s === d || opts.padded) { o.zeros(roundUp(o.pos, ps) - o.pos); aligned = true; }
            }
            if (payload) o.write(payload);
            if (s && opts.padded) o.zeros(roundUp(o.pos, ps) - o.pos);
            sizesOut.push(s);
            blocks++;
            if (s && s !== d) lz4Blocks++;
          }
          let e: Msg = aligned ? { ...msg, flags: f | PE.PAYLOAD_ALIGNED } : msg;
          const allRaw = sizesOut.every((s, b) => s === Math.min(ppb, n - b * ppb) * ps);
          // an entry stored wholly raw keeps no metadata (CRIU drops it), only the alignment
          if (!allRaw) e = withMeta(e, { sizes: sizesOut, ppb, padded: !!opts.padded } as BlockMeta, schema, ps, schema === 'g1' && region);
          entries.push(e);
        }
      } finally {
        inp.close();
        o.close();
      }
      writeImage(out.path(p.name), 'PAGEMAP', [{ msg: p.head }, ...entries.map((msg) => ({ msg }))]);
      fs.chmodSync(out.path(p.name), fs.statSync(path.join(dir, p.name)).mode & 0o7777);
      rewritten.add(p.name);
      rewritten.add(p.pagesName);
      reports.push({ name: p.name, pages, inBytes: sizes[pi], outBytes: o.pos, blocks, lz4Blocks });
    });
    const ni: Msg = { ...inv, img_version: 3, compress: schema === 'g1' && region ? 2 : 1 };
    if (schema === 'g1' && region) ni.compress_region_size = blockBytes;
    else delete ni.compress_region_size;
    writeInventory(out, ni, dir);
    return { already: false, pagemaps: reports, rewritten };
  });
}

export function decompressSet(dir: string, outDir: string, opts: { pageSize?: number } = {}): ConvertReport {
  const ps = opts.pageSize ?? 4096;
  const inv = readInventory(dir);
  return run(dir, outDir, (out) => {
    const pairs = readPairs(dir);
    const mode = Number(inv.compress ?? 0);
    if (mode === 0) {
      for (const p of pairs) {
        const k = p.entries.findIndex((e) => hasMeta(e.msg) || entryFlags(e.msg) & PE.PAYLOAD_ALIGNED);
        if (k >= 0) fail(`${path.join(dir, p.name)}: at byte ${p.entries[k].offset}, entry ${k + 1}: compressed layout, but inventory.img says compress is off`);
      }
      return { already: true, pagemaps: [], rewritten: new Set() };
    }
    if (!pairs.length) fail(`No pagemap files found in ${dir}`);
    const reports: PagemapReport[] = [];
    const rewritten = new Set<string>(['inventory.img']);
    let parentRefs = lexists(path.join(dir, 'parent'));
    const buf = Buffer.allocUnsafe(8 << 20);
    for (const p of pairs) {
      const src = path.join(dir, p.pagesName);
      const fileSize = fs.statSync(src).size;
      const msgs = p.entries.map((e) => e.msg);
      const a = analysePagemap(msgs, ps, { pagesSize: fileSize, inventoryCompress: mode });
      if (!a.layout) {
        const pr = a.problems[0];
        fail(`${path.join(dir, p.name)}: at byte ${p.entries[pr.entry - 1].offset}, entry ${pr.entry}: ${pr.what}${a.schema ? ` (read as the ${SCHEMA_LABEL[a.schema]})` : ''}`);
      }
      const l = a.layout!;
      if (l.physSize > fileSize) {
        const i = [...l.phys].findIndex((x, j) => x + l.stored[j] > fileSize);
        fail(`${src}: file ends after ${fileSize} bytes but ${p.name} entry ${l.entry[i]} needs bytes ${l.phys[i]}..${l.phys[i] + l.stored[i]}`);
      }
      if (l.physSize < fileSize) fail(`${src}: at byte ${l.physSize}: unexpected trailing data (${fileSize - l.physSize} bytes after the ${l.physSize} that ${p.name} describes)`);
      const source = new LayoutPageSource(src, l, p.name);
      const o = new Out(out.path(p.pagesName), fs.statSync(src).mode);
      try {
        for (let off = 0; off < l.logicalSize; ) {
          const n = Math.min(buf.length, l.logicalSize - off);
          source.read(off, buf, 0, n);
          o.write(buf.subarray(0, n));
          off += n;
        }
      } finally {
        source.close();
        o.close();
      }
      if (msgs.some((e) => entryFlags(e) & PE.PARENT)) parentRefs = true;
      writeImage(out.path(p.name), 'PAGEMAP', [{ msg: p.head }, ...msgs.map((e) => ({ msg: withoutMeta(e) }))]);
      fs.chmodSync(out.path(p.name), fs.statSync(path.join(dir, p.name)).mode & 0o7777);
      rewritten.add(p.name);
      rewritten.add(p.pagesName);
      reports.push({ name: p.name, pages: l.logicalSize / ps, inBytes: fileSize, outBytes: l.logicalSize, blocks: l.blocks, lz4Blocks: l.lz4Blocks });
    }
    const ni: Msg = { ...inv };
    delete ni.compress;
    delete ni.compress_region_size;
    // version 3 fences compressed pages off from older CRIU; a layer of a chain keeps it
    if (Number(ni.img_version) === 3 && !parentRefs) ni.img_version = 2;
    writeInventory(out, ni, dir);
    return { already: false, pagemaps: reports, rewritten };
  });
}
