// Base64 as Python's base64.encodebytes/decodebytes: a newline after every 76 characters
// (57 input bytes) and at the end; "" for empty input; decoding skips non-alphabet characters.

export function encodeBytes(b: Uint8Array): string {
  if (b.length === 0) return '';
  const buf = Buffer.from(b.buffer, b.byteOffset, b.length);
  if (b.length <= 57) return buf.toString('base64') + '\n';
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 57) parts.push(buf.subarray(i, Math.min(i + 57, b.length)).toString('base64'));
  return parts.join('\n') + '\n';
}

export class Base64Error extends Error {}

const ALPHA = /[^A-Za-z0-9+/=]/g;

export function decodeBytes(s: string): Uint8Array {
  const clean = s.replace(ALPHA, '');
  // binascii.a2b_base64 stops at the first complete padded quantum; reject bad padding.
  const body = clean.replace(/=+$/, '');
  if (body.includes('=')) {
    const idx = clean.indexOf('=');
    const head = clean.slice(0, idx);
    if (head.length % 4 === 1) throw new Base64Error('Invalid base64-encoded string: number of data characters cannot be 1 more than a multiple of 4');
    return Uint8Array.from(Buffer.from(head, 'base64'));
  }
  if (body.length % 4 === 1) throw new Base64Error('Invalid base64-encoded string: number of data characters cannot be 1 more than a multiple of 4');
  const pad = clean.length - body.length;
  if (body.length % 4 !== 0 && pad > 0 && (body.length % 4) + pad < 4) throw new Base64Error('Incorrect padding');
  if (body.length % 4 !== 0 && pad === 0) throw new Base64Error('Incorrect padding');
  return Uint8Array.from(Buffer.from(body, 'base64'));
}
