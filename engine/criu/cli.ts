// `criu`: CRIU's own command line over this engine, so that CRIU's harnesses (zdtm, container
// runtimes' scripts) and people's habits drive it unchanged. dump, restore, check and --version;
// every option of CRIU's table is either carried out or refused by name (engine/criu/options.ts).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EngineError, errorText } from '../errors';
import { makeCriuLog, Log, LOG_MSG } from '../log';
import { parseArgs, ParsedArgs, flag, str, last, refusedOptions } from './options';
import { checkFeature, featureNames, basicChecks } from './features';
import { writeImage } from '../../images/files';
import type { DumpStats } from '../dump';
import type { RestoreStats } from '../restore';
import { cgroupMode, parseCgroupRoot, cgroupProps, CgroupOptions } from '../kinds/cgroup';

const VERSION = '4.2';
const ENGINE = 'crit-ts engine 0.1.0';

const HELP = `usage: criu dump|restore|check [options]
       criu --version

CRIU's command line over the crit-ts engine (ptrace only, no parasite; CRIU 4.2 images).
Run as root.

dump
  -t, --tree PID            the root of the tree to dump, with all its threads and descendants
  -D, --images-dir DIR      where the images go (default: the current directory; it may hold
                            other files: the images are staged and renamed into it, inventory.img last)
  -R, --leave-running       resume the tree after the dump (default: kill it once the images are safe)
  -s, --leave-stopped       leave the tree stopped after the dump (or the restore)
  -c, --compress            store memory pages LZ4-compressed, one block per page (CRIU 2026 layout)
      --compress-region SIZE  compress in blocks of SIZE bytes (e.g. 256K, at most 4M; implies -c)
      --compress-acceleration N  LZ4 acceleration (1 = default, higher = faster), 1..65537
  -j, --shell-job           allow a session or terminal outside the tree
      --file-locks          dump file locks (without it a tree holding locks is refused, as in CRIU)
  -l, --tcp-established     dump TCP connections with TCP repair: established, half-closed (FIN_WAIT,
                            CLOSE_WAIT, LAST_ACK, CLOSING), closed and connecting (without it they
                            are refused, as in CRIU)
      --tcp-close           dump: connections are recorded without their state; restore: they
                            are made closed (reading gives end of file), as CRIU does
      --skip-in-flight      connections a listener has not accepted yet are left out (lost)
      --network-lock M      nftables (default): the connections' packets are dropped by the table
                            inet CRIU-<run id> while they are dumped, and until the restore when
                            a peer is outside the tree; iptables: by iptables rules, as CRIU writes
                            them, left until the restore; skip: no lock
      --timeout N           seconds a task may take to stop (default 5)
      --ghost-limit SIZE    the largest unlinked file saved as a ghost file (default 1M; K, M, G)
  -x, --ext-unix-sk         keep datagram sockets connected to a named socket outside the tree
                            (connected to it again by name at restore; without it they are refused)
      --link-remap          a file unlinked but still linked elsewhere gets the name link_remap.ID
                            beside its old one until the restore (without it such a file is refused)
      --cgroup-props TEXT, --cgroup-props-file FILE
                            the properties dumped per controller (CRIU's format and lists)
      --cgroup-dump-controller NAME
                            dump only this hierarchy's cgroups (repeatable)
restore
  -D, --images-dir DIR      the images to restore
  -d, --restore-detached    return once the tree runs (default: wait until its root ends)
      --pidfile FILE        write the restored root's PID there (relative to the work dir)
  -j, --shell-job           reattach a terminal that was outside the tree
cgroups (dump and restore)
      --manage-cgroups[=M]  none, props, soft (default, also without the option), full, strict
                            or ignore, as in CRIU: dump the tasks' cgroup trees with their
                            properties; restore them (create what is missing, set properties as
                            the mode says) and put every task and thread back into its cgroups
      --cgroup-root [CTL:]/ROOT
                            dump: walk from ROOT; restore: put the dumped trees under ROOT
      --cgroup-yard DIR     use the hierarchies mounted in DIR instead of mounting them
check
  criu check                what this engine needs from this machine ("Looks good.")
  criu check --feature NAME exit 0 only when this engine supports NAME here; NAME=list lists them
  criu check --all          every feature, one line each
common
  -W, --work-dir DIR        where logs and stats go (default: the images dir)
  -o, --log-file FILE       the log, relative to the work dir ("-": stderr; default: stderr)
  -v[N], --verbosity[=N]    log level 0..4 (messages, errors, warnings, info, debug; default 2)
      --status-fd FD        write one NUL byte to FD when the dump or restore succeeded
      --display-stats       print the stats-dump / stats-restore figures at the end
      --no-default-config   accepted: no configuration file is ever read
      --close FD            close FD first
      --pre-dump-mode M     accepted (splice or read): it only shapes a pre-dump, which is refused
      --ghost-fiemap        accepted: ghost files' data regions are found with SEEK_DATA/SEEK_HOLE
      --force-irmap, --irmap-scan-path DIR
                            accepted: inotify watches are always recorded by path (from the file handle)
      --file-validation filesize
                            accepted: files are checked by their recorded size (buildid is refused)
  -V, --version             CRIU's version line, then the engine's

Failures are logged as lines starting with "Error (" and exit with status 1.
Options of CRIU that this engine refuses (the command fails, naming the option and why):
${refusedOptions().map((r) => `  ${r.option}: ${r.why}`).join('\n')}

Images are read with crit (crit x DIR ps, crit check DIR, crit tui DIR).`;

const UNSUPPORTED_COMMANDS: Record<string, string> = {
  'pre-dump': 'pre-dump needs dirty-page tracking, which this engine does not implement',
  'page-server': 'page servers are not implemented by this engine',
  'lazy-pages': 'lazy pages are not implemented by this engine',
  service: 'the RPC service is not implemented by this engine',
  swrk: 'the RPC service is not implemented by this engine',
  dedup: 'incremental dumps are not implemented by this engine',
  cpuinfo: 'cpuinfo images are not written by this engine (restore compares XSAVE features)',
  exec: 'criu exec is deprecated and not implemented',
  show: 'use crit (crit show FILE, crit decode)',
};

/** Runs the command line; returns the exit code and sets process.exitCode. */
export function main(argv: string[]): number {
  let code: number;
  try {
    code = run(argv);
  } catch (e) {
    const msg = errorText(e);
    process.stderr.write(`criu: ${msg}\n`);
    if (process.env.ENGINE_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    code = 1;
  }
  process.exitCode = code;
  return code;
}

function run(argv: string[]): number {
  const p = parseArgs(argv);
  for (const fd of p.values.get('close') ?? []) {
    try {
      fs.closeSync(Number(fd));
    } catch {
      /* not open */
    }
  }
  if (flag(p, 'version')) {
    process.stdout.write(`Version: ${VERSION}\nEngine: ${ENGINE}\n`);
    return 0;
  }
  if (flag(p, 'help') || p.command === undefined) {
    process.stdout.write(HELP + '\n');
    return p.command === undefined && !flag(p, 'help') ? 1 : 0;
  }
  const cmd = p.command;
  if (cmd === 'check') return check(p);
  if (cmd !== 'dump' && cmd !== 'restore') {
    const why = UNSUPPORTED_COMMANDS[cmd];
    throw new EngineError(why ? `${cmd}: ${why}` : `unknown command ${cmd} (try criu --help)`);
  }
  const imagesDir = path.resolve(str(p, 'images-dir') ?? '.');
  const workDir = path.resolve(str(p, 'work-dir') ?? imagesDir);
  const logFile = str(p, 'log-file');
  const logFd = openLog(logFile, workDir);
  const log = makeCriuLog(logFd, p.verbosity, cmd);
  const toStderr = logFd === 2;
  try {
    log.info(`Version: ${VERSION} (${ENGINE})`);
    log.info(`Running on ${os.hostname()} ${os.type()} ${os.release()} ${os.arch()}`);
    log.info(`criu ${argv.join(' ')}`);
    const fail = (msg: string) => {
      log.error(msg);
      if (!toStderr) process.stderr.write(`criu: ${msg}${logFile ? ` (log: ${path.resolve(workDir, logFile)})` : ''}\n`);
      return 1;
    };
    if (p.refused.length) {
      for (const r of p.refused) log.error(`${r.option} is not supported: ${r.why}`);
      return fail(`${p.refused.map((r) => r.option).join(', ')}: not supported by this engine (${p.refused[0].why})`);
    }
    const mode = str(p, 'pre-dump-mode');
    if (mode !== undefined && mode !== 'splice' && mode !== 'read') return fail(`--pre-dump-mode ${mode}: must be splice or read`);
    const lock = str(p, 'network-lock');
    if (lock !== undefined && lock !== 'nftables' && lock !== 'iptables' && lock !== 'skip')
      return fail(`--network-lock ${lock}: must be nftables, iptables or skip`);
    const ext = str(p, 'ext-unix-sk');
    if (ext !== undefined) return fail(`--ext-unix-sk=${ext} is not supported: without a value it keeps every datagram socket connected outside the tree`);
    const validation = str(p, 'file-validation');
    if (validation !== undefined && validation !== 'filesize')
      return fail(`--file-validation=${validation} is not supported: files are validated by their size`);
    try {
      if (cmd === 'dump') dump(p, imagesDir, workDir, log);
      else restore(p, imagesDir, workDir, log);
    } catch (e) {
      const msg = errorText(e);
      if (process.env.ENGINE_DEBUG && e instanceof Error) log.debug(e.stack ?? '');
      log.error(msg);
      log.error(cmd === 'dump' ? 'Dumping FAILED.' : 'Restoring FAILED.');
      if (!toStderr) process.stderr.write(`criu: ${cmd} failed: ${msg}${logFile ? ` (log: ${path.resolve(workDir, logFile)})` : ''}\n`);
      return 1;
    }
    return 0;
  } finally {
    if (logFd > 2) fs.closeSync(logFd);
  }
}

function openLog(file: string | undefined, workDir: string): number {
  if (file === undefined || file === '-') return 2;
  const at = path.resolve(workDir, file);
  try {
    return fs.openSync(at, fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_WRONLY | fs.constants.O_APPEND, 0o600);
  } catch (e) {
    throw new EngineError(`cannot open the log file ${at}: ${(e as Error).message}`);
  }
}

function intOpt(p: ParsedArgs, name: string): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new EngineError(`--${name} needs a number, not ${JSON.stringify(v)}`);
  return Number(v);
}

/** A size as CRIU takes it: bytes, or a number with K, M or G. */
/** -c / --compress-region / --compress-acceleration: crit compress's options, or none. */
function compressOpts(p: ParsedArgs): { blockBytes?: number; acceleration?: number } | undefined {
  const region = sizeOpt(p, 'compress-region');
  const accel = intOpt(p, 'compress-acceleration');
  if (!flag(p, 'compress') && region === undefined) return undefined;
  return { blockBytes: region, acceleration: accel };
}

function sizeOpt(p: ParsedArgs, name: string): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const m = /^(\d+)([KMG]?)$/i.exec(v);
  if (!m) throw new EngineError(`--${name} needs a size (bytes, or with K, M or G), not ${JSON.stringify(v)}`);
  return Number(m[1]) * { '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
}

/** --manage-cgroups and its companions; the property lists only matter to a dump. Paths are
 * relative to the work dir, where CRIU is when it opens them. */
function cgroupOpts(p: ParsedArgs, dumping: boolean, workDir: string): CgroupOptions {
  const yard = str(p, 'cgroup-yard');
  const propsFile = str(p, 'cgroup-props-file');
  return {
    mode: cgroupMode(p.values.has('manage-cgroups') ? last(p, 'manage-cgroups') : 'soft'),
    roots: ((p.values.get('cgroup-root') ?? []) as string[]).map(parseCgroupRoot),
    yard: yard === undefined ? undefined : path.resolve(workDir, yard),
    props: dumping ? cgroupProps(str(p, 'cgroup-props'), propsFile === undefined ? undefined : path.resolve(workDir, propsFile)) : cgroupProps(),
    dumpControllers: (p.values.get('cgroup-dump-controller') ?? []) as string[],
  };
}

/** CRIU's --status-fd: one NUL byte, then the fd is closed. */
function signalStatus(p: ParsedArgs): void {
  const fd = intOpt(p, 'status-fd');
  if (fd === undefined) return;
  try {
    fs.writeSync(fd, Buffer.from([0]));
  } finally {
    fs.closeSync(fd);
  }
}

function dump(p: ParsedArgs, imagesDir: string, workDir: string, log: Log): void {
  const tree = str(p, 'tree');
  if (tree === undefined) throw new EngineError('dump needs -t/--tree PID');
  const pid = Number(tree);
  if (!Number.isInteger(pid) || pid <= 0) throw new EngineError(`-t ${tree}: not a PID`);
  const timeout = intOpt(p, 'timeout');
  const { dump: run } = require('../dump') as typeof import('../dump');
  const stats: DumpStats = run({
    pid, dir: imagesDir, intoExisting: true, log,
    leaveRunning: flag(p, 'leave-running'),
    leaveStopped: flag(p, 'leave-stopped'),
    shellJob: flag(p, 'shell-job'),
    fileLocks: flag(p, 'file-locks'),
    freezeTimeoutMs: timeout !== undefined && timeout > 0 ? timeout * 1000 : undefined,
    ghostLimit: sizeOpt(p, 'ghost-limit'),
    linkRemap: flag(p, 'link-remap'),
    extUnixSk: p.values.has('ext-unix-sk'),
    tcpEstablished: flag(p, 'tcp-established'),
    tcpClose: flag(p, 'tcp-close'),
    skipInFlight: flag(p, 'skip-in-flight'),
    networkLock: lockOpt(p),
    cgroups: cgroupOpts(p, true, workDir),
    compress: compressOpts(p),
  });
  if (workDir !== imagesDir) fs.renameSync(path.join(imagesDir, 'stats-dump'), path.join(workDir, 'stats-dump'));
  log.info('Dumping finished successfully');
  if (flag(p, 'display-stats')) {
    process.stdout.write(
      `Displaying dump stats:\nFreezing time: ${stats.freezingUs} us\nFrozen time: ${stats.frozenUs} us\n` +
        `Memory dump time: ${stats.memdumpUs} us\nMemory write time: ${stats.memwriteUs} us\n` +
        `Memory pages scanned: ${stats.pagesScanned} (0x${stats.pagesScanned.toString(16)})\n` +
        `Memory pages written: ${stats.pagesWritten} (0x${stats.pagesWritten.toString(16)})\n`,
    );
  }
  signalStatus(p);
}

/** --network-lock: nftables unless iptables or skip is asked for */
function lockOpt(p: ParsedArgs): 'nftables' | 'iptables' | 'skip' {
  const v = str(p, 'network-lock');
  return v === 'skip' || v === 'iptables' ? v : 'nftables';
}

function restore(p: ParsedArgs, imagesDir: string, workDir: string, log: Log): void {
  const detach = flag(p, 'restore-detached') || flag(p, 'daemon');
  const pidfile = str(p, 'pidfile');
  const { restore: run } = require('../restore') as typeof import('../restore');
  const t0 = Date.now();
  run({
    dir: imagesDir, detach, log,
    shellJob: flag(p, 'shell-job'),
    leaveStopped: flag(p, 'leave-stopped'),
    tcpClose: flag(p, 'tcp-close'),
    networkLock: lockOpt(p),
    pidns: false,
    cgroups: cgroupOpts(p, false, workDir),
    pidWaitMs: process.env.ENGINE_PID_WAIT_MS ? Number(process.env.ENGINE_PID_WAIT_MS) : undefined,
    onRunning: (stats: RestoreStats) => {
      if (pidfile !== undefined) writePidfile(path.resolve(workDir, pidfile), stats.rootHost);
      writeImage(path.join(workDir, 'stats-restore'), 'STATS', [{
        msg: {
          restore: {
            pages_compared: stats.pagesCompared, pages_skipped_cow: stats.pagesSkippedCow, forking_time: Math.round(stats.forkedMs * 1000),
            restore_time: Math.round(stats.toRunningMs * 1000), pages_restored: stats.pagesRestored,
          },
        },
      }]);
      log.info(`Restore finished successfully. Tasks resumed (${Date.now() - t0} ms).`);
      if (flag(p, 'display-stats')) {
        process.stdout.write(
          `Displaying restore stats:\nPages compared: ${stats.pagesCompared} (0x${stats.pagesCompared.toString(16)})\n` +
            `Pages skipped COW: ${stats.pagesSkippedCow} (0x${stats.pagesSkippedCow.toString(16)})\n` +
            `Pages restored: ${stats.pagesRestored} (0x${stats.pagesRestored.toString(16)})\n` +
            `Restore time: ${Math.round(stats.toRunningMs * 1000)} us\nForking time: ${Math.round(stats.forkedMs * 1000)} us\n`,
        );
      }
      signalStatus(p);
    },
  });
}

/** The PID as CRIU writes it (no newline), through a temporary file and a rename. */
function writePidfile(file: string, pid: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, String(pid), { mode: 0o644 });
  fs.renameSync(tmp, file);
}

function check(p: ParsedArgs): number {
  const features = p.values.get('feature') as string[] | undefined;
  const quiet = p.verbosity === LOG_MSG;
  if (features?.length) {
    let ok = true;
    for (const name of features) {
      if (name === 'list') {
        process.stdout.write(featureNames().filter((n) => checkFeature(n)!.ok).join(' ') + '\n');
        continue;
      }
      const a = checkFeature(name);
      if (!a) {
        process.stderr.write(`criu: unknown feature ${name} (criu check --feature list)\n`);
        ok = false;
        continue;
      }
      if (!a.ok) ok = false;
      if (!quiet || !a.ok) (a.ok ? process.stdout : process.stderr).write(`${name} is ${a.ok ? '' : 'not '}supported: ${a.why}\n`);
    }
    return ok ? 0 : 1;
  }
  const problems = basicChecks();
  if (flag(p, 'all') || flag(p, 'extra') || flag(p, 'experimental')) {
    for (const n of featureNames()) {
      const a = checkFeature(n)!;
      process.stdout.write(`${a.ok ? 'yes' : 'no '} ${n}: ${a.why}\n`);
    }
  }
  for (const m of problems) process.stderr.write(`Error (check): ${m}\n`);
  if (problems.length) return 1;
  process.stdout.write('Looks good.\n');
  return 0;
}
