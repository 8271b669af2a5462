// JSON text exactly as Python's json module writes it with its defaults (ensure_ascii):
// every non-ASCII character and DEL as a lowercase \uXXXX escape, surrogate pairs for astral
// characters, short escapes for \n \r \t \b \f, \" and \\; '/' left alone.

const SHORT: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t', 0x08: '\\b', 0x0c: '\\f' };

function hex4(c: number): string {
  return '\\u' + c.toString(16).padStart(4, '0');
}

const SAFE = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** A JSON string literal (with quotes) as Python's json.dumps writes it. */
export function pyString(s: string): string {
  if (SAFE.test(s)) return '"' + s + '"';
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) out += s[i];
    else if (SHORT[c] !== undefined) out += SHORT[c];
    else out += hex4(c); // charCodeAt already yields UTF-16 units, i.e. surrogate pairs
  }
  return out + '"';
}

/** Python's repr() of a bytes object, which CRIT prints for string fields that are not UTF-8. */
export function pyBytesRepr(b: Uint8Array): string {
  let hasSingle = false, hasDouble = false;
  for (const c of b) {
    if (c === 0x27) hasSingle = true;
    else if (c === 0x22) hasDouble = true;
  }
  const q = hasSingle && !hasDouble ? '"' : "'";
  let out = 'b' + q;
  for (const c of b) {
    if (c === 0x5c) out += '\\\\';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === q.charCodeAt(0)) out += '\\' + q;
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += '\\x' + c.toString(16).padStart(2, '0');
  }
  return out + q;
}

/**
 * Any JS value as Python's json.dumps would print it (bigint exact, ", " / ": " separators,
 * or indent 4 when pretty). For explorer and tool output; images go through the generated writers.
 */
export function pyJson(v: unknown, pretty = false, ind = ''): string {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return pyString(v);
  const in1 = ind + '    ';
  if (Array.isArray(v)) {
    if (!v.length) return '[]';
    const items = v.map((x) => pyJson(x, pretty, in1));
    return pretty ? `[\n${items.map((s) => in1 + s).join(',\n')}\n${ind}]` : `[${items.join(', ')}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
  if (!entries.length) return '{}';
  const items = entries.map(([k, x]) => `${pyString(k)}: ${pyJson(x, pretty, in1)}`);
  return pretty ? `{\n${items.map((s) => in1 + s).join(',\n')}\n${ind}}` : `{${items.join(', ')}}`;
}
