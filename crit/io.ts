// Where crit reads and writes: files, stdin/stdout, and atomic output files (write to a
// temporary name in the same directory, fsync, rename) so a failure never leaves a partial file.
import * as fs from 'fs';
import * as path from 'path';

export class AtomicFile {
  fd: number;
  tmp: string;
  done = false;
  constructor(public target: string) {
    const dir = path.dirname(path.resolve(target));
    this.tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.tmp`);
    this.fd = fs.openSync(this.tmp, 'w', 0o644);
    activeTemps.add(this);
  }
  commit(): void {
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    fs.renameSync(this.tmp, this.target);
    this.done = true;
    activeTemps.delete(this);
  }
  abort(): void {
    if (this.done) return;
    try { fs.closeSync(this.fd); } catch { /* closed */ }
    try { fs.unlinkSync(this.tmp); } catch { /* gone */ }
    this.done = true;
    activeTemps.delete(this);
  }
}

const activeTemps = new Set<AtomicFile>();

/** Remove every unfinished temporary file (on error or signal). */
export function abortAll(): void {
  for (const f of [...activeTemps]) f.abort();
}
