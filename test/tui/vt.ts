// A minimal terminal screen for end-to-end tests: enough of VT100/xterm to follow what ink
// writes (cursor motion, erase line/screen, the alternate screen; colours are dropped).
export class Screen {
  lines: string[][];
  row = 0;
  col = 0;
  private pending = '';

  constructor(public cols: number, public rows: number) {
    this.lines = Array.from({ length: rows }, () => []);
  }

  text(): string {
    return this.lines.map((l) => l.join('').replace(/\s+$/, '')).join('\n');
  }

  private scroll(): void {
    this.lines.shift();
    this.lines.push([]);
    this.row = this.rows - 1;
  }

  private put(ch: string): void {
    if (this.col >= this.cols) {
      this.col = 0;
      this.row++;
      if (this.row >= this.rows) this.scroll();
    }
    const l = this.lines[this.row];
    while (l.length < this.col) l.push(' ');
    l[this.col++] = ch;
  }

  write(data: string): void {
    const s = this.pending + data;
    this.pending = '';
    let i = 0;
    while (i < s.length) {
      const c = s[i];
      if (c === '\x1b') {
        const m = /^\x1b\[([?>=]?)([0-9;]*)([ -\/]*)([@-~])/.exec(s.slice(i, i + 64));
        if (!m) {
          if (s.length - i < 64 && /^\x1b(\[[?>=]?[0-9;]*)?$/.test(s.slice(i))) {
            this.pending = s.slice(i); // an escape split across writes
            return;
          }
          // ESC ] ... BEL (titles), ESC 7/8, ESC = etc.: skip
          const osc = /^\x1b\][^\x07\x1b]*(\x07|\x1b\\)/.exec(s.slice(i));
          i += osc ? osc[0].length : 2;
          continue;
        }
        this.csi(m[1], m[2], m[4]);
        i += m[0].length;
        continue;
      }
      if (c === '\r') this.col = 0;
      else if (c === '\n') {
        this.row++;
        if (this.row >= this.rows) this.scroll();
      } else if (c === '\b') this.col = Math.max(0, this.col - 1);
      else if (c >= ' ' || c > '\x7f') this.put(c);
      i++;
    }
  }

  private csi(priv: string, params: string, f: string): void {
    const n = params.split(';').map((x) => (x === '' ? undefined : Number(x)));
    const a = n[0] ?? 1;
    switch (f) {
      case 'A': this.row = Math.max(0, this.row - a); break;
      case 'B': this.row = Math.min(this.rows - 1, this.row + a); break;
      case 'C': this.col = Math.min(this.cols - 1, this.col + a); break;
      case 'D': this.col = Math.max(0, this.col - a); break;
      case 'G': this.col = Math.max(0, (n[0] ?? 1) - 1); break;
      case 'H': case 'f': this.row = Math.min(this.rows - 1, (n[0] ?? 1) - 1); this.col = (n[1] ?? 1) - 1; break;
      case 'K': {
        const l = this.lines[this.row];
        const mode = n[0] ?? 0;
        if (mode === 2) this.lines[this.row] = [];
        else if (mode === 0) l.length = Math.min(l.length, this.col);
        else for (let k = 0; k < Math.min(l.length, this.col + 1); k++) l[k] = ' ';
        break;
      }
      case 'J': {
        const mode = n[0] ?? 0;
        if (mode === 2 || mode === 3) this.lines = Array.from({ length: this.rows }, () => []);
        else if (mode === 0) {
          this.lines[this.row].length = Math.min(this.lines[this.row].length, this.col);
          for (let r = this.row + 1; r < this.rows; r++) this.lines[r] = [];
        }
        break;
      }
      case 'h': case 'l':
        if (priv === '?' && (params === '1049' || params === '47' || params === '1047')) {
          this.lines = Array.from({ length: this.rows }, () => []);
          if (f === 'h') { this.row = 0; this.col = 0; }
        }
        break;
      default: break; // SGR colours and the rest do not change the text
    }
  }
}
