// Values quoted in error messages: one line, and short, so an error that echoes a
// 100,000-character value is still one readable line.

/** Longest piece of a value an error message quotes. */
export const CLIP = 200;

/** `s` with control characters escaped and anything past `max` characters cut with "...". */
export function clipText(s: string, max = CLIP): string {
  const cut = s.length > max ? s.slice(0, max) : s;
  // eslint-disable-next-line no-control-regex
  const one = cut.replace(/[\x00-\x1f\x7f]/g, (c) => (c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')));
  return s.length > max ? `${one}... (${s.length} characters)` : one;
}

/** A whole error line: newlines folded, and cut in the middle when it is very long. */
export function clipLine(s: string, max = 1000): string {
  const one = s.replace(/\r?\n/g, ' | ');
  if (one.length <= max) return one;
  const tail = Math.floor(max / 4);
  return `${one.slice(0, max - tail)} ... ${one.slice(one.length - tail)}`;
}
