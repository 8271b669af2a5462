// Terminal rendering of hexdump rows: hexyl's byte classes in colour (NUL, printable,
// whitespace, other), `*` for squeezed repeats, plain text when colour is off.
import { HexRow, byteClass } from '../../images/query/hexdump';

const COLORS: Record<string, string> = { nul: '\x1b[90m', printable: '\x1b[36m', whitespace: '\x1b[32m', other: '\x1b[33m' };
const RESET = '\x1b[0m';

export function useColor(mode: string | undefined, fd = 1): boolean {
  if (mode === 'always') return true;
  if (mode === 'never') return false;
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  return require('tty').isatty(fd);
}

function ascii(b: number): string {
  if (b === 0) return '⋄';
  if (b > 0x20 && b < 0x7f) return String.fromCharCode(b);
  if (b === 0x20) return ' ';
  if (byteClass(b) === 'whitespace') return '_';
  return b < 0x80 ? '•' : '×';
}

export function renderRows(rows: HexRow[], color: boolean): string[] {
  const out: string[] = [];
  for (const r of rows) {
    let hex = '';
    let txt = '';
    r.bytes.forEach((b, i) => {
      if (i === 8) hex += ' ';
      if (b === undefined) { hex += '   '; txt += ' '; return; }
      if (b < 0) { hex += ' ··'; txt += '·'; return; }
      const h = b.toString(16).padStart(2, '0');
      const a = ascii(b);
      if (color) {
        const c = COLORS[byteClass(b)];
        hex += ' ' + c + h + RESET;
        txt += c + a + RESET;
      } else {
        hex += ' ' + h;
        txt += a;
      }
    });
    out.push(`${r.addr.toString(16).padStart(16, '0')} ${hex}  │${txt}│`);
    if (r.squeezed) out.push('*');
  }
  return out;
}
