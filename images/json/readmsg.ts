// JSON text -> message in one pass: the schema drives the parser, so values are converted as
// they are read and no intermediate JSON objects are built (encode's hot path). Semantics are
// those of fromjson.ts, which this falls back to for anything unusual.
import { messageType } from '../schema';
import { UNKNOWN, Msg } from '../codec';
import { JsonParser, JsonValue } from './parse';
import { parseIp } from './dicts';
import { UNKNOWN_KEY } from './tojson';
import { JsonConvertError, Conv, keyPath, typeName, scalarConv, unknownFields, msgConverterFor, nesting, checkAddressWords } from './fromjson';
import { MAX_NESTING } from '../wire';

/** Reads one message at p.pos; keys that are not fields land in `rest` when given. */
export type MsgReader = (p: JsonParser, parent: string, key: string | number, rest?: Record<string, JsonValue>) => Msg;

interface Plan {
  name: string;
  rep: boolean;
  ipadd: boolean;
  conv?: Conv;
  sub?: MsgReader;
}

const cache = new Map<string, MsgReader>();

function expectChar(p: JsonParser, c: number, what: string): void {
  p.ws();
  if (p.text.charCodeAt(p.pos) !== c) p.error(`Expecting ${what}`);
  p.pos++;
}

function compile(name: string): MsgReader {
  const m = messageType(name);
  const plans = new Map<string, Plan>();
  const slow = msgConverterFor(name);
  const read: MsgReader = (p, parent, key, rest) => {
    p.ws();
    if (p.text.charCodeAt(p.pos) !== 123) return slow(p.value(), parent, key); // not an object: let fromjson say why
    const path = keyPath(parent, key);
    if (nesting.depth > MAX_NESTING) throw new JsonConvertError(path, `messages nested more than ${MAX_NESTING} deep (the reader refuses deeper ones)`);
    nesting.depth++;
    try {
      return body(p, path, rest);
    } finally {
      nesting.depth--;
    }
  };
  const body = (p: JsonParser, path: string, rest?: Record<string, JsonValue>): Msg => {
    p.pos++;
    const o: Msg = {};
    p.ws();
    if (p.text.charCodeAt(p.pos) === 125) { p.pos++; return o; }
    for (;;) {
      p.ws();
      if (p.text.charCodeAt(p.pos) !== 34) p.error('Expecting property name enclosed in double quotes');
      const k = p.string();
      expectChar(p, 58, "':' delimiter");
      const f = plans.get(k);
      if (!f) {
        const v = p.value();
        if (k === UNKNOWN_KEY) {
          if (typeof v === 'string' && v.length) o[UNKNOWN] = unknownFields(name, v, keyPath(path, UNKNOWN_KEY));
        } else if (rest) rest[k] = v; // other keys are ignored, as CRIT does
      } else if (!f.rep) {
        o[k] = f.sub ? f.sub(p, path, k) : f.conv!(p.value(), path, k);
      } else {
        p.ws();
        if (p.text.charCodeAt(p.pos) !== 91) {
          const v = p.value();
          throw new JsonConvertError(keyPath(path, k), `expected an array, got ${typeName(v)}`);
        }
        p.pos++;
        const a: unknown[] = [];
        p.ws();
        if (p.text.charCodeAt(p.pos) === 93) p.pos++;
        else {
          const fp = keyPath(path, k);
          for (let j = 0; ; j++) {
            if (f.sub) a.push(f.sub(p, fp, j));
            else {
              const v = p.value();
              if (j === 0 && f.ipadd && typeof v === 'string') {
                // an address string: the rest of the array is ignored, as CRIT does
                try {
                  a.push(...parseIp(v));
                } catch (e) {
                  throw new JsonConvertError(fp, (e as Error).message);
                }
                skipRestOfArray(p);
                break;
              }
              a.push(f.conv!(v, fp, j));
            }
            p.ws();
            const c = p.text.charCodeAt(p.pos);
            if (c === 44) { p.pos++; continue; }
            if (c === 93) { p.pos++; break; }
            p.error("Expecting ',' delimiter");
          }
        }
        if (f.ipadd) checkAddressWords(a.length, keyPath(path, k));
        if (a.length) o[k] = a;
      }
      p.ws();
      const c = p.text.charCodeAt(p.pos);
      if (c === 44) { p.pos++; continue; }
      if (c === 125) { p.pos++; return o; }
      p.error("Expecting ',' delimiter");
    }
  };
  cache.set(name, read);
  for (const f of m.fields) {
    plans.set(f.name, {
      name: f.name,
      rep: f.label === 'repeated',
      ipadd: !!f.opts?.ipadd,
      conv: f.kind === 'message' ? undefined : scalarConv(f),
      sub: f.kind === 'message' ? readerFor(f.type) : undefined,
    });
  }
  return read;
}

function skipRestOfArray(p: JsonParser): void {
  for (;;) {
    p.ws();
    const c = p.text.charCodeAt(p.pos);
    if (c === 93) { p.pos++; return; }
    if (c === 44) { p.pos++; p.value(); continue; }
    p.error("Expecting ',' delimiter");
  }
}

export function readerFor(name: string): MsgReader {
  return cache.get(name) || compile(name);
}
