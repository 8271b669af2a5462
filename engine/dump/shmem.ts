// Shared memory objects (memfd, and anonymous MAP_SHARED memory, which the kernel backs with an
// unlinked shmem file "/dev/zero"): one memfd_inode_entry each in memfd.img and its contents in
// pagemap-shmem-<inode>.img, offsets inside the object. CRIU 4.2 on this kernel records both
// kinds as memfd (the anonymous one named "/dev/zero"), so we do the same.
import { PE } from '../../images/flags';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import type { NewEntry } from '../../images/files';
import { native, isNativeError } from '../../native';
import { EngineError, UnsupportedError } from '../errors';

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
  /** [offset, nrPages] of each populated run */
  runs: [number, number][];
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

export class ShmemTable {
  private byIno = new Map<number, ShmemObject>();
  readonly objects: ShmemObject[] = [];

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
      if (st.dev !== 1) throw new UnsupportedError(`task ${pid}: shared memory ${link} is not on the shmem mount (hugetlb memfd?)`);
      let seals = 0;
      try {
        seals = native().fcntl(fd, F_GET_SEALS);
      } catch {
        seals = 0;
      }
      const obj: ShmemObject = {
        ino, inodeId: this.objects.length + 1, name: memfdName(link), size: st.size, pagesId: allocPagesId(),
        runs: populatedRuns(fd, st.size), fd,
        entry: {},
      };
      obj.entry = {
        name: obj.name, uid: st.uid, gid: st.gid, size: st.size, shmid: ino, seals, inode_id: obj.inodeId, mode: st.mode,
      };
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

  get pagesToWrite(): number {
    return this.objects.reduce((s, o) => s + o.runs.reduce((t, r) => t + r[1], 0), 0);
  }

  pagemap(o: ShmemObject): NewEntry[] {
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
