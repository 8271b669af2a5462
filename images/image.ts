// Reading and writing whole images: magic words, entry framing, the per-kind layouts
// (plain entries, pagemap head + entries, ghost files, amdgpu plugin files) and extras.
// Every failure becomes an ImageError naming the file, byte offset and entry index.
import * as fs from 'fs';
import { ByteSource } from './source';
import { decoderFor, encoderFor, Msg, MissingFieldError } from './codec';
import { Reader, Writer, WireError, U64, joinU, split64 } from './wire';
import { IMG_COMMON, IMG_SERVICE, magicName, magicValue, headMagicFor, pyHexSigned, rawImageKind } from './magic';
import { kindFor, Kind, amdgpuKindOfFile } from './kinds';
import { Extra, ExtraError } from './extras';

export interface Entry {
  /** message type of msg ('' for raw amdgpu contents) */
  type: string;
  msg: Msg;
  extra?: Extra;
  /** byte offset of the entry's size word (or first byte) in the file */
  offset: number;
}

export class ImageError extends Error {
  constructor(public file: string, public offset: number | undefined, public entry: number | undefined, public what: string) {
    super(
      `${file}: ` +
        (offset !== undefined ? `at byte ${offset}` : '') +
        (entry !== undefined ? `${offset !== undefined ? ', ' : ''}entry ${entry}` : '') +
        (offset !== undefined || entry !== undefined ? ': ' : '') +
        what,
    );
  }
}

export interface ImageHeader {
  magic: string;
  kind: Kind;
  /** head magic word, absent for inventory, v1.0 images and amdgpu files */
  head?: number;
}

function u32le(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

/** Reads the magic words of `src` and identifies the kind. */
export function readHeader(src: ByteSource, fileName: string): ImageHeader {
  const amd = amdgpuKindOfFile(fileName);
  if (amd) return { magic: amd, kind: kindFor(amd)! };
  const have = src.ensure(4);
  if (have < 4) {
    throw new ImageError(src.name, 0, undefined, have === 0 ? 'empty file: expected a 4-byte magic word' : `file too short for a magic word (${have} of 4 bytes)`);
  }
  let head: number | undefined = src.u32();
  let value = head;
  if (head === IMG_COMMON || head === IMG_SERVICE) {
    if (src.ensure(4) < 4) throw new ImageError(src.name, 4, undefined, `head magic ${pyHexSigned(head)} is not followed by an image magic (file ends after ${4 + src.available} bytes)`);
    value = src.u32();
  } else head = undefined;
  const name = magicName(value);
  const raw = rawImageKind(fileName);
  if (!name || name === 'IMG_COMMON' || name === 'IMG_SERVICE' || name === 'CRTOOLS_IMAGES_V1_1' || name === 'KDAT') {
    const at = head === undefined ? 0 : 4;
    if (raw) throw new ImageError(src.name, at, undefined, `this is ${raw}, not a CRIU protobuf image (no magic; use 'crit xray' or the memory reader for page contents)`);
    if (!name) throw new ImageError(src.name, at, undefined, `unknown magic ${pyHexSigned(value)}: not a CRIU image, or raw data such as pages-*.img`);
    throw new ImageError(src.name, at, undefined, `magic ${name} (${pyHexSigned(value)}) does not name an image kind`);
  }
  const kind = kindFor(name);
  if (!kind) throw new ImageError(src.name, head === undefined ? 0 : 4, undefined, `no decoder for image kind ${name}`);
  return { magic: name, kind, head };
}

function decodePayload(type: string, src: ByteSource, start: number, size: number, index: number): Msg {
  const view = src.view(size);
  try {
    return decoderFor(type)(new Reader(view, 0, size));
  } catch (e) {
    if (e instanceof WireError) throw new ImageError(src.name, start + e.offset, index, `malformed protobuf in ${type} (payload of ${size} bytes at byte ${start}): ${e.message}`);
    if (e instanceof MissingFieldError) throw new ImageError(src.name, start, index, `${type} is missing required field ${e.typeName === type ? e.field : `${e.typeName}.${e.field}`}`);
    throw e;
  }
}

/** Reads one framed entry (size word + payload); undefined at a clean end of file. */
function readFramed(src: ByteSource, type: string, index: number, fileSize: number | undefined): { msg: Msg; offset: number } | undefined {
  const offset = src.offset;
  const have = src.ensure(4);
  if (have === 0) return undefined;
  if (have < 4) throw new ImageError(src.name, offset, index, `truncated size word: ${have} of 4 bytes before end of file`);
  const size = src.u32();
  const start = src.offset;
  if (fileSize !== undefined && size > fileSize - start) {
    const left = fileSize - start;
    if (size > fileSize) throw new ImageError(src.name, offset, index, `size word says ${size} bytes but only ${left} remain in the file (the whole file is ${fileSize} bytes): corrupted size word, or not an entry boundary`);
    throw new ImageError(src.name, start, index, `truncated payload: ${type} of ${size} bytes, but the file ends after ${left}`);
  }
  const got = src.ensure(size);
  if (got < size) throw new ImageError(src.name, start, index, `truncated payload: ${type} of ${size} bytes, but the input ends after ${got}`);
  return { msg: decodePayload(type, src, start, size, index), offset };
}

function extraError(src: ByteSource, e: unknown, index: number): never {
  if (e instanceof ExtraError) throw new ImageError(src.name, e.offset ?? src.offset, index, e.message);
  throw e;
}

/** All entries of an image, one at a time. */
export function* readEntries(src: ByteSource, hdr: ImageHeader): Generator<Entry> {
  const kind = hdr.kind;
  let fileSize: number | undefined;
  try {
    const st = fs.fstatSync(src.fd);
    if (st.isFile()) fileSize = st.size;
  } catch { /* unknown size */ }
  let index = 0;
  switch (kind.layout) {
    case 'entries': {
      const dec = kind.message;
      for (;;) {
        const r = readFramed(src, dec, index, fileSize);
        if (!r) return;
        let extra: Extra | undefined;
        if (kind.extra) {
          try {
            extra = kind.extra.read(src, r.msg);
          } catch (e) {
            extraError(src, e, index);
          }
        }
        yield { type: dec, msg: r.msg, extra, offset: r.offset };
        index++;
      }
    }
    case 'pagemap': {
      for (;;) {
        const type = index === 0 ? 'pagemap_head' : 'pagemap_entry';
        const r = readFramed(src, type, index, fileSize);
        if (!r) return;
        yield { type, msg: r.msg, offset: r.offset };
        index++;
      }
    }
    case 'ghost': {
      const g = readFramed(src, 'ghost_file_entry', 0, fileSize);
      if (!g) throw new ImageError(src.name, src.offset, 0, 'ghost file has no ghost_file_entry');
      if (!g.msg.chunks) {
        yield { type: 'ghost_file_entry', msg: g.msg, extra: { kind: 'blob', data: src.rest() }, offset: g.offset };
        return;
      }
      yield { type: 'ghost_file_entry', msg: g.msg, offset: g.offset };
      index = 1;
      for (;;) {
        const c = readFramed(src, 'ghost_chunk_entry', index, fileSize);
        if (!c) return;
        const n = Number(c.msg.len ?? 0);
        if (src.ensure(n) < n) throw new ImageError(src.name, src.offset, index, `ghost chunk data: expected ${n} bytes (len), only ${src.available} left`);
        yield { type: 'ghost_chunk_entry', msg: c.msg, extra: { kind: 'blob', data: src.take(n) }, offset: c.offset };
        index++;
      }
    }
    case 'amdgpu':
    case 'amdgpu-raw': {
      const have = src.ensure(8);
      if (have < 8) throw new ImageError(src.name, 0, 0, `truncated length header: ${have} of 8 bytes`);
      const hb = src.view(8);
      const header = joinU(u32le(hb, 0), u32le(hb, 4));
      if (kind.layout === 'amdgpu-raw') {
        // amdgpu-drm-pages-* headers hold whatever was in memory at dump time: keep, never trust
        yield { type: '', msg: { header }, extra: { kind: 'blob', data: src.rest() }, offset: 0 };
        return;
      }
      const size = Number(header);
      const got = src.ensure(size);
      if (typeof header !== 'number' || got < size) throw new ImageError(src.name, 8, 0, `truncated payload: ${kind.message} of ${header} bytes, but the file ends after ${got}`);
      const msg = decodePayload(kind.message, src, 8, size, 0);
      if (src.ensure(1) > 0) throw new ImageError(src.name, src.offset, 1, `${src.ensure(1 << 20)} unexpected bytes after the ${kind.message} message`);
      yield { type: kind.message, msg, offset: 0 };
      return;
    }
  }
}

/** Output sink for binary images that writes in large blocks. */
export class BinSink {
  w = new Writer(1 << 20);
  constructor(public fd: number) {}
  flushIfBig(): void {
    if (this.w.pos >= 1 << 20) this.flush();
  }
  flush(): void {
    writeAll(this.fd, this.w.buf.subarray(0, this.w.pos));
    this.w.pos = 0;
  }
}

export function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off, data.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      throw e;
    }
  }
}

/** Writes a little-endian size header of `width` bytes, then what `body` writes, then fills in the size. */
function writeSized(w: Writer, width: 4 | 8, body: () => void): void {
  const at = w.pos;
  w.f32(0);
  if (width === 8) w.f32(0);
  body();
  const end = w.pos;
  w.pos = at;
  w.f32(end - at - width);
  w.pos = end;
}

/** An entry sequence the layout cannot hold; `atEnd` when the document as a whole is short. */
export class LayoutError extends Error {
  constructor(message: string, public atEnd = false) {
    super(message);
  }
}

/**
 * Writes entries of one kind in CRIU's framing. Refuses (LayoutError) whatever the reader
 * would refuse, so an image written here always reads back; callers add the location.
 */
export class ImageWriter {
  private index = 0;
  private ghostChunks = false;
  constructor(private sink: BinSink, public kind: Kind, head = true) {
    const w = sink.w;
    if (kind.layout === 'amdgpu' || kind.layout === 'amdgpu-raw') return;
    const h = headMagicFor(kind.name);
    if (head && h !== undefined) w.f32(h);
    w.f32(magicValue(kind.name)!);
  }

  /** message type the next entry must have */
  nextType(): string {
    const k = this.kind;
    if (k.layout === 'pagemap') return this.index === 0 ? 'pagemap_head' : 'pagemap_entry';
    if (k.layout === 'ghost') return this.index === 0 ? 'ghost_file_entry' : 'ghost_chunk_entry';
    if (k.layout === 'amdgpu-raw') return '';
    return k.message;
  }

  write(e: { type: string; msg: Msg; extra?: Extra }): void {
    const w = this.sink.w;
    const k = this.kind;
    if (k.layout === 'amdgpu' || k.layout === 'amdgpu-raw') {
      if (this.index > 0) throw new LayoutError('amdgpu plugin files hold exactly one entry');
      if (k.layout === 'amdgpu-raw') {
        const data = e.extra && e.extra.kind === 'blob' ? e.extra.data : new Uint8Array(0);
        const [lo, hi] = split64((e.msg.header as U64) ?? data.length);
        w.f32(lo); w.f32(hi);
        w.raw(data);
      } else {
        // the plugin's 8-byte size_t header; the payload is far below 4 GiB, so the high word is 0
        writeSized(w, 8, () => encoderFor(e.type)(e.msg, w));
      }
      this.index++;
      return;
    }
    if (k.layout === 'ghost') {
      const data = e.extra && e.extra.kind === 'blob' ? e.extra.data : undefined;
      if (this.index > 0 && !this.ghostChunks) throw new LayoutError('a ghost file without "chunks" holds exactly one entry (its contents are its extra)');
      if (this.index === 0 && e.msg.chunks && data) throw new LayoutError('a ghost file with "chunks" keeps its contents in the ghost_chunk_entry entries that follow, not in an "extra" of its ghost_file_entry');
      if (this.index > 0) {
        const len = Number(e.msg.len ?? 0);
        if ((data?.length ?? 0) !== len) throw new LayoutError(`a ghost_chunk_entry of len ${e.msg.len ?? 0} needs an "extra" of exactly that many bytes (it has ${data ? data.length : 'none'})`);
      }
    }
    writeSized(w, 4, () => encoderFor(e.type)(e.msg, w));
    if (k.layout === 'ghost') {
      if (this.index === 0) this.ghostChunks = !!e.msg.chunks;
      if (e.extra && e.extra.kind === 'blob') w.raw(e.extra.data);
    } else if (k.extra) k.extra.write(w, e.msg, e.extra);
    this.index++;
    this.sink.flushIfBig();
  }

  /** After the last entry: layouts that cannot be empty. */
  finish(): void {
    const k = this.kind;
    if (this.index > 0) return;
    if (k.layout === 'ghost') throw new LayoutError('a GHOST_FILE image needs its ghost_file_entry: "entries" is empty', true);
    if (k.layout === 'amdgpu' || k.layout === 'amdgpu-raw') throw new LayoutError(`an ${k.name} file holds exactly one entry: "entries" is empty`, true);
  }
}
