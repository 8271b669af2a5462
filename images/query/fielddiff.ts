// Field-by-field comparison of decoded messages, guided by the schema: every difference gets
// a JSON path (core-1.img[0].tc.comm), its exact plain values (as `crit decode` prints them)
// and a readable text (hex, flag names, devices, as `crit show` prints them).
import { messageType, enumType, FieldDesc } from '../schema';
import { UNKNOWN, Msg, UnknownField } from '../codec';
import { BadUtf8 } from '../wire';
import { encodeBytes } from '../json/b64';
import { qpEncode } from '../json/quopri';
import { pyBytesRepr, pyJson } from '../json/pytext';
import { messageToJson } from '../json/tojson';
import { parseJson, JsonValue } from '../json/parse';
import { FLAG_DICTS, TASK_STATES, hexString, flagsString, devString } from '../json/dicts';
import type { Extra } from '../extras';
import { createHash } from 'crypto';

export type Op = 'added' | 'removed' | 'changed';

export interface FieldChange {
  op: Op;
  path: string;
  /** plain JSON value on each side (absent for added/removed) */
  old?: JsonValue | unknown;
  new?: JsonValue | unknown;
  oldText?: string;
  newText?: string;
}

const MAX_TEXT = 160;

function clip(s: string): string {
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT - 3) + '...' : s;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function scalarEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if ((typeof a === 'number' || typeof a === 'bigint') && (typeof b === 'number' || typeof b === 'bigint')) return BigInt(a) === BigInt(b);
  if (a instanceof Uint8Array && b instanceof Uint8Array) return bytesEqual(a, b);
  if (a instanceof BadUtf8 && b instanceof BadUtf8) return bytesEqual(a.bytes, b.bytes);
  return false;
}

/** The value as `crit decode` (plain JSON) would print it. */
export function plainValue(f: FieldDesc, v: unknown): unknown {
  if (f.kind === 'message') return parseJson(messageToJson(f.type, v as Msg, 'plain'));
  if (f.kind === 'enum') return enumType(f.type).byValue.get(Number(v)) ?? Number(v);
  if (v instanceof BadUtf8) return pyBytesRepr(v.bytes);
  if (v instanceof Uint8Array) return f.opts?.conv === 'unix_name' ? qpEncode(v) : encodeBytes(v);
  return v;
}

function bytesText(b: Uint8Array): string {
  if (b.length <= 24) return `<${b.length} bytes: ${Buffer.from(b).toString('hex')}>`;
  return `<${b.length} bytes, sha256 ${createHash('sha256').update(b).digest('hex').slice(0, 16)}>`;
}

/** The value for people: hex, flag names, maj:min, CRIU's real task states. */
export function valueText(f: FieldDesc, v: unknown, hexCtx = false): string {
  if (f.kind === 'message') return clip(messageToJson(f.type, v as Msg, 'plain'));
  if (f.kind === 'enum') return enumType(f.type).byValue.get(Number(v)) ?? String(v);
  if (v instanceof BadUtf8) return pyBytesRepr(v.bytes);
  if (v instanceof Uint8Array) return bytesText(v);
  if (typeof v === 'string') return clip(JSON.stringify(v));
  if (typeof v === 'boolean') return String(v);
  const o = f.opts || {};
  const n = v as number | bigint;
  if (f.name === 'task_state' && o.dict) return `${n} (${TASK_STATES[Number(n)] ?? '?'})`;
  if (hexCtx || o.hex) return hexString(n);
  if (o.dev) return devString(n, !!o.odev);
  if (o.flags) return flagsString(n, FLAG_DICTS[o.flags] || []) || '0';
  return String(n);
}

function unknownBytes(u: UnknownField[] | undefined): Uint8Array {
  if (!u || !u.length) return new Uint8Array(0);
  return Buffer.concat(u.slice().sort((a, b) => a.no - b.no).map((x) => x.bytes));
}

export interface DiffOptions {
  /** top-level fields to leave out (compared elsewhere, e.g. mm_entry.vmas) */
  skip?: Set<string>;
}

/** Appends to `out` every difference between two messages of type `type`. */
export function diffMessages(type: string, a: Msg, b: Msg, path: string, out: FieldChange[], opts: DiffOptions = {}, hexCtx = false): void {
  const m = messageType(type);
  for (const f of m.fields) {
    if (opts.skip?.has(f.name)) continue;
    const va = a[f.name];
    const vb = b[f.name];
    if (va === undefined && vb === undefined) continue;
    const fp = `${path}.${f.name}`;
    const hex = hexCtx || !!f.opts?.hex;
    if (f.label === 'repeated') {
      diffRepeated(f, (va as unknown[]) || [], (vb as unknown[]) || [], fp, out, hex);
      continue;
    }
    if (va === undefined || vb === undefined) {
      const v = va ?? vb;
      out.push(va === undefined
        ? { op: 'added', path: fp, new: plainValue(f, v), newText: valueText(f, v, hex) }
        : { op: 'removed', path: fp, old: plainValue(f, v), oldText: valueText(f, v, hex) });
      continue;
    }
    if (f.kind === 'message') diffMessages(f.type, va, vb, fp, out, {}, hex);
    else if (!scalarEqual(va, vb)) out.push({ op: 'changed', path: fp, old: plainValue(f, va), new: plainValue(f, vb), oldText: valueText(f, va, hex), newText: valueText(f, vb, hex) });
  }
  const ua = unknownBytes(a[UNKNOWN]);
  const ub = unknownBytes(b[UNKNOWN]);
  if (!bytesEqual(ua, ub)) {
    out.push({ op: ua.length ? (ub.length ? 'changed' : 'removed') : 'added', path: `${path}._unknown_fields`, old: ua.length ? encodeBytes(ua) : undefined, new: ub.length ? encodeBytes(ub) : undefined, oldText: ua.length ? bytesText(ua) : undefined, newText: ub.length ? bytesText(ub) : undefined });
  }
}

function diffRepeated(f: FieldDesc, a: unknown[], b: unknown[], path: string, out: FieldChange[], hex: boolean): void {
  // short scalar lists (threads, addresses) read better as one change than element by element
  if (f.kind !== 'message' && a.length !== b.length && a.length <= 32 && b.length <= 32) {
    const same = a.length === b.length && a.every((x, i) => scalarEqual(x, b[i]));
    if (!same) {
      const txt = (l: unknown[]) => clip('[' + l.map((x) => valueText(f, x, hex)).join(', ') + ']');
      out.push({ op: 'changed', path, old: a.map((x) => plainValue(f, x)), new: b.map((x) => plainValue(f, x)), oldText: txt(a), newText: txt(b) });
    }
    return;
  }
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ip = `${path}[${i}]`;
    if (i >= a.length) out.push({ op: 'added', path: ip, new: plainValue(f, b[i]), newText: valueText(f, b[i], hex) });
    else if (i >= b.length) out.push({ op: 'removed', path: ip, old: plainValue(f, a[i]), oldText: valueText(f, a[i], hex) });
    else if (f.kind === 'message') diffMessages(f.type, a[i] as Msg, b[i] as Msg, ip, out, {}, hex);
    else if (!scalarEqual(a[i], b[i])) out.push({ op: 'changed', path: ip, old: plainValue(f, a[i]), new: plainValue(f, b[i]), oldText: valueText(f, a[i], hex), newText: valueText(f, b[i], hex) });
  }
}

/** A fingerprint of an extra payload: sizes and a hash, never the (possibly large) bytes. */
export function extraSummary(e: Extra | undefined): { bytes: number; sha256: string } | undefined {
  if (!e) return undefined;
  const h = createHash('sha256');
  let n = 0;
  const add = (b: Uint8Array) => { h.update(b); n += b.length; };
  switch (e.kind) {
    case 'blob': add(e.data); break;
    case 'tcp': add(e.inq); add(e.outq); break;
    case 'sem': add(Buffer.from(pyJson(e.values))); n = e.values.length * 2; break;
    case 'msgq': for (const it of e.items) { add(Buffer.from(pyJson(parseJson(messageToJson('ipc_msg', it.msg, 'plain'))))); add(it.data); } break;
  }
  return { bytes: n, sha256: h.digest('hex') };
}

export function diffExtras(a: Extra | undefined, b: Extra | undefined, path: string, out: FieldChange[]): void {
  const sa = extraSummary(a);
  const sb = extraSummary(b);
  if (sa?.sha256 === sb?.sha256) return;
  const txt = (s: { bytes: number; sha256: string } | undefined) => (s ? `<${s.bytes} bytes, sha256 ${s.sha256.slice(0, 16)}>` : undefined);
  out.push({ op: !sa ? 'added' : !sb ? 'removed' : 'changed', path: `${path}.extra`, old: sa, new: sb, oldText: txt(sa), newText: txt(sb) });
}

/** A whole message as a plain JSON value (for added/removed entries). */
export function messageValue(type: string, msg: Msg): unknown {
  return parseJson(messageToJson(type, msg, 'plain'));
}

export function messageText(type: string, msg: Msg): string {
  return clip(messageToJson(type, msg, 'plain'));
}
