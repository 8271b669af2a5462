// Searching a task's memory: literal bytes or a regular expression, across page and entry
// boundaries, reading the image in large blocks (the pages file is read once, sequentially).
import type { MemoryReader } from '../memory/reader';

export interface Match {
  addr: bigint;
  length: number;
  /** bytes around the match (context before, the match, context after) */
  context: Uint8Array;
  contextStart: bigint;
}

const BLOCK = 8 << 20;

export type Pattern = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'regex'; re: RegExp };

type Ranges = Iterable<{ start: bigint; end: bigint }>;

/**
 * Every match in the ranges the image holds bytes for (absent pages break a run); `ranges`
 * narrows the search (e.g. to filtered VMAs), by default every range the image holds.
 */
export function* searchMemory(mem: MemoryReader, pat: Pattern, context = 0, maxMatchLen = 4096, ranges: Ranges = mem.presentRanges()): Generator<Match> {
  const overlap = pat.kind === 'bytes' ? Math.max(0, pat.bytes.length - 1) : maxMatchLen;
  // one reused buffer: [carried tail of the previous block | next block]
  const buf = Buffer.allocUnsafe(BLOCK + overlap + context * 2);
  for (const r of ranges) {
    let pos = r.start;
    let carry = 0;
    let reported = r.start; // matches starting below this address were already yielded
    while (pos < r.end) {
      const n = Number(r.end - pos < BigInt(BLOCK) ? r.end - pos : BigInt(BLOCK));
      mem.readInto(pos, buf, carry, n);
      const filled = carry + n;
      const base = pos - BigInt(carry);
      const isLast = pos + BigInt(n) >= r.end;
      // matches must start before the kept tail unless this is the run's last block
      const limit = isLast ? filled : filled - overlap;
      const view = buf.subarray(0, filled);
      const from = Number(reported - base);
      for (const [off, len] of findAll(view, pat, limit, from)) {
        const cs = Math.max(0, off - context);
        const ce = Math.min(filled, off + len + context);
        yield { addr: base + BigInt(off), length: len, context: Uint8Array.from(view.subarray(cs, ce)), contextStart: base + BigInt(cs) };
      }
      reported = base + BigInt(limit);
      const keep = isLast ? 0 : Math.min(overlap + context, filled);
      buf.copyWithin(0, filled - keep, filled);
      carry = keep;
      pos += BigInt(n);
    }
  }
}

function* findAll(buf: Buffer, pat: Pattern, limit: number, from = 0): Generator<[number, number]> {
  if (pat.kind === 'bytes') {
    if (!pat.bytes.length) return;
    let i = buf.indexOf(pat.bytes, from);
    while (i >= 0 && i < limit) {
      yield [i, pat.bytes.length];
      i = buf.indexOf(pat.bytes, i + 1);
    }
    return;
  }
  // latin1 maps each byte to one UTF-16 unit, so string offsets are byte offsets
  const text = buf.toString('latin1');
  const re = new RegExp(pat.re.source, pat.re.flags.includes('g') ? pat.re.flags : pat.re.flags + 'g');
  re.lastIndex = from;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) && m.index < limit) {
    yield [m.index, m[0].length];
    if (m[0].length === 0) re.lastIndex++;
  }
}

export interface StringHit {
  addr: bigint;
  text: string;
}

/** Printable ASCII runs of at least minLen bytes (like strings(1)). */
export function* memoryStrings(mem: MemoryReader, minLen = 6, ranges: Ranges = mem.presentRanges()): Generator<StringHit> {
  for (const r of ranges) {
    let pos = r.start;
    let cur = '';
    let curStart = pos;
    while (pos < r.end) {
      const n = Number(r.end - pos < BigInt(BLOCK) ? r.end - pos : BigInt(BLOCK));
      const chunk = mem.readBytes(pos, n);
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i];
        if ((c >= 0x20 && c < 0x7f) || c === 0x09) {
          if (!cur) curStart = pos + BigInt(i);
          cur += String.fromCharCode(c);
        } else {
          if (cur.length >= minLen) yield { addr: curStart, text: cur };
          cur = '';
        }
      }
      pos += BigInt(n);
    }
    if (cur.length >= minLen) yield { addr: curStart, text: cur };
  }
}
