// Hugetlb memory on the kernel's internal hugetlbfs mounts (one per huge page size): anonymous
// MAP_HUGETLB mappings ("/anon_hugepage (deleted)") and hugetlb memfds. Both halves.
// Dump: an internal mount is known by its device, found by making a hugetlb memfd of each size
// this machine has (that takes no huge page). Its VMAs get MAP_HUGETLB and the size flag in
// vma_entry.flags and its shared objects hugetlb_flag (MFD_HUGETLB | size) in memfd_inode_entry,
// as CRIU 4.2 records them. Which huge pages of an object are allocated: the inode's block count
// says how many; those holding data are found by reading the file (a read of a hugetlbfs hole
// allocates nothing and reads zeros), those a dumped task maps from its pagemap. When the two
// fall short of the count, some allocated pages hold only zeros and no dumped task maps them:
// where they are cannot be told, and the dump is refused.
// Restore: a page size this machine lacks is refused before anything is made; hugetlbfs has no
// write(), so an object's pages go in through a shared mapping of the engine's, one huge page at
// a time (which allocates exactly the pages the image holds).
import { major, minor } from '../proc/devnum';
import * as fs from 'fs';
import { native } from '../../native';
import { EngineError, UnsupportedError } from '../errors';

export const MAP_HUGETLB = 0x40000;
export const MFD_HUGETLB = 4;
const MFD_CLOEXEC = 1;
/** log2 of the page size sits in these bits of mmap and memfd_create flags */
const SIZE_SHIFT = 26, SIZE_MASK = 0x3f;
const SYSFS = '/sys/kernel/mm/hugepages';
const PAGE = 4096n;
/** bytes read per step while looking for data in a huge page */
const SCAN_STEP = 4 << 20;
const PM_PRESENT = 1n << 63n, PM_FILE = 1n << 61n;

export interface HugeSize {
  bytes: bigint;
  /** log2(bytes) << 26, as mmap and memfd_create take it */
  flag: number;
}

/** The huge page sizes this kernel has (/sys/kernel/mm/hugepages/hugepages-<kB>kB). */
export function machineSizes(): HugeSize[] {
  let names: string[];
  try {
    names = fs.readdirSync(SYSFS);
  } catch {
    return [];
  }
  const out: HugeSize[] = [];
  for (const n of names) {
    const m = /^hugepages-(\d+)kB$/.exec(n);
    if (!m) continue;
    const bytes = BigInt(m[1]) * 1024n;
    out.push({ bytes, flag: (bytes.toString(2).length - 1) << SIZE_SHIFT });
  }
  return out;
}

/** "major:minor" as /proc/PID/maps prints a device number. */
export function devString(dev: number): string {
  return `${major(dev).toString(16).padStart(2, '0')}:${minor(dev).toString(16).padStart(2, '0')}`;
}

let internal: Map<string, HugeSize> | undefined;

/** The devices of the internal hugetlbfs mounts ("00:11" -> 2 MiB pages, ...). */
export function internalDevs(): Map<string, HugeSize> {
  if (internal) return internal;
  const found = new Map<string, HugeSize>();
  for (const s of machineSizes()) {
    let fd: number;
    try {
      fd = native().memfdCreate('criu-hugetlb-probe', MFD_CLOEXEC | MFD_HUGETLB | s.flag);
    } catch {
      continue; // not usable for memfd: its mappings are refused as of an unknown size
    }
    try {
      found.set(devString(fs.fstatSync(fd).dev), s);
    } finally {
      fs.closeSync(fd);
    }
  }
  return (internal = found);
}

/** The page size of an internal hugetlbfs device, if dev is one. */
export function hugetlbOfDev(dev: string): HugeSize | undefined {
  return internalDevs().get(dev);
}

/** Bytes of the pages that the size bits of mmap/memfd flags ask for (0: this machine's default). */
export function sizeOfFlag(flags: number): bigint | undefined {
  const bits = (flags >>> SIZE_SHIFT) & SIZE_MASK;
  if (bits) return 1n << BigInt(bits);
  try {
    const m = /^Hugepagesize:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    return m ? BigInt(m[1]) * 1024n : undefined;
  } catch {
    return undefined;
  }
}

/** Restore half: why pages of these flags cannot be had here, or undefined when they can. */
export function missingSize(flags: number): string | undefined {
  const bytes = sizeOfFlag(flags);
  if (bytes === undefined) return 'this machine has no huge pages';
  if (!machineSizes().some((s) => s.bytes === bytes)) return `this machine has no huge pages of ${bytes / 1024n} kB (it has: ${machineSizes().map((s) => `${s.bytes / 1024n} kB`).join(', ') || 'none'})`;
  return undefined;
}

/** One dumped task's mapping of an object: its pagemap tells which huge pages it has. */
export interface ObjectMapping {
  pid: number;
  start: bigint;
  end: bigint;
  /** offset of start in the object, bytes */
  pgoff: bigint;
}

/** Indexes of the object's huge pages that some dumped task has in its page tables. */
function mappedPages(maps: ObjectMapping[], hp: bigint): Set<bigint> {
  const out = new Set<bigint>();
  for (const m of maps) {
    let fd: number;
    try {
      fd = fs.openSync(`/proc/${m.pid}/pagemap`, 'r');
    } catch (e) {
      throw new EngineError(`cannot open /proc/${m.pid}/pagemap: ${(e as Error).message}`);
    }
    try {
      for (let a = m.start; a < m.end; a += hp) {
        const e = native().preadU64(fd, (a / PAGE) * 8n, 1)[0];
        // a private mapping's own copies are not the object's pages
        if (e & PM_PRESENT && e & PM_FILE) out.add((m.pgoff + (a - m.start)) / hp);
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return out;
}

/** Does the huge page at `at` of fd hold anything but zeros? (reading never allocates) */
function holdsData(fd: number, at: bigint, hp: bigint, buf: Buffer, zero: Buffer): boolean {
  for (let off = 0n; off < hp; off += BigInt(buf.length)) {
    const len = Number(hp - off < BigInt(buf.length) ? hp - off : BigInt(buf.length));
    let got = 0;
    while (got < len) {
      const n = fs.readSync(fd, buf, got, len - got, Number(at + off) + got);
      if (n <= 0) break;
      got += n;
    }
    if (got === 0) return false;
    if (buf.compare(zero, 0, got, 0, got) !== 0) return true;
  }
  return false;
}

/**
 * Dump half: the allocated huge pages of a hugetlb object (byte offsets, sorted). `who` names the
 * object for the refusal; `blocks` is its fstat block count (512-byte units).
 */
export function allocatedPages(fd: number, size: bigint, blocks: bigint, hp: bigint, maps: ObjectMapping[], who: string): bigint[] {
  const want = (blocks * 512n) / hp;
  const found = new Set<bigint>();
  if (want > 0n) {
    const step = Number(hp < BigInt(SCAN_STEP) ? hp : BigInt(SCAN_STEP));
    const buf = Buffer.alloc(step), zero = Buffer.alloc(step);
    for (let at = 0n; at < size && BigInt(found.size) < want; at += hp) if (holdsData(fd, at, hp, buf, zero)) found.add(at / hp);
    if (BigInt(found.size) < want) for (const i of mappedPages(maps, hp)) if (i * hp < size) found.add(i);
  }
  if (BigInt(found.size) !== want)
    throw new UnsupportedError(`${who}: ${want - BigInt(found.size)} of its ${want} allocated huge pages hold only zeros and no dumped task maps them: which ones they are cannot be told`);
  return [...found].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((i) => i * hp);
}

export interface ShmemRun {
  /** offset in the object */
  vaddr: bigint;
  nrPages: bigint;
  /** offset of its data in the pages file */
  fileOff: bigint;
}

/**
 * Restore half: the image's pages written into hugetlb object fd through the engine's shared
 * mappings of one huge page each. Parts of a page the image does not hold keep what the object has.
 */
export function fillPages(fd: number, hp: bigint, runs: ShmemRun[], pagesFile: string, image: string): void {
  if (!runs.length) return;
  const src = fs.openSync(pagesFile, 'r');
  try {
    const buf = Buffer.alloc(Number(hp));
    let win = -1n;
    const flush = () => {
      if (win >= 0n) native().mmapCopy(fd, win, buf.length, buf, true);
    };
    for (const r of runs) {
      let at = r.vaddr, from = r.fileOff, left = r.nrPages * PAGE;
      while (left > 0n) {
        const w = (at / hp) * hp;
        if (w !== win) {
          flush();
          win = w;
          readAll(fd, buf, 0, buf.length, w); // zeros for a hole, without allocating it
        }
        const n = w + hp - at < left ? w + hp - at : left;
        if (readAll(src, buf, Number(at - w), Number(n), from) !== Number(n)) throw new EngineError(`${image}: short read at offset ${from}`, 'EIMAGE');
        at += n;
        from += n;
        left -= n;
      }
    }
    flush();
  } finally {
    fs.closeSync(src);
  }
}

function readAll(fd: number, buf: Buffer, off: number, len: number, at: bigint): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, off + got, len - got, Number(at) + got);
    if (n <= 0) break;
    got += n;
  }
  if (got < len) buf.fill(0, off + got, off + len);
  return got;
}
