// Reading /proc files with errors that say which task vanished.
import * as fs from 'fs';
import { EngineError } from '../errors';

export function procPath(pid: number, ...rest: string[]): string {
  return ['/proc', String(pid), ...rest].join('/');
}

/** Reads /proc/PID/<rest>; a missing task becomes an EngineError naming it. */
export function readProc(pid: number, ...rest: string[]): string {
  try {
    return fs.readFileSync(procPath(pid, ...rest), 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ESRCH') throw new EngineError(`task ${pid} exited during the dump`, 'ESRCH');
    throw new EngineError(`cannot read ${procPath(pid, ...rest)}: ${err.message}`, err.code);
  }
}

export function readProcBytes(pid: number, ...rest: string[]): Buffer {
  try {
    return fs.readFileSync(procPath(pid, ...rest));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ESRCH') throw new EngineError(`task ${pid} exited during the dump`, 'ESRCH');
    throw new EngineError(`cannot read ${procPath(pid, ...rest)}: ${err.message}`, err.code);
  }
}

export function readLinkProc(pid: number, ...rest: string[]): string {
  try {
    return fs.readlinkSync(procPath(pid, ...rest));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' || err.code === 'ESRCH') throw new EngineError(`task ${pid} exited during the dump`, 'ESRCH');
    throw new EngineError(`cannot read link ${procPath(pid, ...rest)}: ${err.message}`, err.code);
  }
}
