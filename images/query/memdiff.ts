// Page-level comparison of one task's memory in two checkpoints, through the memory reader
// (so shmem, memfd and parent layers count): both sides are read in address order, one
// bounded chunk at a time, which reads each pages file front to back.
import { vmaWhat } from './vma';
import type { MemoryReader, Span, Vma } from '../memory/reader';

export type PageRunKind = 'differ' | 'only-a' | 'only-b';

export interface PageRun {
  pid: number;
  kind: PageRunKind;
  start: bigint;
  end: bigint;
  pages: number;
  /** differ: number of differing bytes, and the first differing address */
  bytes?: number;
  first?: bigint;
  /** only-a / only-b: why the other side has no bytes there */
  reason?: string;
  /** the VMA the run lies in, for people */
  where?: string;
}

export interface PagePair {
  pid: number;
  addr: bigint;
  a: Uint8Array;
  b: Uint8Array;
}

export interface MemDiffOptions {
  /** keep up to this many differing pages (both sides) for a hex diff */
  keepPages?: number;
  /** bytes per read; rounded to pages */
  chunk?: number;
}

export interface MemDiff {
  runs: PageRun[];
  pages: PagePair[];
  /** pages compared (present on at least one side) */
  compared: number;
  /** differing pages not kept because of keepPages */
  dropped: number;
}

interface Range { start: bigint; end: bigint }

/** Sorted, merged union of the ranges either side holds bytes for. */
function unionRanges(a: Iterable<Range>, b: Iterable<Range>): Range[] {
  const all = [...a, ...b].sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: Range[] = [];
  for (const r of all) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end) {
      if (r.end > last.end) last.end = r.end;
    } else out.push({ start: r.start, end: r.end });
  }
  return out;
}

/** Page p of a chunk: its bytes, or why they are absent. Spans cover the chunk contiguously. */
class PageCursor {
  private i = 0;
  constructor(private spans: Span[]) {}
  page(addr: bigint, size: number): Uint8Array | string {
    const end = addr + BigInt(size);
    while (this.i < this.spans.length && this.spans[this.i].addr + BigInt(this.spans[this.i].len) <= addr) this.i++;
    const parts: Uint8Array[] = [];
    let j = this.i;
    let a = addr;
    while (a < end && j < this.spans.length) {
      const s = this.spans[j];
      if (!s.data) return s.absent ?? 'not in the image';
      const from = Number(a - s.addr);
      const sEnd = s.addr + BigInt(s.len);
      const to = Number((sEnd < end ? sEnd : end) - s.addr);
      parts.push(s.data.subarray(from, to));
      a = s.addr + BigInt(to);
      j++;
    }
    if (a < end) return 'not in the image';
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }
}

export function vmaWhere(v: Vma | undefined): string | undefined {
  return v ? vmaWhat(v) : undefined;
}

function countDiff(a: Uint8Array, b: Uint8Array): { n: number; first: number } {
  let n = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      if (first < 0) first = i;
      n++;
    }
  }
  return { n, first };
}

/** Differences between the memory of one task in two image sets, as runs of pages. */
export function diffMemory(pid: number, ra: MemoryReader, rb: MemoryReader, opts: MemDiffOptions = {}): MemDiff {
  const ps = ra.pageSize;
  const psB = BigInt(ps);
  const chunkPages = Math.max(1, Math.floor((opts.chunk ?? 1 << 20) / ps));
  const keep = opts.keepPages ?? 0;
  const res: MemDiff = { runs: [], pages: [], compared: 0, dropped: 0 };
  let run: PageRun | undefined;
  const close = () => {
    if (run) res.runs.push(run);
    run = undefined;
  };
  const extend = (kind: PageRunKind, addr: bigint, reason?: string): PageRun => {
    if (run && run.kind === kind && run.end === addr && run.reason === reason) {
      run.end += psB;
      run.pages++;
      return run;
    }
    close();
    const v = kind === 'only-b' ? rb.vmaAt(addr) : ra.vmaAt(addr);
    run = { pid, kind, start: addr, end: addr + psB, pages: 1, reason, where: vmaWhere(v) };
    return run;
  };
  for (const r of unionRanges(ra.presentRanges(), rb.presentRanges())) {
    // ranges are page aligned (pagemap entries and VMAs are); align defensively anyway
    let a = r.start - (r.start % psB);
    while (a < r.end) {
      const left = Number((r.end - a + psB - 1n) / psB);
      const n = Math.min(chunkPages, left);
      const len = n * ps;
      const ca = new PageCursor(ra.read(a, len));
      const cb = new PageCursor(rb.read(a, len));
      for (let p = 0; p < n; p++, a += psB) {
        const pa = ca.page(a, ps);
        const pb = cb.page(a, ps);
        const ha = typeof pa !== 'string';
        const hb = typeof pb !== 'string';
        if (!ha && !hb) { close(); continue; }
        res.compared++;
        if (ha && hb) {
          const d = countDiff(pa, pb);
          if (!d.n) { close(); continue; }
          const rr = extend('differ', a);
          rr.bytes = (rr.bytes ?? 0) + d.n;
          if (rr.first === undefined) rr.first = a + BigInt(d.first);
          if (res.pages.length < keep) res.pages.push({ pid, addr: a, a: pa.slice(), b: pb.slice() });
          else if (keep > 0) res.dropped++;
        } else if (ha) extend('only-a', a, pb as string);
        else extend('only-b', a, pa as string);
      }
    }
    close();
  }
  close();
  return res;
}
