// Per-message protobuf codecs, generated as JavaScript from the schema the first time a message
// type is used (the same technique protobufjs uses, but with proto2 presence kept exactly,
// unknown fields and unknown enum numbers preserved, and 64-bit values never rounded).
import { Reader, Writer, WireError, MAX_NESTING } from './wire';
import { messageType, enumType, FieldDesc, MessageDesc } from './schema';

/** Unknown fields of a decoded message: raw tag+value bytes, kept for byte-exact re-encoding. */
export const UNKNOWN = Symbol('unknownFields');

export interface UnknownField {
  no: number;
  bytes: Uint8Array;
}

export type Msg = Record<string, any> & { [UNKNOWN]?: UnknownField[] };

export class MissingFieldError extends Error {
  constructor(public typeName: string, public field: string) {
    super(`missing required field ${typeName}.${field}`);
  }
}

type DecodeFn = (r: Reader) => Msg;
type EncodeFn = (o: Msg, w: Writer) => void;

const decoders = new Map<string, DecodeFn>();
const encoders = new Map<string, EncodeFn>();

const READ: Record<string, [string, number]> = {
  uint32: ['u32', 0], int32: ['i32', 0], sint32: ['s32', 0],
  uint64: ['u64', 0], int64: ['i64', 0], sint64: ['s64', 0],
  fixed64: ['f64', 1], sfixed64: ['sf64', 1], fixed32: ['f32', 5], sfixed32: ['sf32', 5],
  bool: ['bool', 0], string: ['string', 2], bytes: ['bytes', 2],
};
const WRITE: Record<string, string> = {
  uint32: 'u32', int32: 'i32', sint32: 's32', uint64: 'u64', int64: 'u64', sint64: 's64',
  fixed64: 'f64', sfixed64: 'f64', fixed32: 'f32', sfixed32: 'f32', bool: 'bool', string: 'string', bytes: 'bytes',
};

function wireTypeOf(f: FieldDesc): number {
  if (f.kind === 'message') return 2;
  if (f.kind === 'enum') return 0;
  const r = READ[f.type];
  if (!r) throw new Error(`unsupported field type ${f.type}`);
  return r[1];
}

function addUnknown(o: Msg, no: number, buf: Uint8Array, start: number, end: number): void {
  const list = o[UNKNOWN] || (o[UNKNOWN] = []);
  list.push({ no, bytes: buf.slice(start, end) });
}

function missing(typeName: string, field: string): never {
  throw new MissingFieldError(typeName, field);
}

function compileDecoder(m: MessageDesc): DecodeFn {
  const deps: DecodeFn[] = [];
  const enumSets: Set<number>[] = [];
  const lines: string[] = [];
  lines.push('return function decode_' + m.name.replace(/\W/g, '_') + '(r) {');
  lines.push('const o = {}; const end = r.end;');
  lines.push('while (r.pos < end) {');
  lines.push('const start = r.pos; const tag = r.u32();');
  lines.push('switch (tag) {');
  for (const f of m.fields) {
    const key = JSON.stringify(f.name);
    const wt = wireTypeOf(f);
    const tag = (f.no << 3) | wt;
    const rep = f.label === 'repeated';
    if (f.kind === 'message') {
      const k = deps.length;
      deps.push(null as unknown as DecodeFn);
      const sub = `{ if (++r.depth > ${MAX_NESTING}) r.fail('sub-messages nested more than ${MAX_NESTING} deep'); const n = r.len(); const se = r.end; r.end = r.pos + n; const v = D[${k}](r); r.end = se; r.depth--;`;
      lines.push(`case ${tag}: ${sub} ${rep ? `(o[${key}] || (o[${key}] = [])).push(v);` : `o[${key}] = v;`} break; }`);
    } else if (f.kind === 'enum') {
      const k = enumSets.length;
      enumSets.push(new Set(enumType(f.type).byValue.keys()));
      const store = rep ? `(o[${key}] || (o[${key}] = [])).push(v)` : `o[${key}] = v`;
      lines.push(`case ${tag}: { const v = r.i32(); if (S[${k}].has(v)) ${store}; else U(o, ${f.no}, r.buf, start, r.pos); break; }`);
      if (rep) {
        lines.push(`case ${(f.no << 3) | 2}: { const n = r.len(); const e = r.pos + n; const se = r.end; r.end = e; while (r.pos < e) { const s0 = r.pos; const v = r.i32(); if (S[${k}].has(v)) ${store}; else U(o, ${f.no}, r.buf, s0, r.pos); } r.end = se; break; }`);
      }
    } else {
      const fn = READ[f.type][0];
      if (rep) {
        lines.push(`case ${tag}: (o[${key}] || (o[${key}] = [])).push(r.${fn}()); break;`);
        if (wt !== 2) {
          lines.push(`case ${(f.no << 3) | 2}: { const n = r.len(); const e = r.pos + n; const se = r.end; r.end = e; const a = o[${key}] || (o[${key}] = []); while (r.pos < e) a.push(r.${fn}()); r.end = se; break; }`);
        }
      } else {
        lines.push(`case ${tag}: o[${key}] = r.${fn}(); break;`);
      }
    }
  }
  lines.push("default: if ((tag >>> 3) === 0) r.fail('field number 0'); if ((tag & 7) === 4) r.fail('unexpected end-group tag'); r.skip(tag & 7); U(o, tag >>> 3, r.buf, start, r.pos);");
  lines.push('}');
  lines.push('}');
  for (const f of m.fields) {
    if (f.label === 'required') lines.push(`if (o[${JSON.stringify(f.name)}] === undefined) M(${JSON.stringify(m.name)}, ${JSON.stringify(f.name)});`);
  }
  lines.push('return o; };');
  const fn = new Function('D', 'S', 'U', 'M', lines.join('\n'))(deps, enumSets, addUnknown, missing) as DecodeFn;
  decoders.set(m.name, fn);
  // Fill dependencies after registering, so recursive types resolve to the same function.
  let k = 0;
  for (const f of m.fields) if (f.kind === 'message') deps[k++] = decoderFor(f.type);
  return fn;
}

function flushUnknown(w: Writer, u: UnknownField[], i: number, upTo: number): number {
  while (i < u.length && u[i].no < upTo) w.raw(u[i++].bytes);
  return i;
}

function compileEncoder(m: MessageDesc): EncodeFn {
  const deps: EncodeFn[] = [];
  const lines: string[] = [];
  lines.push('return function encode_' + m.name.replace(/\W/g, '_') + '(o, w) {');
  lines.push('let u = o[K]; let ui = 0; if (u) u = u.slice().sort((a, b) => a.no - b.no); let v;');
  for (const f of m.fields) {
    const key = JSON.stringify(f.name);
    const wt = wireTypeOf(f);
    const tag = (f.no << 3) | wt;
    lines.push(`if (u) ui = F(w, u, ui, ${f.no});`);
    lines.push(`v = o[${key}];`);
    let one: string;
    if (f.kind === 'message') {
      const k = deps.length;
      deps.push(null as unknown as EncodeFn);
      one = `{ w.u32(${tag}); const mk = w.beginSub(); E[${k}](x, w); w.endSub(mk); }`;
    } else if (f.kind === 'enum') {
      one = `{ w.u32(${tag}); w.i32(x); }`;
    } else {
      one = `{ w.u32(${tag}); w.${WRITE[f.type]}(x); }`;
    }
    if (f.label === 'repeated') {
      lines.push(`if (v !== undefined) for (let i = 0; i < v.length; i++) { const x = v[i]; ${one} }`);
    } else {
      lines.push(`if (v !== undefined) { const x = v; ${one} }`);
      if (f.label === 'required') lines.push(`else M(${JSON.stringify(m.name)}, ${key});`);
    }
  }
  lines.push('if (u) F(w, u, ui, Infinity);');
  lines.push('};');
  const fn = new Function('E', 'K', 'F', 'M', lines.join('\n'))(deps, UNKNOWN, flushUnknown, missing) as EncodeFn;
  encoders.set(m.name, fn);
  let k = 0;
  for (const f of m.fields) if (f.kind === 'message') deps[k++] = encoderFor(f.type);
  return fn;
}

/**
 * Path of the (sub-)message of `msg` that lacks a required field: '' for msg itself,
 * 'tc' or 'vmas[3]' below it; undefined when none does (error path only).
 */
export function missingFieldPath(typeName: string, msg: Msg): string | undefined {
  const m = messageType(typeName);
  for (const f of m.fields) {
    const v = msg[f.name];
    if (v === undefined) {
      if (f.label === 'required') return '';
      continue;
    }
    if (f.kind !== 'message') continue;
    const list: Msg[] = f.label === 'repeated' ? v : [v];
    for (let i = 0; i < list.length; i++) {
      const sub = missingFieldPath(f.type, list[i]);
      if (sub !== undefined) {
        const here = f.label === 'repeated' ? `${f.name}[${i}]` : f.name;
        return sub ? `${here}.${sub}` : here;
      }
    }
  }
  return undefined;
}

/**
 * The field an unknown-field record would be read back as (its number and wire type are a
 * known field's, and an enum's value is one of its names), or undefined when the reader keeps
 * it as unknown. Encode refuses the former: written, it would come back as a different message.
 */
export function unknownIsKnown(typeName: string, u: UnknownField): string | undefined {
  const m = messageType(typeName);
  const f = m.fields.find((x) => x.no === u.no);
  if (!f) return undefined;
  const r = new Reader(u.bytes);
  const wt = r.u32() & 7;
  const rep = f.label === 'repeated';
  if (f.kind === 'message') return wt === 2 ? f.name : undefined;
  const own = wireTypeOf(f);
  if (f.kind === 'enum') {
    const names = enumType(f.type).byValue;
    if (wt === 0) return names.has(r.i32()) ? f.name : undefined;
    if (wt === 2 && rep) {
      const n = r.len();
      const end = r.pos + n;
      r.end = end;
      while (r.pos < end) if (names.has(r.i32())) return f.name;
    }
    return undefined;
  }
  if (wt === own || (rep && own !== 2 && wt === 2)) return f.name;
  return undefined;
}

export function decoderFor(typeName: string): DecodeFn {
  return decoders.get(typeName) || compileDecoder(messageType(typeName));
}

export function encoderFor(typeName: string): EncodeFn {
  return encoders.get(typeName) || compileEncoder(messageType(typeName));
}

/** Decode one message occupying buf[start, end). Throws WireError or MissingFieldError. */
export function decodeMessage(typeName: string, buf: Uint8Array, start = 0, end = buf.length): Msg {
  const r = new Reader(buf, start, end);
  return decoderFor(typeName)(r);
}

const shared = new Writer(1 << 16);

/** Encode one message; the result is a view into a shared buffer, valid until the next call. */
export function encodeMessageView(typeName: string, msg: Msg): Uint8Array {
  shared.pos = 0;
  encoderFor(typeName)(msg, shared);
  return shared.finish();
}

export function encodeMessage(typeName: string, msg: Msg): Uint8Array {
  return encodeMessageView(typeName, msg).slice();
}

export { WireError };
