// Shared memory objects (memfd.img): each made once by the engine with its size, filled from
// pagemap-shmem-<shmid>.img (holes stay holes), given its mode, owner and seals. Tasks map it by
// opening /proc/<engine>/fd/<n> (one object shared by every task that maps it), and memfd fds are
// new open descriptions of it with their own flags and offset. Anonymous MAP_SHARED memory, which
// CRIU 4.2 records as a sealed memfd named "/dev/zero" ("/anon_hugepage" with hugetlb_flag under
// MAP_HUGETLB), is made as anonymous shared memory again: a shared anonymous mapping of the
// engine's, reopened through map_files and unmapped, so /proc shows the kernel's name as before.
// Hugetlb objects are filled through a mapping (kinds/hugetlb: hugetlbfs has no write()).
// Exec: the kernel refuses to execute a file that a descriptor made by open() may write
// (ETXTBSY), and every reopen through /proc/<pid>/fd is such a descriptor, while the one
// memfd_create() returned never counts. So the first O_RDWR fd of an object, and every writable
// shared mapping of it, use the engine's original description (passed in, never reopened), and
// execveat(memfd) keeps working after restore. The object is made executable (MFD_EXEC) and
// then given its dumped mode, and F_SEAL_EXEC comes with the other seals, after the mode.
import * as fs from 'fs';
import { native, isNativeError } from '../../native';
import { EngineError } from '../errors';
import type { ImageSet, MemfdInode } from './imageset';
import type { Ctx, Proc } from './context';
import { receiveFds, CHUNK as FDS_PER_MESSAGE } from './fds';
import { MFD_HUGETLB, MAP_HUGETLB, fillPages, sizeOfFlag } from '../kinds/hugetlb';

const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_NOEXEC_SEAL = 8, MFD_EXEC = 0x10;
const F_ADD_SEALS = 1033, F_SEAL_SEAL = 1, F_SEAL_EXEC = 0x20;
const F_SETFL = 4, F_DUPFD_CLOEXEC = 1030;
const O_ACCMODE = 3, O_RDWR = 2, O_APPEND = 0o2000, O_NONBLOCK = 0o4000;
const CHUNK = 4 << 20;
const PROT_RW = 3, MAP_SHARED = 1, MAP_ANONYMOUS = 0x20;
/** the size bits of hugetlb flags, the same in mmap and memfd_create */
const HUGE_SIZE_BITS = 0x3f << 26;
/** the kernel's names of anonymous shared memory */
const ANON_SHMEM = '/dev/zero', ANON_HUGETLB = '/anon_hugepage';

export class ShmemRestorer {
  private fds = new Map<number, number>();
  /** objects whose original description an fd of a task already holds */
  private originalGiven = new Set<number>();

  constructor(private set: ImageSet) {}

  /** Creates and fills every object (before any process exists). */
  build(): void {
    for (const o of this.set.memfds.values()) this.fds.set(o.inodeId, this.make(o));
  }

  private make(o: MemfdInode): number {
    const n = native();
    const fd = this.create(o);
    try {
      fs.ftruncateSync(fd, Number(o.size));
      const hp = o.hugetlbFlag ? sizeOfFlag(o.hugetlbFlag) : undefined;
      if (hp !== undefined && o.pagemap?.runs.length) {
        fillPages(fd, hp, o.pagemap.runs, o.pagemap.pagesFile, `pages-${o.pagemap.pagesId}.img`);
      } else if (o.pagemap?.runs.length) {
        const src = fs.openSync(o.pagemap.pagesFile, 'r');
        try {
          const buf = Buffer.allocUnsafe(CHUNK);
          for (const r of o.pagemap.runs) {
            let left = Number(r.nrPages * 4096n), at = Number(r.vaddr), from = Number(r.fileOff);
            while (left > 0) {
              const len = Math.min(left, CHUNK);
              const got = fs.readSync(src, buf, 0, len, from);
              if (got !== len) throw new EngineError(`pages-${o.pagemap.pagesId}.img: short read at offset ${from}`, 'EIMAGE');
              let w = 0;
              while (w < len) w += fs.writeSync(fd, buf, w, len - w, at + w);
              left -= len;
              at += len;
              from += len;
            }
          }
        } finally {
          fs.closeSync(src);
        }
        // the last run may reach past the end of the object: keep its size
        if (fs.fstatSync(fd).size !== Number(o.size)) fs.ftruncateSync(fd, Number(o.size));
      }
      fs.fchownSync(fd, o.uid, o.gid);
      // after the owner (chown clears set-id bits); F_SEAL_EXEC, if any, comes after the mode
      fs.fchmodSync(fd, o.mode & 0o7777);
      const seals = o.seals & ~F_SEAL_SEAL;
      if (o.seals !== F_SEAL_SEAL) {
        if (seals) n.fcntl(fd, F_ADD_SEALS, seals);
        if (o.seals & F_SEAL_SEAL) n.fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL);
      }
    } catch (e) {
      fs.closeSync(fd);
      if (e instanceof EngineError) throw e;
      throw new EngineError(`memfd.img: inode ${o.inodeId} (${o.name}): ${(e as Error).message}`);
    }
    return fd;
  }

  /**
   * memfd_create for o, executable unless its exec bits are sealed off: with MFD_EXEC (its mode
   * and seals follow), without it on kernels that predate it (always executable there), and
   * MFD_NOEXEC_SEAL where this machine refuses MFD_EXEC (vm.memfd_noexec=2) and o allows it.
   */
  private create(o: MemfdInode): number {
    const n = native();
    // anonymous shared memory is sealed for good (F_SEAL_SEAL): a memfd so named need not be
    const huge = o.hugetlbFlag ? MFD_HUGETLB | (o.hugetlbFlag & HUGE_SIZE_BITS) : 0;
    if (o.seals === F_SEAL_SEAL && o.name === (huge ? ANON_HUGETLB : ANON_SHMEM)) return this.anonymous(o);
    const name = o.name.slice(0, 249);
    // a memfd created without MFD_ALLOW_SEALING reports F_SEAL_SEAL only
    const base = MFD_CLOEXEC | (o.seals === F_SEAL_SEAL ? 0 : MFD_ALLOW_SEALING) | huge;
    try {
      return n.memfdCreate(name, base | MFD_EXEC);
    } catch (e) {
      if (!isNativeError(e)) throw e;
      if (e.code === 'EINVAL') return n.memfdCreate(name, base);
      const noexec = (o.seals & F_SEAL_EXEC) !== 0 && (o.mode & 0o111) === 0;
      if (e.code === 'EACCES' && noexec) return n.memfdCreate(name, base | MFD_NOEXEC_SEAL);
      throw new EngineError(`memfd.img: inode ${o.inodeId} (${o.name}) is executable (mode ${(o.mode & 0o7777).toString(8)}), and this machine refuses executable memfds (vm.memfd_noexec): ${e.message}`);
    }
  }

  /**
   * Anonymous shared memory as the kernel makes it for mmap(MAP_SHARED | MAP_ANONYMOUS[ |
   * MAP_HUGETLB]): a mapping of the engine's (at least one page), its file reopened through
   * map_files, the mapping dropped; the caller sets the size.
   */
  private anonymous(o: MemfdInode): number {
    const n = native();
    const unit = o.hugetlbFlag ? sizeOfFlag(o.hugetlbFlag)! : 4096n;
    const len = o.size > unit ? ((o.size + unit - 1n) / unit) * unit : unit;
    const flags = MAP_SHARED | MAP_ANONYMOUS | (o.hugetlbFlag ? MAP_HUGETLB | (o.hugetlbFlag & HUGE_SIZE_BITS) : 0);
    let at: bigint;
    try {
      at = n.mmap(0, len, PROT_RW, flags, -1, 0);
    } catch (e) {
      const why = isNativeError(e) && e.code === 'ENOMEM' && o.hugetlbFlag ? ` (not enough free huge pages of ${unit / 1024n} kB for ${len / unit})` : '';
      throw new EngineError(`memfd.img: inode ${o.inodeId} (${o.name}): cannot make anonymous shared memory of ${len} bytes: ${(e as Error).message}${why}`);
    }
    try {
      return fs.openSync(`/proc/self/map_files/${at.toString(16)}-${(at + len).toString(16)}`, fs.constants.O_RDWR | 0o2000000);
    } finally {
      n.munmap(at, len);
    }
  }

  /** The engine's fd of an object. */
  fd(inodeId: number): number {
    const fd = this.fds.get(inodeId);
    if (fd === undefined) throw new EngineError(`memfd.img: inode ${inodeId} was not created`);
    return fd;
  }

  /** A path a task can open to reach the object. */
  path(inodeId: number): string {
    return `/proc/${process.pid}/fd/${this.fd(inodeId)}`;
  }

  /**
   * An open file description of the object for a memfd fd of a task: the original one for the
   * first O_RDWR fd (a copy of the engine's fd: closing it keeps the object), else a new one.
   */
  open(inodeId: number, flags: number, pos: bigint): number {
    let fd: number;
    if ((flags & O_ACCMODE) === O_RDWR && !this.originalGiven.has(inodeId)) {
      this.originalGiven.add(inodeId);
      fd = native().fcntl(this.fd(inodeId), F_DUPFD_CLOEXEC, 0);
      native().fcntl(fd, F_SETFL, flags & (O_APPEND | O_NONBLOCK));
    } else {
      fd = fs.openSync(`/proc/self/fd/${this.fd(inodeId)}`, flags);
    }
    if (pos !== 0n) native().lseek(fd, pos, 0);
    return fd;
  }

  /**
   * The original descriptions of objects passed into task p for its writable shared mappings
   * (each inode id -> the fd number in p; the caller closes them after mapping).
   */
  passOriginals(ctx: Ctx, p: Proc, inodeIds: number[]): Map<number, bigint> {
    const out = new Map<number, bigint>();
    for (let c = 0; c < inodeIds.length; c += FDS_PER_MESSAGE) {
      const chunk = inodeIds.slice(c, c + FDS_PER_MESSAGE);
      p.remote.reset();
      native().sendFds(ctx.transport.engineFd, chunk.map((id) => this.fd(id)), Buffer.from([1]));
      receiveFds(ctx, p, chunk.length).forEach((fd, k) => out.set(chunk[k], BigInt(fd)));
    }
    return out;
  }

  close(): void {
    for (const fd of this.fds.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    this.fds.clear();
  }
}
