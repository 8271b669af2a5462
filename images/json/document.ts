// Whole JSON documents, {"magic": NAME, "entries": [...]}, written and read one entry at a
// time so memory stays bounded however many entries an image has.
import { Entry, ImageHeader, ImageError } from '../image';
import { Kind } from '../kinds';
import { Extra, extraToJson, nicePayloadSize } from '../extras';
import { writeMessageJson, Mode, JsonOut, locateFormatError, FormatError } from './tojson';
import { jsonToMessage, JsonConvertError } from './fromjson';
import { JsonParser, JsonSyntaxError, JsonValue } from './parse';
import { readerFor } from './readmsg';
import { pyString } from './pytext';
import { clipText } from './clip';
import { decodeBytes } from './b64';
import { readFd } from '../source';
import { writeAll } from '../image';

export interface DocOptions {
  mode: Mode;
  /** show --nopl: payloads replaced by their size */
  nopl?: boolean;
  /** the image's name, for errors */
  file?: string;
}

/** Text output in large blocks; EPIPE surfaces as an error with code EPIPE so the CLI can exit quietly. */
export class TextSink implements JsonOut {
  s = '';
  /** latin1 is exact and fast for JSON (pure ASCII); text for people needs utf8 */
  constructor(public fd: number, private encoding: 'latin1' | 'utf8' = 'latin1') {}
  write(str: string): void {
    this.s += str;
    if (this.s.length >= 1 << 16) this.flush();
  }
  flush(): void {
    if (!this.s.length) return;
    // JSON text here is pure ASCII (Python's ensure_ascii), so latin1 is an exact, fast encoding
    const data = Buffer.from(this.s, this.encoding);
    this.s = '';
    writeAll(this.fd, data);
  }
}

/** Streams the JSON of one entry at indentation `ind` into `out`. */
export function writeEntryJson(kind: Kind, e: Entry, opts: DocOptions, ind: string, out: JsonOut): void {
  const mode = opts.mode;
  const in1 = ind + '    ';
  if (kind.layout === 'amdgpu-raw') {
    const data = e.extra && e.extra.kind === 'blob' ? e.extra.data : new Uint8Array(0);
    const tail = opts.nopl ? pyString('... ' + nicePayloadSize(data.length)) : extraToJson(e.extra!, mode, in1);
    out.s += mode === 'plain' ? `{"header": ${String(e.msg.header)}, "extra": ${tail}}` : `{\n${in1}"header": ${String(e.msg.header)},\n${in1}"extra": ${tail}\n${ind}}`;
    return;
  }
  let tail: string | undefined;
  if (kind.layout === 'ghost') {
    if (!opts.nopl && e.extra) tail = extraToJson(e.extra, mode, in1);
  } else if (kind.extra) {
    if (opts.nopl) tail = pyString('... ' + nicePayloadSize(kind.extra.size(e.msg, e.extra)));
    else if (e.extra) tail = extraToJson(e.extra, mode, in1);
  }
  writeMessageJson(e.type, e.msg, mode, ind, out, tail);
}

/** Writes the document for `entries`; `out` gets Python's exact json.dumps text. */
export function writeDocument(hdr: ImageHeader, entries: Iterable<Entry>, out: JsonOut, opts: DocOptions): void {
  const pretty = opts.mode === 'pretty';
  if (pretty) out.s += `{\n    "magic": ${pyString(hdr.magic)},\n    "entries": [`;
  else out.s += `{"magic": ${pyString(hdr.magic)}, "entries": [`;
  let n = 0;
  for (const e of entries) {
    try {
      if (pretty) {
        out.s += (n ? ',\n' : '\n') + '        ';
        writeEntryJson(hdr.kind, e, opts, '        ', out);
      } else {
        if (n) out.s += ', ';
        writeEntryJson(hdr.kind, e, opts, '', out);
      }
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      const at = e.type ? locateFormatError(e.type, e.msg, opts.mode) : undefined;
      const where = at ? `entries[${n}].${at.path}` : `entries[${n}]`;
      throw new ImageError(opts.file ?? '<image>', e.offset, n, `${e.type || 'entry'} cannot be written as ${opts.mode} JSON: ${where}: ${at?.message ?? err.message}${opts.mode === 'pretty' ? ' (plain decode prints the raw numbers)' : ''}`);
    }
    if (out.s.length >= 1 << 16) out.flush();
    n++;
  }
  out.s += pretty ? (n ? '\n    ]\n}' : ']\n}') : ']}';
}

// ---- reading JSON documents ------------------------------------------------------------

/** Bad JSON text; `offset` is the absolute character offset, `entry` the entry it was in. */
export class JsonInputError extends Error {
  constructor(message: string, public offset?: number, public entry?: number) {
    super(message);
  }
}

let sharedChunk: Uint8Array | undefined;

/** text the batch fast path hands to JSON.parse at once */
const BATCH_TEXT = 4 << 20;

/**
 * Streaming reader of {"magic": ..., "entries": [...]}: yields each entry's parsed value as
 * soon as its text is complete. Keys may come in any order; entries seen before "magic" are
 * held until it arrives.
 */
export class DocumentReader {
  private text = '';
  private pos = 0;
  private consumed = 0; // characters dropped from the front of `text`
  private consumedBytes = 0; // the UTF-8 bytes they were
  private ascii = true; // every byte so far was ASCII, so character offsets are byte offsets
  private eof = false;
  private decoder = new TextDecoder('utf-8', { fatal: true });
  // one read buffer for every reader: more() turns it into text before anything else reads
  private chunk = sharedChunk || (sharedChunk = new Uint8Array(1 << 20));
  magic: string | undefined;
  private pending: JsonValue[] = [];
  /** entries parsed ahead by V8's JSON.parse (see batch) */
  private batched: JsonValue[] = [];
  private batchIndex = 0;
  private noBatch = false;

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
      this.consumedBytes += this.ascii ? this.pos : Buffer.byteLength(this.text.slice(0, this.pos));
      this.consumed += this.pos;
      this.text = this.text.slice(this.pos);
      this.pos = 0;
    }
    if (this.ascii && s.length !== n) this.ascii = false;
    this.text += s;
    return n > 0 || s.length > 0;
  }

  private syntax(msg: string, at = this.pos): never {
    throw new JsonInputError(`invalid JSON: ${msg}`, this.consumed + at, this.state === 'entries' ? this.returned : undefined);
  }

  /** Byte offset in the input of absolute character offset `abs` (undefined if no longer known). */
  byteOffset(abs: number | undefined): number | undefined {
    if (abs === undefined) return undefined;
    if (this.ascii) return abs;
    const rel = abs - this.consumed;
    if (rel < 0 || rel > this.text.length) return undefined;
    return this.consumedBytes + Buffer.byteLength(this.text.slice(0, rel));
  }

  /** Character offset where entry `i` starts, while its text is still buffered. */
  private startOf(i: number): number | undefined {
    if (i === this.lastIndex) return this.lastStart;
    const k = this.pendingStarts.get(i);
    if (k !== undefined) return k;
    if (i >= this.batchFirst && i < this.batchFirst + this.batched.length) {
      // batched entries: find the k-th from the batch start (error path only)
      const p = new JsonParser(this.text, this.consumed);
      p.pos = this.batchStart - this.consumed;
      if (p.pos < 0) return undefined;
      try {
        for (let j = this.batchFirst; j < i; j++) {
          p.value();
          p.ws();
          p.pos++; // the ',' between entries
          p.ws();
        }
      } catch {
        return undefined;
      }
      return this.consumed + p.pos;
    }
    return undefined;
  }

  /**
   * Byte offset of the value at `path` ("entries[3].vmas[2].start") inside entry `i`, or of
   * the deepest part of it that exists; undefined when the entry's text is no longer buffered.
   */
  locate(i: number, path?: string): number | undefined {
    const start = this.startOf(i);
    if (start === undefined) return undefined;
    const p = new JsonParser(this.text, this.consumed);
    p.pos = start - this.consumed;
    if (p.pos < 0) return undefined;
    let at = p.pos;
    const rest = (path ?? '').replace(/^entries\[\d+\]/, '');
    try {
      for (const seg of rest.match(/\.[^.[]+|\[\d+\]/g) || []) {
        p.ws();
        at = p.pos;
        const c = this.text.charCodeAt(p.pos);
        if (seg[0] === '.') {
          if (c !== 123) break;
          const key = seg.slice(1);
          p.pos++;
          let found = false;
          for (;;) {
            p.ws();
            if (this.text.charCodeAt(p.pos) !== 34) break;
            const k = p.string();
            p.ws();
            p.pos++; // ':'
            p.ws();
            if (k === key) { found = true; break; }
            p.value();
            p.ws();
            if (this.text.charCodeAt(p.pos) !== 44) break;
            p.pos++;
          }
          if (!found) break;
        } else {
          if (c !== 91) break;
          const n = Number(seg.slice(1, -1));
          p.pos++;
          let ok = true;
          for (let j = 0; j < n && ok; j++) {
            p.value();
            p.ws();
            if (this.text.charCodeAt(p.pos) !== 44) ok = false;
            else p.pos++;
          }
          if (!ok) break;
        }
        p.ws();
        at = p.pos;
      }
    } catch {
      /* unparsable further on: report the deepest position reached */
    }
    return this.byteOffset(this.consumed + at);
  }

  /** Byte offset of entry `i`, of the "magic" value, or of the end of what was read. */
  entryOffset(i: number): number | undefined {
    return this.byteOffset(this.startOf(i));
  }

  get magicOffset(): number | undefined {
    return this.byteOffset(this.magicAt);
  }

  get here(): number | undefined {
    return this.byteOffset(this.consumed + this.pos);
  }

  /** entries handed out so far */
  returned = 0;
  private lastIndex = -1;
  private lastStart = 0;
  private batchFirst = 0;
  private batchStart = 0;
  private pendingStarts = new Map<number, number>();
  private magicAt: number | undefined;

  private give<T>(v: T, start?: number): T {
    if (start !== undefined) {
      this.lastIndex = this.returned;
      this.lastStart = start;
    }
    this.returned++;
    return v;
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

  /**
   * Parses the value at pos. If the input ends inside it, reads more (at least doubling what is
   * buffered, so a huge entry costs a few parses, not one per block) and parses again.
   */
  private parseValue(): JsonValue {
    return this.parseWith((p) => p.value());
  }

  private parseWith<T>(parse: (p: JsonParser) => T): T {
    for (;;) {
      if (this.peek() === -1) this.syntax('unexpected end of input, expecting a value');
      const p = new JsonParser(this.text, this.consumed);
      p.pos = this.pos;
      let v: T;
      try {
        v = parse(p);
      } catch (e) {
        if (e instanceof JsonSyntaxError) {
          if (e.truncated && !this.eof) { this.grow(); continue; }
          throw new JsonInputError(`invalid JSON: ${e.message.replace(/ at line.*/, '')}`, e.offset, this.state === 'entries' ? this.returned : undefined);
        }
        throw e;
      }
      // a number that touches the end of the buffer may go on in the next block
      if (p.pos >= this.text.length && !this.eof && (typeof v === 'number' || typeof v === 'bigint')) { this.grow(); continue; }
      this.pos = p.pos;
      return v;
    }
  }

  private grow(): void {
    // quadrupling keeps the re-parsing of one huge entry (an mm with 500,000 VMAs) near 1.3x
    const want = Math.max(1 << 20, (this.text.length - this.pos) * 4);
    while (this.text.length - this.pos < want && this.more()) { /* keep reading */ }
  }

  private expect(c: number, what: string): void {
    if (this.peek() !== c) this.syntax(`expecting ${what}`);
    this.pos++;
  }

  /**
   * Fast path for the common case: the buffered text holds many complete entries in CRIT's
   * layout ("}, {" or "},\n        {" between entries) and no integer long enough to lose
   * precision as a double. Then V8's JSON.parse reads them all at once. Anything else (nested
   * separators, long integers, other layouts) falls back to the exact parser for good.
   */
  private batch(): boolean {
    if (this.noBatch) return false;
    this.ws();
    const t = this.text;
    if (t.charCodeAt(this.pos) !== 123) return false;
    // at most a few MB of entries at once: a buffer that grew around one huge entry must not
    // turn every entry after it into objects together
    const lim = this.pos + BATCH_TEXT;
    const cut = Math.max(t.lastIndexOf('}, {', lim), t.lastIndexOf('},\n        {', lim));
    if (cut <= this.pos) return false;
    const body = t.slice(this.pos, cut + 1);
    // a digit run of 16 or more (found from its first digit only, so the scan stays linear)
    if (/(?<![0-9])[0-9]{16}/.test(body)) { this.noBatch = true; return false; }
    let entries: JsonValue[];
    try {
      entries = JSON.parse('[' + body + ']');
    } catch {
      this.noBatch = true; // a separator inside an entry: this document takes the exact path
      return false;
    }
    this.batched = entries;
    this.batchIndex = 0;
    this.batchFirst = this.returned;
    this.batchStart = this.consumed + this.pos;
    this.pos = cut + 1;
    return entries.length > 0;
  }

  private state: 'start' | 'keys' | 'entries' | 'done' = 'start';
  private first = true;
  private sawEntries = false;

  /**
   * Next entry, or undefined when the document is finished. Once "magic" is known, `parse`
   * (if given) reads the entry straight from the text and its result is wrapped in Parsed;
   * otherwise the entry comes back as a plain JSON value.
   */
  next<T>(parse?: (p: JsonParser) => T): JsonValue | Parsed<T> | undefined {
    if (this.batchIndex < this.batched.length) return this.give(this.batched[this.batchIndex++]);
    if (this.magic !== undefined && this.pending.length) return this.give(this.pending.shift());
    for (;;) {
      if (this.state === 'start') {
        this.expect(123, "'{' (a JSON object with \"magic\" and \"entries\")");
        this.state = 'keys';
        this.first = true;
        if (this.peek() === 125) { this.pos++; this.state = 'done'; continue; }
      }
      if (this.state === 'done') {
        if (this.peek() !== -1) this.syntax('extra data after the document');
        if (this.magic === undefined) throw new JsonInputError('the document has no "magic" key', this.consumed + this.pos);
        return this.pending.length ? this.give(this.pending.shift()) : undefined;
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
          this.ws();
          this.magicAt = this.consumed + this.pos;
          const v = this.parseValue();
          if (typeof v !== 'string') throw new JsonInputError('"magic" must be a string such as "CORE"', this.magicAt);
          if (this.magic !== undefined) throw new JsonInputError('"magic" appears twice', this.magicAt);
          this.magic = v;
          if (this.pending.length) return this.give(this.pending.shift());
          continue;
        }
        if (key === 'entries' && this.sawEntries) this.syntax('"entries" appears twice');
        if (key === 'entries') {
          this.sawEntries = true;
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
      this.ws();
      const start = this.consumed + this.pos;
      if (parse && this.magic !== undefined) {
        if (this.batch()) return this.give(this.batched[this.batchIndex++]);
        this.lastIndex = this.returned;
        this.lastStart = start;
        return this.give(new Parsed(this.parseWith(parse)), start);
      }
      this.lastIndex = this.returned + this.pending.length;
      this.lastStart = start;
      const v = this.parseValue();
      if (this.magic !== undefined) return this.give(v, start);
      this.pendingStarts.set(this.returned + this.pending.length, start);
      this.pending.push(v);
    }
  }
}

/** An entry the DocumentReader parsed with a caller's parser. */
export class Parsed<T> {
  constructor(readonly value: T) {}
}

export type NewEntry = { type: string; msg: any; extra?: Extra };

/** Reads the next entry straight from the JSON text (the fast path of encode). */
export function readEntryFrom(p: JsonParser, kind: Kind, type: string, path: string): NewEntry {
  if (kind.layout === 'amdgpu-raw') return jsonToEntry(kind, type, p.value(), path);
  const rest: Record<string, JsonValue> = {};
  const msg = readerFor(type)(p, path, '', rest);
  return finishEntry(kind, type, msg, rest, path);
}

/** Converts one JSON entry into what ImageWriter writes. */
export function jsonToEntry(kind: Kind, type: string, v: JsonValue, path: string): NewEntry {
  if (kind.layout === 'amdgpu-raw') {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new JsonConvertError(path, 'expected {"header": N, "extra": base64}');
    const o = v as Record<string, JsonValue>;
    if (o.extra !== undefined && typeof o.extra !== 'string') throw new JsonConvertError(path + '.extra', 'expected a base64 string');
    let data: Uint8Array;
    try {
      data = typeof o.extra === 'string' ? decodeBytes(o.extra) : new Uint8Array(0);
    } catch (e) {
      throw new JsonConvertError(path + '.extra', (e as Error).message);
    }
    const header = o.header === undefined ? data.length : o.header;
    // the 8-byte header is kept as dumped (it need not match the data), but it is a u64
    const ok = (typeof header === 'number' && Number.isSafeInteger(header) && header >= 0) || (typeof header === 'bigint' && header >= 0n && header < 1n << 64n);
    if (!ok) throw new JsonConvertError(path + '.header', `expected an integer 0..2^64-1, got ${typeof header === 'string' ? `'${clipText(header)}'` : clipText(String(header))}`);
    return { type, msg: { header }, extra: { kind: 'blob', data } };
  }
  return finishEntry(kind, type, jsonToMessage(type, v, path), v as Record<string, JsonValue>, path);
}

/** Adds the entry's extra payload (from its "extra" key) to a converted message. */
function finishEntry(kind: Kind, type: string, msg: any, raw: Record<string, JsonValue>, path: string): NewEntry {
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
