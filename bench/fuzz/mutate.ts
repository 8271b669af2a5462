// Input generation for the fuzz harness: a seeded generator per iteration (so any iteration
// can be regenerated alone), and mutators for binary images (bit flips, size words,
// truncations, splices, protobuf-aware field edits) and for JSON documents (value, key and
// entry edits on the parsed document, then text-level damage).
import { parseJson, JsonValue } from '../../images/json/parse';
import { pyJson } from '../../images/json/pytext';
import { MAGICS } from '../../images/magic';

/** splitmix32-style generator; `seed` and `i` fix the whole sequence. */
export class Rng {
  private s: number;
  constructor(seed: number, i: number) {
    this.s = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 0x27d4eb2f, 0xc2b2ae35)) >>> 0;
    for (let k = 0; k < 4; k++) this.u32();
  }
  u32(): number {
    let z = (this.s = (this.s + 0x9e3779b9) >>> 0);
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }
  /** integer in [0, n) */
  int(n: number): number {
    return n <= 1 ? 0 : this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  /** index by weights */
  weighted(w: readonly number[]): number {
    const total = w.reduce((a, b) => a + b, 0);
    let x = this.u32() % total;
    for (let i = 0; i < w.length; i++) {
      if (x < w[i]) return i;
      x -= w[i];
    }
    return w.length - 1;
  }
}

export interface BinInput {
  name: string;
  bytes: Buffer;
  /** offsets of entry size words (from the real reader) */
  entries: number[];
}

// ---- binary mutations -----------------------------------------------------------------------

const INTERESTING32 = [0, 1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING64 = [0n, 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x1fffffffffffffn, 0x20000000000000n, 0x20000000000001n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn];

function varint(v: bigint): Buffer {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}

interface WField {
  start: number;
  end: number;
  no: number;
  wt: number;
  /** where the value starts (after tag, and after the length for wire type 2) */
  val: number;
}

function readVarint(b: Buffer, p: number, end: number): [bigint, number] | undefined {
  let x = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (p >= end) return undefined;
    const c = b[p++];
    x |= BigInt(c & 0x7f) << shift;
    if (c < 0x80) return [x, p];
    shift += 7n;
  }
  return undefined;
}

/** The top-level fields of a protobuf message in b[start, end), or undefined if it is not one. */
function parseFields(b: Buffer, start: number, end: number): WField[] | undefined {
  const out: WField[] = [];
  let p = start;
  while (p < end) {
    const t = readVarint(b, p, end);
    if (!t) return undefined;
    const tag = Number(t[0] & 0xffffffffn);
    const no = tag >>> 3, wt = tag & 7;
    if (no === 0) return undefined;
    let q = t[1];
    let val = q;
    if (wt === 0) {
      const v = readVarint(b, q, end);
      if (!v) return undefined;
      q = v[1];
    } else if (wt === 1) q += 8;
    else if (wt === 5) q += 4;
    else if (wt === 2) {
      const n = readVarint(b, q, end);
      if (!n || n[0] > BigInt(end - n[1])) return undefined;
      val = n[1];
      q = n[1] + Number(n[0]);
    } else return undefined;
    if (q > end) return undefined;
    out.push({ start: p, end: q, no, wt, val });
    p = q;
  }
  return out;
}

/** A protobuf-aware edit of message bytes m; returns new bytes. Recurses into sub-messages. */
function editMessage(r: Rng, m: Buffer, depth = 0): Buffer {
  const fields = parseFields(m, 0, m.length);
  if (!fields || !fields.length || r.chance(0.08)) {
    // insert a random field
    const no = r.chance(0.7) ? 1 + r.int(20) : 1 + r.int(600);
    const wt = r.pick([0, 0, 1, 2, 2, 5, 3, 4, 6]);
    const tag = varint(BigInt((no << 3) | wt));
    let val: Buffer;
    if (wt === 0) val = varint(r.chance(0.5) ? BigInt(r.pick(INTERESTING32)) : r.pick(INTERESTING64));
    else if (wt === 1) val = randBytes(r, 8);
    else if (wt === 5) val = randBytes(r, 4);
    else if (wt === 2) { const body = randBytes(r, r.int(12)); val = Buffer.concat([varint(BigInt(body.length)), body]); }
    else val = Buffer.alloc(0);
    const at = fields && fields.length ? r.pick(fields).start : 0;
    return Buffer.concat([m.subarray(0, at), tag, val, m.subarray(at)]);
  }
  const f = r.pick(fields);
  const before = m.subarray(0, f.start), after = m.subarray(f.end);
  const tagBytes = m.subarray(f.start, f.wt === 2 ? lengthStart(m, f) : f.val);
  switch (r.int(f.wt === 2 ? 7 : 5)) {
    case 0: // delete the field
      return Buffer.concat([before, after]);
    case 1: // duplicate it
      return Buffer.concat([m.subarray(0, f.end), m.subarray(f.start, f.end), after]);
    case 2: { // change the wire type
      const tag = varint(BigInt((f.no << 3) | r.pick([0, 1, 2, 3, 4, 5, 6, 7].filter((w) => w !== f.wt))));
      return Buffer.concat([before, tag, m.subarray(f.wt === 2 ? lengthStart(m, f) : f.val)]);
    }
    case 3: { // a new value
      if (f.wt === 0) return Buffer.concat([before, tagBytes, varint(r.chance(0.5) ? BigInt(r.pick(INTERESTING32)) : r.pick(INTERESTING64)), after]);
      if (f.wt === 1 || f.wt === 5) return Buffer.concat([before, tagBytes, randBytes(r, f.wt === 1 ? 8 : 4), after]);
      const body = r.chance(0.5) ? randBytes(r, r.int(40)) : Buffer.from(r.pick(['', '/', 'x'.repeat(300), '\u00ff\u00fe', 'a\u0000b']), 'latin1');
      return Buffer.concat([before, tagBytes, varint(BigInt(body.length)), body, after]);
    }
    case 4: { // a varint made long (non-canonical, or over 10 bytes)
      if (f.wt !== 0) return Buffer.concat([before, after]);
      const v = m.subarray(f.val, f.end);
      const pad = Buffer.from([...v.subarray(0, v.length - 1)].map((x) => x | 0x80).concat([v[v.length - 1] | 0x80, ...new Array(r.int(9)).fill(0x80), 0]));
      return Buffer.concat([before, tagBytes, pad, after]);
    }
    case 5: { // a wrong length
      const n = m.length - f.val;
      const len = r.pick([0, 1, n, n + 1, 0x7fffffff, 0xffffffff, Math.max(0, f.end - f.val - 1)]);
      return Buffer.concat([before, tagBytes, varint(BigInt(len)), m.subarray(f.val)]);
    }
    default: { // recurse into a sub-message (or packed data), fixing the length
      if (depth > 6) return m;
      const inner = editMessage(r, m.subarray(f.val, f.end), depth + 1);
      return Buffer.concat([before, tagBytes, varint(BigInt(inner.length)), inner, after]);
    }
  }
}

function lengthStart(m: Buffer, f: WField): number {
  // the tag of a wire-type-2 field ends where its length varint starts
  const t = readVarint(m, f.start, f.end)!;
  return t[1];
}

function randBytes(r: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

/** One to three mutations of an image. `other` supplies splice material. */
export function mutateBinary(r: Rng, inp: BinInput, other: BinInput): Buffer {
  let b: Buffer = Buffer.from(inp.bytes);
  const rounds = 1 + (r.chance(0.3) ? r.int(3) : 0);
  for (let k = 0; k < rounds; k++) b = mutateOnce(r, b, inp.entries, other);
  return b;
}

function mutateOnce(r: Rng, b: Buffer, entries: number[], other: BinInput): Buffer {
  const n = b.length;
  const ents = entries.filter((o) => o + 4 <= n);
  switch (r.weighted([14, 8, 12, 8, 8, 6, 30, 4, 4])) {
    case 0: { // bit flips
      const c = Buffer.from(b);
      for (let i = 1 + r.int(8); i > 0 && n; i--) c[r.int(n)] ^= 1 << r.int(8);
      return c;
    }
    case 1: { // interesting bytes
      const c = Buffer.from(b);
      for (let i = 1 + r.int(4); i > 0 && n; i--) c[r.int(n)] = r.pick([0, 0xff, 0x7f, 0x80, 0x01, 0x0a, 0x12]);
      return c;
    }
    case 2: { // a size word
      if (!ents.length) return b;
      const at = r.pick(ents);
      const c = Buffer.from(b);
      const cur = c.readUInt32LE(at);
      c.writeUInt32LE(r.pick([...INTERESTING32, cur + 1, Math.max(0, cur - 1), n - at - 4, n - at - 3]) >>> 0, at);
      return c;
    }
    case 3: { // truncation: anywhere, or at/inside an entry
      if (!n) return b;
      const at = ents.length && r.chance(0.5) ? r.pick(ents) + r.int(6) : r.int(n);
      return b.subarray(0, Math.min(at, n));
    }
    case 4: { // splice from another image
      const o = other.bytes;
      if (!o.length) return b;
      const from = r.int(o.length), len = Math.min(o.length - from, 1 + r.int(256));
      const at = r.int(n + 1);
      const piece = o.subarray(from, from + len);
      return r.chance(0.5) ? Buffer.concat([b.subarray(0, at), piece, b.subarray(at)]) : Buffer.concat([b.subarray(0, at), piece, b.subarray(Math.min(n, at + len))]);
    }
    case 5: { // duplicate or drop a whole entry
      if (ents.length < 1) return b;
      const k = r.int(ents.length);
      const s = ents[k], e = k + 1 < ents.length ? ents[k + 1] : n;
      return r.chance(0.5) ? Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)]) : Buffer.concat([b.subarray(0, s), b.subarray(e)]);
    }
    case 6: { // protobuf-aware edit of one entry, the size word fixed up (mostly)
      if (!ents.length) return b;
      const k = r.int(ents.length);
      const at = ents[k];
      const size = b.readUInt32LE(at);
      if (at + 4 + size > n) return b;
      const payload = b.subarray(at + 4, at + 4 + size);
      const edited = editMessage(r, payload);
      const sw = Buffer.alloc(4);
      sw.writeUInt32LE(r.chance(0.9) ? edited.length : size);
      return Buffer.concat([b.subarray(0, at), sw, edited, b.subarray(at + 4 + size)]);
    }
    case 7: // append garbage
      return Buffer.concat([b, randBytes(r, 1 + r.int(64))]);
    default: { // a magic word from another kind
      if (n < 8) return b;
      const c = Buffer.from(b);
      const names = Object.keys(MAGICS);
      c.writeUInt32LE(MAGICS[r.pick(names)] >>> 0, r.chance(0.5) ? 4 : 0);
      return c;
    }
  }
}

// ---- JSON mutations -------------------------------------------------------------------------

const NUMBERS: JsonValue[] = [0, 1, -1, 2, 255, 256, 4096, 65535, 65536, 2147483647, 2147483648, 4294967295, 4294967296, 9007199254740991, 9007199254740993n,
  9223372036854775807n, 9223372036854775808n, 18446744073709551615n, 18446744073709551616n, -9223372036854775808n, -9223372036854775809n, 1.5, -0.5, 1e300, 1234567890.1234567];
const STRINGS: JsonValue[] = ['', '0x', '0x1g', '0xffffffffffffffff', '0x10000000000000000', '-0x1', '0o777', '0b101', '1_000', ' 12 ', 'PROT_READ | PROT_WRITE', 'PROT_READ | 0x100', 'MAP_NOPE',
  'garbage', '\u0000', '\u00e9t\u00e9', '\ud800', '::1', '1.2.3.4', '::ffff:1.2.3.4', '1:2:3:4:5:6:7:8::9', '1.2.3', '256.1.1.1', '8:1', '8:', ':', '4294967296:0',
  "b'\\xff'", 'YWJj\n', 'YWJ', '=', 'a===', 'Alive', 'Zombie', 'STREAM', 'ESTABLISHED', 'REG', 'INETSK', 'NATIVE', 'x'.repeat(5000)];

// deeply nested arrays stand in the document as a marker string, expanded in the text
// (serialising them recursively would exhaust the harness's own stack)
const DEEP = '\u0001DEEP';
function deep(n: number): JsonValue {
  return `${DEEP}${n}\u0001`;
}

function expandDeep(text: string): string {
  return text.replace(/"\\u0001DEEP(\d+)\\u0001"/g, (_m, n) => '['.repeat(Number(n)) + ']'.repeat(Number(n)));
}

function interesting(r: Rng, like: JsonValue): JsonValue {
  const kind = r.weighted([typeof like === 'number' || typeof like === 'bigint' ? 10 : 3, typeof like === 'string' ? 10 : 3, 2, 2, 1]);
  if (kind === 0) return r.pick(NUMBERS);
  if (kind === 1) return r.chance(0.1) ? 'Q'.repeat(100000) : r.pick(STRINGS);
  if (kind === 2) return r.pick([null, true, false, [], {}] as JsonValue[]);
  if (kind === 3) return Array.isArray(like) && like.length ? [like[0]] : r.chance(0.5) ? [r.pick(NUMBERS)] : [r.pick(NUMBERS), r.pick(NUMBERS)];
  return r.chance(0.5) ? deep(1 + r.int(3000)) : { nested: deep(50) };
}

function clone(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(clone);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, JsonValue> = {};
    for (const k of Object.keys(v)) o[k] = clone(v[k]);
    return o;
  }
  return v;
}

type Slot = { parent: JsonValue[] | Record<string, JsonValue>; key: string | number };

/** Every value slot of a document, as (container, key) pairs, up to a limit. */
function slots(v: JsonValue, out: Slot[], limit: number): void {
  const stack: JsonValue[] = [v];
  while (stack.length && out.length < limit) {
    const x = stack.pop()!;
    if (Array.isArray(x)) x.forEach((c, i) => { out.push({ parent: x, key: i }); if (c !== null && typeof c === 'object') stack.push(c); });
    else if (x !== null && typeof x === 'object') for (const k of Object.keys(x)) { out.push({ parent: x, key: k }); const c = x[k]; if (c !== null && typeof c === 'object') stack.push(c); }
  }
}

const get = (s: Slot) => (s.parent as any)[s.key] as JsonValue;
const set = (s: Slot, v: JsonValue) => { (s.parent as any)[s.key] = v; };

/** Mutated JSON text of a decoded document (`text`); `other` supplies splice material. */
export function mutateJson(r: Rng, text: string, other: string, pretty: boolean): string {
  let doc: JsonValue;
  try {
    doc = parseJson(text);
  } catch {
    return text;
  }
  const rounds = 1 + (r.chance(0.3) ? r.int(3) : 0);
  for (let k = 0; k < rounds; k++) structural(r, doc, other);
  let out = expandDeep(pyJson(doc, pretty));
  if (r.chance(0.15)) out = textual(r, out, other);
  return out;
}

function structural(r: Rng, doc: JsonValue, other: string): void {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return;
  const entries = Array.isArray(doc.entries) ? doc.entries : undefined;
  const all: Slot[] = [];
  slots(entries ?? doc, all, 20000);
  switch (r.weighted([40, 10, 8, 8, 6, 4, 4, 3, 3])) {
    case 0: { // a new value somewhere
      if (!all.length) return;
      const s = r.pick(all);
      set(s, interesting(r, get(s)));
      return;
    }
    case 1: { // drop a key
      const objs = all.filter((s) => !Array.isArray(s.parent));
      if (!objs.length) return;
      const s = r.pick(objs);
      delete (s.parent as Record<string, JsonValue>)[s.key as string];
      return;
    }
    case 2: { // array edits: empty, drop, duplicate an element (short lists of numbers first:
      // counts such as an address's words matter)
      const arrs = all.filter((s) => Array.isArray(get(s)));
      if (!arrs.length) return;
      const short = arrs.filter((s) => { const v = get(s) as JsonValue[]; return v.length > 0 && v.length <= 8 && v.every((x) => typeof x !== 'object' || x === null); });
      const a = get(short.length && r.chance(0.6) ? r.pick(short) : r.pick(arrs)) as JsonValue[];
      const m = r.int(3);
      if (m === 0) a.length = 0;
      else if (a.length && m === 1) a.splice(r.int(a.length), 1);
      else if (a.length) a.splice(r.int(a.length), 0, clone(a[r.int(a.length)]));
      return;
    }
    case 3: { // entries: drop, duplicate, empty
      if (!entries) return;
      const m = r.int(3);
      if (m === 0) entries.length = 0;
      else if (entries.length && m === 1) entries.splice(r.int(entries.length), 1);
      else if (entries.length) entries.push(entries[r.int(entries.length)]);
      return;
    }
    case 4: // another magic
      doc.magic = r.chance(0.9) ? r.pick(Object.keys(MAGICS).concat(['AMDGPU_KFD', 'AMDGPU_RENDER_NODE', 'AMDGPU_DMABUF', 'AMDGPU_PAGES', 'AMDGPU_DRM_PAGES', 'NOPE'])) : r.pick([1, null, ['CORE']] as JsonValue[]);
      return;
    case 5: { // an unknown key, or _unknown_fields
      if (!entries || !entries.length) return;
      const e = entries[r.int(entries.length)];
      if (e === null || typeof e !== 'object' || Array.isArray(e)) return;
      if (r.chance(0.5)) e._unknown_fields = r.pick(['CAE=\n', '////\n', 'CAEQ\n', 'Cw==\n', 'KAA=\n', 'YQ==\n', '']);
      else e[r.pick(['extra', 'zzz', '__proto__', 'constructor'])] = interesting(r, null);
      return;
    }
    case 6: { // splice in an entry of another document
      if (!entries) return;
      try {
        const o = parseJson(other) as any;
        if (Array.isArray(o?.entries) && o.entries.length) entries.splice(r.int(entries.length + 1), 0, o.entries[r.int(o.entries.length)]);
      } catch { /* not JSON */ }
      return;
    }
    case 7: { // swap two values of the same document (copies: one may hold the other)
      if (all.length < 2) return;
      const a = r.pick(all), b = r.pick(all);
      const t = clone(get(a));
      set(a, clone(get(b)));
      set(b, t);
      return;
    }
    default: // a document shape error
      if (r.chance(0.5)) doc.entries = interesting(r, null);
      else delete doc[r.pick(['magic', 'entries'])];
  }
}

function textual(r: Rng, s: string, other: string): string {
  const n = s.length;
  switch (r.int(5)) {
    case 0: return s.slice(0, r.int(n + 1));
    case 1: { const at = r.int(n); return s.slice(0, at) + r.pick(['"', ',', '{', '}', '[', ']', ':', '\\', '\u0000', '\u00ff', '1', ' ', '\n']) + s.slice(at + 1); }
    case 2: { const at = r.int(n + 1); return s.slice(0, at) + other.slice(r.int(other.length), r.int(other.length)) + s.slice(at); }
    case 3: { const at = r.int(n); const len = r.int(64); return s.slice(0, at + len) + s.slice(at, at + len) + s.slice(at + len); }
    default: return s + r.pick(['', ' ', 'x', '{}', ']', '\n\n']);
  }
}
