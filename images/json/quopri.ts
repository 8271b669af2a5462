// Quoted-printable as Python's quopri.encodestring / binascii.a2b_qp, which CRIT uses for
// unix socket names (conv=unix_name) in both JSON modes.

const MAXLINE = 76;
const HEX = '0123456789ABCDEF';

export function qpEncode(data: Uint8Array): string {
  const n = data.length;
  let crlf = false;
  const lf = data.indexOf(0x0a);
  if (lf > 0 && data[lf - 1] === 0x0d) crlf = true;
  const brk = crlf ? '\r\n' : '\n';
  let out = '';
  let col = 0;
  let i = 0;
  while (i < n) {
    const c = data[i];
    const last = i + 1 === n;
    const next = last ? -1 : data[i + 1];
    const escape =
      c > 126 || c === 0x3d ||
      (c === 0x2e && col === 0 && (last || next === 0x0a || next === 0x0d || next === 0)) ||
      ((c === 0x09 || c === 0x20) && last) ||
      (c < 33 && c !== 0x0d && c !== 0x0a && c !== 0x09 && c !== 0x20);
    if (escape) {
      if (col + 3 >= MAXLINE) { out += '=' + brk; col = 0; }
      out += '=' + HEX[c >> 4] + HEX[c & 15];
      col += 3;
      i++;
    } else if (c === 0x0a || (c === 0x0d && next === 0x0a)) {
      const lc = out.charCodeAt(out.length - 1);
      if (out.length && (lc === 0x20 || lc === 0x09)) {
        out = out.slice(0, -1) + (lc === 0x20 ? '=20' : '=09');
      }
      out += brk;
      col = 0;
      i += c === 0x0d ? 2 : 1;
    } else {
      if (!last && next !== 0x0a && col + 1 >= MAXLINE) { out += '=' + brk; col = 0; }
      out += String.fromCharCode(c);
      col++;
      i++;
    }
  }
  return out;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

export function qpDecode(text: string): Uint8Array {
  const src = Buffer.from(text, 'latin1');
  const out: number[] = [];
  let i = 0;
  const n = src.length;
  while (i < n) {
    const c = src[i];
    if (c === 0x3d) {
      i++;
      if (i >= n) break; // trailing lone '='
      const d = src[i];
      if (d === 0x0a || d === 0x0d) {
        // soft break: skip through the next LF
        while (i < n && src[i] !== 0x0a) i++;
        if (i < n) i++;
        continue;
      }
      if (d === 0x3d) { out.push(0x3d); i++; continue; }
      if (i + 1 < n && hexVal(d) >= 0 && hexVal(src[i + 1]) >= 0) {
        out.push(hexVal(d) * 16 + hexVal(src[i + 1]));
        i += 2;
        continue;
      }
      out.push(0x3d);
      continue;
    }
    out.push(c);
    i++;
  }
  return Uint8Array.from(out);
}
