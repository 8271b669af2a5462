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
import { readSmaps } from '../proc/maps';
import { readStat, ProcStat } from '../proc/stat';
import { readStatus } from '../proc/status';
import { readProc, readProcBytes, readLinkProc } from '../proc/read';
import { findSyscallGadget, RemoteSyscalls } from '../inject';
import { readThreadRegs, readThreadInside, ThreadRegs } from './thread';
import { readProcessInside } from './process';
import { TaskIds } from './ids';
import { FileTable } from './files';
import { planVmas, mmEntry } from './mm';
import { planPages, pagemapEntries, writePages, PagePlan } from './pages';
import { threadCore, threadInfo, taskCore, zombieCore, parseLimits, ThreadFacts, TASK_ALIVE, TASK_STOPPED } from './core';
import { EngineError } from '../errors';
import type { Log } from '../log';

export interface DumpOptions {
  pid: number;
  dir: string;
  leaveRunning: boolean;
  shellJob: boolean;
  log: Log;
  /** progress line on a terminal */
  progress?: (written: number, total: number) => void;
}

export interface DumpStats {
  freezingUs: number;
  frozenUs: number;
  memdumpUs: number;
  memwriteUs: number;
  pagesScanned: number;
  pagesWritten: number;
  pagesLazy: number;
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
    if (fs.readdirSync(dir).length) throw new EngineError(`${dir} is not empty`);
  } else if (!fs.existsSync(path.dirname(dir))) {
    throw new EngineError(`parent directory of ${dir} does not exist`);
  }
  return dir;
}

export function dump(opts: DumpOptions): DumpStats {
  const { log } = opts;
  const dir = preflight(opts);
  const tmp = path.join(path.dirname(dir), `.${path.basename(dir)}.engine-${process.pid}.tmp`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { mode: 0o700 });

  const addon = native();
  const tracer: Tracer = new addon.Tracer();
  const remotes: RemoteSyscalls[] = [];
  let tree: FrozenTree | undefined;
  const t0 = nowUs();
  let tFrozen = t0;
  try {
    tree = freezeTree(tracer, opts.pid, log);
    tFrozen = nowUs();
    const stats = collectAndWrite(tracer, tree, opts, tmp, remotes);
    stats.freezingUs = tFrozen - t0;
    // images complete and fsynced: put them in place before anything irreversible
    fsyncDir(tmp);
    if (fs.existsSync(dir)) fs.rmdirSync(dir);
    fs.renameSync(tmp, dir);
    fsyncDir(path.dirname(dir));
    finish(tracer, tree, opts.leaveRunning);
    stats.frozenUs = nowUs() - tFrozen;
    rewriteStats(dir, stats);
    return stats;
  } catch (e) {
    for (const r of remotes) {
      try {
        r.release();
      } catch {
        /* task gone */
      }
    }
    if (tree) thawTree(tracer, tree);
    fs.rmSync(tmp, { recursive: true, force: true });
    throw translate(e);
  } finally {
    tracer.close();
  }
}

function translate(e: unknown): unknown {
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

function finish(tracer: Tracer, tree: FrozenTree, leaveRunning: boolean): void {
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

function collectAndWrite(tracer: Tracer, tree: FrozenTree, opts: DumpOptions, tmp: string, remotes: RemoteSyscalls[]): DumpStats {
  const { log } = opts;
  const inTree = new Set(tree.processes.map((p) => p.pid));
  const stats: DumpStats = {
    freezingUs: 0, frozenUs: 0, memdumpUs: 0, memwriteUs: 0, pagesScanned: 0, pagesWritten: 0, pagesLazy: 0,
    tasks: tree.processes.length, threads: 0,
  };

  // 1. registers of every thread, before any injection changes them
  const dumps: ProcessDump[] = tree.processes.map((proc) => {
    const stat = readStat(proc.pid);
    return { proc, stat, threads: proc.tids.map((tid) => readThreadRegs(tracer, tid)) };
  });
  checkSessions(dumps, inTree, opts.shellJob);

  const ids = new TaskIds();
  const rootIds = ids.idsOf(process.pid); // the dumper's own objects take id 1 (as in CRIU)
  const files = new FileTable();
  const pstree: NewEntry[] = [];
  const images: [string, string, NewEntry[]][] = [];
  const pageJobs: { pid: number; plan: PagePlan; file: string }[] = [];
  let pagesId = 1;

  for (const d of dumps) {
    const pid = d.proc.pid;
    const ppid = pid === tree.root ? 0 : d.stat.ppid;
    pstree.push({ msg: { pid, ppid, pgid: d.stat.pgid, sid: d.stat.sid, threads: d.proc.state === 'Z' ? [pid] : d.proc.tids } });
    if (d.proc.state === 'Z') {
      images.push([`core-${pid}.img`, 'CORE', [{ msg: zombieCore(d.stat.comm, d.stat.exitCode >> 8, personality(pid), d.stat.flags) }]]);
      continue;
    }
    stats.threads += d.proc.tids.length;
    const taskIds = ids.idsOf(pid);

    // 2. what only the task itself can say (injected), then drop the scratch page
    const vmasBefore = readSmaps(pid);
    const remote = new RemoteSyscalls(tracer, pid, findSyscallGadget(pid, vmasBefore));
    remotes.push(remote);
    const inside = readProcessInside(remote, pid);
    const threads: ThreadFacts[] = d.threads.map((regs) => {
      const statText = readProc(pid, 'task', String(regs.tid), 'stat');
      const f = statText.slice(statText.lastIndexOf(')') + 2).split(/\s+/);
      return {
        regs,
        inside: readThreadInside(remote, regs.tid),
        status: readStatus(pid, regs.tid),
        comm: readProc(pid, 'task', String(regs.tid), 'comm').replace(/\n$/, ''),
        nice: Number(f[19 - 3]),
        policy: Number(f[41 - 3]),
        rtPrio: Number(f[40 - 3]),
      };
    });
    remote.release();
    remotes.pop();

    // 3. memory layout and files, read from /proc with the task still stopped
    const vmas = readSmaps(pid);
    const exePath = readLinkProc(pid, 'exe');
    const exeId = files.exeFile(pid, exePath, vmas);
    const planned = planVmas(pid, vmas, files);
    const fdinfo: NewEntry[] = [];
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`).map(Number).sort((a, b) => a - b)) fdinfo.push({ msg: files.dumpFd(pid, fd) });
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

    const leader = threads[0];
    const task = taskCore({
      state: d.proc.state === 'T' ? TASK_STOPPED : TASK_ALIVE,
      exitCode: 0,
      personality: personality(pid),
      flags: d.stat.flags,
      comm: d.stat.comm,
      rlimits: parseLimits(readProc(pid, 'limits')),
      pendingShared: tracer.peekSiginfo(pid, true),
      loginuid: Number(readProc(pid, 'loginuid')),
      oomScoreAdj: Number(readProc(pid, 'oom_score_adj')),
      inside,
    }, leader.regs.sigmask);
    threads.forEach((t, i) => {
      const core: Msg = { mtype: 1, thread_info: threadInfo(t) };
      if (i === 0) core.tc = task;
      core.thread_core = threadCore(t, i === 0, 1);
      images.push([`core-${t.regs.tid}.img`, 'CORE', [{ msg: core }]]);
    });
    images.push([`ids-${pid}.img`, 'IDS', [{ msg: taskIds }]]);
    const auxv = readProcBytes(pid, 'auxv');
    images.push([`mm-${pid}.img`, 'MM', [{ msg: mmEntry(d.stat, inside.brk, exeId, auxv, planned, inside.dumpable, inside.thpDisabled) }]]);
    images.push([`pagemap-${pid}.img`, 'PAGEMAP', pagemapEntries(myPagesId, plan)]);
    images.push([`fs-${pid}.img`, 'FS', [{ msg: { cwd_id: cwdId, root_id: rootId, umask: parseInt(status.get('Umask') ?? '22', 8) } }]]);
    images.push([`fdinfo-${taskIds.files_id}.img`, 'FDINFO', fdinfo]);
    log.debug(`task ${pid}: ${threads.length} threads, ${planned.length} VMAs, ${plan.pagesToWrite} pages, ${fdinfo.length} fds`);
  }

  // 4. page contents (the bulk of the frozen time)
  const tw = nowUs();
  let written = 0;
  for (const j of pageJobs) {
    written += writePages(j.pid, j.plan, j.file) / 4096;
    opts.progress?.(written, stats.pagesWritten);
  }
  stats.memwriteUs = nowUs() - tw;

  // 5. the images
  for (const [name, magic, entries] of images) writeImage(path.join(tmp, name), magic, entries);
  writeImage(path.join(tmp, 'pstree.img'), 'PSTREE', pstree);
  writeImage(path.join(tmp, 'files.img'), 'FILES', files.entries.map((msg) => ({ msg })));
  if (files.pipesData.length) writeImage(path.join(tmp, 'pipes-data.img'), 'PIPES_DATA', files.pipesData);
  writeImage(path.join(tmp, 'seccomp.img'), 'SECCOMP', [{ msg: {} }]);
  writeImage(path.join(tmp, 'timens-0.img'), 'TIMENS', [{ msg: timensNow() }]);
  writeImage(path.join(tmp, 'inventory.img'), 'INVENTORY', [{
    msg: {
      img_version: 2, fdinfo_per_id: true, root_ids: rootIds, ns_per_id: true, root_cg_set: 1, lsmtype: 0,
      network_lock_method: 0, plugins_entry: {}, dump_criu_run_id: randomUUID(),
    },
  }]);
  writeImage(path.join(tmp, 'stats-dump'), 'STATS', [{ msg: statsEntry(stats) }]);
  return stats;
}

function personality(pid: number): number {
  return parseInt(readProc(pid, 'personality').trim(), 16);
}

/** Without --shell-job, every session and group the tree uses must be led from inside it. */
function checkSessions(dumps: ProcessDump[], inTree: Set<number>, shellJob: boolean): void {
  if (shellJob) return;
  for (const d of dumps) {
    if (!inTree.has(d.stat.sid)) throw new EngineError(`task ${d.proc.pid} is in session ${d.stat.sid}, which is outside the dumped tree (use --shell-job)`);
    if (!inTree.has(d.stat.pgid)) throw new EngineError(`task ${d.proc.pid} is in process group ${d.stat.pgid}, which is outside the dumped tree (use --shell-job)`);
  }
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
      pages_lazy: s.pagesLazy, page_pipes: 0, page_pipe_bufs: 0, shpages_scanned: 0, shpages_skipped_parent: 0,
      shpages_written: 0,
    },
  };
}

/** frozen_time is known only after the tree is resumed: rewrite stats-dump in place. */
function rewriteStats(dir: string, s: DumpStats): void {
  writeImage(path.join(dir, 'stats-dump'), 'STATS', [{ msg: statsEntry(s) }]);
}
