// Where page contents come from. The reader only ever asks for byte ranges by offset, so a
// compressed pages file (CRIU's LZ4 format) can slot in as another PageSource.
import * as fs from 'fs';

export interface PageSource {
  readonly name: string;
  readonly size: number;
  /** Read exactly len bytes at offset into buf[at..]; throws if the source is shorter. */
  read(offset: number, buf: Uint8Array, at: number, len: number): void;
  close(): void;
}

export class PageSourceError extends Error {}

/** A plain pages-N.img: page data concatenated in pagemap order, read with pread only. */
export class FilePageSource implements PageSource {
  private fd: number;
  readonly size: number;
  constructor(readonly name: string) {
    this.fd = fs.openSync(name, 'r');
    this.size = fs.fstatSync(this.fd).size;
  }
  read(offset: number, buf: Uint8Array, at: number, len: number): void {
    if (offset + len > this.size) throw new PageSourceError(`${this.name}: needs bytes ${offset}..${offset + len} but the file has ${this.size} (truncated pages file?)`);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, buf, at + done, len - done, offset + done);
      if (n === 0) throw new PageSourceError(`${this.name}: unexpected end of file at byte ${offset + done}`);
      done += n;
    }
  }
  close(): void {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
  }
}

export function openPageSource(file: string): PageSource {
  return new FilePageSource(file);
}
