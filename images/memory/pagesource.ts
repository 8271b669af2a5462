// Where page contents come from. The reader only ever asks for byte ranges by offset in the
// uncompressed order of a pages file, so a compressed pages file (CRIU's LZ4 format) is
// another PageSource that maps those offsets onto its blocks.
import * as fs from 'fs';
import * as path from 'path';
import { PagesLayout, KIND_ZERO, KIND_RAW, KIND_LZ4 } from './compressed';
import { lz4DecodeExact, lz4DecodeBatch } from './lz4';

export interface PageSource {
  readonly name: string;
  /** bytes of page data it serves (offsets run 0..size) */
  readonly size: number;
  /** Read exactly len bytes at offset into buf[at..]; throws if the source is shorter. */
  read(offset: number, buf: Uint8Array, at: number, len: number): void;
  /** Where the byte at offset lives, e.g. "pages-1.img+0x3000"; undefined: that same form. */
  describe?(offset: number): string;
  close(): void;
}

export class PageSourceError extends Error {}

function preadExact(fd: number, name: string, buf: Uint8Array, at: number, len: number, pos: number): void {
  let done = 0;
  while (done < len) {
    const n = fs.readSync(fd, buf, at + done, len - done, pos + done);
    if (n === 0) throw new PageSourceError(`${name}: unexpected end of file at byte ${pos + done}`);
    done += n;
  }
}

/** A plain pages-N.img: page data concatenated in pagemap order, read with pread only. */
export class FilePageSource implements PageSource {
  private fd: number;
  readonly size: number;
  constructor(readonly name: string) {
    this.fd = fs.openSync(name, 'r');
    this.size = fs.fstatSync(this.fd).size;
  }
  read(offset: number, buf: Uint8Array, at: number, len: number): void {
    if (offset + len > this.size) throw new PageSourceError(`${this.name}: needs bytes ${offset}..${offset + len} but the file has ${this.size} (truncated pages file?)`);
    preadExact(this.fd, this.name, buf, at, len, offset);
  }
  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}

export function openPageSource(file: string): PageSource {
  return new FilePageSource(file);
}

/** compressed bytes read ahead in one pread (per-page blocks are a few hundred bytes each) */
const WINDOW = 256 << 10;
/** decoded blocks kept for reads that take part of a block */
const CACHE_BLOCKS = 8;
const CACHE_BYTES = 16 << 20;

/**
 * A pages file in CRIU's compressed layout (zero, raw and LZ4 blocks, alignment padding), read
 * lazily: a block is decoded when a read touches it, straight into the caller's buffer when the
 * read covers it whole, else into a small cache of recently decoded blocks.
 */
export class LayoutPageSource implements PageSource {
  private fd: number;
  readonly fileSize: number;
  readonly size: number;
  private base: string;
  private win: Buffer = Buffer.alloc(0);
  private winStart = 0;
  private winLen = 0;
  private cache = new Map<number, Uint8Array>();
  private cached = 0;

  /** `pagemap`: the pagemap file's name, for messages. */
  constructor(readonly name: string, readonly layout: PagesLayout, readonly pagemap: string) {
    this.fd = fs.openSync(name, 'r');
    this.fileSize = fs.fstatSync(this.fd).size;
    this.size = layout.logicalSize;
    this.base = path.basename(name);
  }

  private where(i: number): string {
    const l = this.layout;
    const b = l.block[i];
    return `${this.pagemap} entry ${l.entry[i]}${b >= 0 ? `, block ${b}` : ''}`;
  }

  read(offset: number, buf: Uint8Array, at: number, len: number): void {
    const l = this.layout;
    if (offset < 0 || offset + len > this.size) throw new PageSourceError(`${this.name}: needs uncompressed bytes ${offset}..${offset + len} but ${this.pagemap} describes ${this.size}`);
    let i = l.find(offset);
    while (len > 0) {
      const within = offset - l.logical[i];
      const d = l.decoded[i];
      const n = Math.min(len, d - within);
      const kind = l.kind[i];
      if (kind === KIND_ZERO) buf.fill(0, at, at + n);
      else if (kind === KIND_RAW) {
        const p = l.phys[i] + within;
        if (p + n > this.fileSize) throw new PageSourceError(`${this.name}: at byte ${p}: ${this.where(i)}: needs bytes ${p}..${p + n} but the file has ${this.fileSize} (truncated pages file?)`);
        preadExact(this.fd, this.name, buf, at, n, p);
      } else if (within === 0 && n === d) {
        // whole LZ4 blocks: decoded straight into buf, a run of them in one call
        const k = this.decodeRun(i, buf, at, offset + len);
        const done = l.logical[i + k - 1] + l.decoded[i + k - 1] - offset;
        offset += done;
        at += done;
        len -= done;
        i += k;
        continue;
      } else {
        buf.set(this.block(i).subarray(within, within + n), at);
      }
      offset += n;
      at += n;
      len -= n;
      i++;
    }
  }

  /** Extent i's stored bytes, through the read-ahead window. */
  private input(i: number): Uint8Array {
    const p = this.layout.phys[i];
    const s = this.layout.stored[i];
    if (p < this.winStart || p + s > this.winStart + this.winLen) {
      if (p + s > this.fileSize) throw new PageSourceError(`${this.name}: at byte ${p}: ${this.where(i)}: an LZ4 block of ${s} bytes, but the file ends after ${this.fileSize} (truncated pages file?)`);
      const want = Math.min(Math.max(WINDOW, s), this.fileSize - p);
      if (this.win.length < want) this.win = Buffer.allocUnsafe(Math.max(want, WINDOW));
      preadExact(this.fd, this.name, this.win, 0, want, p);
      this.winStart = p;
      this.winLen = want;
    }
    return this.win.subarray(p - this.winStart, p - this.winStart + s);
  }

  private plan = new Float64Array(4 * 1024);

  /**
   * Fills buf at `at` from extents i, i+1, ... that lie whole before logical `end` and whose
   * stored bytes are in the read-ahead window: zero blocks filled, raw blocks copied, LZ4 blocks
   * decoded together in one call. Returns how many extents (at least one: i is LZ4).
   */
  private decodeRun(i: number, buf: Uint8Array, at: number, end: number): number {
    const l = this.layout;
    this.input(i); // loads the window at block i when it is not there
    const plan = this.plan;
    const winEnd = this.winStart + this.winLen;
    const base = l.logical[i];
    let k = 0;
    let j = i;
    const lz: number[] = [];
    for (; j < l.count && k < 1024; j++) {
      const kind = l.kind[j];
      const d = l.decoded[j];
      const to = at + l.logical[j] - base;
      if (l.logical[j] + d > end) break;
      if (kind === KIND_ZERO) { buf.fill(0, to, to + d); continue; }
      if (l.phys[j] + l.stored[j] > winEnd || l.phys[j] < this.winStart) break;
      const from = l.phys[j] - this.winStart;
      if (kind === KIND_RAW) { buf.set(this.win.subarray(from, from + d), to); continue; }
      plan[4 * k] = from;
      plan[4 * k + 1] = l.stored[j];
      plan[4 * k + 2] = to;
      plan[4 * k + 3] = d;
      lz.push(j);
      k++;
    }
    const ok = lz4DecodeBatch(this.win, buf, plan, k);
    if (ok < k) {
      const j = lz[ok];
      this.decode(j, buf.subarray(at + l.logical[j] - base, at + l.logical[j] - base + l.decoded[j])); // throws with its message
      throw new PageSourceError(`${this.name}: at byte ${l.phys[j]}: ${this.where(j)}: LZ4 block failed to decode`);
    }
    return j - i;
  }

  private decode(i: number, dst: Uint8Array): void {
    try {
      lz4DecodeExact(this.input(i), dst);
    } catch (e) {
      if (e instanceof PageSourceError) throw e;
      const l = this.layout;
      throw new PageSourceError(`${this.name}: at byte ${l.phys[i]}: ${this.where(i)} (${l.stored[i]} bytes stored, ${l.decoded[i]} decoded): ${(e as Error).message}`);
    }
  }

  private block(i: number): Uint8Array {
    const hit = this.cache.get(i);
    if (hit) {
      this.cache.delete(i);
      this.cache.set(i, hit);
      return hit;
    }
    const out = new Uint8Array(this.layout.decoded[i]);
    this.decode(i, out);
    this.cache.set(i, out);
    this.cached += out.length;
    for (const [k, v] of this.cache) {
      if (this.cache.size <= CACHE_BLOCKS && this.cached <= CACHE_BYTES) break;
      if (k === i) continue;
      this.cache.delete(k);
      this.cached -= v.length;
    }
    return out;
  }

  describe(offset: number): string {
    const l = this.layout;
    const i = l.find(offset);
    const within = offset - l.logical[i];
    if (l.block[i] < 0) return `${this.base}+0x${(l.phys[i] + within).toString(16)}`; // a plain entry: patchable
    const kind = l.kind[i];
    if (kind === KIND_ZERO) return `${this.base} (zero block, ${this.where(i)})`;
    if (kind === KIND_RAW) return `${this.base}+0x${(l.phys[i] + within).toString(16)} (raw block, ${this.where(i)})`;
    return `${this.base}+0x${l.phys[i].toString(16)} (LZ4 block of ${l.stored[i]} bytes, ${this.where(i)}, +0x${within.toString(16)} decoded)`;
  }

  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}
