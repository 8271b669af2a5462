// Where crit reads and writes: files, stdin/stdout, and atomic output files (write to a
// temporary name in the same directory, fsync, rename) so a failure never leaves a partial file.
import * as fs from 'fs';
import * as path from 'path';
import { writeAll } from '../images/image';
import { clipLine } from '../images/json/clip';

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

// Where commands print. The CLI prints to fds 1 and 2; the fuzz harness runs the very same
// command functions with their output sent elsewhere.
let outFd = 1;
let errSink: ((line: string) => void) | undefined;

export function stdoutFd(): number {
  return outFd;
}

/** Send command output to `fd`, and error lines to `onError` (undefined: fd 2). */
export function redirectOutput(fd: number, onError?: (line: string) => void): void {
  outFd = fd;
  errSink = onError;
}

/**
 * One complete error line on stderr, written synchronously (so process.exit cannot cut it
 * off at a pipe's 64 KiB) and short (long values are clipped).
 */
export function printError(text: string): void {
  const line = `crit: ${clipLine(text)}\n`;
  if (errSink) return errSink(line);
  writeAll(2, Buffer.from(line, 'utf8'));
}

/** The stack of an internal error: with CRIT_DEBUG on stderr, and always to a redirected sink. */
export function printStack(e: unknown): void {
  const stack = `${(e as Error)?.stack ?? e}\n`;
  if (errSink) return errSink(stack);
  if (process.env.CRIT_DEBUG) writeAll(2, Buffer.from(stack, 'utf8'));
}
