// crit decode / encode / info / show: CRIT's commands, with clear errors and atomic output.
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource } from '../../images/source';
import { readHeader, readEntries, ImageWriter, BinSink, ImageError, LayoutError } from '../../images/image';
import { writeDocument, TextSink, DocumentReader, jsonToEntry, readEntryFrom, Parsed, NewEntry, JsonInputError, JsonConvertError } from '../../images/json/document';
import type { JsonParser, JsonValue } from '../../images/json/parse';
import { kindFor } from '../../images/kinds';
import { magicValue } from '../../images/magic';
import { MissingFieldError, missingFieldPath } from '../../images/codec';
import { Base64Error } from '../../images/json/b64';
import { clipText } from '../../images/json/clip';
import { AtomicFile, stdoutFd, printError } from '../io';
import { Mode, JsonOut } from '../../images/json/tojson';
import { salvageEntries } from '../../images/query/salvage';
import { pyString } from '../../images/json/pytext';

export class CliError extends Error {}

function openInput(file: string | undefined): ByteSource {
  if (file === undefined || file === '-') return ByteSource.stdin();
  try {
    return ByteSource.open(file);
  } catch (e) {
    throw new CliError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/** decode / show: binary image -> JSON. */
export function decode(inFile: string | undefined, outFile: string | undefined, mode: Mode, nopl = false): void {
  const src = openInput(inFile);
  const name = inFile && inFile !== '-' ? path.basename(inFile) : '';
  const atomic = outFile && outFile !== '-' ? new AtomicFile(outFile) : undefined;
  const sink = new TextSink(atomic ? atomic.fd : stdoutFd());
  try {
    decodeStream(src, name, sink, mode, nopl);
    if (!atomic) sink.write('\n');
    sink.flush();
    atomic?.commit();
  } finally {
    atomic?.abort();
    src.close();
  }
}

/** decode's core: the image in `src` (file name `name` tells raw kinds) as JSON into `out`. */
export function decodeStream(src: ByteSource, name: string, out: JsonOut, mode: Mode, nopl = false): void {
  const hdr = readHeader(src, name);
  writeDocument(hdr, readEntries(src, hdr), out, { mode, nopl, file: src.name });
}

/**
 * decode --salvage: every entry that can still be read, as JSON, then where and why reading
 * stopped (a CliError after the output is complete, so the exit status is 1). A damaged
 * magic falls back to the kind the file name says.
 */
export function decodeSalvage(inFile: string | undefined, outFile: string | undefined, mode: Mode): void {
  const src = openInput(inFile);
  const name = inFile && inFile !== '-' ? path.basename(inFile) : '';
  const atomic = outFile && outFile !== '-' ? new AtomicFile(outFile) : undefined;
  const sink = new TextSink(atomic ? atomic.fd : stdoutFd());
  try {
    const s = salvageEntries(src, name);
    writeDocument(s.header, s.entries, sink, { mode, file: src.name });
    if (!atomic) sink.write('\n');
    sink.flush();
    atomic?.commit();
    if (s.note) printError(s.note);
    if (s.stopped) throw new CliError(`${s.stopped.message} (stopped there; ${s.count} entr${s.count === 1 ? 'y' : 'ies'} recovered)`);
  } finally {
    atomic?.abort();
    src.close();
  }
}

/** encode: JSON -> binary image. */
export function encode(inFile: string | undefined, outFile: string | undefined): void {
  let fd = 0;
  let srcName = '<stdin>';
  if (inFile !== undefined && inFile !== '-') {
    try {
      fd = fs.openSync(inFile, 'r');
    } catch (e) {
      throw new CliError(`${inFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    srcName = inFile;
  }
  const atomic = outFile && outFile !== '-' ? new AtomicFile(outFile) : undefined;
  const sink = new BinSink(atomic ? atomic.fd : stdoutFd());
  try {
    encodeStream(fd, srcName, sink);
    sink.flush();
    atomic?.commit();
  } finally {
    atomic?.abort();
    if (fd !== 0) fs.closeSync(fd);
  }
}

/**
 * encode's core: the JSON document read from `fd` becomes image bytes in `sink`. Every
 * refusal is an ImageError naming the JSON file, the byte offset of the bad value, the entry
 * and the field path.
 */
export function encodeStream(fd: number, srcName: string, sink: BinSink): void {
  const reader = new DocumentReader(fd, srcName);
  let index = 0;
  let current: NewEntry | undefined;
  try {
    const v = reader.next();
    const magic = reader.magic!;
    const kind = kindFor(magic);
    if (!kind || (magicValue(magic) === undefined && kind.layout !== 'amdgpu' && kind.layout !== 'amdgpu-raw')) {
      throw new ImageError(srcName, reader.magicOffset, undefined, `unknown "magic" ${pyString(clipText(magic))}: not an image kind this tool can write`);
    }
    const w = new ImageWriter(sink, kind);
    // after the first entry, entries are read straight from the text into messages
    const typed = (p: JsonParser) => readEntryFrom(p, kind, w.nextType(), `entries[${index}]`);
    let item: JsonValue | Parsed<NewEntry> | undefined = v as JsonValue | undefined;
    while (item !== undefined) {
      current = item instanceof Parsed ? item.value : jsonToEntry(kind, w.nextType(), item, `entries[${index}]`);
      w.write(current);
      index++;
      current = undefined;
      item = reader.next(typed);
    }
    w.finish();
  } catch (e) {
    throw encodeError(reader, srcName, e, index, current);
  }
}

function encodeError(reader: DocumentReader, srcName: string, e: unknown, index: number, current: NewEntry | undefined): unknown {
  if (e instanceof ImageError) return e;
  if (e instanceof JsonInputError) return new ImageError(srcName, reader.byteOffset(e.offset), e.entry, e.message);
  if (e instanceof JsonConvertError) return new ImageError(srcName, reader.locate(index, e.path) ?? reader.here, index, e.message);
  if (e instanceof MissingFieldError) {
    const sub = current ? missingFieldPath(current.type, current.msg) : undefined;
    const where = `entries[${index}]${sub ? '.' + sub : ''}`;
    return new ImageError(srcName, reader.locate(index, where) ?? reader.here, index, `${where}: ${e.typeName} is missing required field ${e.field}`);
  }
  if (e instanceof LayoutError) {
    if (e.atEnd) return new ImageError(srcName, reader.here, undefined, e.message);
    return new ImageError(srcName, reader.entryOffset(index) ?? reader.here, index, `entries[${index}]: ${e.message}`);
  }
  if (e instanceof Base64Error) return new ImageError(srcName, reader.entryOffset(index) ?? reader.here, index, `entries[${index}]: ${e.message}`);
  return e;
}

/** info: {"magic": NAME, "count": N}; entries are really decoded, so extras are counted right. */
export function imageInfo(file: string): { magic: string; count: number } {
  const src = openInput(file);
  try {
    const hdr = readHeader(src, path.basename(file));
    let n = 0;
    for (const _ of readEntries(src, hdr)) n++;
    if (hdr.kind.layout === 'pagemap') n -= 1; // the head is not counted, as in CRIT
    return { magic: hdr.magic, count: n };
  } finally {
    src.close();
  }
}

export function info(file: string): void {
  const { magic, count } = imageInfo(file);
  const out = new TextSink(stdoutFd());
  out.write(`{\n    "magic": ${pyString(magic)},\n    "count": ${count}\n}\n`);
  out.flush();
}

export { ImageError };
