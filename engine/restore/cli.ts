// `engine restore -D DIR [-d|--detach] [--shell-job] [--pidns] [-v]`: argument parsing and the
// run; errors are thrown as EngineError for engine/cli.ts to print as one line.
import { EngineError } from '../errors';
import { makeLog } from '../log';
import { restore } from './index';

export const RESTORE_USAGE = 'usage: engine restore -D DIR [-d|--detach] [--shell-job] [--pidns] [-v]';

/** Returns the exit code: 0 when detached, else the restored root's own exit status. */
export function restoreCommand(argv: string[]): number {
  let dir: string | undefined;
  let detach = false, shellJob = false, pidns = false, verbose = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-D' || a === '--images-dir') {
      dir = argv[++i];
      if (dir === undefined) throw new EngineError(`${a} needs a value`);
    } else if (a === '-d' || a === '--detach') detach = true;
    else if (a === '--shell-job' || a === '-j') shellJob = true;
    else if (a === '--pidns') pidns = true;
    else if (a === '-v' || a === '--verbose') verbose = true;
    else throw new EngineError(`unknown option ${a}\n${RESTORE_USAGE}`);
  }
  if (!dir) throw new EngineError(`-D DIR is required\n${RESTORE_USAGE}`);
  const log = makeLog(verbose);
  const stats = restore({ dir, detach, shellJob, pidns, log, pidWaitMs: process.env.ENGINE_PID_WAIT_MS ? Number(process.env.ENGINE_PID_WAIT_MS) : undefined });
  if (process.env.ENGINE_RESTORE_STATS) process.stdout.write(JSON.stringify({ ...stats, pid: stats.rootHost }) + '\n');
  return stats.exitCode ?? 0;
}
