// crit edit: change fields of entries and re-encode only those entries; every other byte of
// the file (other entries, unknown fields, extras, the magic words) is copied verbatim. Values
// are read as `crit encode` reads JSON and checked against the schema; the new file is read
// back completely before it replaces anything.
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource, readFd } from '../source';
import { readHeader, readEntries, Entry, ImageError } from '../image';
import { messageType, FieldDesc } from '../schema';
import { encodeMessage, Msg, MissingFieldError } from '../codec';
import { parseJson, JsonValue } from '../json/parse';
import { jsonToMessage, JsonConvertError } from '../json/fromjson';
import { valueText } from './fielddiff';
import { AtomicOutput } from '../atomic';

export class EditError extends Error {}

export type Step = { field: string } | { index: number };

export interface EditPath {
  entry: number;
  steps: Step[];
  /** as the user wrote it */
  text: string;
}

/** entries[0].tc.comm, [0].tc.comm, [3].vmas[2].prot */
export function parsePath(text: string): EditPath {
  let s = text.trim();
  if (s.startsWith('entries')) s = s.slice(7);
  const m = /^\[(\d+)\]/.exec(s);
  if (!m) throw new EditError(`${text}: a path starts with the entry, e.g. entries[0].tc.comm or [0].tc.comm`);
  const entry = Number(m[1]);
  s = s.slice(m[0].length);
  const steps: Step[] = [];
  const re = /^(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\])/;
  while (s.length) {
    const t = re.exec(s);
    if (!t) throw new EditError(`${text}: cannot read the path at '${s}' (expected .field or [index])`);
    steps.push(t[1] !== undefined ? { field: t[1] } : { index: Number(t[2]) });
    s = s.slice(t[0].length);
  }
  if (!steps.length) throw new EditError(`${text}: names a whole entry; name a field, e.g. ${text}.field`);
  if (!('field' in steps[0])) throw new EditError(`${text}: after the entry comes a field name`);
  return { entry, steps, text };
}

/** VALUE as crit encode reads JSON: JSON text when it parses, else the bare text as a string. */
export function parseValue(text: string): JsonValue {
  try {
    return parseJson(text);
  } catch {
    return text;
  }
}

export interface Assignment {
  path: EditPath;
  value: JsonValue;
}

/** PATH=VALUE (the first '=' separates them; paths never contain one). */
export function parseAssignment(text: string): Assignment {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new EditError(`--set ${text}: expected PATH=VALUE, e.g. [0].tc.comm=worker`);
  return { path: parsePath(text.slice(0, eq)), value: parseValue(text.slice(eq + 1)) };
}

export interface AppliedEdit {
  path: string;
  oldText?: string;
  newText?: string;
}

function fieldOf(type: string, name: string, where: string): FieldDesc {
  const m = messageType(type);
  const f = m.byName.get(name);
  if (!f) {
    if (name === 'extra') throw new EditError(`${where}: extra payloads (raw data after an entry) cannot be edited, only message fields`);
    throw new EditError(`${where}: ${type} has no field '${name}' (it has: ${m.fields.map((x) => x.name).join(', ')})`);
  }
  return f;
}

/** Converts one value for field f of message type `type`, exactly as encode would. */
function convert(type: string, f: FieldDesc, value: JsonValue, where: string): unknown {
  try {
    const o = jsonToMessage(type, { [f.name]: value } as JsonValue, where);
    return o[f.name];
  } catch (e) {
    if (e instanceof JsonConvertError) throw new EditError(e.message);
    throw e;
  }
}

/** Applies one assignment to a decoded message of type `type`. */
export function applyToMessage(type: string, msg: Msg, a: Assignment): AppliedEdit {
  const steps = a.path.steps;
  let t = type;
  let o: Msg = msg;
  let where = `entries[${a.path.entry}]`;
  for (let i = 0; i < steps.length; i++) {
    const st = steps[i];
    if (!('field' in st)) throw new EditError(`${a.path.text}: [${st.index}] follows something that is not a list`);
    const f = fieldOf(t, st.field, where);
    const last = i === steps.length - 1;
    const next = steps[i + 1];
    const fpath = `${where}.${f.name}`;
    if (f.label === 'repeated' && next && 'index' in next) {
      const arr: unknown[] = o[f.name] || [];
      const idx = next.index;
      const lastEl = i + 1 === steps.length - 1;
      const ep = `${fpath}[${idx}]`;
      if (lastEl) {
        if (idx > arr.length) throw new EditError(`${ep}: ${f.name} has ${arr.length} elements; index ${idx} is past the end (${arr.length} appends)`);
        const old = idx < arr.length ? valueText(f, arr[idx]) : undefined;
        if (a.value === null) {
          if (idx === arr.length) throw new EditError(`${ep}: no such element to remove`);
          arr.splice(idx, 1);
        } else {
          const v = (convert(t, f, [a.value], fpath) as unknown[])[0];
          arr[idx] = v;
        }
        if (arr.length) o[f.name] = arr;
        else delete o[f.name];
        return { path: ep, oldText: old, newText: a.value === null ? undefined : valueText(f, arr[idx]) };
      }
      if (idx >= arr.length) throw new EditError(`${ep}: ${f.name} has ${arr.length} elements`);
      if (f.kind !== 'message') throw new EditError(`${ep}: a ${f.type} has no fields`);
      o = arr[idx] as Msg;
      t = f.type;
      where = ep;
      i++;
      continue;
    }
    if (last) {
      const old = o[f.name] === undefined ? undefined : f.label === 'repeated' ? `[${(o[f.name] as unknown[]).map((x) => valueText(f, x)).join(', ')}]` : valueText(f, o[f.name]);
      if (a.value === null) {
        if (f.label === 'required') throw new EditError(`${fpath}: is required in ${t} and cannot be removed`);
        delete o[f.name];
        return { path: fpath, oldText: old };
      }
      const v = convert(t, f, a.value, where);
      if (v === undefined) delete o[f.name];
      else o[f.name] = v;
      const nt = v === undefined ? undefined : f.label === 'repeated' ? `[${(v as unknown[]).map((x) => valueText(f, x)).join(', ')}]` : valueText(f, v);
      return { path: fpath, oldText: old, newText: nt };
    }
    if (f.label === 'repeated') throw new EditError(`${fpath}: is a list; name an element, e.g. ${fpath}[0]`);
    if (f.kind !== 'message') throw new EditError(`${fpath}: a ${f.type} has no fields`);
    if (o[f.name] === undefined) o[f.name] = {}; // an absent optional sub-message: create it
    o = o[f.name];
    t = f.type;
    where = fpath;
  }
  throw new EditError(`${a.path.text}: nothing to set`);
}

export interface EditResult {
  file: string;
  out: string;
  magic: string;
  edits: AppliedEdit[];
  /** entries re-encoded; all others were copied byte for byte */
  reencoded: number[];
}

const BLOCK = 1 << 20;

function copyRange(fd: number, from: number, to: number, out: AtomicOutput): void {
  const buf = Buffer.alloc(Math.min(BLOCK, Math.max(1, to - from)));
  for (let p = from; p < to; ) {
    const n = readFd(fd, buf, 0, Math.min(buf.length, to - p), p);
    if (n === 0) throw new EditError(`unexpected end of file at byte ${p}`);
    out.write(buf.subarray(0, n));
    p += n;
  }
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/**
 * Applies `assignments` to `file` and writes the result to `out` (default: in place). Throws
 * EditError (bad path, value, or an edit that would make the image unreadable) or ImageError
 * (the input is damaged) before anything is replaced.
 */
export function editImage(file: string, assignments: Assignment[], out?: string): EditResult {
  if (!fs.existsSync(file)) throw new EditError(`${file}: no such file`);
  const name = path.basename(file);
  const fileSize = fs.statSync(file).size;
  // pass 1: entry offsets (all) and the decoded entries that are edited (only those)
  const wanted = new Set(assignments.map((a) => a.path.entry));
  const offsets: number[] = [];
  const touched = new Map<number, Entry>();
  let magic: string;
  let layout: string;
  {
    const src = ByteSource.open(file);
    try {
      const hdr = readHeader(src, name);
      magic = hdr.magic;
      layout = hdr.kind.layout;
      if (layout === 'amdgpu-raw') throw new EditError(`${file}: raw GPU buffer contents have no fields to edit`);
      let i = 0;
      for (const e of readEntries(src, hdr)) {
        offsets.push(e.offset);
        if (wanted.has(i)) touched.set(i, e);
        i++;
      }
    } finally {
      src.close();
    }
  }
  for (const a of assignments) {
    if (a.path.entry >= offsets.length) throw new EditError(`${file}: ${a.path.text}: the image has ${offsets.length} entr${offsets.length === 1 ? 'y' : 'ies'} (indexes 0..${offsets.length - 1})`);
  }
  const edits: AppliedEdit[] = [];
  for (const a of assignments) {
    const e = touched.get(a.path.entry)!;
    try {
      edits.push(applyToMessage(e.type, e.msg, a));
    } catch (err) {
      if (err instanceof EditError) throw new EditError(`${file}: ${err.message}`);
      throw err;
    }
  }
  const payloads = new Map<number, Uint8Array>();
  for (const [i, e] of touched) {
    try {
      payloads.set(i, encodeMessage(e.type, e.msg));
    } catch (err) {
      if (err instanceof MissingFieldError) throw new EditError(`${file}: entries[${i}]: ${err.typeName} is missing required field ${err.field}`);
      throw err;
    }
  }
  const target = out ?? file;
  const mode = fs.statSync(file).mode;
  const fd = fs.openSync(file, 'r');
  const w = new AtomicOutput(target, { mode: out ? undefined : mode });
  try {
    const idx = [...payloads.keys()].sort((x, y) => x - y);
    let pos = 0; // next byte of the input not yet accounted for
    for (const i of idx) {
      const start = offsets[i];
      const end = i + 1 < offsets.length ? offsets[i + 1] : fileSize;
      if (layout === 'amdgpu' || layout === 'amdgpu-raw') {
        // 8-byte length header, one message, nothing after
        const hdr = Buffer.alloc(8);
        hdr.writeBigUInt64LE(BigInt(payloads.get(i)!.length));
        w.write(hdr);
        w.write(payloads.get(i)!);
        pos = fileSize;
        continue;
      }
      copyRange(fd, pos, start, w);
      const sizeWord = Buffer.alloc(4);
      readFd(fd, sizeWord, 0, 4, start);
      const oldSize = sizeWord.readUInt32LE(0);
      const p = payloads.get(i)!;
      w.write(u32le(p.length));
      w.write(p);
      copyRange(fd, start + 4 + oldSize, end, w); // the entry's extra payload, verbatim
      pos = end;
    }
    copyRange(fd, pos, fileSize, w);
    w.sync();
    verify(w.tmp, name, offsets.length, touched, payloads, file);
    w.commit();
  } catch (e) {
    w.abort();
    throw e;
  } finally {
    fs.closeSync(fd);
  }
  return { file, out: target, magic, edits, reencoded: [...payloads.keys()].sort((x, y) => x - y) };
}

/** Reads the new file back: same number of entries, and the edited ones decode as intended. */
function verify(tmp: string, name: string, count: number, touched: Map<number, Entry>, payloads: Map<number, Uint8Array>, file: string): void {
  const src = ByteSource.open(tmp);
  let i = 0;
  try {
    const hdr = readHeader(src, name);
    for (const e of readEntries(src, hdr)) {
      const p = payloads.get(i);
      if (p && !Buffer.from(encodeMessage(e.type, e.msg)).equals(Buffer.from(p))) throw new EditError(`${file}: entries[${i}] does not read back as written`);
      i++;
    }
  } catch (e) {
    if (e instanceof ImageError) {
      const extra = touched.has(e.entry ?? -1) ? ' (a field that sizes the data after the entry no longer matches that data?)' : '';
      throw new EditError(`${file}: the edited image would not read back: ${e.what}${e.entry !== undefined ? ` at entry ${e.entry}` : ''}${extra}`);
    }
    throw e;
  } finally {
    src.close();
  }
  if (i !== count) throw new EditError(`${file}: the edited image reads back as ${i} entries instead of ${count} (a field that sizes the data after an entry changed?)`);
}
