// The hex pane's model, with no UI: a byte source (a task's memory, or a range of a file such
// as a GPU buffer's contents), the screen lines from an address (hex rows with squeezed
// repeats, one line per range the image does not hold or per unmapped gap), cursor motion,
// the data inspector and search. Only what is on screen is ever read.
import { vmaWhat, protString } from '../images/query/vma';
import { VMA } from '../images/flags';
import type { MemoryReader, Span } from '../images/memory/reader';
import { hexRows } from '../images/query/hexdump';
import { searchMemory, Pattern } from '../images/query/search';
import { readFileRange } from '../images/query/imagefile';

export const WIDTH = 16;
const W = BigInt(WIDTH);
const CHUNK = 256 * 1024;
const MAX_MATCHES = 10_000;

export interface Region {
  start: bigint;
  end: bigint;
  /** e.g. "rw-p [heap]" or "/usr/lib/libc.so.6 +0x1000" */
  label: string;
}

export interface HexSource {
  /** what the addresses are: "memory of 42", "amdgpu-pages-...img" */
  title: string;
  /** addresses are offsets into a buffer (shown without 0x padding to 12 digits) */
  offsets: boolean;
  regionAt(a: bigint): Region | undefined;
  /** the first region starting after a */
  nextRegion(a: bigint): Region | undefined;
  /** the last region ending at or before a */
  prevRegion(a: bigint): Region | undefined;
  first(): bigint;
  layout(a: bigint, len: number): Span[];
  read(a: bigint, len: number): Span[];
  /** every match of the pattern, in address order (at most MAX_MATCHES) */
  search(p: Pattern): { addr: bigint; length: number }[];
}

export type Line =
  | { kind: 'hex'; addr: bigint; bytes: (number | undefined)[] }
  | { kind: 'squeeze'; start: bigint; end: bigint }
  | { kind: 'absent'; start: bigint; end: bigint; why: string }
  | { kind: 'gap'; start: bigint; end: bigint }
  | { kind: 'end'; start: bigint; end: bigint };

export function lineStart(l: Line): bigint {
  return l.kind === 'hex' ? l.addr : l.start;
}

export function lineEnd(l: Line): bigint {
  return l.kind === 'hex' ? l.addr + W : l.end;
}


/** A dumped task's address space. */
export function memorySource(reader: () => MemoryReader, pid: number): HexSource {
  // the reader is asked for on every read: a patch replaces it (ImageSet.close drops readers)
  const mem = () => reader();
  const vmas = reader().vmas;
  const label = (i: number): string => {
    const v = vmas[i];
    const st = v.status;
    return `${protString(v.prot)}${st & (VMA.FILE_SHARED | VMA.ANON_SHARED) ? 's' : 'p'} ${vmaWhat(v)}`;
  };
  const region = (i: number): Region => ({ start: vmas[i].start, end: vmas[i].end, label: label(i) });
  // index of the first VMA with end > a
  const lower = (a: bigint): number => {
    let lo = 0, hi = vmas.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (vmas[mid].end <= a) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  return {
    title: `memory of ${pid}`,
    offsets: false,
    regionAt(a) {
      const i = lower(a);
      return i < vmas.length && vmas[i].start <= a ? region(i) : undefined;
    },
    nextRegion(a) {
      let i = lower(a);
      if (i < vmas.length && vmas[i].start <= a) i++;
      return i < vmas.length ? region(i) : undefined;
    },
    prevRegion(a) {
      let i = lower(a) - 1;
      while (i >= 0 && vmas[i].end > a) i--;
      return i >= 0 ? region(i) : undefined;
    },
    first: () => (vmas.length ? vmas[0].start : 0n),
    layout: (a, len) => mem().layout(a, len),
    read: (a, len) => mem().read(a, len),
    search(p) {
      const out: { addr: bigint; length: number }[] = [];
      for (const m of searchMemory(mem(), p)) {
        out.push({ addr: m.addr, length: m.length });
        if (out.length >= MAX_MATCHES) break;
      }
      return out;
    },
  };
}

/** [offset, offset+size) of a file, addressed from 0 (a GPU buffer's saved contents). */
export function fileSource(file: string, offset: number, size: number, title: string): HexSource {
  const end = BigInt(size);
  const r: Region = { start: 0n, end, label: title };
  const read = (a: bigint, len: number): Span[] => {
    const n = Number(a + BigInt(len) > end ? end - a : BigInt(len));
    if (n <= 0) return [];
    const data = readFileRange(file, offset + Number(a), n);
    const spans: Span[] = [{ addr: a, len: data.length, data, present: true, origin: `${file.split('/').pop()}+0x${(offset + Number(a)).toString(16)}` }];
    if (data.length < n) spans.push({ addr: a + BigInt(data.length), len: n - data.length, absent: 'past the end of the file' });
    return spans;
  };
  return {
    title,
    offsets: true,
    regionAt: (a) => (a >= 0n && a < end ? r : undefined),
    nextRegion: (a) => (a < 0n ? r : undefined),
    prevRegion: (a) => (a >= end ? r : undefined),
    first: () => 0n,
    layout: (a, len) => read(a, len).map((s) => ({ ...s, data: undefined })),
    read,
    search(p) {
      const buf = Buffer.from(readFileRange(file, offset, Math.min(size, 256 << 20)));
      const out: { addr: bigint; length: number }[] = [];
      if (p.kind === 'bytes') {
        let i = p.bytes.length ? buf.indexOf(p.bytes) : -1;
        while (i >= 0 && out.length < MAX_MATCHES) {
          out.push({ addr: BigInt(i), length: p.bytes.length });
          i = buf.indexOf(p.bytes, i + 1);
        }
      } else {
        const re = new RegExp(p.re.source, p.re.flags.includes('g') ? p.re.flags : p.re.flags + 'g');
        const text = buf.toString('latin1');
        let m: RegExpExecArray | null;
        while ((m = re.exec(text)) && out.length < MAX_MATCHES) {
          out.push({ addr: BigInt(m.index), length: m[0].length });
          if (!m[0].length) re.lastIndex++;
        }
      }
      return out;
    },
  };
}

/** Screen lines from `top` (at most `count`). */
export function buildLines(src: HexSource, top: bigint, count: number): Line[] {
  const out: Line[] = [];
  let a = top;
  while (out.length < count) {
    const r = src.regionAt(a);
    if (!r) {
      const n = src.nextRegion(a);
      if (!n) {
        out.push({ kind: 'end', start: a, end: a });
        break;
      }
      out.push({ kind: 'gap', start: a, end: n.start });
      a = n.start;
      continue;
    }
    const lim = r.end - a > BigInt(64 << 20) ? a + BigInt(64 << 20) : r.end;
    for (const s of src.layout(a, Number(lim - a))) {
      if (out.length >= count) break;
      const sEnd = s.addr + BigInt(s.len);
      if (!s.present) {
        out.push({ kind: 'absent', start: s.addr, end: sEnd, why: s.absent ?? 'not in the image' });
        a = sEnd;
        continue;
      }
      let p = s.addr;
      while (p < sEnd && out.length < count) {
        const n = Number(sEnd - p < BigInt(CHUNK) ? sEnd - p : BigInt(CHUNK));
        const spans = src.read(p, n);
        if (spans.some((x) => !x.data)) {
          // the bytes could not be read after all (a short pages file): say so, one line
          const bad = spans.find((x) => !x.data)!;
          for (const row of hexRows(spans.filter((x) => x.data && x.addr < bad.addr), WIDTH, true)) pushRow(out, row, count);
          out.push({ kind: 'absent', start: bad.addr, end: bad.addr + BigInt(bad.len), why: bad.absent ?? 'unreadable' });
          p = bad.addr + BigInt(bad.len);
          continue;
        }
        let last = p;
        for (const row of hexRows(spans, WIDTH, true)) {
          if (out.length >= count) break;
          last = pushRow(out, row, count);
        }
        p = out.length >= count ? last : p + BigInt(n);
      }
      a = p;
      if (out.length >= count) break;
    }
    if (a < lim && out.length < count) a = lim; // defensive: layout always covers [a, lim)
  }
  return out;
}

function pushRow(out: Line[], row: { addr: bigint; bytes: number[]; squeezed?: number }, count: number): bigint {
  out.push({ kind: 'hex', addr: row.addr, bytes: row.bytes });
  let end = row.addr + W;
  if (row.squeezed && out.length < count) {
    end = row.addr + W * BigInt(row.squeezed + 1);
    out.push({ kind: 'squeeze', start: row.addr + W, end });
  }
  return end;
}

export function lineIndexOf(lines: Line[], a: bigint): number {
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.kind === 'end') return a >= l.start ? i : -1;
    if (a >= lineStart(l) && a < lineEnd(l)) return i;
  }
  return -1;
}

/** Where a line containing `a` starts when the view is scrolled to show it first. */
export function rowStart(src: HexSource, a: bigint): bigint {
  const r = src.regionAt(a);
  if (!r) {
    const p = src.prevRegion(a);
    return p ? p.end : 0n;
  }
  const s = src.layout(a, 1)[0];
  if (s && !s.present) {
    // the start of this absent run within the region
    const back = src.layout(r.start, Number(a - r.start) + 1);
    for (let i = back.length - 1; i >= 0; i--) if (back[i].present) return back[i].addr + BigInt(back[i].len);
    return r.start;
  }
  const al = a - (a % W);
  return al < r.start ? r.start : al;
}

/** The start of the line just above one starting at `a`. */
export function prevLineStart(src: HexSource, a: bigint): bigint {
  if (a <= 0n) return 0n;
  return rowStart(src, a - 1n);
}

export interface Inspected {
  bytes: number[];
  u8?: number; i8?: number;
  u16le?: number; u16be?: number; i16le?: number; i16be?: number;
  u32le?: number; u32be?: number; i32le?: number; i32be?: number;
  u64le?: bigint; u64be?: bigint; i64le?: bigint; i64be?: bigint;
  f32le?: number; f64le?: number;
}

/** The data inspector: the bytes at `a` read as every integer width, both byte orders. */
export function inspect(src: HexSource, a: bigint): Inspected {
  const bytes: number[] = [];
  for (const s of src.read(a, 8)) {
    if (!s.data) break;
    for (const b of s.data) bytes.push(b);
  }
  const out: Inspected = { bytes };
  const buf = Buffer.from(bytes);
  if (bytes.length >= 1) { out.u8 = buf.readUInt8(0); out.i8 = buf.readInt8(0); }
  if (bytes.length >= 2) { out.u16le = buf.readUInt16LE(0); out.u16be = buf.readUInt16BE(0); out.i16le = buf.readInt16LE(0); out.i16be = buf.readInt16BE(0); }
  if (bytes.length >= 4) { out.u32le = buf.readUInt32LE(0); out.u32be = buf.readUInt32BE(0); out.i32le = buf.readInt32LE(0); out.i32be = buf.readInt32BE(0); out.f32le = buf.readFloatLE(0); }
  if (bytes.length >= 8) { out.u64le = buf.readBigUInt64LE(0); out.u64be = buf.readBigUInt64BE(0); out.i64le = buf.readBigInt64LE(0); out.i64be = buf.readBigInt64BE(0); out.f64le = buf.readDoubleLE(0); }
  return out;
}

/** Parses what the user typed after `/` in a hex view: text, `x:de ad be ef` or `re:REGEX`. */
export function parsePattern(text: string): Pattern {
  if (/^x:/i.test(text)) {
    const hex = text.slice(2).replace(/[\s,]/g, '').replace(/^0x/i, '');
    if (!hex || hex.length % 2 || /[^0-9a-f]/i.test(hex)) throw new Error(`bad hex bytes: ${text.slice(2)}`);
    return { kind: 'bytes', bytes: Uint8Array.from(Buffer.from(hex, 'hex')) };
  }
  if (/^re:/i.test(text)) return { kind: 'regex', re: new RegExp(text.slice(3)) };
  return { kind: 'bytes', bytes: Uint8Array.from(Buffer.from(text, 'utf8')) };
}

export function parseAddress(text: string): bigint {
  const t = text.trim().replace(/_/g, '');
  if (!/^(0x)?[0-9a-f]+$/i.test(t)) throw new Error(`not an address: ${text}`);
  return BigInt(t.startsWith('0x') || t.startsWith('0X') ? t : '0x' + t);
}

export function hex(a: bigint, pad = 12): string {
  return a.toString(16).padStart(pad, '0');
}
