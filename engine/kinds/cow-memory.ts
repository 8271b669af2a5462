// Private memory a forked child still shares copy-on-write with its parent. The images mark
// nothing for it (CRIU 4.2 neither: no vma_entry or pagemap field says "inherited"), so the dump
// side has nothing to add. At restore the parent's memory is rebuilt before the child is forked
// (restore/tree.ts): the child starts with the parent's pages. A child VMA with the parent's
// range, kind, flags, file and advice is kept as inherited; of its pages only those whose dumped
// contents differ from the parent's are written (a write breaks the sharing, as it did in the
// original), those the parent has and the child had not are dropped, the identical ones stay
// the parent's physical pages.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import type { Pagemap, TaskImage } from '../restore/imageset';
import { big, num, VMA } from '../restore/imageset';
import { EngineError } from '../errors';

const PAGE = 4096n;
const MAP_PRIVATE = 0x02, MAP_TYPE = 0x0f, MAP_LOCKED = 0x2000, MAP_HUGETLB = 0x40000;
/** madvise bits whose areas fork does not hand to the child as they are */
const MADV_DONTFORK = 10n, MADV_WIPEONFORK = 18n;
/** bytes compared per read */
const COMPARE_CHUNK = 1n << 20n;

export interface Range {
  start: bigint;
  end: bigint;
}

/** A piece of a pages image: len bytes at addr come from offset off. */
export interface PagePiece {
  addr: bigint;
  len: bigint;
  off: bigint;
}

export interface InheritedVma extends Range {
  /** protection the parent left on it (what the child has after the fork) */
  parentProt: number;
}

/**
 * The child's VMAs (by index in its mm image) that it keeps from the parent's restored memory:
 * private, same range, status, flags and advice, and for a file the same file and offset.
 * Not kept: locked areas (fork does not pass mlock on), hugetlb, droppable (wiped on fork),
 * DONTFORK and WIPEONFORK areas.
 */
export function inheritedVmas(child: TaskImage, parent: TaskImage): Map<number, InheritedVma> {
  const out = new Map<number, InheritedVma>();
  const byStart = new Map<bigint, Msg>();
  for (const v of parent.mm!.vmas as Msg[]) byStart.set(big(v.start), v);
  (child.mm!.vmas as Msg[]).forEach((v, i) => {
    const p = byStart.get(big(v.start));
    if (!p || big(p.end) !== big(v.end)) return;
    const st = num(v.status);
    if (num(p.status) !== st) return;
    if (st & (VMA.VDSO | VMA.VVAR | VMA.VSYSCALL | VMA.EXT_PLUGIN | VMA.FILE_SHARED | VMA.ANON_SHARED | VMA.SYSVIPC | VMA.UNSUPP)) return;
    if (!(st & (VMA.ANON_PRIVATE | VMA.FILE_PRIVATE))) return;
    const flags = num(v.flags);
    if (num(p.flags) !== flags || (flags & MAP_TYPE) !== MAP_PRIVATE || flags & (MAP_LOCKED | MAP_HUGETLB)) return;
    const madv = big(v.madv);
    if (big(p.madv) !== madv || (madv >> MADV_DONTFORK) & 1n || (madv >> MADV_WIPEONFORK) & 1n) return;
    if (st & VMA.FILE_PRIVATE && (num(p.shmid) !== num(v.shmid) || big(p.pgoff) !== big(v.pgoff))) return;
    out.set(i, { start: big(v.start), end: big(v.end), parentProt: num(p.prot) });
  });
  return out;
}

/** The pieces of a pagemap inside the sorted, disjoint ranges. */
function piecesIn(pm: Pagemap, ranges: Range[]): PagePiece[] {
  const out: PagePiece[] = [];
  let k = 0;
  for (const r of pm.runs) {
    const start = r.vaddr, end = r.vaddr + r.nrPages * PAGE;
    while (k < ranges.length && ranges[k].end <= start) k++;
    for (let j = k; j < ranges.length && ranges[j].start < end; j++) {
      const lo = start > ranges[j].start ? start : ranges[j].start;
      const hi = end < ranges[j].end ? end : ranges[j].end;
      if (lo < hi) out.push({ addr: lo, len: hi - lo, off: r.fileOff + (lo - start) });
    }
  }
  return out;
}

function addPiece(out: PagePiece[], addr: bigint, len: bigint, off: bigint): void {
  const last = out[out.length - 1];
  if (last && last.addr + last.len === addr && last.off + last.len === off) last.len += len;
  else out.push({ addr, len, off });
}

function addRange(out: Range[], start: bigint, end: bigint): void {
  const last = out[out.length - 1];
  if (last && last.end === start) last.end = end;
  else out.push({ start, end });
}

export interface InheritedPages {
  /** child pages to write (from the child's pages image) */
  writes: PagePiece[];
  /** pages the parent has and the child had not: dropped in the child */
  drops: Range[];
  /** pages in both images, compared */
  compared: bigint;
  /** of them, the equal ones: they stay shared with the parent */
  shared: bigint;
}

/** What the child must change in the inherited ranges (sorted, disjoint) to hold its own dumped pages. */
export function inheritedPages(child: TaskImage, parent: TaskImage, ranges: Range[]): InheritedPages {
  const mine = piecesIn(child.pagemap!, ranges);
  const theirs = piecesIn(parent.pagemap!, ranges);
  const res: InheritedPages = { writes: [], drops: [], compared: 0n, shared: 0n };
  if (!mine.length && !theirs.length) return res;
  const cfd = fs.openSync(child.pagemap!.pagesFile, 'r');
  const pfd = fs.openSync(parent.pagemap!.pagesFile, 'r');
  try {
    let i = 0, j = 0;
    let c = mine[0] && { ...mine[0] }, p = theirs[0] && { ...theirs[0] };
    const nextC = () => { c = mine[++i] && { ...mine[i] }; };
    const nextP = () => { p = theirs[++j] && { ...theirs[j] }; };
    /** drops the first n bytes of a piece (the part handled) */
    const eat = (x: PagePiece, n: bigint) => { x.addr += n; x.off += n; x.len -= n; };
    while (c || p) {
      if (c && (!p || c.addr + c.len <= p.addr)) { addPiece(res.writes, c.addr, c.len, c.off); nextC(); continue; }
      if (p && (!c || p.addr + p.len <= c.addr)) { addRange(res.drops, p.addr, p.addr + p.len); nextP(); continue; }
      // they overlap: what comes before the common part belongs to one side only
      if (c!.addr < p!.addr) { const n = p!.addr - c!.addr; addPiece(res.writes, c!.addr, n, c!.off); eat(c!, n); }
      else if (p!.addr < c!.addr) { const n = c!.addr - p!.addr; addRange(res.drops, p!.addr, c!.addr); eat(p!, n); }
      const len = c!.len < p!.len ? c!.len : p!.len;
      compare(cfd, pfd, c!, p!, len, res);
      eat(c!, len);
      eat(p!, len);
      if (c!.len === 0n) nextC();
      if (p!.len === 0n) nextP();
    }
  } finally {
    fs.closeSync(cfd);
    fs.closeSync(pfd);
  }
  return res;
}

/** Page by page: the child's differing pages become writes, the equal ones stay shared. */
function compare(cfd: number, pfd: number, c: PagePiece, p: PagePiece, len: bigint, res: InheritedPages): void {
  for (let done = 0n; done < len; ) {
    const n = len - done < COMPARE_CHUNK ? len - done : COMPARE_CHUNK;
    const a = readAt(cfd, c.off + done, n), b = readAt(pfd, p.off + done, n);
    for (let o = 0; o < Number(n); o += Number(PAGE)) {
      const at = BigInt(o);
      res.compared++;
      if (a.compare(b, o, o + Number(PAGE), o, o + Number(PAGE)) === 0) res.shared++;
      else addPiece(res.writes, c.addr + done + at, PAGE, c.off + done + at);
    }
    done += n;
  }
}

function readAt(fd: number, off: bigint, len: bigint): Buffer {
  const b = Buffer.alloc(Number(len));
  let got = 0;
  while (got < b.length) {
    const n = fs.readSync(fd, b, got, b.length - got, Number(off) + got);
    if (n <= 0) throw new EngineError(`short read of a pages image at offset ${off}`, 'EIMAGE');
    got += n;
  }
  return b;
}
