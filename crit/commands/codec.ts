// crit decode / encode / info / show: CRIT's commands, with clear errors and atomic output.
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource } from '../../images/source';
import { readHeader, readEntries, ImageWriter, BinSink, ImageError } from '../../images/image';
import { writeDocument, TextSink, DocumentReader, jsonToEntry, readEntryFrom, Parsed, NewEntry, JsonInputError, JsonConvertError } from '../../images/json/document';
import type { JsonParser, JsonValue } from '../../images/json/parse';
import { kindFor } from '../../images/kinds';
import { magicValue } from '../../images/magic';
import { MissingFieldError } from '../../images/codec';
import { AtomicFile } from '../io';
import { Mode } from '../../images/json/tojson';
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
  const sink = new TextSink(atomic ? atomic.fd : 1);
  try {
    const hdr = readHeader(src, name);
    writeDocument(hdr, readEntries(src, hdr), sink, { mode, nopl });
    if (!atomic) sink.write('\n');
    sink.flush();
    atomic?.commit();
  } finally {
    atomic?.abort();
    src.close();
  }
}

/**
 * decode --salvage: every entry that can still be read, as JSON, then where and why reading
 * stopped (a CliError after the output is complete, so the exit status is 1). A damaged
 * magic falls back to the kind the file name says.
 */
export function decodeSalvage(inFile: string | undefined, outFile: string | undefined, mode: Mode): void {
  const { salvageEntries } = require('../../images/query/check') as typeof import('../../images/query/check');
  const src = openInput(inFile);
  const name = inFile && inFile !== '-' ? path.basename(inFile) : '';
  const atomic = outFile && outFile !== '-' ? new AtomicFile(outFile) : undefined;
  const sink = new TextSink(atomic ? atomic.fd : 1);
  try {
    const s = salvageEntries(src, name);
    writeDocument(s.header, s.entries, sink, { mode });
    if (!atomic) sink.write('\n');
    sink.flush();
    atomic?.commit();
    if (s.note) process.stderr.write(`crit: ${s.note}\n`);
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
  const reader = new DocumentReader(fd, srcName);
  const atomic = outFile && outFile !== '-' ? new AtomicFile(outFile) : undefined;
  const sink = new BinSink(atomic ? atomic.fd : 1);
  let index = 0;
  try {
    let v = reader.next();
    const magic = reader.magic!;
    const kind = kindFor(magic);
    if (!kind || (magicValue(magic) === undefined && kind.layout !== 'amdgpu' && kind.layout !== 'amdgpu-raw')) {
      throw new CliError(`${srcName}: unknown "magic" ${pyString(magic)}: not an image kind this tool can write`);
    }
    const w = new ImageWriter(sink, kind);
    // after the first entry, entries are read straight from the text into messages
    const typed = (p: JsonParser) => readEntryFrom(p, kind, w.nextType(), `entries[${index}]`);
    let item: JsonValue | Parsed<NewEntry> | undefined = v as JsonValue | undefined;
    while (item !== undefined) {
      try {
        w.write(item instanceof Parsed ? item.value : jsonToEntry(kind, w.nextType(), item, `entries[${index}]`));
        index++;
        item = reader.next(typed);
      } catch (e) {
        if (e instanceof MissingFieldError) throw new CliError(`${srcName}: entries[${index}]: ${e.typeName} is missing required field ${e.field}`);
        if (e instanceof JsonConvertError) throw new CliError(`${srcName}: ${e.message}`);
        if (e instanceof Error && !(e instanceof CliError) && /holds exactly one entry/.test(e.message)) throw new CliError(`${srcName}: entries[${index}]: ${e.message}`);
        throw e;
      }
    }
    sink.flush();
    atomic?.commit();
  } catch (e) {
    if (e instanceof JsonInputError) throw new CliError(`${srcName}: ${e.message}`);
    throw e;
  } finally {
    atomic?.abort();
    if (fd !== 0) fs.closeSync(fd);
  }
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
  const out = new TextSink(1);
  out.write(`{\n    "magic": ${pyString(magic)},\n    "count": ${count}\n}\n`);
  out.flush();
}

export { ImageError };
