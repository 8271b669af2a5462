// Whole-file convenience over image.ts: load an image into memory, or write one atomically
// (temporary file, fsync, rename). For the engine and the explorers; the CLI streams instead.
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource } from './source';
import { readHeader, readEntries, Entry, ImageWriter, BinSink } from './image';
import { kindFor } from './kinds';
import type { Msg } from './codec';
import type { Extra } from './extras';

export interface LoadedImage {
  magic: string;
  entries: Entry[];
}

export function loadImage(file: string): LoadedImage {
  const src = ByteSource.open(file);
  try {
    const hdr = readHeader(src, path.basename(file));
    return { magic: hdr.magic, entries: [...readEntries(src, hdr)] };
  } finally {
    src.close();
  }
}

/** The messages of an image (extras dropped), e.g. loadMessages('core-1.img')[0].tc.comm. */
export function loadMessages(file: string): Msg[] {
  return loadImage(file).entries.map((e) => e.msg);
}

export interface NewEntry {
  /** message type; defaults to what the kind's layout expects at this position */
  type?: string;
  msg: Msg;
  extra?: Extra;
}

/** Write an image of kind `magic` (a CRIT magic name such as 'CORE' or 'PAGEMAP'). */
export function writeImage(file: string, magic: string, entries: Iterable<NewEntry>): void {
  const kind = kindFor(magic);
  if (!kind) throw new Error(`unknown image kind ${magic}`);
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    const sink = new BinSink(fd);
    const w = new ImageWriter(sink, kind);
    for (const e of entries) w.write({ type: e.type ?? w.nextType(), msg: e.msg, extra: e.extra });
    w.finish();
    sink.flush();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* closed */ }
    try { fs.unlinkSync(tmp); } catch { /* gone */ }
    throw e;
  }
}
