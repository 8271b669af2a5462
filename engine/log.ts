// Verbose logging to stderr (-v); quiet otherwise.
export interface Log {
  verbose: boolean;
  debug(msg: string): void;
  info(msg: string): void;
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
  };
}
