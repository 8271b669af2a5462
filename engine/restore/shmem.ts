// Shared memory objects (memfd.img): each made once by the engine as a memfd of its size, filled
// from pagemap-shmem-<shmid>.img (holes stay zero), given its mode, owner and seals. Tasks map it
// by opening /proc/<engine>/fd/<n> (one object shared by every task that maps it), and memfd fds
// are new open descriptions of it with their own flags and offset. Anonymous MAP_SHARED memory,
// which CRIU 4.2 records as a memfd named "/dev/zero", comes back as such a memfd.
import * as fs from 'fs';
import { native } from '../../native';
import { EngineError } from '../errors';
import type { ImageSet, MemfdInode } from './imageset';

const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033, F_SEAL_SEAL = 1;
const CHUNK = 4 << 20;

export class ShmemRestorer {
  private fds = new Map<number, number>();

  constructor(private set: ImageSet) {}

  /** Creates and fills every object (before any process exists). */
  build(): void {
    for (const o of this.set.memfds.values()) this.fds.set(o.inodeId, this.make(o));
  }

  private make(o: MemfdInode): number {
    const n = native();
    // a memfd created without MFD_ALLOW_SEALING reports F_SEAL_SEAL only
    const fd = n.memfdCreate(o.name.slice(0, 249), MFD_CLOEXEC | (o.seals === F_SEAL_SEAL ? 0 : MFD_ALLOW_SEALING));
    try {
      fs.ftruncateSync(fd, Number(o.size));
      if (o.pagemap?.runs.length) {
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
      fs.fchmodSync(fd, o.mode & 0o7777);
      fs.fchownSync(fd, o.uid, o.gid);
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

  /** A new open file description of the object (a memfd fd of a task). */
  open(inodeId: number, flags: number, pos: bigint): number {
    const fd = fs.openSync(`/proc/self/fd/${this.fd(inodeId)}`, flags);
    if (pos !== 0n) native().lseek(fd, pos, 0);
    return fd;
  }

  close(): void {
    for (const fd of this.fds.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    this.fds.clear();
  }
}
