// Random valid messages of every message type survive binary -> message -> binary and
// binary -> JSON (plain and pretty) -> binary unchanged (fast-check).
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { allMessageNames, messageType, enumType, FieldDesc } from '../../images/schema';
import { encodeMessage, decodeMessage } from '../../images/codec';
import { messageToJson } from '../../images/json/tojson';
import { jsonToMessage } from '../../images/json/fromjson';
import { parseJson } from '../../images/json/parse';

const norm = (b: bigint): number | bigint => (b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b);

function scalar(f: FieldDesc): fc.Arbitrary<unknown> {
  if (f.kind === 'enum') return fc.constantFrom(...enumType(f.type).byValue.keys());
  switch (f.type) {
    case 'uint32': case 'fixed32': return fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }));
    case 'int32': case 'sint32': case 'sfixed32': return fc.integer({ min: -0x80000000, max: 0x7fffffff });
    case 'uint64': case 'fixed64': return fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 0xffffffffffffffffn })).map(norm);
    case 'int64': case 'sint64': case 'sfixed64': return fc.bigInt({ min: -0x8000000000000000n, max: 0x7fffffffffffffffn }).map(norm);
    case 'bool': return fc.boolean();
    case 'string': return fc.string({ unit: 'grapheme', maxLength: 12 });
    case 'bytes':
      // quoted-printable (unix socket names) normalises CR/LF, as CRIT's does; keep them out
      if (f.opts?.conv === 'unix_name') return fc.uint8Array({ maxLength: 120 }).map((a) => a.map((c) => (c === 10 || c === 13 ? 32 : c)));
      return fc.uint8Array({ maxLength: 90 });
  }
  throw new Error(`no generator for ${f.type}`);
}

function messageArb(name: string, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const m = messageType(name);
  const parts: Record<string, fc.Arbitrary<unknown>> = {};
  const required: string[] = [];
  for (const f of m.fields) {
    let one: fc.Arbitrary<unknown>;
    if (f.kind === 'message') {
      if (depth > 3 && f.label !== 'required') continue;
      one = fc.constant(null).chain(() => messageArb(f.type, depth + 1));
    } else one = scalar(f);
    if (f.label === 'repeated') {
      if (f.opts?.ipadd) parts[f.name] = fc.oneof(fc.array(one, { minLength: 1, maxLength: 1 }), fc.array(one, { minLength: 4, maxLength: 4 }));
      else parts[f.name] = fc.array(one, { minLength: 1, maxLength: depth > 2 ? 1 : 3 });
    } else parts[f.name] = one;
    if (f.label === 'required') required.push(f.name);
  }
  return fc.record(parts, { requiredKeys: required }) as fc.Arbitrary<Record<string, unknown>>;
}

const names = allMessageNames().filter((n) => n !== 'CRIU_Opts');

describe('every message type round-trips', () => {
  it(`${names.length} message types, binary and JSON (plain and pretty)`, () => {
    for (const name of names) {
      fc.assert(
        fc.property(messageArb(name, 0), (msg) => {
          const bin = encodeMessage(name, msg);
          const back = decodeMessage(name, bin);
          expect(back).toEqual(msg);
          for (const mode of ['plain', 'pretty'] as const) {
            const text = messageToJson(name, back, mode);
            const again = encodeMessage(name, jsonToMessage(name, parseJson(text)));
            expect(Buffer.from(again).equals(Buffer.from(bin)), `${name} via ${mode} JSON: ${text}`).toBe(true);
          }
        }),
        { numRuns: 25 },
      );
    }
  });
});
