// Writing the image set into its temporary directory: plain writes through one reused buffer
// (no per-file fsync or rename, unlike images/files.writeImage), then a single parallel fsync of
// every file and the directory before the directory is renamed into place.
import * as fs from 'fs';
import * as path from 'path';
import { ImageWriter, BinSink } from '../../images/image';
import { kindFor } from '../../images/kinds';
import type { NewEntry } from '../../images/files';
import { native } from '../../native';
import { encoderFor, Msg } from '../../images/codec';
import { messageType } from '../../images/schema';

/** Every kind a dump may write. */
const KINDS = [
  'CORE', 'IDS', 'MM', 'PAGEMAP', 'FS', 'FDINFO', 'PSTREE', 'FILES', 'PIPES_DATA', 'FIFO_DATA', 'FILE_LOCKS', 'TTY_INFO',
  'SK_QUEUES', 'SECCOMP', 'CGROUP', 'TIMENS', 'INVENTORY', 'STATS', 'MEMFD_INODE',
];

/** A message of `type` with every field set (repeated ones twice), for warming its encoder. */
function sample(type: string, depth = 0): Msg {
  const o: Msg = {};
  for (const f of messageType(type).fields) {
    let v: unknown;
    if (f.kind === 'message') {
      if (depth > 4) continue;
      v = sample(f.type, depth + 1);
    } else if (f.kind === 'enum') v = 1;
    else if (f.type === 'bool') v = true;
    else if (f.type === 'string') v = 'x';
    else if (f.type === 'bytes') v = new Uint8Array(8);
    else if (/64/.test(f.type)) v = depth % 2 ? 1 : 1n;
    else v = 1;
    o[f.name] = f.label === 'repeated' ? [v, v] : v;
  }
  return o;
}

/**
 * Compiles and runs the encoders of every image kind a few times before the tree is frozen:
 * the codec builds them on first use and cold code runs slowly, which would otherwise cost
 * milliseconds inside the frozen window (the core image above all).
 */
export function warmEncoders(): void {
  const sink = new BinSink(-1);
  for (const magic of KINDS) {
    const k = kindFor(magic);
    if (!k) continue;
    const types = k.layout === 'pagemap' ? ['pagemap_head', 'pagemap_entry'] : k.message ? [k.message] : [];
    for (const t of types) {
      const enc = encoderFor(t);
      const msg = sample(t);
      for (let i = 0; i < 8; i++) {
        try {
          enc(msg, sink.w);
        } catch {
          /* a field the sample cannot fill; compiling was the main point */
        }
        sink.w.pos = 0;
      }
    }
  }
}

export class ImageDir {
  private sink = new BinSink(-1);

  constructor(readonly dir: string) {}

  write(name: string, magic: string, entries: Iterable<NewEntry>): void {
    const kind = kindFor(magic);
    if (!kind) throw new Error(`unknown image kind ${magic}`);
    const fd = fs.openSync(path.join(this.dir, name), 'w', 0o600);
    try {
      this.sink.fd = fd;
      this.sink.w.pos = 0;
      const w = new ImageWriter(this.sink, kind);
      for (const e of entries) w.write({ type: e.type ?? w.nextType(), msg: e.msg, extra: e.extra });
      this.sink.flush();
    } finally {
      this.sink.w.pos = 0;
      fs.closeSync(fd);
    }
  }

  /** fsync of every file of the directory and of the directory itself, all at once. */
  sync(): void {
    const fds: number[] = [];
    try {
      for (const n of fs.readdirSync(this.dir)) fds.push(fs.openSync(path.join(this.dir, n), 'r'));
      fds.push(fs.openSync(this.dir, 'r'));
      native().fsyncAll(fds);
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
  }
}
