// Checks before anything is created: the set is consistent, every file it needs is there with
// its recorded size, this CPU can hold the saved FPU state, the vDSO matches, the PIDs are free.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { readSmaps } from '../proc/maps';
import { EngineError } from '../errors';
import type { RestoreOptions } from './context';
import { sleepMs } from './context';
import { ImageSet, ImageError, TaskImage, big, num, VMA, Pagemap, MemfdInode } from './imageset';
import { TtyRestorer } from './tty';
import { checkFifo } from '../kinds/fifo';
import { dumpedSpecials, liveSpecials, checkSpecials } from './memory';
import { isZombie, holder } from './tree';
import { checkSched } from '../kinds/sched';
import { checkOomScoreAdj } from '../kinds/oom';
import { checkLoginuid } from '../kinds/loginuid';
import { checkMembarrier } from '../kinds/membarrier';
import { checkDumpableImage } from '../kinds/dumpable';
import { checkPdeathSig } from '../kinds/pdeath';
import { checkAdvice } from '../kinds/madvise';
import { checkSigtrap } from '../kinds/sigtrap';
import { deadProcDirs } from '../kinds/deadproc';
import { checkStopSignal } from '../kinds/stopsig';
import { checkImageSharing } from '../kinds/shared-tables';
import { checkFanotifyMarks } from '../kinds/fanotify';
import { leaderlessGroups } from '../kinds/leaderless-pgrp';

export function preflight(set: ImageSet, opts: RestoreOptions): void {
  checkTree(set, opts);
  checkImageSharing(set);
  const live = liveSpecials(readSmaps(process.pid));
  const ownVdso = Buffer.alloc(Number(live.vdso.end - live.vdso.start));
  native().readMemory(process.pid, live.vdso.start, ownVdso);
  const xcr0 = native().xcr0();
  const needed = new Map<number, string>(); // file id -> who needs it
  for (const t of set.tasks) {
    if (isZombie(t)) continue;
    checkPages(t);
    checkAttributes(t);
    checkAdvice(t);
    checkSigtrap(t);
    checkStopSignal(t);
    // none: the task had unmapped its vDSO block and is restored without one
    const specials = dumpedSpecials(t);
    if (specials) {
      checkSpecials(`mm-${t.pid}.img`, specials, live);
      checkVdsoBytes(t, specials.vdso.start, ownVdso);
    }
    for (const [tid, core] of t.cores) {
      const bv = big(core.thread_info.fpregs?.xsave?.xstate_bv);
      if (bv & ~xcr0)
        throw new ImageError(`core-${tid}.img`, 'thread_info.fpregs.xsave.xstate_bv', `0x${bv.toString(16)} uses XSAVE features this CPU does not enable (XCR0 0x${xcr0.toString(16)})`);
    }
    needed.set(num(t.mm!.exe_file_id), `exe of task ${t.pid}`);
    needed.set(num(t.fs!.cwd_id), `cwd of task ${t.pid}`);
    needed.set(num(t.fs!.root_id), `root of task ${t.pid}`);
    // a plugin's device mapping is not opened by its path (the plugin picks the device)
    for (const v of t.mm!.vmas as Msg[]) if (num(v.status) & (VMA.FILE_PRIVATE | VMA.FILE_SHARED) && !(num(v.status) & VMA.EXT_PLUGIN) && set.files.get(num(v.shmid))?.reg) needed.set(num(v.shmid), `mapping of task ${t.pid}`);
    for (const fd of t.fdinfo!) if (set.files.get(num(fd.id))?.reg) needed.set(num(fd.id), `fd ${fd.fd} of task ${t.pid}`);
  }
  for (const o of set.memfds.values()) if (o.pagemap) checkShmemPages(o);
  checkWatches(set);
  checkFanotifyMarks(set.files.values());
  new TtyRestorer(set, opts.shellJob, opts.log).check();
  // a PID held by a running process first: its files may well have changed since
  if (!opts.pidns) waitForPids(set, opts.pidWaitMs ?? 10_000, true);
  // a dead process's /proc directory is made again with a helper holding its PID (kinds/deadproc)
  for (const [id, pid] of deadProcDirs(set)) {
    needed.delete(id);
    if (fs.existsSync(`/proc/${pid}`)) throw new EngineError(`remap-fpath.img: file id ${id}: PID ${pid}, whose /proc directory a task is in, is taken (${holder(pid)})`, 'EEXIST');
  }
  for (const [id, who] of needed) checkFile(id, set.files.get(id)!, who, set);
  for (const t of set.tasks) for (const fd of t.fdinfo ?? []) {
    const f = set.files.get(num(fd.id));
    if (f?.fifo) checkFifo(set.files, num(fd.id), f);
  }
  if (!opts.pidns) waitForPids(set, opts.pidWaitMs ?? 10_000);
}

/** Scheduling, oom_score_adj, loginuid, membarrier, dumpable and parent-death values this kernel takes. */
function checkAttributes(t: TaskImage): void {
  const core = `core-${t.pid}.img`;
  checkOomScoreAdj(core, t.leader.tc);
  checkLoginuid(core, t.leader.tc);
  checkMembarrier(core, t.leader.tc);
  checkDumpableImage(`mm-${t.pid}.img`, t.mm!);
  for (const [tid, c] of t.cores) {
    checkSched(`core-${tid}.img`, c.thread_core);
    checkPdeathSig(`core-${tid}.img`, c.thread_core);
  }
}

function pagesFileSize(pm: Pagemap): void {
  const name = `pages-${pm.pagesId}.img`;
  let size: number;
  try {
    size = fs.statSync(pm.pagesFile).size;
  } catch {
    throw new EngineError(`${name}: missing from the image set (needed by ${pm.image})`, 'EIMAGE');
  }
  if (BigInt(size) < pm.bytesNeeded) throw new ImageError(name, 'size', `truncated: ${pm.image} needs ${pm.bytesNeeded} bytes, the file has ${size}`);
  if (BigInt(size) > pm.bytesNeeded) throw new ImageError(name, 'size', `${size} bytes, but ${pm.image} accounts for only ${pm.bytesNeeded}`);
}

function checkShmemPages(o: MemfdInode): void {
  const pm = o.pagemap!;
  pagesFileSize(pm);
  const limit = (o.size + 4095n) & ~4095n;
  for (const r of pm.runs)
    if (r.vaddr + r.nrPages * 4096n > limit) throw new ImageError(pm.image, `entry at 0x${r.vaddr.toString(16)}`, `pages beyond the object's ${o.size} bytes (memfd.img inode ${o.inodeId})`);
}

/** inotify watches name their files by path: each must still be the watched inode. */
function checkWatches(set: ImageSet): void {
  for (const f of set.files.values()) {
    if (num(f.type) !== 8) continue;
    for (const [i, w] of ((f.ify.wd ?? []) as Msg[]).entries()) {
      const p = String(w.f_handle.path);
      let st: fs.Stats;
      try {
        st = fs.statSync(p);
      } catch {
        throw new ImageError('files.img', `id ${f.id}.ify.wd[${i}].f_handle.path`, `watched ${p} no longer exists`);
      }
      if (w.i_ino !== undefined && BigInt(st.ino) !== big(w.i_ino))
        throw new ImageError('files.img', `id ${f.id}.ify.wd[${i}].i_ino`, `${p} is inode ${st.ino} now, the watch was on ${w.i_ino}`);
    }
  }
}

function checkTree(set: ImageSet, opts: RestoreOptions): void {
  const root = set.tasks[0];
  for (const t of set.tasks.slice(1)) {
    const parent = set.byPid.get(t.ppid);
    if (!parent) throw new ImageError('pstree.img', `task ${t.pid}.ppid`, `parent ${t.ppid} is not in the tree`);
    if (isZombie(parent)) throw new ImageError('pstree.img', `task ${t.pid}.ppid`, `parent ${t.ppid} is a zombie`);
    if (t.sid !== parent.sid && t.sid !== t.pid)
      throw new ImageError('pstree.img', `task ${t.pid}.sid`, `session ${t.sid} is neither its parent's nor its own (not supported)`);
  }
  const pids = new Set(set.tasks.map((t) => t.pid));
  // a group whose leader is gone is made by a helper (kinds/leaderless-pgrp)
  const helped = leaderlessGroups(set);
  for (const t of set.tasks) {
    const inside = (pids.has(t.pgid) && set.byPid.get(t.pgid)!.sid === t.sid) || helped.has(t.pgid);
    if (!inside && !(opts.shellJob || opts.pidns) && t.pgid !== root.pgid)
      throw new ImageError('pstree.img', `task ${t.pid}.pgid`, `process group ${t.pgid} is outside the tree (use --shell-job)`);
    if (!pids.has(t.sid) && !opts.shellJob && !opts.pidns)
      throw new ImageError('pstree.img', `task ${t.pid}.sid`, `session ${t.sid} is outside the tree (use --shell-job)`);
  }
}

function checkPages(t: TaskImage): void {
  const pm = t.pagemap!;
  pagesFileSize(pm);
  const vmas = (t.mm!.vmas as Msg[]).map((v) => [big(v.start), big(v.end)] as const);
  let j = 0;
  for (const r of pm.runs) {
    const end = r.vaddr + r.nrPages * 4096n;
    // a run may span adjacent VMAs; each page must be inside one
    let at = r.vaddr;
    while (at < end) {
      while (j < vmas.length && vmas[j][1] <= at) j++;
      if (j >= vmas.length || vmas[j][0] > at) throw new ImageError(pm.image, `entry at 0x${r.vaddr.toString(16)}`, `page 0x${at.toString(16)} is outside every VMA of mm-${t.pid}.img`);
      at = vmas[j][1] < end ? vmas[j][1] : end;
    }
  }
}

/** Our own vDSO is this kernel's; the dumped one must be byte-identical to it. */
function checkVdsoBytes(t: TaskImage, vdsoStart: bigint, own: Buffer): void {
  const pm = t.pagemap!;
  const end = vdsoStart + BigInt(own.length);
  const runs = pm.runs.filter((r) => r.vaddr < end && r.vaddr + r.nrPages * 4096n > vdsoStart);
  if (!runs.length) return;
  const fd = fs.openSync(pm.pagesFile, 'r');
  try {
    for (const r of runs) {
      const lo = r.vaddr > vdsoStart ? r.vaddr : vdsoStart;
      const hi = r.vaddr + r.nrPages * 4096n < end ? r.vaddr + r.nrPages * 4096n : end;
      const buf = Buffer.alloc(Number(hi - lo));
      fs.readSync(fd, buf, 0, buf.length, Number(r.fileOff + (lo - r.vaddr)));
      if (!buf.equals(own.subarray(Number(lo - vdsoStart), Number(hi - vdsoStart))))
        throw new ImageError(pm.image, 'vdso pages', 'the dumped vDSO differs from this kernel\'s (dumped on another kernel?)');
    }
  } finally {
    fs.closeSync(fd);
  }
}

const O_PATH = 0o10000000, O_NOFOLLOW = 0o400000;

function checkFile(id: number, f: Msg, who: string, set?: ImageSet): void {
  const reg = f.reg;
  // a /proc file of a task of the set exists once that task is made again
  const proc = /^\/proc\/(\d+)(\/|$)/.exec(reg.name);
  if (proc && set?.byPid.has(Number(proc[1]))) return;
  let st: fs.Stats;
  // an O_PATH | O_NOFOLLOW fd is on the symlink itself
  const noFollow = (num(reg.flags) & (O_PATH | O_NOFOLLOW)) === (O_PATH | O_NOFOLLOW);
  try {
    st = noFollow ? fs.lstatSync(reg.name) : fs.statSync(reg.name);
  } catch (e) {
    throw new ImageError('files.img', `id ${id}.name`, `${reg.name} (${who}): ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (reg.size !== undefined && st.isFile() && BigInt(st.size) !== big(reg.size))
    throw new ImageError('files.img', `id ${id}.size`, `${reg.name} (${who}) is ${st.size} bytes, the image records ${reg.size}`);
  if (reg.mode !== undefined && (num(reg.mode) & 0o170000) !== (st.mode & 0o170000))
    throw new ImageError('files.img', `id ${id}.mode`, `${reg.name} (${who}) is no longer the same kind of file`);
}

/** PIDs and TIDs must be free; one held by a zombie is waited for (PID 1 may reap slowly). */
function waitForPids(set: ImageSet, waitMs: number, runningOnly = false): void {
  const ids: number[] = [];
  for (const t of set.tasks) ids.push(...(isZombie(t) ? [t.pid] : t.threads));
  ids.push(...leaderlessGroups(set).keys()); // the helpers' PIDs
  const until = Date.now() + waitMs;
  for (const id of ids) {
    for (;;) {
      const h = fs.existsSync(`/proc/${id}`) ? holder(id) : '';
      if (!h) break;
      if (!h.includes('zombie'))
        throw new EngineError(`PID ${id} is in use (${h}); restore with --pidns to give the tree its own PID namespace`, 'EEXIST');
      if (runningOnly) break;
      if (Date.now() > until) throw new EngineError(`PID ${id} is still ${h} after ${waitMs / 1000} s`, 'EEXIST');
      sleepMs(20);
    }
  }
}
