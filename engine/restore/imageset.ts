// The image set as restore needs it: loaded once, typed, and checked for what this engine can
// restore. Anything it cannot is refused here, before a process exists, naming image and field.
import * as fs from 'fs';
import * as path from 'path';
import { loadImage, loadMessages } from '../../images/files';
import type { Msg } from '../../images/codec';
import { EngineError } from '../errors';

/** A refusal: "<image>: <field>: <why>". */
export class ImageError extends EngineError {
  constructor(image: string, field: string, why: string) {
    super(`${image}: ${field}: ${why}`, 'EIMAGE');
    this.name = 'ImageError';
  }
}

export const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));
export const num = (v: unknown): number => (v === undefined || v === null ? 0 : Number(v));

export const TASK_ALIVE = 1, TASK_DEAD = 2, TASK_STOPPED = 3, TASK_ZOMBIE = 6;
export const VMA = {
  REGULAR: 0x1, STACK: 0x2, VSYSCALL: 0x4, VDSO: 0x8, HEAP: 0x20, FILE_PRIVATE: 0x40, FILE_SHARED: 0x80,
  ANON_SHARED: 0x100, ANON_PRIVATE: 0x200, SYSVIPC: 0x400, SOCKET: 0x800, VVAR: 0x1000, AIORING: 0x2000,
  MEMFD: 0x4000, UNSUPP: 0x40000000,
} as const;
export const PE_PARENT = 1, PE_LAZY = 2, PE_PRESENT = 4;
export const FD_TYPES: Record<number, string> = {
  1: 'REG', 2: 'PIPE', 3: 'FIFO', 4: 'INETSK', 5: 'UNIXSK', 6: 'EVENTFD', 7: 'EVENTPOLL', 8: 'INOTIFY', 9: 'SIGNALFD',
  10: 'PACKETSK', 11: 'TTY', 12: 'FANOTIFY', 13: 'NETLINKSK', 14: 'NS', 15: 'TUNF', 16: 'EXT', 17: 'TIMERFD',
  18: 'MEMFD', 19: 'BPFMAP', 20: 'PIDFD',
};
/** file kinds restored here */
export const SUPPORTED_FILES = new Set([1, 2, 6, 7, 9, 17]);

export interface PageRun {
  vaddr: bigint;
  nrPages: bigint;
  flags: number;
  /** offset of the run's data in pages-<id>.img (when PE_PRESENT) */
  fileOff: bigint;
}

export interface Pagemap {
  image: string;
  pagesId: number;
  pagesFile: string;
  runs: PageRun[];
  /** bytes of pages-<id>.img the entries need */
  bytesNeeded: bigint;
}

export interface TaskImage {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  state: number;
  exitCode: number;
  /** core of every thread (leader's has tc) */
  cores: Map<number, Msg>;
  leader: Msg;
  mm?: Msg;
  pagemap?: Pagemap;
  ids?: Msg;
  fs?: Msg;
  fdinfo?: Msg[];
  fdinfoImage?: string;
}

export interface ImageSet {
  dir: string;
  inventory: Msg;
  tasks: TaskImage[];
  byPid: Map<number, TaskImage>;
  files: Map<number, Msg>;
  /** pipe_id -> queued bytes and pipe size */
  pipesData: Map<number, { data: Buffer; size: number }>;
}

function need(dir: string, name: string): Msg[] {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) throw new EngineError(`${name}: missing from the image set ${dir}`, 'EIMAGE');
  try {
    return loadMessages(file);
  } catch (e) {
    throw new EngineError(`${name}: unreadable: ${(e as Error).message}`, 'EIMAGE');
  }
}

function one(dir: string, name: string): Msg {
  const m = need(dir, name);
  if (m.length !== 1) throw new ImageError(name, 'entries', `expected one entry, found ${m.length}`);
  return m[0];
}

function loadPagemap(dir: string, pid: number): Pagemap {
  const image = `pagemap-${pid}.img`;
  const entries = need(dir, image);
  if (!entries.length || entries[0].pages_id === undefined) throw new ImageError(image, 'pagemap_head', 'missing');
  const pagesId = num(entries[0].pages_id);
  const runs: PageRun[] = [];
  let off = 0n;
  let last = -1n;
  entries.slice(1).forEach((e, i) => {
    const field = `entry ${i + 1}`;
    // CRIU <= 4.1 keeps the count in field 2, 4.2 in field 5 (field 2 then 0)
    const nr = e.nr_pages !== undefined ? big(e.nr_pages) : big(e.compat_nr_pages);
    let flags = e.flags === undefined ? PE_PRESENT : num(e.flags);
    if (e.in_parent) flags |= PE_PARENT;
    if (flags & PE_PARENT) throw new ImageError(image, `${field}.flags`, 'pages in a parent image (incremental dumps are not supported)');
    if (!(flags & PE_PRESENT)) throw new ImageError(image, `${field}.flags`, 'pages not in this image (lazy dump)');
    const vaddr = big(e.vaddr);
    if (vaddr % 4096n !== 0n || nr <= 0n) throw new ImageError(image, `${field}.vaddr`, `bad range 0x${vaddr.toString(16)}+${nr} pages`);
    if (vaddr < last) throw new ImageError(image, `${field}.vaddr`, 'entries not in ascending order');
    last = vaddr + nr * 4096n;
    runs.push({ vaddr, nrPages: nr, flags, fileOff: off });
    off += nr * 4096n;
  });
  return { image, pagesId, pagesFile: path.join(dir, `pages-${pagesId}.img`), runs, bytesNeeded: off };
}

export function loadImageSet(dirArg: string): ImageSet {
  const dir = path.resolve(dirArg);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new EngineError(`${dir}: no such image directory`, 'ENOENT');
  const inventory = one(dir, 'inventory.img');
  if (num(inventory.img_version) !== 2) throw new ImageError('inventory.img', 'img_version', `version ${inventory.img_version} is not supported`);
  if (!inventory.fdinfo_per_id) throw new ImageError('inventory.img', 'fdinfo_per_id', 'old per-task fdinfo layout is not supported');
  const pstree = need(dir, 'pstree.img');
  if (!pstree.length) throw new ImageError('pstree.img', 'entries', 'empty tree');
  const tasks: TaskImage[] = [];
  const byPid = new Map<number, TaskImage>();
  for (const [i, p] of pstree.entries()) {
    const pid = num(p.pid);
    if (pid <= 0) throw new ImageError('pstree.img', `entry ${i}.pid`, `invalid pid ${pid}`);
    if (byPid.has(pid)) throw new ImageError('pstree.img', `entry ${i}.pid`, `pid ${pid} appears twice`);
    const leaderCore = one(dir, `core-${pid}.img`);
    checkCoreArch(`core-${pid}.img`, leaderCore);
    const tc = leaderCore.tc;
    if (!tc) throw new ImageError(`core-${pid}.img`, 'tc', 'missing task core');
    const state = num(tc.task_state);
    const threads = ((p.threads ?? []) as unknown[]).map(num);
    const t: TaskImage = {
      pid, ppid: num(p.ppid), pgid: num(p.pgid), sid: num(p.sid), threads, state, exitCode: num(tc.exit_code),
      cores: new Map([[pid, leaderCore]]), leader: leaderCore,
    };
    if (state === TASK_ALIVE || state === TASK_STOPPED) {
      if (!threads.length || threads[0] !== pid) {
        // CRIU lists the leader first; accept any order but require it
        if (!threads.includes(pid)) throw new ImageError('pstree.img', `entry ${i}.threads`, `leader ${pid} is not among its threads`);
        t.threads = [pid, ...threads.filter((x) => x !== pid)];
      }
      for (const tid of t.threads) {
        if (tid === pid) continue;
        const core = one(dir, `core-${tid}.img`);
        checkCoreArch(`core-${tid}.img`, core);
        t.cores.set(tid, core);
      }
      for (const [tid, core] of t.cores) checkThreadCore(`core-${tid}.img`, core);
      t.mm = one(dir, `mm-${pid}.img`);
      t.pagemap = loadPagemap(dir, pid);
      t.ids = fs.existsSync(path.join(dir, `ids-${pid}.img`)) ? one(dir, `ids-${pid}.img`) : leaderCore.ids;
      if (!t.ids) throw new EngineError(`ids-${pid}.img: missing from the image set ${dir}`, 'EIMAGE');
      t.fs = one(dir, `fs-${pid}.img`);
      t.fdinfoImage = `fdinfo-${num(t.ids.files_id)}.img`;
      t.fdinfo = need(dir, t.fdinfoImage);
    } else if (state !== TASK_ZOMBIE && state !== TASK_DEAD) { // CRIU writes zombies as TASK_DEAD
      throw new ImageError(`core-${pid}.img`, 'tc.task_state', `state ${state} cannot be restored`);
    }
    tasks.push(t);
    byPid.set(pid, t);
  }
  const files = new Map<number, Msg>();
  for (const f of need(dir, 'files.img')) files.set(num(f.id), f);
  const pipesData = new Map<number, { data: Buffer; size: number }>();
  const pdFile = path.join(dir, 'pipes-data.img');
  if (fs.existsSync(pdFile)) {
    for (const e of loadImage(pdFile).entries) {
      const data = e.extra && e.extra.kind === 'blob' ? Buffer.from(e.extra.data) : Buffer.alloc(0);
      if (data.length !== num(e.msg.bytes)) throw new ImageError('pipes-data.img', `pipe ${e.msg.pipe_id}.bytes`, `says ${e.msg.bytes} bytes, holds ${data.length}`);
      pipesData.set(num(e.msg.pipe_id), { data, size: num(e.msg.size) });
    }
  }
  const set: ImageSet = { dir, inventory, tasks, byPid, files, pipesData };
  checkSupported(set);
  return set;
}

function checkCoreArch(image: string, core: Msg): void {
  if (num(core.mtype) !== 1) throw new ImageError(image, 'mtype', `architecture ${core.mtype} is not x86_64`);
}

function checkThreadCore(image: string, core: Msg): void {
  const ti = core.thread_info;
  if (!ti || !ti.gpregs) throw new ImageError(image, 'thread_info.gpregs', 'missing');
  if (ti.gpregs.mode !== undefined && num(ti.gpregs.mode) !== 1) throw new ImageError(image, 'thread_info.gpregs.mode', 'compat (32-bit) tasks are not supported');
  if (!ti.fpregs) throw new ImageError(image, 'thread_info.fpregs', 'missing');
  for (const [i, t] of ((ti.tls ?? []) as Msg[]).entries())
    if (!t.seg_not_present || num(t.base_addr) !== 0) throw new ImageError(image, `thread_info.tls[${i}]`, 'GDT TLS entries (set_thread_area) are not supported');
  const x = ti.fpregs.xsave;
  if (x) for (const k of Object.keys(x))
    if (!['xstate_bv', 'ymmh_space', 'cet'].includes(k) && (x[k] as unknown[] | undefined)?.length)
      throw new ImageError(image, `thread_info.fpregs.xsave.${k}`, 'this XSAVE component is not restored');
  const tc = core.thread_core;
  if (tc && num(tc.seccomp_mode) !== 0) throw new ImageError(image, 'thread_core.seccomp_mode', 'seccomp is not supported yet');
}

function checkSupported(set: ImageSet): void {
  for (const t of set.tasks) {
    if (!t.mm) continue;
    const image = `mm-${t.pid}.img`;
    (t.mm.vmas as Msg[]).forEach((v, i) => {
      const st = num(v.status);
      const bad = st & (VMA.ANON_SHARED | VMA.SYSVIPC | VMA.SOCKET | VMA.AIORING | VMA.MEMFD | VMA.UNSUPP);
      if (bad) throw new ImageError(image, `vmas[${i}].status`, `0x${st.toString(16)} at 0x${big(v.start).toString(16)}: shared anonymous, memfd, SysV, socket and AIO mappings are not restored yet`);
      if (st & VMA.FILE_SHARED && !set.files.has(num(v.shmid))) throw new ImageError(image, `vmas[${i}].shmid`, `file id ${v.shmid} not in files.img`);
      if (st & VMA.FILE_PRIVATE && !set.files.has(num(v.shmid))) throw new ImageError(image, `vmas[${i}].shmid`, `file id ${v.shmid} not in files.img`);
    });
    for (const id of [t.mm.exe_file_id, t.fs!.cwd_id, t.fs!.root_id]) {
      if (!set.files.has(num(id)) || !set.files.get(num(id))!.reg) throw new ImageError('files.img', `id ${id}`, `regular file entry referenced by task ${t.pid} is missing`);
    }
    for (const fd of t.fdinfo!) {
      const f = set.files.get(num(fd.id));
      if (!f) throw new ImageError(t.fdinfoImage!, `fd ${fd.fd}.id`, `file id ${fd.id} not in files.img`);
      const type = num(f.type);
      if (!SUPPORTED_FILES.has(type)) throw new ImageError('files.img', `id ${fd.id}.type`, `${FD_TYPES[type] ?? type} files (fd ${fd.fd} of task ${t.pid}) are not restored yet`);
      const body = f.reg ?? f.pipe ?? f.efd ?? f.epfd ?? f.sgfd ?? f.tfd;
      if (body?.fown && num(body.fown.pid) !== 0) throw new ImageError('files.img', `id ${fd.id}.fown`, 'file owners (F_SETOWN) are not restored yet');
    }
  }
}
