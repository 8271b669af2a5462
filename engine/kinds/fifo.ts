// Named pipes (FIFOs), restore half (the dump half lives with the other fds in dump/files.ts: a
// REG entry for the path, a FIFO entry naming it, queued bytes in fifo-data.img keyed by inode).
// Opening a FIFO blocks until its other end exists, so the engine first opens each FIFO read-write
// (which never blocks and keeps both ends alive), puts the queued bytes back through it, then
// opens every dumped description without blocking and gives it back its own flags. The keeper is
// closed only once every task holds its fds.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { ImageError, ImageSet, num } from '../restore/imageset';
import { O_ACCMODE, O_RDWR, O_NONBLOCK, O_APPEND, O_CLOEXEC, OPEN_ONLY, F_SETFL } from '../restore/sys';
import { fillPipe } from '../restore/pipedata';

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

  constructor(private set: ImageSet) {}

  /** An engine fd on the FIFO entry `id`: its own description, with its dumped flags. */
  open(id: number, fifo: Msg): number {
    const reg = fifoPath(this.set.files, id, fifo);
    const pipeId = num(fifo.pipe_id);
    if (!this.keepers.has(pipeId)) {
      const keeper = fs.openSync(reg.name, O_RDWR | O_NONBLOCK | O_CLOEXEC);
      this.keepers.set(pipeId, keeper);
      const q = this.set.fifoData.get(pipeId);
      if (q) fillPipe(keeper, q, `fifo-data.img: FIFO ${pipeId} (${reg.name})`);
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
