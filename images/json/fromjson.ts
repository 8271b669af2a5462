// JSON value -> message, as CRIT's dict2pb reads it: plain numbers or pretty strings (hex,
// "maj:min", flag names, dictionary labels, IP addresses) for integers, base64 or
// quoted-printable for bytes, enum names. Unlike CRIT, bad values get an error with a JSON path.
import { messageType, enumType, FieldDesc, is64 } from '../schema';
import { UNKNOWN, Msg, UnknownField, unknownIsKnown } from '../codec';
import { Reader } from '../wire';
import { decodeBytes } from './b64';
import { qpDecode } from './quopri';
import { FLAG_DICTS, VALUE_DICTS, parseDev, parseFlags, parsePyInt, parseIp } from './dicts';
import { UNKNOWN_KEY } from './tojson';
import type { JsonValue } from './parse';
import { clipText } from './clip';
import { MAX_NESTING } from '../wire';

export class JsonConvertError extends Error {
  constructor(public path: string, message: string) {
    super(`${path}: ${message}`);
  }
}

// Paths are built only when something is wrong: converters get the parent path and the key.
export type Conv = (v: JsonValue, parent: string, key: string | number) => unknown;
type MsgConv = (v: JsonValue, parent: string, key: string | number) => Msg;

export function keyPath(parent: string, key: string | number): string {
  return typeof key === 'number' ? `${parent}[${key}]` : key === '' ? parent : `${parent}.${key}`;
}

/** "0x" and up to 13 hex digits: exact as a double, no BigInt needed */
const HEX_SHORT = /^0x[0-9a-fA-F]{1,13}$/;

const RANGES: Record<string, [bigint, bigint]> = {
  uint32: [0n, 0xffffffffn], fixed32: [0n, 0xffffffffn],
  int32: [-0x80000000n, 0x7fffffffn], sint32: [-0x80000000n, 0x7fffffffn], sfixed32: [-0x80000000n, 0x7fffffffn],
  uint64: [0n, 0xffffffffffffffffn], fixed64: [0n, 0xffffffffffffffffn],
  int64: [-0x8000000000000000n, 0x7fffffffffffffffn], sint64: [-0x8000000000000000n, 0x7fffffffffffffffn], sfixed64: [-0x8000000000000000n, 0x7fffffffffffffffn],
};

const cache = new Map<string, MsgConv>();

/** message levels open in the converters (both this one and readmsg.ts count here) */
export const nesting = { depth: 0 };

export function typeName(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'bigint') return 'a number';
  return `a ${typeof v}`;
}

function pyTruthy(v: JsonValue): boolean {
  if (v === null || v === false || v === 0 || v === 0n || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === 'object') return Object.keys(v).length > 0;
  return true;
}

function intConv(f: FieldDesc): Conv {
  const range = RANGES[f.type];
  const wide = is64(f.type);
  const o = f.opts || {};
  const flagDict = o.flags ? FLAG_DICTS[o.flags] || [] : undefined;
  const labels = o.dict ? VALUE_DICTS[o.dict]?.[f.name] : undefined;
  const lo = Number(range[0]), hi = Number(range[1]);
  // pretty text repeats the same flag strings (every VMA's prot/flags/status): remember them
  const flagMemo = flagDict ? new Map<string, number>() : undefined;
  return (v, parent, key) => {
    // fast paths: a plain safe integer, short "0x..." hex, or a flag string seen before
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi) return v;
    if (typeof v === 'string') {
      if (HEX_SHORT.test(v) && !(o.dev && v.includes(':'))) {
        const n = parseInt(v.slice(2), 16);
        if (n >= lo && n <= hi) return n;
      } else if (flagMemo) {
        const n = flagMemo.get(v);
        if (n !== undefined) return n;
      }
    }
    const path = keyPath(parent, key);
    let b: bigint;
    if (typeof v === 'number') {
      // a fraction or an exponent: never truncated into a different (maybe huge) value
      if (!Number.isInteger(v)) throw new JsonConvertError(path, `${v} is not an integer (${f.type})`);
      if (!Number.isSafeInteger(v)) throw new JsonConvertError(path, `${v} is not exact as written (an exponent or a fraction); write the integer out in full`);
      b = BigInt(v);
    } else if (typeof v === 'bigint') b = v;
    else if (typeof v === 'string') {
      // no integer of 64 bits (or flag list) is this long; bounds the parsing work
      if (v.length > 1000) throw new JsonConvertError(path, `a string of ${v.length} characters is not an integer (${f.type})`);
      try {
        if (o.dev && v.includes(':')) b = parseDev(v, !!o.odev);
        else if (flagDict) {
          b = parseFlags(v, flagDict);
          if (b >= range[0] && b <= range[1] && flagMemo!.size < 4096) flagMemo!.set(v, Number(b));
        }
        else if (labels && labels.some(([, l]) => l === v)) b = BigInt(labels.find(([, l]) => l === v)![0]);
        else b = parsePyInt(v);
      } catch (e) {
        throw new JsonConvertError(path, (e as Error).message);
      }
    } else if (typeof v === 'boolean') b = v ? 1n : 0n;
    else throw new JsonConvertError(path, `expected an integer, got ${typeName(v)}`);
    if (b < range[0] || b > range[1]) throw new JsonConvertError(path, `value ${clipText(String(b))} out of range for ${f.type}`);
    if (!wide) return Number(b);
    return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
  };
}

/**
 * An address (ipadd) is 1 word (IPv4) or 4 (IPv6): 2 or 3 could not be decoded --pretty, and
 * --pretty prints only the first 4 of more (as CRIT does), so such an image would not read back.
 */
export function checkAddressWords(n: number, path: string): void {
  if (n > 1 && n !== 4) throw new JsonConvertError(path, `an address of ${n} words: an IPv4 address is 1 word, an IPv6 address 4`);
}

export function scalarConv(f: FieldDesc): Conv {
  if (f.kind === 'enum') {
    const e = enumType(f.type);
    return (v, parent, key) => {
      if (typeof v !== 'string') throw new JsonConvertError(keyPath(parent, key), `expected an enum name of ${f.type}, got ${typeName(v)}`);
      const n = e.byName.get(v);
      if (n === undefined) throw new JsonConvertError(keyPath(parent, key), `'${clipText(v)}' is not a value of enum ${f.type}`);
      return n;
    };
  }
  switch (f.type) {
    case 'bool': return (v) => pyTruthy(v);
    case 'string': return (v, parent, key) => {
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'bigint') return String(v);
      if (typeof v === 'boolean') return v ? 'True' : 'False';
      throw new JsonConvertError(keyPath(parent, key), `expected a string, got ${typeName(v)}`);
    };
    case 'bytes': {
      const qp = f.opts?.conv === 'unix_name';
      return (v, parent, key) => {
        if (typeof v !== 'string') throw new JsonConvertError(keyPath(parent, key), `expected a ${qp ? 'quoted-printable' : 'base64'} string, got ${typeName(v)}`);
        try {
          return qp ? qpDecode(v) : decodeBytes(v);
        } catch (e) {
          throw new JsonConvertError(keyPath(parent, key), (e as Error).message);
        }
      };
    }
  }
  return intConv(f);
}

/**
 * The records of an "_unknown_fields" value, refused when one would read back as a known
 * field (the message would come back different from what was written).
 */
export function unknownFields(typeName: string, b64: string, path: string): UnknownField[] {
  let list: UnknownField[];
  try {
    list = splitUnknown(decodeBytes(b64));
  } catch (e) {
    throw new JsonConvertError(path, (e as Error).message);
  }
  for (const u of list) {
    const known = unknownIsKnown(typeName, u);
    if (known) throw new JsonConvertError(path, `holds field ${u.no}, which is ${typeName}.${known}: give it as "${known}"`);
  }
  return list;
}

/** Split raw wire bytes into per-field unknown-field records. */
export function splitUnknown(bytes: Uint8Array): UnknownField[] {
  const r = new Reader(bytes);
  const out: UnknownField[] = [];
  while (r.pos < r.end) {
    const start = r.pos;
    const tag = r.u32();
    if ((tag >>> 3) === 0) r.fail('field number 0');
    r.skip(tag & 7);
    out.push({ no: tag >>> 3, bytes: bytes.slice(start, r.pos) });
  }
  return out;
}

function compile(name: string): MsgConv {
  const m = messageType(name);
  const plan: { name: string; rep: boolean; conv: Conv; ipadd: boolean }[] = [];
  const fn: MsgConv = (v, parent, key) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JsonConvertError(keyPath(parent, key), `expected an object for ${name}, got ${typeName(v)}`);
    if (nesting.depth > MAX_NESTING) throw new JsonConvertError(keyPath(parent, key), `messages nested more than ${MAX_NESTING} deep (the reader refuses deeper ones)`);
    nesting.depth++;
    try {
      return convert(v, keyPath(parent, key));
    } finally {
      nesting.depth--;
    }
  };
  const convert = (v: Record<string, JsonValue>, path: string): Msg => {
    const o: Msg = {};
    for (let i = 0; i < plan.length; i++) {
      const p = plan[i];
      const x = v[p.name];
      if (x === undefined) continue;
      if (p.rep) {
        if (!Array.isArray(x)) throw new JsonConvertError(keyPath(path, p.name), `expected an array, got ${typeName(x)}`);
        if (p.ipadd && typeof x[0] === 'string') {
          try {
            o[p.name] = parseIp(x[0]);
          } catch (e) {
            throw new JsonConvertError(keyPath(path, p.name), (e as Error).message);
          }
          continue;
        }
        const a = new Array(x.length);
        const fp = x.length ? keyPath(path, p.name) : '';
        for (let j = 0; j < x.length; j++) a[j] = p.conv(x[j], fp, j);
        if (p.ipadd) checkAddressWords(a.length, keyPath(path, p.name));
        if (a.length) o[p.name] = a;
      } else {
        o[p.name] = p.conv(x, path, p.name);
      }
    }
    const u = v[UNKNOWN_KEY];
    if (typeof u === 'string' && u.length) o[UNKNOWN] = unknownFields(name, u, keyPath(path, UNKNOWN_KEY));
    return o;
  };
  cache.set(name, fn);
  for (const f of m.fields) {
    plan.push({
      name: f.name,
      rep: f.label === 'repeated',
      conv: f.kind === 'message' ? msgConverterFor(f.type) : scalarConv(f),
      ipadd: !!f.opts?.ipadd,
    });
  }
  return fn;
}

export function msgConverterFor(name: string): MsgConv {
  return cache.get(name) || compile(name);
}

export function jsonToMessage(typeName: string, v: JsonValue, path = 'entry'): Msg {
  return msgConverterFor(typeName)(v, path, '');
}
