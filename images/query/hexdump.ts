// Hexdump rows and byte classes (hexyl's convention: NUL, printable ASCII, whitespace, other),
// with repeated rows squeezed. Pure data: crit renders it with ANSI colours, the TUI with ink.
import type { Span } from '../memory/reader';

export type ByteClass = 'nul' | 'printable' | 'whitespace' | 'other' | 'absent';

export function byteClass(b: number): ByteClass {
  if (b === 0) return 'nul';
  if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0b || b === 0x0c || b === 0x0d) return 'whitespace';
  if (b > 0x20 && b < 0x7f) return 'printable';
  return 'other';
}

export interface HexRow {
  addr: bigint;
  /** 16 values; -1 where the image holds no byte; undefined past the requested end */
  bytes: number[];
  /** this row stands for `repeat` identical rows (squeezed into one `*` line after it) */
  squeezed?: number;
}

/** Rows of `width` bytes over spans from the memory reader, aligned to `width`. */
export function hexRows(spans: Span[], width = 16, squeeze = true): HexRow[] {
  if (!spans.length) return [];
  const start = spans[0].addr;
  const last = spans[spans.length - 1];
  const end = last.addr + BigInt(last.len);
  const w = BigInt(width);
  const rows: HexRow[] = [];
  let si = 0;
  const at = (a: bigint): number | undefined => {
    if (a < start || a >= end) return undefined;
    while (si < spans.length && spans[si].addr + BigInt(spans[si].len) <= a) si++;
    const s = spans[si];
    if (!s || a < s.addr) return undefined;
    return s.data ? s.data[Number(a - s.addr)] : -1;
  };
  let prevKey: string | undefined;
  let run = 0;
  for (let a = start - (start % w); a < end; a += w) {
    const bytes: number[] = [];
    for (let i = 0n; i < w; i++) {
      const v = at(a + i);
      bytes.push(v === undefined ? -2 : v);
    }
    const key = bytes.join(',');
    const full = a >= start && a + w <= end;
    if (squeeze && full && key === prevKey) {
      run++;
      continue;
    }
    if (run) rows[rows.length - 1].squeezed = run;
    run = 0;
    rows.push({ addr: a, bytes: bytes.map((b) => (b === -2 ? (undefined as unknown as number) : b)) });
    prevKey = full ? key : undefined;
  }
  if (run) rows[rows.length - 1].squeezed = run;
  return rows;
}
