// `engine` command line: engine dump -t PID -D DIR [--leave-running] [--shell-job] [-v]
import type { dump as dumpFn } from './dump';
import { makeLog } from './log';
import { EngineError, errorText } from './errors';
import { restoreCommand, RESTORE_USAGE } from './restore/cli';

const USAGE = `usage: engine dump -t PID -D DIR [--leave-running] [--shell-job] [--compress [--compress-region SIZE]] [-v]
${RESTORE_USAGE}

Checkpoint a live process tree into CRIU 4.2 images, and bring it back (run as root).

dump
  -t, --tree PID        the root of the tree to dump (all its threads and descendants)
  -D, --images-dir DIR  where the images go (created; must not exist or be empty)
  -R, --leave-running   resume the tree after the dump (default: kill it once the images are safe)
  -j, --shell-job       allow a tree whose session or terminal is outside it
  -c, --compress        store memory pages LZ4-compressed (CRIU 2026 layout, G1 schema, per page)
  --compress-region SIZE  LZ4 blocks of SIZE bytes (e.g. 256K) instead of pages
  --compress-schema g1|g2 the pagemap schema of the compressed set (default g1)
  -v, --verbose         log each step with its timing to stderr
restore
  -D, --images-dir DIR  the images to restore
  -d, --detach          return once the tree runs (default: wait and exit with the root's status)
  -j, --shell-job       reattach a terminal that was outside the tree
  --pidns               restore into a new PID namespace (any PID is free there)
  -v, --verbose         log each step to stderr

Inspect the images with crit (crit x DIR ps, crit check DIR, crit tui DIR).`;

interface DumpArgs {
  pid?: number;
  dir?: string;
  leaveRunning: boolean;
  shellJob: boolean;
  verbose: boolean;
  compress?: { schema?: 'g1' | 'g2'; blockBytes?: number };
}

function parseDumpArgs(argv: string[]): DumpArgs {
  const a: DumpArgs = { leaveRunning: false, shellJob: false, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new EngineError(`${arg} needs a value`);
      return v;
    };
    if (arg === '-t' || arg === '--tree') a.pid = Number(value());
    else if (arg === '-D' || arg === '--images-dir') a.dir = value();
    else if (arg === '--leave-running' || arg === '-R') a.leaveRunning = true;
    else if (arg === '--shell-job' || arg === '-j') a.shellJob = true;
    else if (arg === '-v' || arg === '--verbose') a.verbose = true;
    else if (arg === '-c' || arg === '--compress') a.compress = { ...a.compress };
    else if (arg === '--compress-region') {
      const v = value();
      const m = /^(\d+)([KkMm]?)$/.exec(v);
      if (!m) throw new EngineError(`--compress-region needs a size (bytes, or with K or M), not ${JSON.stringify(v)}`);
      a.compress = { ...a.compress, blockBytes: Number(m[1]) * (m[2] ? (/k/i.test(m[2]) ? 1024 : 1 << 20) : 1) };
    } else if (arg === '--compress-schema') {
      const v = value();
      if (v !== 'g1' && v !== 'g2') throw new EngineError(`--compress-schema: ${JSON.stringify(v)} is neither g1 nor g2`);
      a.compress = { ...a.compress, schema: v };
    } else throw new EngineError(`unknown option ${arg}\n${USAGE}`);
  }
  if (a.pid === undefined || !Number.isInteger(a.pid) || a.pid <= 0) throw new EngineError(`-t PID is required\n${USAGE}`);
  if (!a.dir) throw new EngineError(`-D DIR is required\n${USAGE}`);
  return a;
}

/** Runs the CLI; returns the exit code and sets process.exitCode. */
export function main(argv: string[]): number {
  let code = 0;
  try {
    const [cmd, ...rest] = argv;
    if (cmd === 'dump') {
      const a = parseDumpArgs(rest);
      const log = makeLog(a.verbose);
      const tty = process.stderr.isTTY;
      const started = Date.now();
      // loaded only for dump: a restore should not pay for the dump code's start-up
      const { dump } = require('./dump') as { dump: typeof dumpFn };
      const stats = dump({
        pid: a.pid!, dir: a.dir!, leaveRunning: a.leaveRunning, shellJob: a.shellJob, log, compress: a.compress,
        progress: tty
          ? (w, t) => {
              const s = (Date.now() - started) / 1000 || 1e-3;
              process.stderr.write(`\rengine: pages ${w}/${t}  ${((w * 4096) / 1e6 / s).toFixed(0)} MB/s`);
            }
          : undefined,
      });
      if (tty) process.stderr.write('\n');
      log.debug(
        `dumped ${stats.tasks} tasks / ${stats.threads} threads: ${stats.pagesWritten} pages, frozen ${(stats.frozenUs / 1000).toFixed(1)} ms, ` +
          `memwrite ${(stats.memwriteUs / 1000).toFixed(1)} ms`,
      );
    } else if (cmd === 'restore') {
      code = restoreCommand(rest);
    } else if (cmd === '-h' || cmd === '--help' || cmd === undefined) {
      process.stdout.write(USAGE + '\n');
      code = cmd === undefined ? 2 : 0;
    } else {
      throw new EngineError(`unknown command ${cmd}\n${USAGE}`);
    }
  } catch (e) {
    const msg = errorText(e);
    process.stderr.write(`engine: ${msg}\n`);
    if (process.env.ENGINE_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    code = 1;
  }
  process.exitCode = code;
  return code;
}
