// Whole JSON documents, {"magic": NAME, "entries": [...]}, written and read one entry at a
// time so memory stays bounded however many entries an image has.
import * as fs from 'fs';
import { Entry, ImageHeader } from '../image';
import { Kind } from '../kinds';
import { Extra, extraToJson, nicePayloadSize } from '../extras';
import { messageToJson, Mode } from './tojson';
import { jsonToMessage, JsonConvertError } from './fromjson';
import { JsonParser, JsonSyntaxError, JsonValue } from './parse';
import { pyString } from './pytext';
import { decodeBytes } from './b64';
import { readFd } from '../source';
import { writeAll } from '../image';

export interface DocOptions {
  mode: Mode;
  /** show --nopl: payloads replaced by their size */
  nopl?: boolean;
}

/** Text output in large blocks; EPIPE surfaces as BrokenPipe so the CLI can exit quietly. */
export class TextSink {
  private parts: string[] = [];
  private size = 0;
  constructor(public fd: number) {}
  write(s: string): void {
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= 1 << 16) this.flush();
  }
  flush(): void {
    if (!this.parts.length) return;
    const data = Buffer.from(this.parts.join(''), 'utf8');
    this.parts = [];
    this.size = 0;
    writeAll(this.fd, data);
  }
}

function withExtra(obj: string, extra: string, mode: Mode, ind: string): string {
  if (mode === 'plain') return obj === '{}' ? `{"extra": ${extra}}` : `${obj.slice(0, -1)}, "extra": ${extra}}`;
  const in1 = ind + '    ';
  if (obj === '{}') return `{\n${in1}"extra": ${extra}\n${ind}}`;
  return `${obj.slice(0, obj.length - ind.length - 2)},\n${in1}"extra": ${extra}\n${ind}}`;
}

/** JSON text of one entry at indentation `ind`. */
export function entryToJson(kind: Kind, e: Entry, opts: DocOptions, ind: string): string {
  const mode = opts.mode;
  if (kind.layout === 'amdgpu-raw') {
    const obj = mode === 'plain' ? `{"header": ${String(e.msg.header)}}` : `{\n${ind}    "header": ${String(e.msg.header)}\n${ind}}`;
    const data = e.extra && e.extra.kind === 'blob' ? e.extra.data : new Uint8Array(0);
    return withExtra(obj, opts.nopl ? pyString('... ' + nicePayloadSize(data.length)) : extraToJson(e.extra!, mode, ind + '    '), mode, ind);
  }
  const obj = messageToJson(e.type, e.msg, mode, ind);
  if (kind.layout === 'ghost') {
    if (opts.nopl || !e.extra) return obj;
    return withExtra(obj, extraToJson(e.extra, mode, ind + '    '), mode, ind);
  }
  if (!kind.extra) return obj;
  if (opts.nopl) return withExtra(obj, pyString('... ' + nicePayloadSize(kind.extra.size(e.msg, e.extra))), mode, ind);
  if (!e.extra) return obj;
  return withExtra(obj, extraToJson(e.extra, mode, ind + '    '), mode, ind);
}

/** Writes the document for `entries`; `out` gets Python's exact json.dumps text. */
export function writeDocument(hdr: ImageHeader, entries: Iterable<Entry>, out: TextSink, opts: DocOptions): void {
  const pretty = opts.mode === 'pretty';
  if (pretty) out.write(`{\n    "magic": ${pyString(hdr.magic)},\n    "entries": [`);
  else out.write(`{"magic": ${pyString(hdr.magic)}, "entries": [`);
  let n = 0;
  for (const e of entries) {
    if (pretty) out.write((n ? ',\n' : '\n') + '        ' + entryToJson(hdr.kind, e, opts, '        '));
    else out.write((n ? ', ' : '') + entryToJson(hdr.kind, e, opts, ''));
    n++;
  }
  if (pretty) out.write(n ? '\n    ]\n}' : ']\n}');
  else out.write(']}');
}

// ---- reading JSON documents ------------------------------------------------------------

export class JsonInputError extends Error {}

/**
 * Streaming reader of {"magic": ..., "entries": [...]}: yields each entry's parsed value as
 * soon as its text is complete. Keys may come in any order; entries seen before "magic" are
 * held until it arrives.
 */
export class DocumentReader {
  private text = '';
  private pos = 0;
  private consumed = 0; // characters dropped from the front of `text`
  private eof = false;
  private decoder = new TextDecoder('utf-8', { fatal: true });
  private chunk = new Uint8Array(1 << 20);
  magic: string | undefined;
  private pending: JsonValue[] = [];

  constructor(private fd: number, public name: string) {}

  private more(): boolean {
    if (this.eof) return false;
    const n = readFd(this.fd, this.chunk, 0, this.chunk.length, null);
    let s: string;
    try {
      s = this.decoder.decode(this.chunk.subarray(0, n), { stream: n > 0 });
    } catch {
      throw new JsonInputError('cannot read JSON: the input is not UTF-8 text (encode expects JSON; is this a binary image? use "crit decode" for those)');
    }
    if (n === 0) this.eof = true;
    if (this.pos > 1 << 20) {
      this.consumed += this.pos;
      this.text = this.text.slice(this.pos);
      this.pos = 0;
    }
    this.text += s;
    return n > 0 || s.length > 0;
  }

  private syntax(msg: string, at = this.pos): never {
    const p = new JsonParser(this.text, this.consumed);
    p.pos = at;
    try {
      p.error(msg, at);
    } catch (e) {
      const se = e as JsonSyntaxError;
      throw new JsonInputError(`invalid JSON at character ${se.offset}: ${msg}`);
    }
    throw new JsonInputError(msg);
  }

  private ws(): void {
    for (;;) {
      while (this.pos < this.text.length) {
        const c = this.text.charCodeAt(this.pos);
        if (c === 32 || c === 10 || c === 13 || c === 9) this.pos++;
        else return;
      }
      if (!this.more()) return;
    }
  }

  private peek(): number {
    this.ws();
    return this.pos < this.text.length ? this.text.charCodeAt(this.pos) : -1;
  }

  /** Finds the end of the JSON value starting at pos, reading more input as needed. */
  private valueEnd(): number {
    let p = this.pos;
    let depth = 0;
    let inStr = false;
    for (;;) {
      const t = this.text;
      for (; p < t.length; p++) {
        const c = t.charCodeAt(p);
        if (inStr) {
          if (c === 92) p++;
          else if (c === 34) { inStr = false; if (depth === 0) return p + 1; }
          continue;
        }
        if (c === 34) inStr = true;
        else if (c === 123 || c === 91) depth++;
        else if (c === 125 || c === 93) { depth--; if (depth === 0) return p + 1; if (depth < 0) return p; }
        else if (depth === 0 && (c === 44 || c === 32 || c === 10 || c === 13 || c === 9)) return p;
      }
      const rel = p - this.pos;
      const before = this.pos;
      if (!this.more()) return p;
      p = this.pos + rel; // `more` may have shifted the text
      void before;
    }
  }

  private parseValue(): JsonValue {
    if (this.peek() === -1) this.syntax('unexpected end of input, expecting a value');
    const end = this.valueEnd();
    const p = new JsonParser(this.text.slice(0, end), this.consumed);
    p.pos = this.pos;
    let v: JsonValue;
    try {
      v = p.value();
      p.ws();
    } catch (e) {
      if (e instanceof JsonSyntaxError) throw new JsonInputError(`invalid JSON at character ${e.offset}: ${e.message.replace(/ at line.*/, '')}`);
      throw e;
    }
    if (p.pos !== end) this.syntax('unexpected text after a value', p.pos);
    this.pos = end;
    return v;
  }

  private expect(c: number, what: string): void {
    if (this.peek() !== c) this.syntax(`expecting ${what}`);
    this.pos++;
  }

  private state: 'start' | 'keys' | 'entries' | 'done' = 'start';
  private first = true;

  /** Next entry value, or undefined when the document is finished. */
  next(): JsonValue | undefined {
    if (this.magic !== undefined && this.pending.length) return this.pending.shift();
    for (;;) {
      if (this.state === 'start') {
        this.expect(123, "'{' (a JSON object with \"magic\" and \"entries\")");
        this.state = 'keys';
        this.first = true;
        if (this.peek() === 125) { this.pos++; this.state = 'done'; continue; }
      }
      if (this.state === 'done') {
        if (this.peek() !== -1) this.syntax('extra data after the document');
        if (this.magic === undefined) throw new JsonInputError('the document has no "magic" key');
        return this.pending.shift();
      }
      if (this.state === 'keys') {
        if (!this.first) {
          const c = this.peek();
          if (c === 125) { this.pos++; this.state = 'done'; continue; }
          this.expect(44, "',' or '}'");
        }
        this.first = false;
        if (this.peek() !== 34) this.syntax('expecting a property name in double quotes');
        const key = this.parseValue() as string;
        this.expect(58, "':'");
        if (key === 'magic') {
          const v = this.parseValue();
          if (typeof v !== 'string') throw new JsonInputError('"magic" must be a string such as "CORE"');
          this.magic = v;
          if (this.pending.length) return this.pending.shift();
          continue;
        }
        if (key === 'entries') {
          this.expect(91, "'[' to start the entries array");
          this.state = 'entries';
          this.first = true;
          continue;
        }
        this.parseValue(); // other keys are ignored, as CRIT does
        continue;
      }
      // entries
      const c = this.peek();
      if (c === 93) { this.pos++; this.state = 'keys'; this.first = false; continue; }
      if (!this.first) this.expect(44, "',' or ']' in the entries array");
      this.first = false;
      const v = this.parseValue();
      if (this.magic !== undefined) return v;
      this.pending.push(v);
    }
  }
}

/** Converts one JSON entry into what ImageWriter writes. */
export function jsonToEntry(kind: Kind, type: string, v: JsonValue, path: string): { type: string; msg: any; extra?: Extra } {
  if (kind.layout === 'amdgpu-raw') {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JsonConvertError(path, 'expected {"header": N, "extra": base64}');
    const o = v as Record<string, JsonValue>;
    const data = typeof o.extra === 'string' ? decodeBytes(o.extra) : new Uint8Array(0);
    const header = o.header === undefined ? data.length : o.header;
    if (typeof header !== 'number' && typeof header !== 'bigint') throw new JsonConvertError(path + '.header', 'expected an integer');
    return { type, msg: { header }, extra: { kind: 'blob', data } };
  }
  const msg = jsonToMessage(type, v, path);
  const raw = v as Record<string, JsonValue>;
  if (kind.layout === 'ghost') {
    const ex = raw.extra;
    if (ex === undefined) return { type, msg };
    if (typeof ex !== 'string') throw new JsonConvertError(path + '.extra', 'expected a base64 string');
    let data: Uint8Array;
    try {
      data = decodeBytes(ex);
    } catch (e) {
      throw new JsonConvertError(path + '.extra', (e as Error).message);
    }
    if (type === 'ghost_chunk_entry' && data.length !== Number(msg.len ?? 0)) throw new JsonConvertError(path + '.extra', `holds ${data.length} bytes but len says ${msg.len}`);
    return { type, msg, extra: { kind: 'blob', data } };
  }
  if (kind.extra) return { type, msg, extra: kind.extra.fromJson(raw.extra, msg, path) };
  return { type, msg };
}

export { JsonConvertError };
export function closeQuietly(fd: number): void {
  try { fs.closeSync(fd); } catch { /* already closed */ }
}
