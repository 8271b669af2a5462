// Changing bytes of a dumped task's memory in place: the memory reader says which pages file
// and offset hold each byte; the pages file is copied, patched, fsynced and renamed over the
// original. Bytes the image does not hold (clean file pages, lazy pages, zero pages) or that
// live in a parent image are refused: patching them would need a new pagemap entry.
import type { ImageSet } from '../imageset';
import { AtomicOutput } from '../atomic';
import * as fs from 'fs';

export class PatchError extends Error {}

export interface PatchWrite {
  /** pages file inside the set, e.g. "pages-1.img" */
  file: string;
  /** byte offset in that file */
  offset: number;
  addr: bigint;
  len: number;
}

export interface PatchResult {
  writes: PatchWrite[];
  /** files written (the targets) */
  files: string[];
  /** the bytes that were there before */
  old: Uint8Array;
}

/** "de ad be ef", "deadbeef", "0xdeadbeef", "\xde\xad": the bytes, or a PatchError. */
export function parseHexBytes(text: string): Uint8Array {
  const t = text.replace(/\\x|0x|[\s:,_-]/gi, '');
  if (!t.length || t.length % 2 || !/^[0-9a-f]+$/i.test(t)) throw new PatchError(`'${text}' is not a sequence of hex bytes (e.g. "de ad be ef")`);
  return Uint8Array.from(Buffer.from(t, 'hex'));
}

const ORIGIN = /^((?:parent\/)*)(pages-\d+\.img)\+0x([0-9a-f]+)$/;

/**
 * Writes `data` at virtual address `addr` of task `pid` into the pages file(s) of `set`.
 * Atomic per file; with several files, all are prepared before any is renamed. `opts.out`
 * writes the patched pages file there instead of in place (one pages file only).
 * Readers already open on `set` keep seeing the old file: close the set and open it again.
 */
export function patchMemory(set: ImageSet, pid: number, addr: bigint, data: Uint8Array, opts: { out?: string } = {}): PatchResult {
  if (!data.length) throw new PatchError('nothing to patch (no bytes given)');
  const mem = set.memory(pid);
  const writes: PatchWrite[] = [];
  for (const s of mem.layout(addr, data.length)) {
    const at = `0x${s.addr.toString(16)}`;
    if (!s.present || !s.origin) throw new PatchError(`task ${pid} ${at} (+${s.len} bytes): ${s.absent ?? 'not in the image'}; only bytes stored in a pages file can be patched`);
    const m = ORIGIN.exec(s.origin);
    if (!m && / block/.test(s.origin)) throw new PatchError(`task ${pid} ${at}: stored compressed (${s.origin}); compressed pages cannot be patched in place: crit decompress the set first`);
    if (!m) throw new PatchError(`task ${pid} ${at}: stored in ${s.origin}, which is not a pages file this tool can patch`);
    if (m[1]) throw new PatchError(`task ${pid} ${at}: these bytes live in a parent image (${s.origin}); patch that set instead (${set.path(m[1] + m[2])})`);
    writes.push({ file: m[2], offset: parseInt(m[3], 16), addr: s.addr, len: s.len });
  }
  const files = [...new Set(writes.map((w) => w.file))];
  if (opts.out && files.length > 1) throw new PatchError(`the range spans ${files.length} pages files (${files.join(', ')}); -o can name only one`);
  const old = mem.readBytes(addr, data.length);
  const outs: AtomicOutput[] = [];
  try {
    for (const f of files) {
      const src = set.path(f);
      const o = new AtomicOutput(opts.out ?? src, { from: src, mode: fs.statSync(src).mode });
      outs.push(o);
      for (const w of writes) if (w.file === f) o.write(data.subarray(Number(w.addr - addr), Number(w.addr - addr) + w.len), w.offset);
      o.sync();
    }
    for (const o of outs) o.commit();
  } catch (e) {
    for (const o of outs) o.abort();
    throw e;
  }
  return { writes, files: outs.map((o) => o.target), old };
}
