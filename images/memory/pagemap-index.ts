// A pagemap as sorted arrays, for binary search by address and computed offsets into the
// pages file: no per-page scans, and the pages file itself is never read to build it.
import type { Msg } from '../codec';
import { entryPages, entryFlags, PE_PRESENT } from '../imageset';

export class PagemapIndex {
  readonly starts: BigUint64Array;
  readonly ends: BigUint64Array;
  readonly flags: Uint8Array;
  /** byte offset of each entry's data in the pages file (-1 when not PE_PRESENT) */
  readonly offsets: Float64Array;
  /** bytes of page data the entries account for */
  readonly presentBytes: number;

  constructor(entries: Msg[], readonly pageSize: number, readonly pagesId: number) {
    const n = entries.length;
    this.starts = new BigUint64Array(n);
    this.ends = new BigUint64Array(n);
    this.flags = new Uint8Array(n);
    this.offsets = new Float64Array(n);
    let off = 0;
    const ps = BigInt(pageSize);
    for (let i = 0; i < n; i++) {
      const e = entries[i];
      const start = BigInt(e.vaddr);
      const pages = entryPages(e);
      const f = entryFlags(e);
      this.starts[i] = start;
      this.ends[i] = start + BigInt(pages) * ps;
      this.flags[i] = f;
      if (f & PE_PRESENT) {
        this.offsets[i] = off;
        off += pages * pageSize;
      } else this.offsets[i] = -1;
    }
    this.presentBytes = off;
  }

  get length(): number {
    return this.starts.length;
  }

  /** Index of the entry containing addr, or -1. Entries are sorted by address. */
  find(addr: bigint): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid] > addr) hi = mid - 1;
      else if (this.ends[mid] <= addr) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** Index of the first entry ending after addr (for walking forward from an address). */
  firstAfter(addr: bigint): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid] <= addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
