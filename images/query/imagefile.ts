// One image file for an entry-by-entry browser: every entry decoded up to the point where a
// damaged file stops decoding (kept, not thrown), and the raw bytes each entry occupies.
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource } from '../source';
import { readHeader, readEntries, Entry, ImageError } from '../image';

export interface InspectedImage {
  file: string;
  size: number;
  /** the kind, when the header could be read */
  magic?: string;
  entries: Entry[];
  /** why decoding stopped early (offset and entry index when the file is damaged) */
  error?: ImageError | Error;
}

/** Decodes `file` entry by entry, keeping what was decoded before any error. */
export function inspectImage(file: string): InspectedImage {
  const size = fs.statSync(file).size;
  const out: InspectedImage = { file, size, entries: [] };
  let src: ByteSource | undefined;
  try {
    src = ByteSource.open(file);
    const hdr = readHeader(src, path.basename(file));
    out.magic = hdr.magic;
    for (const e of readEntries(src, hdr)) out.entries.push(e);
  } catch (e) {
    out.error = e as Error;
  } finally {
    src?.close();
  }
  return out;
}

/** The byte range [start, end) entry `i` occupies (its size word, payload and any extra). */
export function entryRange(img: InspectedImage, i: number): { start: number; end: number } {
  const e = img.entries[i];
  const next = img.entries[i + 1];
  let end = next ? next.offset : img.size;
  if (!next && img.error instanceof ImageError && img.error.offset !== undefined && img.error.offset > e.offset) end = Math.min(end, img.error.offset);
  return { start: e.offset, end: Math.max(end, e.offset) };
}

/** Reads [start, start+len) of a file (short at its end). */
export function readFileRange(file: string, start: number, len: number): Uint8Array {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = new Uint8Array(Math.max(0, len));
    let got = 0;
    while (got < len) {
      const n = fs.readSync(fd, buf, got, len - got, start + got);
      if (n <= 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}
