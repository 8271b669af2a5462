// Reading /proc files with errors that say which task vanished.
import * as fs from 'fs';
import { EngineError } from '../errors';

export function procPath(pid: number, ...rest: string[]): string {
  return ['/proc', String(pid), ...rest].join('/');
}

/** Runs a /proc access for pid; a vanished task becomes an EngineError naming it. */
function procAccess<T>(pid: number, rest: string[], what: string, f: (p: string) => T): T {
  const p = procPath(pid, ...rest);
  try {
    return f(p);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ESRCH') throw new EngineError(`task ${pid} exited during the dump`, 'ESRCH');
    throw new EngineError(`cannot ${what} ${p}: ${err.message}`, err.code);
  }
}

/** Reads /proc/PID/<rest> as text. */
export function readProc(pid: number, ...rest: string[]): string {
  return procAccess(pid, rest, 'read', (p) => fs.readFileSync(p, 'utf8'));
}

export function readProcBytes(pid: number, ...rest: string[]): Buffer {
  return procAccess(pid, rest, 'read', (p) => fs.readFileSync(p));
}

export function readLinkProc(pid: number, ...rest: string[]): string {
  return procAccess(pid, rest, 'read link', (p) => fs.readlinkSync(p));
}
