// Named pipes (FIFOs), restore half (the dump half lives with the other fds in dump/files.ts: a
// REG entry for the path, a FIFO entry naming it, queued bytes in fifo-data.img keyed by inode).
// Opening a FIFO blocks until its other end exists, so the engine first opens each FIFO read-write
// (which never blocks and keeps both ends alive), puts the queued bytes back through it, then
// opens every dumped description without blocking and gives it back its own flags. The keeper is
// closed only once every task holds its fds.
import * as fs from 'fs';
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { loadImage } from '../../images/files';
import { native } from '../../native';
import { ImageError } from '../restore/imageset';

const O_ACCMODE = 3, O_RDWR = 2, O_NONBLOCK = 0o4000, O_APPEND = 0o2000, O_CLOEXEC = 0o2000000;
const OPEN_ONLY = 0o100 | 0o200 | 0o1000 | 0o400; // O_CREAT O_EXCL O_TRUNC O_NOCTTY
const F_SETFL = 4, F_SETPIPE_SZ = 1031;

const num = (v: unknown) => (v === undefined || v === null ? 0 : Number(v));

/** The REG entry naming a FIFO entry's path. */
function fifoPath(files: Map<number, Msg>, id: number, fifo: Msg): Msg {
  const reg = files.get(num(fifo.regf_id))?.reg;
  if (!reg) throw new ImageError('files.img', `id ${id}.fifo.regf_id`, `${fifo.regf_id} is not a regular file entry`);
  return reg;
}

/** Before any process exists: the path is there and still a FIFO. */
export function checkFifo(files: Map<number, Msg>, id: number, f: Msg): void {
  const reg = fifoPath(files, id, f.fifo);
  let st: fs.Stats;
  try {
    st = fs.statSync(reg.name);
  } catch (e) {
    throw new ImageError('files.img', `id ${f.fifo.regf_id}.name`, `FIFO ${reg.name}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (!st.isFIFO()) throw new ImageError('files.img', `id ${f.fifo.regf_id}.name`, `${reg.name} is no longer a FIFO`);
}

export class FifoRestorer {
  /** pipe_id (the FIFO's inode at dump) -> the engine's read-write fd on it */
  private keepers = new Map<number, number>();
  private data?: Map<number, { data: Uint8Array; size: number }>;

  constructor(private dir: string, private files: Map<number, Msg>) {}

  private queued(pipeId: number): { data: Uint8Array; size: number } | undefined {
    if (!this.data) {
      this.data = new Map();
      const file = path.join(this.dir, 'fifo-data.img');
      if (fs.existsSync(file)) {
        for (const e of loadImage(file).entries) {
          const data = e.extra?.kind === 'blob' ? e.extra.data : new Uint8Array();
          if (data.length !== num(e.msg.bytes)) throw new ImageError('fifo-data.img', `pipe ${e.msg.pipe_id}.bytes`, `says ${e.msg.bytes} bytes, holds ${data.length}`);
          this.data.set(num(e.msg.pipe_id), { data, size: num(e.msg.size) });
        }
      }
    }
    return this.data.get(pipeId);
  }

  /** An engine fd on the FIFO entry `id`: its own description, with its dumped flags. */
  open(id: number, fifo: Msg): number {
    const reg = fifoPath(this.files, id, fifo);
    const pipeId = num(fifo.pipe_id);
    if (!this.keepers.has(pipeId)) {
      const keeper = fs.openSync(reg.name, O_RDWR | O_NONBLOCK | O_CLOEXEC);
      this.keepers.set(pipeId, keeper);
      const q = this.queued(pipeId);
      if (q) {
        if (q.size) try { native().fcntl(keeper, F_SETPIPE_SZ, q.size); } catch { /* keep the default size */ }
        let off = 0;
        while (off < q.data.length) off += fs.writeSync(keeper, q.data, off);
      }
    }
    const flags = num(reg.flags) & ~OPEN_ONLY;
    const fd = fs.openSync(reg.name, (flags & O_ACCMODE) | (flags & O_APPEND) | O_NONBLOCK | O_CLOEXEC);
    native().fcntl(fd, F_SETFL, flags & (O_NONBLOCK | O_APPEND));
    return fd;
  }

  close(): void {
    for (const fd of this.keepers.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    this.keepers.clear();
  }
}
