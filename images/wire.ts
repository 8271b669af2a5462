// Protobuf wire primitives: a bounds-checked reader and a growable writer.
// 64-bit values are plain numbers while they fit in 2^53 and BigInt beyond, so the common
// case stays fast and nothing is ever rounded.

export type U64 = number | bigint;

export class WireError extends Error {
  constructor(message: string, public offset: number) {
    super(message);
  }
}

const TWO32 = 4294967296;

/** Sub-messages nest at most this deep (protobuf's own default limit), so a crafted image cannot exhaust the stack. */
export const MAX_NESTING = 100;

export class Reader {
  pos: number;
  end: number;
  /** sub-messages currently open (the decoders count them against MAX_NESTING) */
  depth = 0;
  constructor(public buf: Uint8Array, pos = 0, end = buf.length) {
    this.pos = pos;
    this.end = end;
  }

  fail(what: string): never {
    throw new WireError(what, this.pos);
  }

  /** A varint truncated to 32 bits, unsigned. */
  u32(): number {
    const b = this.buf;
    let p = this.pos;
    const end = this.end;
    if (p >= end) this.fail('truncated varint');
    let x = b[p++];
    if (x < 0x80) { this.pos = p; return x; }
    x &= 0x7f;
    let shift = 7;
    for (;;) {
      if (p >= end) { this.pos = p; this.fail('truncated varint'); }
      const c = b[p++];
      if (shift < 32) x |= (c & 0x7f) << shift;
      if (c < 0x80) break;
      shift += 7;
      if (shift > 63) { this.pos = p; this.fail('varint longer than 10 bytes'); }
    }
    this.pos = p;
    return x >>> 0;
  }

  i32(): number {
    return this.u32() | 0;
  }

  s32(): number {
    const v = this.u32();
    return (v >>> 1) ^ -(v & 1);
  }

  private lo = 0;
  private hi = 0;
  private v64(): void {
    const b = this.buf;
    let p = this.pos;
    const end = this.end;
    let lo = 0, hi = 0, shift = 0;
    for (;;) {
      if (p >= end) { this.pos = p; this.fail('truncated varint'); }
      const c = b[p++];
      if (shift < 28) lo |= (c & 0x7f) << shift;
      else if (shift === 28) { lo |= (c & 0x0f) << 28; hi |= (c & 0x7f) >> 4; }
      else if (shift < 64) hi |= (c & 0x7f) << (shift - 32);
      if (c < 0x80) break;
      shift += 7;
      if (shift > 63) { this.pos = p; this.fail('varint longer than 10 bytes'); }
    }
    this.pos = p;
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  u64(): U64 {
    this.v64();
    return joinU(this.lo, this.hi);
  }

  i64(): U64 {
    this.v64();
    return joinI(this.lo, this.hi);
  }

  s64(): U64 {
    this.v64();
    const lo = this.lo, hi = this.hi;
    // zig-zag: (u >>> 1) ^ -(u & 1)
    const neg = lo & 1;
    let nlo = ((lo >>> 1) | (hi << 31)) >>> 0;
    let nhi = hi >>> 1;
    if (neg) { nlo = ~nlo >>> 0; nhi = ~nhi >>> 0; }
    return joinI(nlo, nhi);
  }

  f64(): U64 {
    if (this.pos + 8 > this.end) this.fail('truncated fixed64');
    const b = this.buf, p = this.pos;
    const lo = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
    const hi = (b[p + 4] | (b[p + 5] << 8) | (b[p + 6] << 16) | (b[p + 7] << 24)) >>> 0;
    this.pos = p + 8;
    return joinU(lo, hi);
  }

  sf64(): U64 {
    const v = this.f64();
    return typeof v === 'bigint' ? BigInt.asIntN(64, v) : v;
  }

  f32(): number {
    if (this.pos + 4 > this.end) this.fail('truncated fixed32');
    const b = this.buf, p = this.pos;
    this.pos = p + 4;
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  sf32(): number {
    return this.f32() | 0;
  }

  bool(): boolean {
    this.v64();
    return (this.lo | this.hi) !== 0;
  }

  /** Length of a length-delimited field; checked against the current limit. */
  len(): number {
    const n = this.u32();
    if (n > this.end - this.pos) this.fail(`length ${n} runs past the end of the message (${this.end - this.pos} bytes left)`);
    return n;
  }

  bytes(): Uint8Array {
    const n = this.len();
    const out = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  string(): string | BadUtf8 {
    const n = this.len();
    const s = decodeUtf8(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.v64(); return;
      case 1: if (this.pos + 8 > this.end) this.fail('truncated fixed64'); this.pos += 8; return;
      case 2: { const n = this.len(); this.pos += n; return; }
      case 5: if (this.pos + 4 > this.end) this.fail('truncated fixed32'); this.pos += 4; return;
      case 3: {
        // group: skip nested fields until the matching end-group tag (counted, not recursive:
        // a run of start-group bytes must not exhaust the stack)
        for (let open = 1; open > 0;) {
          const t = this.u32();
          const wt = t & 7;
          if (wt === 4) open--;
          else if (wt === 3) open++;
          else this.skip(wt);
        }
        return;
      }
      default: this.fail(`invalid wire type ${wireType}`);
    }
  }
}

export function joinU(lo: number, hi: number): U64 {
  if (hi < 0x200000) return hi * TWO32 + lo;
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export function joinI(lo: number, hi: number): U64 {
  if (hi < 0x200000) return hi * TWO32 + lo;
  if (hi >= 0xffe00000) return (hi - TWO32) * TWO32 + lo;
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
}

/** A string field whose bytes are not valid UTF-8; kept as bytes so the image still re-encodes. */
export class BadUtf8 {
  constructor(public bytes: Uint8Array) {}
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodeUtf8(buf: Uint8Array, start: number, end: number): string | BadUtf8 {
  // ASCII fast path: most names and paths are plain ASCII.
  if (end - start < 64) {
    let s = '';
    let i = start;
    for (; i < end; i++) {
      const c = buf[i];
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === end) return s;
  }
  try {
    return utf8.decode(buf.subarray(start, end));
  } catch {
    return new BadUtf8(buf.slice(start, end));
  }
}

const enc = new TextEncoder();

export class Writer {
  buf: Uint8Array;
  pos = 0;
  constructor(size = 256) {
    this.buf = new Uint8Array(size);
  }

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = new Uint8Array(size);
    nb.set(this.buf.subarray(0, this.pos));
    this.buf = nb;
  }

  u32(v: number): void {
    this.reserve(5);
    const b = this.buf;
    let p = this.pos;
    v >>>= 0;
    while (v >= 0x80) { b[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
    b[p++] = v;
    this.pos = p;
  }

  /** int32: negatives are sign-extended to 10 bytes, as protobuf requires. */
  i32(v: number): void {
    if (v >= 0) this.u32(v);
    else this.raw64(v >>> 0, 0xffffffff);
  }

  s32(v: number): void {
    this.u32(((v << 1) ^ (v >> 31)) >>> 0);
  }

  raw64(lo: number, hi: number): void {
    this.reserve(10);
    const b = this.buf;
    let p = this.pos;
    while (hi !== 0 || lo >= 0x80) {
      b[p++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    b[p++] = lo;
    this.pos = p;
  }

  u64(v: U64): void {
    if (typeof v === 'number' && v >= 0 && v < TWO32) { this.u32(v); return; }
    const [lo, hi] = split64(v);
    this.raw64(lo, hi);
  }

  s64(v: U64): void {
    const b = BigInt.asUintN(64, (BigInt(v) << 1n) ^ (BigInt(v) >> 63n));
    this.raw64(Number(b & 0xffffffffn), Number(b >> 32n));
  }

  f64(v: U64): void {
    const [lo, hi] = split64(v);
    this.f32(lo);
    this.f32(hi);
  }

  f32(v: number): void {
    this.reserve(4);
    const b = this.buf, p = this.pos;
    b[p] = v & 0xff; b[p + 1] = (v >>> 8) & 0xff; b[p + 2] = (v >>> 16) & 0xff; b[p + 3] = (v >>> 24) & 0xff;
    this.pos = p + 4;
  }

  bool(v: boolean): void {
    this.reserve(1);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  bytes(v: Uint8Array): void {
    this.u32(v.length);
    this.reserve(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  raw(v: Uint8Array): void {
    this.reserve(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  string(v: string | BadUtf8): void {
    if (v instanceof BadUtf8) { this.bytes(v.bytes); return; }
    // Strings are short here; encodeInto with a worst-case reservation avoids a copy.
    this.reserve(5 + v.length * 3);
    const lenPos = this.pos;
    if (v.length < 43) {
      // at most 127 bytes: the length is one byte
      const r = enc.encodeInto(v, this.buf.subarray(lenPos + 1));
      this.buf[lenPos] = r.written;
      this.pos = lenPos + 1 + r.written;
      return;
    }
    this.bytes(enc.encode(v));
  }

  /** Start a length-delimited sub-message; returns the mark to pass to endSub. */
  beginSub(): number {
    this.reserve(1);
    return this.pos++;
  }

  endSub(mark: number): void {
    const len = this.pos - mark - 1;
    if (len < 0x80) { this.buf[mark] = len; return; }
    let k = 1;
    for (let v = len; v >= 0x80; v >>>= 7) k++;
    this.reserve(k - 1);
    this.buf.copyWithin(mark + k, mark + 1, this.pos);
    this.pos += k - 1;
    let p = mark;
    let v = len;
    while (v >= 0x80) { this.buf[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
    this.buf[p] = v;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

export function split64(v: U64): [number, number] {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) {
      if (v >= 0) return [v >>> 0, Math.floor(v / TWO32) >>> 0];
      // two's complement of a negative safe integer
      const b = BigInt.asUintN(64, BigInt(v));
      return [Number(b & 0xffffffffn), Number(b >> 32n)];
    }
    v = BigInt(v);
  }
  const b = BigInt.asUintN(64, v);
  return [Number(b & 0xffffffffn), Number(b >> 32n)];
}
