// Logging. `engine` writes verbose lines to stderr (-v); `criu` writes CRIU-style lines to its log
// file at CRIU's levels (-v0..-v4: messages, errors, warnings, info, debug), where failures start
// with "Error (" so that harnesses which grep CRIU's logs find them.
import * as fs from 'fs';

export interface Log {
  verbose: boolean;
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  /** a failure; `where` names the step ("dump", "restore") */
  error(msg: string, where?: string): void;
}

export function makeLog(verbose: boolean): Log {
  return {
    verbose,
    debug(msg) {
      if (verbose) process.stderr.write(`engine: ${msg}\n`);
    },
    info(msg) {
      process.stderr.write(`engine: ${msg}\n`);
    },
    warn(msg) {
      process.stderr.write(`engine: warning: ${msg}\n`);
    },
    error(msg) {
      process.stderr.write(`engine: ${msg}\n`);
    },
  };
}

/** CRIU's log levels */
export const LOG_MSG = 0, LOG_ERROR = 1, LOG_WARN = 2, LOG_INFO = 3, LOG_DEBUG = 4;

/**
 * A log in CRIU's format on an open fd: "(SS.ssssss) text", errors as "Error (where): text" and
 * warnings as "Warn  (where): text" at the start of the line. Each line is one write(2), so a
 * log shared with another process (or read while we run) never holds half a line.
 */
export function makeCriuLog(fd: number, level: number, where: string): Log {
  const t0 = process.hrtime.bigint();
  const stamp = () => {
    const us = Number((process.hrtime.bigint() - t0) / 1000n);
    return `(${String(Math.floor(us / 1e6)).padStart(2, '0')}.${String(us % 1e6).padStart(6, '0')})`;
  };
  const put = (line: string) => {
    for (const l of line.split('\n')) {
      try {
        fs.writeSync(fd, l + '\n');
      } catch {
        /* a log that cannot be written must not turn a good dump into a failure */
      }
    }
  };
  return {
    verbose: level >= LOG_DEBUG,
    debug(msg) {
      if (level >= LOG_DEBUG) put(`${stamp()} ${msg}`);
    },
    info(msg) {
      if (level >= LOG_INFO) put(`${stamp()} ${msg}`);
    },
    warn(msg) {
      if (level >= LOG_WARN) put(`Warn  (${where}): ${msg}`);
    },
    error(msg, w = where) {
      if (level >= LOG_ERROR) put(`Error (${w}): ${msg}`);
    },
  };
}
