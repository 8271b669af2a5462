// engine restore: check the image set, build the tree from stubs, rebuild every task, set the
// registers and let the tree run. A refused restore creates nothing; a failed one kills and
// reaps every process it created.
import * as fs from 'fs';
import { native, Tracer, isNativeError } from '../../native';
import { EngineError } from '../errors';
import { parseStatus } from '../proc/status';
import { credsEntry } from '../dump/core';
import { reapKilled } from './context';
import type { Ctx, RestoreOptions } from './context';
import { loadImageSet } from './imageset';
import { preflight } from './check';
import { loadFileLocks, restoreFileLocks } from '../kinds/filelocks';
import { buildTree, creationOrder, forkHelper } from './tree';
import { dropScratch } from './memory';
import { restoresOwn } from '../kinds/shared-tables';
import { FileRestorer } from './fds';
import {
  restoreFs, restoreSignalsAndLimits, createThreads, restoreThreadState, restorePosixTimers, requeueSignals, restoreTls,
  restoreFown, restoreSeccomp,
} from './task';
import { ShmemRestorer } from './shmem';
import { UnixRestorer } from './unix';
import { InetRestorer } from '../kinds/inet';
import { PacketRestorer } from '../kinds/packet';
import { checkLockMethod, unlockAfterRestore, lockForRestore } from '../kinds/tcp';
import type { ConnLock } from '../kinds/tcp';
import { NetlinkRestorer } from '../kinds/netlink-sock';
import { TtyRestorer } from './tty';
import { setThreadRegs } from './regs';
import { num, PE_PRESENT } from './imageset';
import type { ImageSet, PageRun } from './imageset';
import { SIGSTOP } from './sys';
import { restorePlugins, restoreDevices } from '../plugins/glue';
import { applyAdvice } from '../kinds/madvise';
import { finalStopSignal, refuseDiscardedStops } from '../kinds/stopsig';
import { RestoredGhosts } from '../kinds/ghost';
import { deadProcDirs } from '../kinds/deadproc';
import { restoreCreds } from '../kinds/creds';
import { restoreSched } from '../kinds/sched';
import { restoreMembarrier } from '../kinds/membarrier';
import { restoreLoginuid } from '../kinds/loginuid';
import { restoreOomScoreAdj } from '../kinds/oom';
import { restoreDumpable } from '../kinds/dumpable';
import { restorePdeathSig } from '../kinds/pdeath';
import { CgroupRestore } from '../kinds/cgroup';

export type { RestoreOptions } from './context';

export interface RestoreStats {
  /** start to the moment the last thread runs */
  toRunningMs: number;
  tasks: number;
  threads: number;
  injectedCalls: number;
  /** start to the moment every task exists (CRIU's forking_time) */
  forkedMs: number;
  /** pages written into the tasks and shared memory */
  pagesRestored: number;
  /** pages of forked children compared with their parent's (CRIU's pages_compared) */
  pagesCompared: number;
  /** of them, those left shared with the parent, not written (CRIU's pages_skipped_cow) */
  pagesSkippedCow: number;
  /** PID of the restored root in the engine's namespace */
  rootHost: number;
  /** exit status of the root when not detached */
  exitCode?: number;
}

export function restore(opts: RestoreOptions): RestoreStats {
  const t0 = process.hrtime.bigint();
  const set = loadImageSet(opts.dir);
  // unlinked files are made again for the tasks to open, and unlinked again in every case
  const ghosts = RestoredGhosts.make(set.dir, set.files);
  try {
    return restoreSet(set, opts, t0, () => ghosts.finished());
  } finally {
    ghosts.remove();
  }
}

function restoreSet(set: ImageSet, opts: RestoreOptions, t0: bigint, running: () => void): RestoreStats {
  const ms = () => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(1);
  opts.log.debug(`images loaded at ${ms()} ms`);
  const cgroups = CgroupRestore.load(set, opts.cgroups, opts.log);
  let locks: ReturnType<typeof loadFileLocks>;
  let plugins: ReturnType<typeof restorePlugins>;
  try {
    // the cgroups first, as in CRIU: a task may hold one of their directories open
    cgroups?.prepare();
    if (set.inventory.tcp_close && !opts.tcpClose) throw new EngineError('inventory.img: tcp_close: the set was dumped with --tcp-close: restore it with --tcp-close', 'EIMAGE');
    checkLockMethod(set.inventory, set);
    preflight(set, opts);
    locks = loadFileLocks(set);
    plugins = restorePlugins(set.inventory, set.dir, (m) => opts.log.debug(m));
  } catch (e) {
    cgroups?.abort();
    throw e;
  }
  opts.log.debug(`images of ${set.tasks.length} tasks checked at ${ms()} ms`);

  const n = native();
  const maxFd = Math.max(2, ...set.tasks.flatMap((t) => (t.fdinfo ?? []).map((f) => num(f.fd))));
  const [engineFd, stubFd] = n.socketPair();
  const tracer: Tracer = new n.Tracer();
  const ctx: Ctx = {
    tracer, set, opts, log: opts.log, procs: new Map(), created: [], zombies: [], cowPages: { compared: 0, shared: 0 },
    deadProcs: deadProcDirs(set), forkHelper: (parent, pid, sig) => forkHelper(ctx, parent, pid, sig),
    transport: { engineFd, stubFd, number: maxFd + 1 },
    shmem: new ShmemRestorer(set), unix: new UnixRestorer(set, opts.log), inet: new InetRestorer(set, opts.log), packet: new PacketRestorer(set, opts.log), netlink: new NetlinkRestorer(set, opts.log), ttys: new TtyRestorer(set, opts.shellJob, opts.log),
    cgroups,
  };
  n.setChildSubreaper(true);
  const files = new FileRestorer(ctx);
  let stats: RestoreStats;
  let forkedMs = 0;
  let restoreLock: ConnLock | undefined;
  try {
    try {
      // device files and mappings, made by their plugins in the engine before any process
      ctx.devices = restoreDevices(plugins, set);
      // objects the engine makes itself, before any process: shared memory, sockets, terminals
      ctx.shmem.build();
      // inet first: an inet socket may travel in a unix socket's queue
      ctx.inet.tcpClose = opts.tcpClose ?? false;
      if (!opts.tcpClose && opts.networkLock !== 'skip') restoreLock = lockForRestore(set, opts.networkLock ?? 'nftables', opts.log);
      ctx.inet.build();
      ctx.packet.build();
      ctx.netlink.build();
      ctx.unix.build((id, where, holder) => files.inFlightFd(id, where, holder));
      ctx.ttys.build();
      files.prepare();
      opts.log.debug(`shared memory, sockets and terminals made at ${ms()} ms`);
      buildTree(ctx);
      forkedMs = Number(process.hrtime.bigint() - t0) / 1e6;
      opts.log.debug(`tree built at ${ms()} ms`);
    } finally {
      n.close(stubFd);
    }
    const mine = credsEntry(parseStatus(fs.readFileSync('/proc/self/status', 'utf8')), 0);
    const order = creationOrder(set.tasks).map((t) => ctx.procs.get(t.pid)).filter((p) => p !== undefined);
    // loginuid first: written through /proc/self by the leader, before any chroot and before its threads
    for (const p of order) restoreLoginuid(p);
    // memory is in place (rebuilt while the tree was forked); a shared fd table or fs struct is
    // restored once, by the task its sharers were cloned from
    for (const p of order) {
      if (restoresOwn(set, p.img, 'files_id')) files.restore(p);
      // packet rings the task maps, through its fds of the new sockets (kinds/packet)
      ctx.packet.mapRings(p);
      ctx.ttys.controllingTerminal(p);
      if (restoresOwn(set, p.img, 'fs_id')) restoreFs(ctx, p);
      restoreSignalsAndLimits(p);
      createThreads(ctx, p);
      ctx.cgroups?.enterThreads(p);
      restoreThreadState(p);
      // while still privileged: an RT priority or a lower nice needs no rlimit
      restoreSched(p);
      restoreMembarrier(p);
      restoreTls(ctx, p);
      restorePosixTimers(p);
    }
    // every task holds its fds: the queues that carry files a task makes are filled now
    ctx.unix.sendDeferred((id, where, holder) => files.inFlightFd(id, where, holder));
    // every task holds its fds: the file locks, taken again by their tasks
    restoreFileLocks(ctx, locks);
    // every task and thread exists now (file owners may name any of them); creds and seccomp last
    const owned = new Set<number>();
    for (const p of order) {
      applyAdvice(ctx, p);
      restoreFown(ctx, p, owned);
      requeueSignals(p);
      restoreOomScoreAdj(p);
      restoreCreds(p, mine);
      // after the creds: a credential change resets both
      restoreDumpable(p);
      restorePdeathSig(p);
      restoreSeccomp(ctx, p);
      dropScratch(p);
      opts.log.debug(`task ${p.img.pid}: done at ${ms()} ms`);
    }
    // every socket exists: the locks go (the restore's, and the one the dump left for the
    // connections), then the connections leave TCP repair mode (kinds/tcp)
    restoreLock?.unlock();
    unlockAfterRestore(set.inventory, set, opts.log);
    ctx.inet.repairOff();
    files.close();
    closeMade(ctx);
    plugins.exit(false);
    for (const p of order) for (const [vtid, host] of p.tids) setThreadRegs(tracer, host, p.img.cores.get(vtid)!, p.img.leader.tc);
    // every task in its cgroups: their remaining properties (limits are set on what is charged)
    ctx.cgroups?.finish();
    ctx.cgroups?.close();
    // everything is in place: let the whole tree go at once
    // a stop by SIGTSTP/SIGTTIN/SIGTTOU is queued before the detach (kinds/stopsig), SIGSTOP given with it
    refuseDiscardedStops(order, opts.leaveStopped);
    for (const p of order) {
      const stopSig = finalStopSignal(p.img, opts.leaveStopped);
      if (stopSig && stopSig !== SIGSTOP) process.kill(p.host, stopSig);
      for (const host of p.tids.values()) tracer.detach(host, host === p.host && stopSig === SIGSTOP ? SIGSTOP : 0);
    }
    if (ctx.init !== undefined) tracer.detach(ctx.init, 0);
    const root = ctx.procs.get(set.tasks[0].pid)!;
    stats = {
      toRunningMs: Number(process.hrtime.bigint() - t0) / 1e6,
      tasks: set.tasks.length,
      threads: order.reduce((s, p) => s + p.tids.size, 0),
      injectedCalls: order.reduce((s, p) => s + p.remote.calls, 0),
      rootHost: root.host,
      forkedMs,
      pagesRestored: pagesInSet(set) - ctx.cowPages.shared,
      pagesCompared: ctx.cowPages.compared,
      pagesSkippedCow: ctx.cowPages.shared,
    };
    opts.log.debug(`restored ${stats.tasks} tasks / ${stats.threads} threads with ${stats.injectedCalls} injected calls in ${stats.toRunningMs.toFixed(1)} ms`);
  } catch (e) {
    try {
      restoreLock?.unlock();
    } catch {
      /* said by unlock, with the command that removes it */
    }
    files.close();
    closeMade(ctx);
    ctx.unix.unlinkBound();
    plugins.exit(true);
    cleanup(ctx);
    ctx.cgroups?.abort();
    tracer.close();
    n.close(engineFd);
    throw translate(e);
  }
  n.close(engineFd);
  running();
  opts.onRunning?.(stats);
  if (!opts.detach) {
    // like criu restore without -d: stay the tree's parent until the root ends
    const st = tracer.wait(ctx.init ?? stats.rootHost, -1);
    stats.exitCode = st.exited ? st.exitCode : 128 + st.termSig;
  }
  tracer.close();
  return stats;
}

function pagesInSet(set: ImageSet): number {
  let n = 0;
  const add = (p?: { runs: PageRun[] }) => {
    for (const r of p?.runs ?? []) if (r.flags & PE_PRESENT) n += Number(r.nrPages);
  };
  for (const t of set.tasks) add(t.pagemap);
  for (const o of set.memfds.values()) add(o.pagemap);
  return n;
}

/** The engine's copies of what it made for the tasks. */
function closeMade(ctx: Ctx): void {
  ctx.shmem.close();
  ctx.unix.close();
  ctx.inet.close();
  ctx.packet.close();
  ctx.netlink.close();
  ctx.ttys.close();
  ctx.devices?.close();
}

/** Kills every process this restore created and reaps them (the engine is their subreaper). */
function cleanup(ctx: Ctx): void {
  for (const host of [...ctx.created].reverse()) {
    try {
      process.kill(host, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const host of ctx.created) reapKilled(ctx.tracer, host);
}

function translate(e: unknown): unknown {
  if (e instanceof EngineError) return e;
  if (isNativeError(e)) return new EngineError(`restore failed: ${e.message}`, e.code);
  return e;
}
