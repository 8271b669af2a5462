// A JSON parser that keeps integers exact: safe integers become numbers, larger ones BigInt.
// Objects are prototype-less so any key is data. Errors name the line and column.

export class JsonSyntaxError extends Error {
  /** set when the text simply ended: more input might make it valid */
  truncated = false;
  constructor(message: string, public offset: number, public line: number, public column: number) {
    super(`${message} at line ${line} column ${column}`);
  }
}

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [k: string]: JsonValue };

const NUM = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;

/** Arrays and objects nest at most this deep: far beyond any image, far below the stack. */
export const MAX_JSON_DEPTH = 1000;

export class JsonParser {
  pos = 0;
  private depth = 0;
  /** Offset of text[0] in the whole input, for error messages when parsing a window. */
  constructor(public text: string, public base = 0, public baseLine = 1, public baseCol = 1) {}

  error(msg: string, at = this.pos): never {
    if (at >= this.text.length || this.pos >= this.text.length) {
      // the text ended: a streaming caller will read more and retry, so skip the line count
      const e = new JsonSyntaxError(msg, this.base + at, 0, 0);
      e.truncated = true;
      throw e;
    }
    let line = this.baseLine, col = this.baseCol;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) { line++; col = 1; } else col++;
    }
    const e = new JsonSyntaxError(msg, this.base + at, line, col);
    e.truncated = at >= this.text.length || this.pos >= this.text.length;
    throw e;
  }

  ws(): void {
    const t = this.text;
    let p = this.pos;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 32 || c === 10 || c === 13 || c === 9) p++;
      else break;
    }
    this.pos = p;
  }

  value(): JsonValue {
    this.ws();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c === 123) return this.object();
    if (c === 91) return this.array();
    if (c === 34) return this.string();
    if (c === 45 || (c >= 48 && c <= 57)) return this.number();
    if (t.startsWith('true', this.pos)) { this.pos += 4; return true; }
    if (t.startsWith('false', this.pos)) { this.pos += 5; return false; }
    if (t.startsWith('null', this.pos)) { this.pos += 4; return null; }
    if (this.pos >= t.length) this.error('Expecting value (unexpected end of input)');
    this.error('Expecting value');
  }

  private enter(): void {
    if (++this.depth > MAX_JSON_DEPTH) this.error(`arrays and objects nested more than ${MAX_JSON_DEPTH} deep`);
  }

  object(): { [k: string]: JsonValue } {
    this.enter();
    const o = this.objectBody();
    this.depth--;
    return o;
  }

  array(): JsonValue[] {
    this.enter();
    const a = this.arrayBody();
    this.depth--;
    return a;
  }

  private objectBody(): { [k: string]: JsonValue } {
    // plain literal objects keep V8's fast properties; '__proto__' is stored as data below
    const o: { [k: string]: JsonValue } = {};
    this.pos++;
    this.ws();
    if (this.text.charCodeAt(this.pos) === 125) { this.pos++; return o; }
    for (;;) {
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 34) this.error('Expecting property name enclosed in double quotes');
      const k = this.string();
      this.ws();
      if (this.text.charCodeAt(this.pos) !== 58) this.error("Expecting ':' delimiter");
      this.pos++;
      if (k === '__proto__') Object.defineProperty(o, k, { value: this.value(), enumerable: true, writable: true, configurable: true });
      else o[k] = this.value();
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      if (c === 44) { this.pos++; continue; }
      if (c === 125) { this.pos++; return o; }
      this.error("Expecting ',' delimiter");
    }
  }

  private arrayBody(): JsonValue[] {
    const a: JsonValue[] = [];
    this.pos++;
    this.ws();
    if (this.text.charCodeAt(this.pos) === 93) { this.pos++; return a; }
    for (;;) {
      a.push(this.value());
      this.ws();
      const c = this.text.charCodeAt(this.pos);
      if (c === 44) { this.pos++; continue; }
      if (c === 93) { this.pos++; return a; }
      this.error("Expecting ',' delimiter");
    }
  }

  string(): string {
    const t = this.text;
    const start = ++this.pos;
    // fast path: no escapes
    let p = start;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c === 34) { this.pos = p + 1; return t.slice(start, p); }
      if (c === 92) break;
      if (c < 0x20 || Number.isNaN(c)) {
        if (Number.isNaN(c)) { this.pos = p; this.error('Unterminated string', p); }
        this.error('Invalid control character', p);
      }
      p++;
    }
    let out = t.slice(start, p);
    for (;;) {
      const c = t.charCodeAt(p);
      if (Number.isNaN(c)) { this.pos = p; this.error('Unterminated string', p); }
      if (c === 34) { this.pos = p + 1; return out; }
      if (c < 0x20) this.error('Invalid control character', p);
      if (c !== 92) { out += t[p++]; continue; }
      const e = t[p + 1];
      p += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const h = t.slice(p, p + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) this.error('Invalid \\uXXXX escape', p - 2);
          out += String.fromCharCode(parseInt(h, 16));
          p += 4;
          break;
        }
        default: this.error('Invalid \\escape', p - 2);
      }
    }
  }

  number(): number | bigint {
    // fast path: a short integer
    const t = this.text;
    let p = this.pos;
    const neg = t.charCodeAt(p) === 45;
    if (neg) p++;
    let v = 0;
    const d0 = p;
    for (;;) {
      const c = t.charCodeAt(p);
      if (c >= 48 && c <= 57) { v = v * 10 + (c - 48); p++; } else break;
    }
    const nd = p - d0;
    const c = t.charCodeAt(p);
    if (nd > 0 && nd < 16 && c !== 46 && c !== 101 && c !== 69 && !(nd > 1 && t.charCodeAt(d0) === 48)) {
      this.pos = p;
      return neg ? -v : v;
    }
    NUM.lastIndex = this.pos;
    const m = NUM.exec(this.text);
    if (!m) this.error('Expecting value');
    this.pos = NUM.lastIndex;
    const s = m[0];
    if (m[1] === undefined && m[2] === undefined) {
      if (s.length < 16) return Number(s);
      // no field holds more than 20 digits; a longer run is kept as a (rounded) double, which
      // every integer field refuses, instead of a costly huge BigInt
      if (s.length > 100) return Number(s);
      const b = BigInt(s);
      return b >= -9007199254740991n && b <= 9007199254740991n ? Number(b) : b;
    }
    return Number(s);
  }
}

export function parseJson(text: string): JsonValue {
  const p = new JsonParser(text);
  const v = p.value();
  p.ws();
  if (p.pos < text.length) p.error('Extra data');
  return v;
}
