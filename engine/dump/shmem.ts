// Shared memory objects (memfd, and anonymous MAP_SHARED memory, which the kernel backs with an
// unlinked shmem file "/dev/zero", or with a hugetlbfs file "/anon_hugepage" under MAP_HUGETLB):
// one memfd_inode_entry each in memfd.img and its contents in pagemap-shmem-<inode>.img, offsets
// inside the object. CRIU 4.2 on this kernel records all of them as memfd (the anonymous ones
// named "/dev/zero" and "/anon_hugepage", hugetlb ones with hugetlb_flag), so we do the same; a
// memfd that a task itself named so would read as anonymous memory at restore and is refused.
// Hugetlb objects: kinds/hugetlb.ts finds their allocated pages once every task is seen.
import { PE } from '../../images/flags';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import type { NewEntry } from '../../images/files';
import { native, isNativeError } from '../../native';
import { EngineError, UnsupportedError } from '../errors';
import { HugeSize, ObjectMapping, MFD_HUGETLB, allocatedPages, devString, hugetlbOfDev } from '../kinds/hugetlb';

const SEEK_DATA = 3, SEEK_HOLE = 4;
const F_GET_SEALS = 1034;
const PAGE = 4096;
/** entries are split like the task pagemaps */
const MAX_ENTRY_PAGES = 256;

/** The internal shmem mount that backs memfd and anonymous shared memory. */
export const SHMEM_DEV = '00:01';

export interface ShmemObject {
  ino: number;
  inodeId: number;
  name: string;
  size: number;
  pagesId: number;
  /** [offset, nrPages] of each populated run (a hugetlb object's: once settled) */
  runs: [number, number][];
  /** hugetlb: its page size and the dumped tasks' mappings of it */
  huge?: { size: HugeSize; maps: ObjectMapping[]; who: string; settled: boolean };
  /** an fd of ours on the object, open until its pages are copied */
  fd: number;
  entry: Msg;
}

/** "/memfd:foo (deleted)" -> "foo"; the anonymous shared memory file keeps "/dev/zero". */
export function memfdName(link: string): string {
  const n = link.replace(/ \(deleted\)$/, '');
  return n.startsWith('/memfd:') ? n.slice('/memfd:'.length) : n;
}

/** Populated ranges of a shmem file (pages in memory or swap), via SEEK_DATA/SEEK_HOLE. */
function populatedRuns(fd: number, size: number): [number, number][] {
  const n = native();
  const runs: [number, number][] = [];
  let off = 0;
  while (off < size) {
    let data: number;
    try {
      data = Number(n.lseek(fd, off, SEEK_DATA));
    } catch (e) {
      if (isNativeError(e) && e.code === 'ENXIO') break;
      throw e;
    }
    const hole = Math.min(Number(n.lseek(fd, data, SEEK_HOLE)), size);
    const start = Math.floor(data / PAGE) * PAGE;
    const end = Math.ceil(hole / PAGE) * PAGE;
    for (let o = start; o < end; o += MAX_ENTRY_PAGES * PAGE) runs.push([o, Math.min(MAX_ENTRY_PAGES, (end - o) / PAGE)]);
    off = end;
  }
  return runs;
}

/** Is the regular file behind `via` on the internal shmem mount or an internal hugetlbfs one? */
export function onShmemMount(via: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.statSync(via);
  } catch {
    return false;
  }
  if (!st.isFile()) return false;
  const dev = devString(st.dev);
  return dev === SHMEM_DEV || hugetlbOfDev(dev) !== undefined;
}

/** The names the kernel gives anonymous shared memory on the shmem and hugetlbfs mounts. */
export const ANON_SHMEM = '/dev/zero', ANON_HUGETLB = '/anon_hugepage';

/** Refuses what on these internal mounts is neither a memfd nor anonymous shared memory. */
function checkObjectName(who: string, link: string, huge: boolean): void {
  const name = link.replace(/ \(deleted\)$/, '');
  const anon = huge ? ANON_HUGETLB : ANON_SHMEM;
  if (name.startsWith('/memfd:')) {
    if (name.slice('/memfd:'.length) === anon)
      throw new UnsupportedError(`${who}: a memfd named "${anon}" would read as anonymous shared memory in memfd.img (unsupported)`);
    return;
  }
  if (name === anon) return;
  if (name.startsWith('/SYSV')) throw new UnsupportedError(`${who}: System V shared memory ${link} is not supported`);
  throw new UnsupportedError(`${who}: ${link} is a kernel object on the internal ${huge ? 'hugetlbfs' : 'shmem'} mount, neither a memfd nor anonymous shared memory (unsupported)`);
}

/** Runs of at most MAX_ENTRY_PAGES pages over sorted, page-aligned [offset, bytes) ranges. */
function runsOf(ranges: [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (const [at, len] of ranges) {
    const last = out[out.length - 1];
    let off = at, pages = len / PAGE;
    if (last && last[0] + last[1] * PAGE === off && last[1] < MAX_ENTRY_PAGES) {
      const take = Math.min(MAX_ENTRY_PAGES - last[1], pages);
      last[1] += take;
      off += take * PAGE;
      pages -= take;
    }
    for (; pages > 0; off += MAX_ENTRY_PAGES * PAGE, pages -= MAX_ENTRY_PAGES) out.push([off, Math.min(MAX_ENTRY_PAGES, pages)]);
  }
  return out;
}

export class ShmemTable {
  private byIno = new Map<number, ShmemObject>();
  readonly objects: ShmemObject[] = [];
  /** hugetlb files taken for private anonymous memory (their VMA's own): never objects too */
  private privateHuge = new Map<number, string>();

  /** A dumped task maps object ino there (its pagemap shows which hugetlb pages it has). */
  noteMapping(ino: number, m: ObjectMapping): void {
    this.byIno.get(ino)?.huge?.maps.push(m);
  }

  /** The hugetlb file behind a private anonymous VMA, which must not be a shared object as well. */
  privateAnonHuge(ino: number, who: string): void {
    const o = this.byIno.get(ino);
    if (o) throw new UnsupportedError(`${who}: a private mapping of ${o.name} (inode ${ino}), which is shared elsewhere, without pages of the object in it (unsupported)`);
    this.privateHuge.set(ino, who);
  }

  /**
   * The object behind `via` (a /proc path that opens it: map_files/<range> or fd/<n>).
   * Its pages are planned at once, so that pages ids follow CRIU's order (shmem before the task).
   */
  object(pid: number, via: string, link: string, ino: number, allocPagesId: () => number): ShmemObject {
    const known = this.byIno.get(ino);
    if (known) return known;
    let fd: number;
    try {
      fd = fs.openSync(via, fs.constants.O_RDONLY);
    } catch (e) {
      throw new EngineError(`task ${pid}: cannot open shared memory ${link}: ${(e as Error).message}`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.ino !== ino) throw new EngineError(`task ${pid}: ${via} is inode ${st.ino}, expected ${ino}`);
      const dev = devString(st.dev);
      const huge = hugetlbOfDev(dev);
      const who = `task ${pid} ${via.includes('/map_files/') ? 'mapping ' + via.slice(via.lastIndexOf('/') + 1) : 'fd ' + via.slice(via.lastIndexOf('/') + 1)}`;
      if (dev !== SHMEM_DEV && !huge) throw new UnsupportedError(`${who}: shared memory ${link} is on device ${dev}, neither the shmem mount nor an internal hugetlbfs mount of a page size this machine has`);
      checkObjectName(who, link, huge !== undefined);
      const priv = this.privateHuge.get(ino);
      if (priv) throw new UnsupportedError(`${priv}: a private mapping of ${link} (inode ${ino}), which ${who} shares, without pages of the object in it (unsupported)`);
      let seals = 0;
      try {
        seals = native().fcntl(fd, F_GET_SEALS);
      } catch {
        seals = 0;
      }
      const obj: ShmemObject = {
        ino, inodeId: this.objects.length + 1, name: memfdName(link), size: st.size, pagesId: allocPagesId(),
        runs: huge ? [] : populatedRuns(fd, st.size), fd,
        entry: {},
      };
      if (huge) obj.huge = { size: huge, maps: [], who: `${who}: hugetlb memory ${link} (inode ${ino})`, settled: false };
      obj.entry = {
        name: obj.name, uid: st.uid, gid: st.gid, size: st.size, shmid: ino, seals, inode_id: obj.inodeId, mode: st.mode,
      };
      if (huge) obj.entry.hugetlb_flag = MFD_HUGETLB | huge.flag;
      this.byIno.set(ino, obj);
      this.objects.push(obj);
      return obj;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get pagesScanned(): number {
    return this.objects.reduce((s, o) => s + Math.ceil(o.size / PAGE), 0);
  }

  /** A hugetlb object's runs, found once every task's mappings of it are known (tasks frozen). */
  private settle(o: ShmemObject): void {
    const h = o.huge;
    if (!h || h.settled) return;
    const hp = h.size.bytes;
    const pages = allocatedPages(o.fd, BigInt(o.size), BigInt(fs.fstatSync(o.fd).blocks), hp, h.maps, h.who);
    o.runs = runsOf(pages.map((at) => [Number(at), Number(hp)]));
    h.settled = true;
  }

  get pagesToWrite(): number {
    for (const o of this.objects) this.settle(o);
    return this.objects.reduce((s, o) => s + o.runs.reduce((t, r) => t + r[1], 0), 0);
  }

  pagemap(o: ShmemObject): NewEntry[] {
    this.settle(o);
    return [
      { msg: { pages_id: o.pagesId } },
      ...o.runs.map(([off, n]) => ({ msg: { vaddr: off, compat_nr_pages: 0, flags: PE.PRESENT, nr_pages: n } })),
    ];
  }

  memfdEntries(): NewEntry[] {
    return this.objects.map((o) => ({ msg: o.entry }));
  }

  /** Copies the populated pages of o into `file` (the task is frozen; nothing else writes it). */
  writePages(o: ShmemObject, file: string): number {
    this.settle(o);
    const out = fs.openSync(file, 'w', 0o600);
    let total = 0;
    try {
      const buf = Buffer.alloc(MAX_ENTRY_PAGES * PAGE);
      for (const [off, n] of o.runs) {
        const len = n * PAGE;
        buf.fill(0, 0, len); // the last page may extend beyond EOF
        let got = 0;
        while (got < len) {
          const r = fs.readSync(o.fd, buf, got, len - got, off + got);
          if (r <= 0) break;
          got += r;
        }
        fs.writeSync(out, buf, 0, len);
        total += len;
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOSPC') throw new EngineError(`no space left on device while writing ${file}`, 'ENOSPC');
      throw e;
    } finally {
      fs.closeSync(out);
    }
    return total;
  }

  close(): void {
    for (const o of this.objects) {
      if (o.fd >= 0) {
        try {
          fs.closeSync(o.fd);
        } catch {
          /* closed */
        }
        o.fd = -1;
      }
    }
  }
}
