// engine dump: freeze the tree, collect every task's state, write CRIU 4.2 images into a
// temporary directory, fsync and rename it into place, then resume or kill the tree.
// Any failure resumes the tree exactly as it was (registers, signal masks, scratch memory).
import * as fs from 'fs';
import * as path from 'path';
import { randomUUID } from 'crypto';
import { writeImage, NewEntry } from '../../images/files';
import type { Msg } from '../../images/codec';
import { native, Tracer, isNativeError } from '../../native';
import { freezeTree, thawTree, FrozenTree, FrozenProcess } from '../freeze';
import { readSmaps, readMaps } from '../proc/maps';
import { readStat, ProcStat } from '../proc/stat';
import { listChildren } from '../proc/tree';
import { readStatus } from '../proc/status';
import { readProc, readProcBytes, readLinkProc } from '../proc/read';
import { findSyscallGadget, RemoteSyscalls } from '../inject';
import { readThreadRegs, readThreadInside, ThreadRegs } from './thread';
import { readProcessInside } from './process';
import { TaskIds } from './ids';
import { checkDumpSharing, DumpedTables } from '../kinds/shared-tables';
import { FileTable, cachedBuildId, parseFdinfo, fileKind } from './files';
import { lockKindName } from '../kinds/filelocks';
import type { CttyOwner } from './tty';
import { SeccompTable, checkSharing } from '../kinds/seccomp';
import { CgroupDump, CgroupOptions, defaultCgroupOptions } from '../kinds/cgroup';
import { planVmas, mmEntry } from './mm';
import { planPages, pagemapEntries, writePages, PagePlan } from './pages';
import { threadCore, threadInfo, taskCore, zombieCore, parseLimits, ThreadFacts, TASK_ALIVE, TASK_STOPPED } from './core';
import { EngineError, UnsupportedError } from '../errors';
import { checkInterrupted, holdForTest } from './interrupt';
import { ImageDir, warmEncoders } from './imgdir';
import type { Log } from '../log';
import { engineHost } from '../plugins';
import { readThreadSched } from '../kinds/sched';
import { readMembarrierMask } from '../kinds/membarrier';
import { readLoginuid } from '../kinds/loginuid';
import { readOomScoreAdj } from '../kinds/oom';
import { checkDumpable } from '../kinds/dumpable';
import { refuseSigtrapHazards } from '../kinds/sigtrap';
import { dumpStopState } from '../kinds/stopsig';
import { abortCriticalSection } from '../kinds/rseq';
import { GhostFiles, DEFAULT_GHOST_LIMIT } from '../kinds/ghost';
import { checkAioRings } from '../kinds/aio';
import { TcpDump } from '../kinds/tcp';
import { checkLeaderlessGroups } from '../kinds/leaderless-pgrp';

export interface DumpOptions {
  pid: number;
  dir: string;
  leaveRunning: boolean;
  shellJob: boolean;
  log: Log;
  /** progress line on a terminal */
  progress?: (written: number, total: number) => void;
  /**
   * CRIU's layout: DIR may exist and hold other files (logs); the images are staged beside it
   * and renamed into it one by one, inventory.img last (a set without it is incomplete)
   */
  intoExisting?: boolean;
  /** store the pages LZ4-compressed (CRIU 2026 layout, crit compress's options) */
  compress?: import('../../images/memory/convert').CompressOptions;
  /** false: refuse a tree holding file locks (criu without --file-locks); default: dump them */
  fileLocks?: boolean;
  /** leave the tree stopped (SIGSTOP) instead of running or killed */
  leaveStopped?: boolean;
  /** how long freezing may take (ms) */
  freezeTimeoutMs?: number;
  /** the largest unlinked file saved (allocated bytes; default CRIU's 1 MiB) */
  ghostLimit?: number;
  /** files unlinked but linked elsewhere get a new name (link_remap.<id>) instead of being refused */
  linkRemap?: boolean;
  /** datagram sockets connected to a named socket outside the tree are kept, connected again by name */
  extUnixSk?: boolean;
  /** --manage-cgroups and its companions (default: CRIU's soft mode) */
  cgroups?: CgroupOptions;
  /** dump established TCP connections (criu --tcp-established); default: refuse them */
  tcpEstablished?: boolean;
  /** --tcp-close: connections are recorded as they stand, without their state (made closed at restore) */
  tcpClose?: boolean;
  /** --skip-in-flight: connections a listener has not accepted yet are left out */
  skipInFlight?: boolean;
  /** --network-lock: nftables (the default) or skip (connections are not locked) */
  networkLock?: 'nftables' | 'iptables' | 'skip';
}

export interface DumpStats {
  freezingUs: number;
  frozenUs: number;
  memdumpUs: number;
  memwriteUs: number;
  pagesScanned: number;
  pagesWritten: number;
  pagesLazy: number;
  shpagesScanned: number;
  shpagesWritten: number;
  tasks: number;
  threads: number;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

interface ProcessDump {
  proc: FrozenProcess;
  stat: ProcStat;
  threads: ThreadRegs[];
}

/** Checks the target and the output directory before touching anything. */
function preflight(opts: DumpOptions): string {
  if (!Number.isInteger(opts.pid) || opts.pid <= 0) throw new EngineError(`invalid pid ${opts.pid}`);
  if (!fs.existsSync(`/proc/${opts.pid}`)) throw new EngineError(`no such process: ${opts.pid}`, 'ESRCH');
  const dir = path.resolve(opts.dir);
  if (fs.existsSync(dir)) {
    if (!fs.statSync(dir).isDirectory()) throw new EngineError(`${dir} exists and is not a directory`);
    if (!opts.intoExisting && fs.readdirSync(dir).length) throw new EngineError(`${dir} is not empty`);
  } else if (!fs.existsSync(path.dirname(dir))) {
    throw new EngineError(`parent directory of ${dir} does not exist`);
  }
  return dir;
}

export function dump(opts: DumpOptions): DumpStats {
  const dir = preflight(opts);
  const addon = native();
  // SIGINT/SIGTERM/SIGHUP are only recorded from here on: the failure path puts the tree back
  // and removes the partial output, then the error says which signal stopped the dump
  addon.interruptGuard(true);
  try {
    return guardedDump(opts, dir);
  } finally {
    addon.interruptGuard(false);
  }
}

function guardedDump(opts: DumpOptions, dir: string): DumpStats {
  const { log } = opts;
  const tmp = path.join(path.dirname(dir), `.${path.basename(dir)}.engine-${process.pid}.tmp`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { mode: 0o700 });
  const addon = native();
  const tracer: Tracer = new addon.Tracer();
  const remotes: RemoteSyscalls[] = [];
  const closers: (() => void)[] = [];
  /** what a failed dump undoes (outside the images directory) */
  const undo: (() => void)[] = [];
  let tree: FrozenTree | undefined;
  // connections in repair mode and their network lock (kinds/tcp): out of it before the tree runs
  const runId = randomUUID();
  const tcp = new TcpDump(log, runId, opts.networkLock ?? 'nftables');
  let t0 = nowUs();
  let tFrozen = t0;
  try {
    warmEncoders();
    rehearse(opts.pid);
    checkInterrupted();
    t0 = nowUs();
    tree = freezeTree(tracer, opts.pid, log, checkInterrupted, opts.freezeTimeoutMs);
    tFrozen = nowUs();
    const phases = new Phases(tFrozen);
    holdForTest('frozen');
    // a stop signal caught while freezing is given again at detach; a killed tree would lose it
    if (!opts.leaveRunning && !opts.leaveStopped) for (const [tid, sig] of tree.pendingStopSignals)
      if (sig !== 5 /* SIGTRAP: refused with its own reason */) throw new EngineError(`task ${tid}: signal ${sig} arrived while the tree was being frozen and would be lost; dump again`, 'EAGAIN');
    // frozen: state and page contents; the images are encoded once the tree may run again
    const { stats, writeImages } = collect(tracer, tree, opts, tmp, remotes, closers, undo, phases, tcp);
    stats.freezingUs = tFrozen - t0;
    holdForTest('written');
    if (opts.leaveRunning || opts.leaveStopped) {
      tcp.resume();
      finish(tracer, tree, true, opts.leaveStopped);
      stats.frozenUs = nowUs() - tFrozen;
      phases.mark('resume');
    }
    if (tcp.errorsPending) {
      // the pending errors of reset connections are taken from their sockets now, the last
      // moment before the images are written (a signal after this no longer cancels the dump)
      checkInterrupted();
      tcp.takeErrors();
    }
    const out = new ImageDir(tmp);
    writeImages(out);
    phases.mark('encode');
    // images complete and fsynced: put them in place before anything irreversible
    out.sync();
    phases.mark('fsync');
    if (opts.compress) {
      // the plain set, re-encoded by crit compress's transform into a sibling, then swapped in
      const { compressSet } = require('../../images/memory/convert') as typeof import('../../images/memory/convert');
      const packed = `${tmp}.lz4`;
      fs.rmSync(packed, { recursive: true, force: true });
      compressSet(tmp, packed, opts.compress);
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.renameSync(packed, tmp);
      phases.mark('compress');
    }
    checkInterrupted(); // the last moment a signal still cancels the dump
    if (opts.intoExisting && fs.existsSync(dir)) moveInto(tmp, dir);
    else {
      if (fs.existsSync(dir)) fs.rmdirSync(dir);
      fs.renameSync(tmp, dir);
      fsyncDir(path.dirname(dir));
    }
    phases.mark('rename');
    if (!opts.leaveRunning && !opts.leaveStopped) {
      finish(tracer, tree, false);
      tcp.release();
      stats.frozenUs = nowUs() - tFrozen;
      phases.mark('kill');
      rewriteStats(dir, stats);
    }
    log.debug(`phases (ms since frozen): ${phases.text()}`);
    return stats;
  } catch (e) {
    for (const r of remotes) {
      try {
        r.release();
      } catch {
        /* task gone */
      }
    }
    const gone = tree ? exitedTasks(tree) : [];
    try {
      tcp.resume();
    } catch {
      /* logged by kinds/tcp */
    }
    if (tree) thawTree(tracer, tree);
    fs.rmSync(tmp, { recursive: true, force: true });
    for (const u of undo) u();
    throw translate(e, gone);
  } finally {
    for (const c of closers) c();
    tracer.close();
  }
}

/**
 * Before the freeze: the read-only part of the dump done once on the running tree, so that the
 * pass inside the frozen window runs warm (compiled code, cached /proc and ELF pages) and finds
 * the build-ids of mapped files cached. Nothing of it goes into the images; errors are ignored.
 */
function rehearse(root: number): void {
  const queue = [root];
  for (let n = 0; queue.length && n < 64; n++) {
    const pid = queue.shift()!;
    try {
      readStat(pid);
      readStatus(pid);
      findSyscallGadget(pid, readMaps(pid));
      parseLimits(readProc(pid, 'limits'));
      const vmas = readSmaps(pid);
      // the page scan only reads /proc/PID/pagemap; its loop over every page must run warm
      planPages(pid, vmas.filter((v) => v.name !== '[vsyscall]').map((v) => ({
        entry: {}, start: v.start, end: v.end, policy: v.shared ? 'none' : 'anon', readable: v.read, lazy: false, pgoff: 0n,
      })));
      for (const v of vmas) {
        if (!v.name.startsWith('/') || v.inode === 0) continue;
        const via = `/proc/${pid}/map_files/${v.start.toString(16)}-${v.end.toString(16)}`;
        cachedBuildId(via, fs.statSync(via));
      }
      for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
        fileKind(readLinkProc(pid, 'fd', fd));
        parseFdinfo(readProc(pid, 'fdinfo', fd));
      }
      queue.push(...listChildren(pid));
    } catch {
      /* a task that went away; the real pass will tell */
    }
  }
}

/** Time marks of the dump's steps, for -v. */
class Phases {
  private marks: [string, number][] = [];
  constructor(private start: number) {}
  mark(name: string): void {
    this.marks.push([name, nowUs()]);
  }
  text(): string {
    let prev = this.start;
    return this.marks.map(([n, t]) => {
      const s = `${n} +${((t - prev) / 1000).toFixed(1)}`;
      prev = t;
      return s;
    }).join(', ');
  }
}

/** Tasks of the tree that were alive when frozen and are dead or zombies now. */
function exitedTasks(tree: FrozenTree): number[] {
  return tree.processes
    .filter((p) => p.state !== 'Z')
    .filter((p) => {
      try {
        return readStat(p.pid).state === 'Z';
      } catch {
        return true;
      }
    })
    .map((p) => p.pid);
}

function translate(e: unknown, gone: number[]): unknown {
  if (e instanceof EngineError && e.code === 'EINTR') return e;
  // whatever step noticed it first, a task that died mid-dump is the cause
  if (gone.length) return new EngineError(`task ${gone.join(', ')} exited during the dump; the rest of the tree was resumed and no images were written`, 'ESRCH');
  if (e instanceof EngineError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new EngineError('no space left on the output device', 'ENOSPC');
  if (isNativeError(e) && e.code === 'ESRCH') return new EngineError(`a task exited during the dump (${e.message})`, 'ESRCH');
  if (isNativeError(e) && e.code === 'EPERM') return new EngineError(`permission denied: ${e.message}`, 'EPERM');
  return e;
}

function fsyncDir(d: string): void {
  const fd = fs.openSync(d, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Renames every staged image into dir, inventory.img last, and removes the staging directory. */
function moveInto(tmp: string, dir: string): void {
  const names = fs.readdirSync(tmp).sort((a, b) => Number(a === 'inventory.img') - Number(b === 'inventory.img'));
  for (const n of names) fs.renameSync(path.join(tmp, n), path.join(dir, n));
  fs.rmdirSync(tmp);
  fsyncDir(dir);
}

function finish(tracer: Tracer, tree: FrozenTree, leaveRunning: boolean, leaveStopped = false): void {
  if (leaveStopped) {
    // queued before the detach: every task enters a group stop as soon as ptrace lets it go
    for (const p of tree.processes) {
      try {
        process.kill(p.pid, 'SIGSTOP');
      } catch {
        /* gone */
      }
    }
  }
  if (!leaveRunning) {
    for (const p of tree.processes) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  thawTree(tracer, tree);
}

/** Collects every task's state and copies the pages (tree frozen); returns the image writer. */
function collect(
  tracer: Tracer, tree: FrozenTree, opts: DumpOptions, tmp: string, remotes: RemoteSyscalls[], closers: (() => void)[],
  undo: (() => void)[], phases: Phases, tcp: TcpDump,
): { stats: DumpStats; writeImages: (out: ImageDir) => void } {
  const { log } = opts;
  const addon = native();
  const inTree = new Set(tree.processes.map((p) => p.pid));
  const stats: DumpStats = {
    freezingUs: 0, frozenUs: 0, memdumpUs: 0, memwriteUs: 0, pagesScanned: 0, pagesWritten: 0, pagesLazy: 0,
    shpagesScanned: 0, shpagesWritten: 0, tasks: tree.processes.length, threads: 0,
  };

  // 1. registers of every thread, before any injection changes them
  const dumps: ProcessDump[] = tree.processes.map((proc) => {
    const stat = readStat(proc.pid);
    return { proc, stat, threads: proc.tids.map((tid) => readThreadRegs(tracer, tid)) };
  });
  checkSessions(dumps, inTree, opts.shellJob);
  // a thread stopped inside an rseq critical section gets the kernel's abort before any injection
  for (const d of dumps) for (const t of d.threads) abortCriticalSection(tracer, d.proc.pid, t);
  // nothing is injected into a task whose SIGTRAP state the single-steps would change
  for (const d of dumps) if (d.proc.state !== 'Z') refuseSigtrapHazards(d.proc.pid, d.proc.tids, tree.sigtrapsCaught);
  phases.mark('regs');

  const ids = new TaskIds();
  const rootIds = ids.idsOf(process.pid); // the dumper's own objects take id 1 (as in CRIU)
  let pagesId = 1;
  const files = new FileTable(() => pagesId++, () => cttyOwners(dumps));
  closers.push(() => files.shmem.close());
  closers.push(() => files.closeInFlight());
  files.lockTable.tree = inTree;
  if (opts.tcpEstablished || opts.tcpClose) files.inet.tcp = tcp;
  files.inet.tcpClose = opts.tcpClose ?? false;
  files.inet.skipInFlight = opts.skipInFlight ?? false;
  // a reset connection's pending error is read (so taken) only from a tree that will be killed
  files.inet.mayTakeErrors = !opts.leaveRunning && !opts.leaveStopped;
  files.inet.log = log;
  // every connection to be repaired is locked in one go, before the first one is read
  if (opts.tcpEstablished && !opts.tcpClose) tcp.lockAll(files.inet.connectionsOf(socketInodes(dumps.filter((d) => d.proc.state !== 'Z').map((d) => d.proc.pid))));
  files.ttys.tree = inTree;
  const plugins = engineHost('dump', tmp, (m) => log.debug(m));
  plugins.init();
  files.plugins = plugins;
  files.ghosts = new GhostFiles(tmp, opts.ghostLimit ?? DEFAULT_GHOST_LIMIT);
  if (opts.linkRemap) files.ghosts.linkRemap = { allocId: () => files.allocId(), entries: files.entries };
  undo.push(() => files.ghosts!.abort());
  closers.push(() => plugins.exit(true));
  const seccomp = new SeccompTable();
  const cgroups = new CgroupDump(opts.cgroups ?? defaultCgroupOptions(), log);
  closers.push(() => cgroups.close());
  const pstree: NewEntry[] = [];
  const images: [string, string, NewEntry[]][] = [];
  const pageJobs: { pid: number; plan: PagePlan; file: string }[] = [];
  const sharing: { pid: number; ppid: number; ids: Record<string, number> }[] = [];
  const tables = new DumpedTables();

  for (const d of dumps) {
    checkInterrupted();
    const pid = d.proc.pid;
    const ppid = pid === tree.root ? 0 : d.stat.ppid;
    pstree.push({ msg: { pid, ppid, pgid: d.stat.pgid, sid: d.stat.sid, threads: d.proc.state === 'Z' ? [pid] : d.proc.tids } });
    if (d.proc.state === 'Z') {
      images.push([`core-${pid}.img`, 'CORE', [{ msg: zombieCore(d.stat.comm, d.stat.exitCode, personality(pid), d.stat.flags) }]]);
      continue;
    }
    stats.threads += d.proc.tids.length;
    const taskIds = ids.idsOf(pid);
    sharing.push({ pid, ppid, ids: taskIds });
    // a shared fd table is dumped once, with its first task (fdinfo-<files_id>.img)
    const ownTable = tables.first(taskIds.files_id);

    // 2. what only the task itself can say (injected), then drop the scratch page
    const maps = readMaps(pid);
    const remote = new RemoteSyscalls(tracer, pid, findSyscallGadget(pid, maps));
    remotes.push(remote);
    phases.mark(`gadget-${pid}`);
    // AIO rings: no request in flight, proven by injected requests (kinds/aio)
    checkAioRings(remote, pid, maps, (m) => log.debug(m));
    const inside = readProcessInside(remote, pid);
    checkDumpable(pid, inside.dumpable);
    const membarrierMask = readMembarrierMask(remote, pid, (m) => log.debug(m));
    phases.mark(`process-${pid}`);
    const threads: ThreadFacts[] = d.threads.map((regs) => {
      const status = readStatus(pid, regs.tid);
      return {
        regs,
        inside: readThreadInside(remote, regs.tid),
        status,
        seccompFilter: status.get('Seccomp')?.trim() === '2' ? seccomp.thread(tracer, regs.tid) : undefined,
        comm: readProc(pid, 'task', String(regs.tid), 'comm').replace(/\n$/, ''),
        sched: readThreadSched(remote, pid, regs.tid),
      };
    });
    remote.release();
    remotes.pop();
    checkSharing(seccomp.filters, pid, threads.map((t) => ({ tid: t.regs.tid, newest: t.seccompFilter, nnp: t.status.get('NoNewPrivs')?.trim() === '1' })));
    phases.mark(`inject-${pid}`);

    // 3. memory layout and files, read from /proc with the task still stopped
    const vmas = readSmaps(pid);
    const exePath = readLinkProc(pid, 'exe');
    const exeId = files.exeFile(pid, exePath, vmas);
    // packet rings the task maps are planned by kinds/packet, their socket named once the fds are dumped
    const planned = files.packet.planWithRings(pid, vmas, (rest) => planVmas(pid, rest, files));
    phases.mark(`vmas-${pid}`);
    const fdinfo: NewEntry[] = [];
    let pidfd = -1;
    const uids = (readStatus(pid).get('Uid') ?? '0 0').split(/\s+/).map(Number);
    const fdCtx = { netNsId: taskIds.net_ns_id, uid: uids[0], euid: uids[1], pidfd: () => (pidfd >= 0 ? pidfd : (pidfd = addon.pidfdOpen(pid))), inTree: (p: number) => inTree.has(p), nsId: (link: string) => ids.idOfLink(link) };
    try {
      if (ownTable) for (const fd of fs.readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b)) fdinfo.push({ msg: files.dumpFd(pid, fd, fdCtx) });
      files.resolveEpollTargets(pid, fdinfo.map((e) => e.msg));
      files.packet.resolveMaps(pid, fdinfo.map((e) => e.msg));
    } finally {
      if (pidfd >= 0) addon.close(pidfd);
    }
    phases.mark(`fds-${pid}`);
    const cwdId = files.fsDir(pid, 'cwd');
    const rootId = files.fsDir(pid, 'root');
    const status = readStatus(pid);
    const tm = nowUs();
    const plan = planPages(pid, planned);
    stats.memdumpUs += nowUs() - tm;
    stats.pagesScanned += plan.pagesScanned;
    stats.pagesWritten += plan.pagesToWrite;
    stats.pagesLazy += plan.pagesLazy;
    const myPagesId = pagesId++;
    pageJobs.push({ pid, plan, file: path.join(tmp, `pages-${myPagesId}.img`) });

    const cgSet = cgroups.setOf(pid, ppid);
    const leader = threads[0];
    const stop = dumpStopState(pid, d.proc.tids, tree.stopSignals, inside.sigactions.map((a) => a.handler));
    const task = taskCore({
      state: stop.stopped ? TASK_STOPPED : TASK_ALIVE,
      exitCode: 0,
      personality: personality(pid),
      flags: d.stat.flags,
      comm: d.stat.comm,
      rlimits: parseLimits(readProc(pid, 'limits')),
      pendingShared: tracer.peekSiginfo(pid, true),
      loginuid: readLoginuid(pid, d.proc.tids),
      oomScoreAdj: readOomScoreAdj(pid),
      membarrierMask,
      inside,
    }, leader.regs.sigmask);
    if (stop.signo) task.stop_signo = stop.signo;
    threads.forEach((t, i) => {
      const core: Msg = { mtype: 1, thread_info: threadInfo(t) };
      if (i === 0) core.tc = task;
      core.thread_core = threadCore(t, i === 0, i === 0 ? cgSet : cgroups.threadSetOf(pid, t.regs.tid));
      images.push([`core-${t.regs.tid}.img`, 'CORE', [{ msg: core }]]);
    });
    images.push([`ids-${pid}.img`, 'IDS', [{ msg: taskIds }]]);
    const auxv = readProcBytes(pid, 'auxv');
    images.push([`mm-${pid}.img`, 'MM', [{ msg: mmEntry(d.stat, inside.brk, exeId, auxv, planned, inside.dumpable, inside.thpDisabled) }]]);
    images.push([`pagemap-${pid}.img`, 'PAGEMAP', pagemapEntries(myPagesId, plan)]);
    images.push([`fs-${pid}.img`, 'FS', [{ msg: { cwd_id: cwdId, root_id: rootId, umask: parseInt(status.get('Umask') ?? '22', 8) } }]]);
    if (ownTable) images.push([`fdinfo-${taskIds.files_id}.img`, 'FDINFO', fdinfo]);
    phases.mark(`task-${pid}`);
    log.debug(`task ${pid}: ${threads.length} threads, ${planned.length} VMAs, ${plan.pagesToWrite} pages, ${fdinfo.length} fds`);
  }

  checkDumpSharing(sharing, new Map(dumps.filter((d) => d.proc.state !== 'Z').map((d) => [d.proc.pid, d.proc.tids])), tree.root, dumps.find((d) => d.proc.pid === tree.root)!.stat.ppid);
  plugins.call('DUMP_DEVICES_LATE', tree.root);
  if (opts.fileLocks === false && files.locks.length) {
    const l = files.locks[0];
    throw new UnsupportedError(`task ${l.pid} fd ${l.fd}: holds a file lock (${lockKindName(l.flag as number)}); dump file locks with --file-locks`);
  }
  files.entries.push(...files.unix.finish(opts.extUnixSk ? () => files.allocId() : undefined));
  tcp.finish();
  images.push(...tcp.images);
  files.ttys.finish(opts.shellJob);
  checkInterrupted();
  holdForTest('collected');

  // 4. page contents (the bulk of the frozen time): shared memory objects, then the tasks
  const tw = nowUs();
  let written = 0;
  const shmem = files.shmem;
  stats.shpagesScanned = shmem.pagesScanned;
  stats.shpagesWritten = shmem.pagesToWrite;
  for (const o of shmem.objects) {
    shmem.writePages(o, path.join(tmp, `pages-${o.pagesId}.img`));
    images.push([`pagemap-shmem-${o.ino}.img`, 'PAGEMAP', shmem.pagemap(o)]);
  }
  shmem.close();
  for (const j of pageJobs) {
    written += writePages(j.pid, j.plan, j.file, checkInterrupted) / 4096;
    opts.progress?.(written, stats.pagesWritten);
  }
  stats.memwriteUs = nowUs() - tw;
  phases.mark('pages');
  if (shmem.objects.length) images.push(['memfd.img', 'MEMFD_INODE', shmem.memfdEntries()]);

  const timens = timensNow();

  // 5. the images (after the tree is resumed under --leave-running)
  const writeImages = (out: ImageDir) => {
    const writeImage = (file: string, magic: string, entries: Iterable<NewEntry>) => out.write(path.basename(file), magic, entries);
    for (const [name, magic, entries] of images) writeImage(path.join(tmp, name), magic, entries);
    writeImage(path.join(tmp, 'pstree.img'), 'PSTREE', pstree);
    writeImage(path.join(tmp, 'files.img'), 'FILES', files.entries.map((msg) => ({ msg })));
    if (files.pipesData.length) writeImage(path.join(tmp, 'pipes-data.img'), 'PIPES_DATA', files.pipesData);
    if (files.fifoData.length) writeImage(path.join(tmp, 'fifo-data.img'), 'FIFO_DATA', files.fifoData);
    if (files.ghosts!.remaps.length) writeImage(path.join(tmp, 'remap-fpath.img'), 'REMAP_FPATH', files.ghosts!.remaps.map((msg) => ({ msg })));
    if (files.locks.length) writeImage(path.join(tmp, 'filelocks.img'), 'FILE_LOCKS', files.locks.map((msg) => ({ msg })));
    if (files.ttys.infos.length) writeImage(path.join(tmp, 'tty-info.img'), 'TTY_INFO', files.ttys.infos.map((msg) => ({ msg })));
    if (files.ttys.data.length) writeImage(path.join(tmp, 'tty-data.img'), 'TTY_DATA', files.ttys.data.map((msg) => ({ msg })));
    if (files.unix.queues.length) writeImage(path.join(tmp, 'sk-queues.img'), 'SK_QUEUES', files.unix.queues);
    writeImage(path.join(tmp, 'seccomp.img'), 'SECCOMP', [{ msg: seccomp.entry() }]);
    const cg = cgroups.entry();
    if (cg) writeImage(path.join(tmp, 'cgroup.img'), 'CGROUP', [{ msg: cg }]);
    writeImage(path.join(tmp, 'timens-0.img'), 'TIMENS', [{ msg: timens }]);
    writeImage(path.join(tmp, 'inventory.img'), 'INVENTORY', [{
      msg: {
        img_version: 2, fdinfo_per_id: true, root_ids: rootIds, ns_per_id: true, root_cg_set: 1, lsmtype: 0,
        ...(opts.tcpClose ? { tcp_close: true } : {}), network_lock_method: tcp.lockMethod, plugins_entry: plugins.inventoryEntry(), dump_criu_run_id: tcp.runId,
      },
    }]);
    writeImage(path.join(tmp, 'stats-dump'), 'STATS', [{ msg: statsEntry(stats) }]);
  };
  return { stats, writeImages };
}

/** The inodes of the sockets the tasks hold. */
function socketInodes(pids: number[]): Set<number> {
  const out = new Set<number>();
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readLinkProc(pid, 'fd', fd));
        if (m) out.add(Number(m[1]));
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return out;
}

/** Controlling terminals of the tree's tasks: tty rdev -> session and foreground group. */
function cttyOwners(dumps: ProcessDump[]): Map<number, CttyOwner> {
  const m = new Map<number, CttyOwner>();
  for (const d of dumps) if (d.stat.ttyNr && !m.has(d.stat.ttyNr)) m.set(d.stat.ttyNr, { sid: d.stat.sid, pgrp: Math.max(0, d.stat.tpgid) });
  return m;
}

function personality(pid: number): number {
  return parseInt(readProc(pid, 'personality').trim(), 16);
}

/**
 * Without --shell-job, every session and group the tree uses must be led from inside it, or be
 * a group whose leader is gone (kinds/leaderless-pgrp).
 */
function checkSessions(dumps: ProcessDump[], inTree: Set<number>, shellJob: boolean): void {
  if (shellJob) return;
  for (const d of dumps)
    if (!inTree.has(d.stat.sid)) throw new EngineError(`task ${d.proc.pid} is in session ${d.stat.sid}, which is outside the dumped tree (use --shell-job)`);
  checkLeaderlessGroups(dumps.map((d) => ({ pid: d.proc.pid, pgid: d.stat.pgid })), inTree);
}

function timensNow(): Msg {
  const mono = process.hrtime.bigint();
  const boot = native().clockGettime(7); // CLOCK_BOOTTIME
  const ts = (ns: bigint) => ({ tv_sec: ns / 1_000_000_000n, tv_nsec: ns % 1_000_000_000n });
  return { monotonic: ts(mono), boottime: ts(boot) };
}

function statsEntry(s: DumpStats): Msg {
  return {
    dump: {
      freezing_time: s.freezingUs, frozen_time: s.frozenUs, memdump_time: s.memdumpUs, memwrite_time: s.memwriteUs,
      pages_scanned: s.pagesScanned, pages_skipped_parent: 0, pages_written: s.pagesWritten, irmap_resolve: 0,
      pages_lazy: s.pagesLazy, page_pipes: 0, page_pipe_bufs: 0, shpages_scanned: s.shpagesScanned, shpages_skipped_parent: 0,
      shpages_written: s.shpagesWritten,
    },
  };
}

/** frozen_time is known only after the tree is resumed: rewrite stats-dump in place. */
function rewriteStats(dir: string, s: DumpStats): void {
  writeImage(path.join(dir, 'stats-dump'), 'STATS', [{ msg: statsEntry(s) }]);
}
