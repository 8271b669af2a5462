// The salvage reader behind `crit decode --salvage`: the entries of a damaged image up to the
// first damage, and where and why reading stopped. A damaged magic falls back to the kind the
// file name says. (Its own module, so decode does not load the whole of crit check.)
import { ByteSource } from '../source';
import { readHeader, readEntries, Entry, ImageError, ImageHeader } from '../image';
import { kindFor } from '../kinds';
import { kindByName } from './names';

export interface Salvage {
  header: ImageHeader;
  /** entries until the first damage; consume before reading `stopped` and `count` */
  entries: Iterable<Entry>;
  count: number;
  stopped?: ImageError;
  /** e.g. that the magic was damaged and the kind came from the file name */
  note?: string;
}

/** Reads what can be read of a damaged image: entries up to the first error, and the error. */
export function salvageEntries(src: ByteSource, fileName: string): Salvage {
  let header: ImageHeader;
  let note: string | undefined;
  try {
    header = readHeader(src, fileName);
  } catch (e) {
    const byName = fileName ? kindByName(fileName) : undefined;
    const kind = byName ? kindFor(byName) : undefined;
    if (!(e instanceof ImageError) || !byName || !kind) throw e;
    // trust the name: skip the magic words CRIU would have written
    const skip = byName === 'INVENTORY' ? 4 : kind.layout.startsWith('amdgpu') ? 0 : 8;
    src.ensure(skip);
    src.pos = Math.max(0, Math.min(skip - src.base, src.len));
    header = { magic: byName, kind };
    note = `${e.message}; decoding as ${byName}, the kind its name says`;
  }
  const s: Salvage = { header, count: 0, note, entries: [] };
  s.entries = (function* () {
    try {
      for (const e of readEntries(src, header)) {
        s.count++;
        yield e;
      }
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      s.stopped = e;
    }
  })();
  return s;
}
