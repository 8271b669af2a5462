// Message -> JSON text, exactly as CRIT's pb2dict + Python's json.dumps produce it, in plain
// ("decode") and pretty ("decode --pretty", "show") modes. One writer function is generated per
// message type, mode and hex context, so the hot loop does no schema lookups.
import { messageType, enumType, FieldDesc } from '../schema';
import { BadUtf8 } from '../wire';
import { pyString, pyBytesRepr } from './pytext';
import { encodeBytes } from './b64';
import { qpEncode } from './quopri';
import { FLAG_DICTS, VALUE_DICTS, hexString, flagsString, devString, ipString, FormatError } from './dicts';
import { UNKNOWN, Msg, UnknownField } from '../codec';

/** JSON key that carries fields this schema does not know, so newer images still round-trip. */
export const UNKNOWN_KEY = '_unknown_fields';

export type Mode = 'plain' | 'pretty';
/** Where generated writers put text: they append to `s`; `flush` moves it on when large. */
export interface JsonOut {
  s: string;
  flush(): void;
}

type JsonFn = (o: Msg, ind: string, out: JsonOut, tail?: string) => void;

class StringOut implements JsonOut {
  s = '';
  parts: string[] = [];
  flush(): void {
    this.parts.push(this.s);
    this.s = '';
  }
  text(): string {
    this.flush();
    return this.parts.join('');
  }
}

// one map per (mode, hex context): the lookup per entry builds no key string
const caches: Record<string, Map<string, JsonFn>> = { 'plain:false': new Map(), 'plain:true': new Map(), 'pretty:false': new Map(), 'pretty:true': new Map() };
const cacheOf = (mode: Mode, hexCtx: boolean) => caches[`${mode}:${hexCtx}`];

const helpers = {
  pyString,
  str(x: string | BadUtf8): string {
    return typeof x === 'string' ? pyString(x) : pyString(pyBytesRepr(x.bytes));
  },
  b64(x: Uint8Array): string {
    return pyString(encodeBytes(x));
  },
  qp(x: Uint8Array): string {
    return pyString(qpEncode(x));
  },
  hex(x: number | bigint): string {
    return '"' + hexString(x) + '"';
  },
  dev(x: number | bigint, odev: boolean): string {
    return '"' + devString(x, odev) + '"';
  },
  flags(x: number | bigint, dict: string): string {
    return pyString(flagsString(x, FLAG_DICTS[dict] || []));
  },
  label(x: number | bigint, table: Map<number, string> | undefined): string {
    const l = table && table.get(Number(x));
    return l !== undefined ? pyString(l) : String(x);
  },
  unk(u: UnknownField[]): string {
    const parts = u.slice().sort((a, b) => a.no - b.no).map((f) => f.bytes);
    return pyString(encodeBytes(Buffer.concat(parts)));
  },
  ip(words: (number | bigint)[], ind: string): string {
    const s = pyString(ipString(words));
    return ind === '\0' ? '[' + s + ']' : '[\n' + ind + '    ' + s + '\n' + ind + ']';
  },
};

function valueTable(dict: string, field: string): Map<number, string> | undefined {
  const d = VALUE_DICTS[dict];
  const t = d && d[field];
  return t ? new Map(t) : undefined;
}

function compile(typeName: string, mode: Mode, hexCtx: boolean): JsonFn {
  const m = messageType(typeName);
  const pretty = mode === 'pretty';
  const deps: JsonFn[] = [];
  const depSpecs: [string, boolean][] = [];
  const consts: unknown[] = [];
  const C = (v: unknown) => { consts.push(v); return `C[${consts.length - 1}]`; };

  function scalarExpr(f: FieldDesc, hex: boolean): string {
    if (f.kind === 'enum') {
      const names = enumType(f.type).byValue;
      const quoted = new Map([...names].map(([k, v]) => [k, pyString(v)]));
      return `${C(quoted)}.get(x)`;
    }
    switch (f.type) {
      case 'bool': return `(x ? 'true' : 'false')`;
      case 'string': return 'H.str(x)';
      case 'bytes': return f.opts?.conv === 'unix_name' ? 'H.qp(x)' : 'H.b64(x)';
    }
    if (pretty) {
      const o = f.opts || {};
      if (hex || o.hex) return 'H.hex(x)';
      if (o.dev) return `H.dev(x, ${!!o.odev})`;
      if (o.flags) return `H.flags(x, ${JSON.stringify(o.flags)})`;
      if (o.dict) return `H.label(x, ${C(valueTable(o.dict, f.name))})`;
    }
    return 'String(x)';
  }

  // Output goes to out.s (flushed by the sink when large), never into one giant string.
  const lines: string[] = [];
  lines.push('return function (o, ind, out, tail) {');
  lines.push(pretty ? "const in1 = ind + '    '; const in2 = in1 + '    ';" : '');
  lines.push("let first = true; let x; out.s += '{';");
  const sepExpr = (key: string) => (pretty ? `(first ? '\\n' : ',\\n') + in1 + '${key}: '` : `(first ? '' : ', ') + '${key}: '`);
  for (const f of m.fields) {
    const key = pyString(f.name);
    const rep = f.label === 'repeated';
    const sep = sepExpr(key);
    lines.push(`x = o[${JSON.stringify(f.name)}];`);
    const childHex = hexCtx || !!f.opts?.hex;
    if (f.kind === 'message') {
      const k = deps.length;
      deps.push(null as unknown as JsonFn);
      depSpecs.push([f.type, pretty && childHex]);
      if (rep) {
        if (pretty) {
          lines.push(`if (x !== undefined && x.length) { out.s += ${sep} + '[\\n'; first = false; const ar = x; for (let i = 0; i < ar.length; i++) { out.s += (i ? ',\\n' : '') + in2; D[${k}](ar[i], in2, out); if (out.s.length > 65536) out.flush(); } out.s += '\\n' + in1 + ']'; }`);
        } else {
          lines.push(`if (x !== undefined && x.length) { out.s += ${sep} + '['; first = false; const ar = x; for (let i = 0; i < ar.length; i++) { if (i) out.s += ', '; D[${k}](ar[i], '', out); if (out.s.length > 65536) out.flush(); } out.s += ']'; }`);
        }
      } else {
        lines.push(`if (x !== undefined) { out.s += ${sep}; first = false; D[${k}](x, ${pretty ? 'in1' : "''"}, out); }`);
      }
      continue;
    }
    if (rep && pretty && f.opts?.ipadd && !childHex) {
      lines.push(`if (x !== undefined && x.length) { out.s += ${sep} + H.ip(x, in1); first = false; }`);
      continue;
    }
    const expr = scalarExpr(f, pretty && childHex);
    if (rep) {
      if (pretty) {
        lines.push(`if (x !== undefined && x.length) { let a = ''; const ar = x; for (let i = 0; i < ar.length; i++) { x = ar[i]; a += (i ? ',\\n' : '') + in2 + ${expr}; } out.s += ${sep} + '[\\n' + a + '\\n' + in1 + ']'; first = false; }`);
      } else {
        lines.push(`if (x !== undefined && x.length) { let a = ''; const ar = x; for (let i = 0; i < ar.length; i++) { x = ar[i]; a += (i ? ', ' : '') + ${expr}; } out.s += ${sep} + '[' + a + ']'; first = false; }`);
      }
    } else {
      lines.push(`if (x !== undefined) { out.s += ${sep} + ${expr}; first = false; }`);
    }
  }
  lines.push(`x = o[K]; if (x !== undefined && x.length) { out.s += ${sepExpr(pyString(UNKNOWN_KEY))} + H.unk(x); first = false; }`);
  lines.push(`if (tail !== undefined) { out.s += ${sepExpr('"extra"')} + tail; first = false; }`);
  lines.push(pretty ? "out.s += first ? '}' : '\\n' + ind + '}';" : "out.s += '}';");
  lines.push('};');
  const fn = new Function('D', 'H', 'C', 'K', lines.join('\n'))(deps, helpers, consts, UNKNOWN) as JsonFn;
  cacheOf(mode, hexCtx).set(typeName, fn);
  depSpecs.forEach(([t, h], i) => { deps[i] = jsonWriterFor(t, mode, h); });
  return fn;
}

export function jsonWriterFor(typeName: string, mode: Mode, hexCtx = false): JsonFn {
  const c = hexCtx ? (mode === 'plain' ? caches['plain:true'] : caches['pretty:true']) : mode === 'plain' ? caches['plain:false'] : caches['pretty:false'];
  return c.get(typeName) || compile(typeName, mode, hexCtx);
}

/** JSON text of one message; `ind` is the indentation of the line the object starts on. */
export function messageToJson(typeName: string, msg: Msg, mode: Mode, ind = '', tail?: string): string {
  const out = new StringOut();
  jsonWriterFor(typeName, mode)(msg, ind, out, tail);
  return out.text();
}

/** Streams one message's JSON into `out`; `tail`, if given, is the value of a last "extra" key. */
export function writeMessageJson(typeName: string, msg: Msg, mode: Mode, ind: string, out: JsonOut, tail?: string): void {
  jsonWriterFor(typeName, mode)(msg, ind, out, tail);
}

/**
 * Where a message cannot be written as JSON (error path only): the field path below the
 * message, e.g. "isk.src_addr", and why. Each field is written alone by the same generated
 * writers, so this finds exactly what made the whole message fail.
 */
export function locateFormatError(typeName: string, msg: Msg, mode: Mode, hexCtx = false): { path: string; message: string } | undefined {
  const m = messageType(typeName);
  const probe: JsonOut = { s: '', flush() { this.s = ''; } };
  for (const f of m.fields) {
    const v = msg[f.name];
    if (v === undefined) continue;
    if (f.kind === 'message') {
      const childHex = hexCtx || (mode === 'pretty' && !!f.opts?.hex);
      const list: Msg[] = f.label === 'repeated' ? v : [v];
      for (let i = 0; i < list.length; i++) {
        const hit = locateFormatError(f.type, list[i], mode, childHex);
        if (hit) return { path: `${f.name}${f.label === 'repeated' ? `[${i}]` : ''}.${hit.path}`, message: hit.message };
      }
      continue;
    }
    try {
      probe.s = '';
      jsonWriterFor(typeName, mode, hexCtx)({ [f.name]: v }, '', probe);
    } catch (e) {
      return { path: f.name, message: (e as Error).message };
    }
  }
  return undefined;
}

export { FormatError };
