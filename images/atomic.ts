// Replacing a file atomically from inside images/: write (or copy and patch) a temporary file
// next to the target, fsync it, rename it over the target. Until commit() the target is
// untouched; temporaries left by an error or an exit are removed.
import * as fs from 'fs';
import * as path from 'path';

const pending = new Set<AtomicOutput>();
let hooked = false;

export class AtomicOutput {
  readonly tmp: string;
  fd: number;
  private done = false;

  /** `from`: start as a copy of that file (reflinked where the filesystem can). */
  constructor(readonly target: string, opts: { from?: string; mode?: number } = {}) {
    const dir = path.dirname(path.resolve(target));
    this.tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${pending.size}.tmp`);
    if (opts.from) {
      fs.copyFileSync(opts.from, this.tmp, fs.constants.COPYFILE_FICLONE);
      fs.chmodSync(this.tmp, 0o600); // the copy has the source's mode, maybe read-only
      this.fd = fs.openSync(this.tmp, 'r+');
    } else this.fd = fs.openSync(this.tmp, 'w', 0o644);
    if (opts.mode !== undefined) fs.fchmodSync(this.fd, opts.mode & 0o7777);
    pending.add(this);
    if (!hooked) {
      hooked = true;
      process.once('exit', () => { for (const p of [...pending]) p.abort(); });
    }
  }

  write(data: Uint8Array, position?: number): void {
    let off = 0;
    while (off < data.length) off += fs.writeSync(this.fd, data, off, data.length - off, position === undefined ? null : position + off);
  }

  /** fsync and close, without renaming (for several files renamed together). */
  sync(): void {
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = -1;
  }

  commit(): void {
    if (this.fd >= 0) this.sync();
    fs.renameSync(this.tmp, this.target);
    this.done = true;
    pending.delete(this);
  }

  abort(): void {
    if (this.done) return;
    if (this.fd >= 0) try { fs.closeSync(this.fd); } catch { /* closed */ }
    try { fs.unlinkSync(this.tmp); } catch { /* gone */ }
    this.done = true;
    pending.delete(this);
  }
}

const pendingDirs = new Set<AtomicDir>();
let dirsHooked = false;

/**
 * A new directory built under a temporary name next to `target` and renamed to it once every
 * file in it is fsynced: readers see no directory or the complete one. The target must not
 * exist or be an empty directory (rename replaces only those).
 */
export class AtomicDir {
  readonly tmp: string;
  private done = false;

  constructor(readonly target: string) {
    const abs = path.resolve(target);
    this.tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.${pendingDirs.size}.tmp`);
    fs.mkdirSync(this.tmp, { mode: 0o755 });
    pendingDirs.add(this);
    if (!dirsHooked) {
      dirsHooked = true;
      process.once('exit', () => { for (const d of [...pendingDirs]) d.abort(); });
    }
  }

  path(name: string): string {
    return path.join(this.tmp, name);
  }

  /** fsync the files (written and closed by the caller) and the directory, then rename it into place. */
  commit(): void {
    for (const n of fs.readdirSync(this.tmp)) {
      const p = this.path(n);
      if (!fs.lstatSync(p).isFile()) continue;
      const fd = fs.openSync(p, 'r');
      try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
    }
    fsyncDir(this.tmp);
    fs.renameSync(this.tmp, this.target);
    this.done = true;
    pendingDirs.delete(this);
    fsyncDir(path.dirname(path.resolve(this.target)));
  }

  abort(): void {
    if (this.done) return;
    try { fs.rmSync(this.tmp, { recursive: true, force: true }); } catch { /* gone */ }
    this.done = true;
    pendingDirs.delete(this);
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(fd); } catch { /* some filesystems refuse a directory fsync */ } finally { fs.closeSync(fd); }
}
