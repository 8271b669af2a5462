// Buffered, bounded-memory reading of an image from a file or a pipe: a sliding window over
// the input, refilled in large blocks, with absolute offsets for error messages.
import * as fs from 'fs';

const BLOCK = 1 << 20;

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** read(2) that tolerates non-blocking descriptors (stdin may be one). */
export function readFd(fd: number, buf: Uint8Array, off: number, len: number, position: number | null): number {
  for (;;) {
    try {
      return fs.readSync(fd, buf, off, len, position);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') { sleepMs(1); continue; }
      if (code === 'EOF') return 0;
      throw e;
    }
  }
}

export class ByteSource {
  buf: Uint8Array;
  /** absolute offset of buf[0] */
  base = 0;
  /** valid bytes in buf */
  len = 0;
  /** read cursor, relative to buf */
  pos = 0;
  eof = false;
  private filePos: number | null;

  constructor(public fd: number, public name: string, public ownsFd = false, seekable = true, capacity = BLOCK) {
    this.buf = new Uint8Array(capacity);
    this.filePos = seekable ? 0 : null;
  }

  static open(path: string): ByteSource {
    const fd = fs.openSync(path, 'r');
    const st = fs.fstatSync(fd);
    // a small file gets a small window (sets are mostly images of a few hundred bytes)
    const cap = st.isFile() ? Math.min(BLOCK, Math.max(4096, st.size + 1)) : BLOCK;
    return new ByteSource(fd, path, true, st.isFile(), cap);
  }

  static stdin(): ByteSource {
    let seekable = false;
    try { seekable = fs.fstatSync(0).isFile(); } catch { /* not a file */ }
    return new ByteSource(0, '<stdin>', false, seekable);
  }

  get offset(): number {
    return this.base + this.pos;
  }

  get available(): number {
    return this.len - this.pos;
  }

  /** Make at least n bytes available at pos unless EOF comes first; returns what is available. */
  ensure(n: number): number {
    if (this.len - this.pos >= n || this.eof) return this.len - this.pos;
    if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.len);
      this.base += this.pos;
      this.len -= this.pos;
      this.pos = 0;
    }
    while (this.len < n && !this.eof) {
      if (this.len === this.buf.length) {
        // grow only as data actually arrives, so a bogus size word cannot make us allocate it
        const nb = new Uint8Array(Math.min(Math.max(n, this.buf.length < BLOCK ? this.buf.length * 2 : BLOCK), this.buf.length * 2));
        nb.set(this.buf.subarray(0, this.len));
        this.buf = nb;
      }
      const got = readFd(this.fd, this.buf, this.len, this.buf.length - this.len, this.filePos);
      if (got === 0) { this.eof = true; break; }
      this.len += got;
      if (this.filePos !== null) this.filePos += got;
    }
    return this.len - this.pos;
  }

  atEnd(): boolean {
    return this.ensure(1) === 0;
  }

  u32(): number {
    const b = this.buf, p = this.pos;
    this.pos = p + 4;
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  /** Take n bytes that ensure() has made available, as a view valid until the next ensure(). */
  view(n: number): Uint8Array {
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  take(n: number): Uint8Array {
    return this.view(n).slice();
  }

  /** Read everything that remains (bounded only by the input). */
  rest(): Uint8Array {
    const chunks: Uint8Array[] = [];
    while (this.ensure(1) > 0) chunks.push(this.take(this.available));
    return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  }

  close(): void {
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}
