// The image set as restore needs it: loaded once, typed, and checked for what this engine can
// restore. Anything it cannot is refused here, before a process exists, naming image and field.
import { checkAioImage } from '../kinds/aio';
import { MAP_HUGETLB, missingSize } from '../kinds/hugetlb';
import * as fs from 'fs';
import * as path from 'path';
import { loadImage, loadMessages } from '../../images/files';
import type { Msg } from '../../images/codec';
import { enumType } from '../../images/schema';
import { entryPages, entryFlags, PE_PARENT, PE_LAZY, PE_PRESENT } from '../../images/imageset';
import { VMA, PE } from '../../images/flags';
import { analysePagemap, isCompressedPagemap } from '../../images/memory/compressed';
import { LayoutPageSource } from '../../images/memory/pagesource';
import * as os from 'os';
import { XSAVE_AVX512 } from '../arch/x86_64';
import { EngineError } from '../errors';
import { checkInetEntry } from '../kinds/inet';
import { checkPacketEntry, checkRingVma } from '../kinds/packet';
import { checkNetlinkEntry } from '../kinds/netlink-sock';
import { sharingPlan, SharingPlan } from '../kinds/seccomp';
import { checkNsFile } from '../kinds/nsfile';
import { checkFanotifyEntry } from '../kinds/fanotify';

/** A message in a socket's queue: its bytes and the files.img ids of the files it carries. */
export interface QueuedPacket {
  data: Buffer;
  rights: number[];
}

const SCM_RIGHTS = 1;
/** kinds the engine makes itself, so can send in flight again: reg, pipe, fifo, inet, unix, memfd */
const IN_FLIGHT_TYPES = new Set([1, 2, 3, 4, 5, 18]);
/** and those the task holding the socket makes (eventfd, epoll, inotify, signalfd, timerfd): sent once it exists */
export const MADE_IN_TASK_IN_FLIGHT = new Set([6, 7, 8, 9, 17]);

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
// VMA status bits and pagemap flags come from the format library's one table
export { VMA, PE_PARENT, PE_LAZY, PE_PRESENT };
/** fd_types names by number, from the schema's enum */
export const FD_TYPES: Record<number, string> = Object.fromEntries(enumType('fd_types').byValue);
/** file kinds restored here (16, EXT: by the device plugin that dumped it) */
export const SUPPORTED_FILES = new Set([1, 2, 3, 4, 5, 20, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18]);

/** A shared memory object of memfd.img (memfd, or anonymous MAP_SHARED memory) and its contents. */
export interface MemfdInode {
  inodeId: number;
  name: string;
  size: bigint;
  shmid: number;
  seals: number;
  mode: number;
  uid: number;
  gid: number;
  /** memfd_inode_entry.hugetlb_flag: MFD_HUGETLB | the page size (kinds/hugetlb) */
  hugetlbFlag?: number;
  /** pagemap-shmem-<shmid>.img (offsets in the object); none: all holes */
  pagemap?: Pagemap;
}

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
  pipesData: Map<number, PipeData>;
  /** fifo-data.img: FIFO inode at dump -> queued bytes and pipe size */
  fifoData: Map<number, PipeData>;
  /** memfd.img: inode_id -> object */
  memfds: Map<number, MemfdInode>;
  /** sk-queues.img: socket file id -> queued packets (one per datagram), in order */
  /** unix socket id -> its queued messages, oldest first */
  skQueues: Map<number, QueuedPacket[]>;
  /** tty-info.img: id -> entry */
  ttyInfos: Map<number, Msg>;
  /** seccomp.img filters (index = position) */
  seccomp: Msg[];
}

/** Bytes queued in a pipe or FIFO, and its buffer size (0: the default). */
export interface PipeData {
  data: Buffer;
  size: number;
}

/** pipes-data.img or fifo-data.img (the same layout): pipe_id -> its data. */
function loadPipeData(dir: string, image: string): Map<number, PipeData> {
  const out = new Map<number, PipeData>();
  const file = path.join(dir, image);
  if (!fs.existsSync(file)) return out;
  for (const e of loadImage(file).entries) {
    const data = e.extra && e.extra.kind === 'blob' ? Buffer.from(e.extra.data) : Buffer.alloc(0);
    if (data.length !== num(e.msg.bytes)) throw new ImageError(image, `pipe ${e.msg.pipe_id}.bytes`, `says ${e.msg.bytes} bytes, holds ${data.length}`);
    out.set(num(e.msg.pipe_id), { data, size: num(e.msg.size) });
  }
  return out;
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
  return loadPagemapImage(dir, `pagemap-${pid}.img`);
}

const plainCopies: string[] = [];
let plainHooked = false;

/**
 * A compressed pages file (CRIU 2026 LZ4 layout) decoded into a plain temporary one: the restore
 * reads pages by offset, from injected preads in the restored tasks, so it needs the legacy
 * contiguous layout. Removed when the engine exits.
 */
function plainPagesFile(dir: string, image: string, entries: Msg[], pagesId: number): string {
  const name = `pages-${pagesId}.img`;
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return file; // the size check reports it
  const a = analysePagemap(entries, 4096, { pagesSize: fs.statSync(file).size });
  if (!a.layout) throw new ImageError(image, `entry ${a.problems[0].entry}`, a.problems[0].what);
  if (a.layout.physSize !== fs.statSync(file).size) throw new ImageError(name, 'size', `${fs.statSync(file).size} bytes, but ${image} describes ${a.layout.physSize} (compressed layout)`);
  const out = path.join(os.tmpdir(), `.engine-${process.pid}-${plainCopies.length}-${name}`);
  plainCopies.push(out);
  if (!plainHooked) {
    plainHooked = true;
    process.once('exit', () => { for (const f of plainCopies) try { fs.unlinkSync(f); } catch { /* gone */ } });
  }
  const src = new LayoutPageSource(file, a.layout, image);
  const fd = fs.openSync(out, 'w', 0o644);
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (let off = 0; off < a.layout.logicalSize; ) {
      const n = Math.min(buf.length, a.layout.logicalSize - off);
      try {
        src.read(off, buf, 0, n);
      } catch (e) {
        throw new EngineError((e as Error).message, 'EIMAGE');
      }
      for (let w = 0; w < n; ) w += fs.writeSync(fd, buf, w, n - w, off + w);
      off += n;
    }
  } finally {
    fs.closeSync(fd);
    src.close();
  }
  return out;
}

function loadPagemapImage(dir: string, image: string): Pagemap {
  let entries = need(dir, image);
  if (!entries.length || entries[0].pages_id === undefined) throw new ImageError(image, 'pagemap_head', 'missing');
  const pagesId = num(entries[0].pages_id);
  let pagesFile = path.join(dir, `pages-${pagesId}.img`);
  if (isCompressedPagemap(entries.slice(1))) {
    pagesFile = plainPagesFile(dir, image, entries.slice(1), pagesId);
    entries = entries.map((e, i) => (i && e.flags !== undefined ? { ...e, flags: num(e.flags) & ~PE.PAYLOAD_ALIGNED } : e));
  }
  const runs: PageRun[] = [];
  let off = 0n;
  let last = -1n;
  entries.slice(1).forEach((e, i) => {
    const field = `entry ${i + 1}`;
    // CRIU <= 4.1 keeps the count in field 2, 4.2 in field 5 (field 2 then 0)
    const nr = BigInt(entryPages(e));
    const flags = entryFlags(e);
    if (flags & PE_PARENT) throw new ImageError(image, `${field}.flags`, 'pages in a parent image (incremental dumps are not supported)');
    if (!(flags & PE_PRESENT)) throw new ImageError(image, `${field}.flags`, 'pages not in this image (lazy dump)');
    const vaddr = big(e.vaddr);
    if (vaddr % 4096n !== 0n || nr <= 0n) throw new ImageError(image, `${field}.vaddr`, `bad range 0x${vaddr.toString(16)}+${nr} pages`);
    if (vaddr < last) throw new ImageError(image, `${field}.vaddr`, 'entries not in ascending order');
    last = vaddr + nr * 4096n;
    runs.push({ vaddr, nrPages: nr, flags, fileOff: off });
    off += nr * 4096n;
  });
  return { image, pagesId, pagesFile, runs, bytesNeeded: off };
}

export function loadImageSet(dirArg: string): ImageSet {
  const dir = path.resolve(dirArg);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new EngineError(`${dir}: no such image directory`, 'ENOENT');
  const inventory = one(dir, 'inventory.img');
  // version 3: CRIU's compressed pages (read through images/memory, see plainPagesFile)
  const ver = num(inventory.img_version);
  if (ver !== 2 && ver !== 3) throw new ImageError('inventory.img', 'img_version', `version ${inventory.img_version} is not supported`);
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
  const pipesData = loadPipeData(dir, 'pipes-data.img');
  const fifoData = loadPipeData(dir, 'fifo-data.img');
  const memfds = new Map<number, MemfdInode>();
  if (fs.existsSync(path.join(dir, 'memfd.img'))) {
    for (const [i, m] of need(dir, 'memfd.img').entries()) {
      const shmid = num(m.shmid);
      const hugeWhy = m.hugetlb_flag ? missingSize(num(m.hugetlb_flag)) : undefined;
      if (hugeWhy) throw new ImageError('memfd.img', `entry ${i}.hugetlb_flag`, `hugetlb memory ${m.name}: ${hugeWhy}`);
      const pm = `pagemap-shmem-${shmid}.img`;
      memfds.set(num(m.inode_id), {
        inodeId: num(m.inode_id), name: String(m.name ?? ''), size: big(m.size), shmid, seals: num(m.seals),
        mode: m.mode === undefined ? 0o100777 : num(m.mode), uid: num(m.uid), gid: num(m.gid),
        ...(m.hugetlb_flag ? { hugetlbFlag: num(m.hugetlb_flag) } : {}),
        pagemap: fs.existsSync(path.join(dir, pm)) ? loadPagemapImage(dir, pm) : undefined,
      });
    }
  }
  const skQueues = new Map<number, QueuedPacket[]>();
  const skFile = path.join(dir, 'sk-queues.img');
  if (fs.existsSync(skFile)) {
    for (const [i, e] of loadImage(skFile).entries.entries()) {
      const data = e.extra && e.extra.kind === 'blob' ? Buffer.from(e.extra.data) : Buffer.alloc(0);
      if (data.length !== num(e.msg.length)) throw new ImageError('sk-queues.img', `entry ${i}.length`, `says ${e.msg.length} bytes, holds ${data.length}`);
      const rights: number[] = [];
      for (const [j, scm] of ((e.msg.scm ?? []) as Msg[]).entries()) {
        if (num(scm.type) !== SCM_RIGHTS) throw new ImageError('sk-queues.img', `entry ${i}.scm[${j}].type`, `ancillary data of type ${scm.type} is not restored (only SCM_RIGHTS)`);
        for (const [k, r] of ((scm.rights ?? []) as unknown[]).entries()) {
          const f = files.get(num(r));
          if (!f) throw new ImageError('sk-queues.img', `entry ${i}.scm[${j}].rights[${k}]`, `file ${r} is not in files.img`);
          if (!IN_FLIGHT_TYPES.has(num(f.type)) && !MADE_IN_TASK_IN_FLIGHT.has(num(f.type))) throw new ImageError('sk-queues.img', `entry ${i}.scm[${j}].rights[${k}]`, `file ${r} of type ${f.type} in flight is not restored`);
          rights.push(num(r));
        }
      }
      const id = num(e.msg.id_for);
      if (!skQueues.has(id)) skQueues.set(id, []);
      skQueues.get(id)!.push({ data, rights });
    }
  }
  const ttyInfos = new Map<number, Msg>();
  if (fs.existsSync(path.join(dir, 'tty-info.img'))) for (const t of need(dir, 'tty-info.img')) ttyInfos.set(num(t.id), t);
  const seccomp = fs.existsSync(path.join(dir, 'seccomp.img')) ? ((need(dir, 'seccomp.img')[0]?.seccomp_filters ?? []) as Msg[]) : [];
  const set: ImageSet = { dir, inventory, tasks, byPid, files, pipesData, fifoData, memfds, skQueues, ttyInfos, seccomp };
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
  for (const [i, t] of ((ti.tls ?? []) as Msg[]).entries()) {
    const n = num(t.entry_number);
    if (!t.seg_not_present && (n < 12 || n > 14)) throw new ImageError(image, `thread_info.tls[${i}].entry_number`, `GDT slot ${n} is not a TLS slot (12..14)`);
  }
  const x = ti.fpregs.xsave;
  const restored = ['xstate_bv', 'ymmh_space', 'cet', 'pkru', ...XSAVE_AVX512.map((c) => c.field as string)];
  // PKRU in use (xstate_bv bit 9) but not in the image: its value would be lost
  if (x && big(x.xstate_bv) & (1n << 9n) && !(x.pkru as unknown[] | undefined)?.length)
    throw new ImageError(image, 'thread_info.fpregs.xsave.pkru', 'xstate_bv says the protection-key register is in use, but the image does not hold its value');
  if (x) for (const k of Object.keys(x))
    if (!restored.includes(k) && (x[k] as unknown[] | undefined)?.length)
      throw new ImageError(image, `thread_info.fpregs.xsave.${k}`, 'this XSAVE component is not restored');
  if (x) for (const c of XSAVE_AVX512) {
    const n = (x[c.field] as unknown[] | undefined)?.length ?? 0;
    if (n && n !== c.count) throw new ImageError(image, `thread_info.fpregs.xsave.${c.field}`, `${n} values, expected ${c.count}`);
  }
}

/** The fown_entry of a file entry, whatever its kind. */
export function fownOf(f: Msg): Msg | undefined {
  for (const k of ['reg', 'pipe', 'efd', 'epfd', 'sgfd', 'tfd', 'ify', 'usk', 'tty', 'memfd', 'fifo', 'ffy', 'isk', 'psk', 'nlsk'])
    if (f[k]?.fown) return f[k].fown as Msg;
  return undefined;
}

const SECCOMP_MODE_STRICT = 1, SECCOMP_MODE_FILTER = 2;
const SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5;

function checkSupported(set: ImageSet): void {
  for (const t of set.tasks) {
    if (!t.mm) continue;
    const image = `mm-${t.pid}.img`;
    (t.mm.vmas as Msg[]).forEach((v, i) => {
      const st = num(v.status);
      // a packet socket's ring (kinds/packet): mapped again through the task's fd of the socket
      if ((st & ~VMA.REGULAR) === VMA.SOCKET) return checkRingVma(set, t.pid, t.fdinfo ?? [], image, i, v);
      const bad = st & (VMA.ANON_SHARED | VMA.SYSVIPC | VMA.SOCKET | VMA.UNSUPP);
      if (bad) throw new ImageError(image, `vmas[${i}].status`, `0x${st.toString(16)} at 0x${big(v.start).toString(16)}: ${st & VMA.SYSVIPC ? 'System V shared memory' : st & VMA.ANON_SHARED ? 'anonymous shared memory in the pre-memfd layout' : st & VMA.SOCKET ? 'socket mappings' : 'unsupported mappings'} are not restored`);
      const hugeWhy = num(v.flags) & MAP_HUGETLB ? missingSize(num(v.flags)) : undefined;
      if (hugeWhy) throw new ImageError(image, `vmas[${i}].flags`, `hugetlb memory at 0x${big(v.start).toString(16)}: ${hugeWhy}`);
      if (st & (VMA.FILE_SHARED | VMA.FILE_PRIVATE)) {
        const f = set.files.get(num(v.shmid));
        if (!f) throw new ImageError(image, `vmas[${i}].shmid`, `file id ${v.shmid} not in files.img`);
        if (st & VMA.MEMFD) {
          if (!f.memfd) throw new ImageError(image, `vmas[${i}].shmid`, `file id ${v.shmid} is not a memfd entry in files.img`);
          if (!set.memfds.has(num(f.memfd.inode_id))) throw new ImageError('files.img', `id ${v.shmid}.memfd.inode_id`, `inode ${f.memfd.inode_id} not in memfd.img`);
        } else if (!f.reg) throw new ImageError(image, `vmas[${i}].shmid`, `file id ${v.shmid} is not a regular file in files.img`);
      }
    });
    checkAioImage(image, t.mm);
    for (const id of [t.mm.exe_file_id, t.fs!.cwd_id, t.fs!.root_id]) {
      if (!set.files.has(num(id)) || !set.files.get(num(id))!.reg) throw new ImageError('files.img', `id ${id}`, `regular file entry referenced by task ${t.pid} is missing`);
    }
    for (const fd of t.fdinfo!) {
      const f = set.files.get(num(fd.id));
      if (!f) throw new ImageError(t.fdinfoImage!, `fd ${fd.fd}.id`, `file id ${fd.id} not in files.img`);
      const type = num(f.type);
      if (!SUPPORTED_FILES.has(type)) throw new ImageError('files.img', `id ${fd.id}.type`, `${FD_TYPES[type] ?? type} files (fd ${fd.fd} of task ${t.pid}) are not restored yet`);
      checkFile(set, num(fd.id), f);
    }
    for (const [tid, core] of t.cores) {
      const tc = core.thread_core ?? {};
      const mode = num(tc.seccomp_mode);
      const img = `core-${tid}.img`;
      if (mode !== 0 && mode !== SECCOMP_MODE_STRICT && mode !== SECCOMP_MODE_FILTER) throw new ImageError(img, 'thread_core.seccomp_mode', `unknown mode ${mode}`);
      if (mode === SECCOMP_MODE_FILTER) seccompChain(set, img, tc.seccomp_filter);
    }
    seccompPlan(set, t);
  }
}

/** How the process's filters are installed so that what its threads shared is shared again. */
export function seccompPlan(set: ImageSet, t: TaskImage): SharingPlan {
  const threads = [...t.cores].map(([tid, core]) => {
    const tc = core.thread_core ?? {};
    return { tid, newest: num(tc.seccomp_mode) === SECCOMP_MODE_FILTER ? num(tc.seccomp_filter) : undefined, nnp: num(tc.creds?.no_new_privs) !== 0 };
  });
  return sharingPlan(set.seccomp, threads, (why) => {
    throw new ImageError(`core-${t.pid}.img`, 'thread_core.seccomp_filter', why);
  });
}

/** The filters of a thread, oldest first, from its newest filter's position in seccomp.img. */
export function seccompChain(set: ImageSet, image: string, newest: unknown): Msg[] {
  if (newest === undefined || newest === null) throw new ImageError(image, 'thread_core.seccomp_filter', 'seccomp mode 2 without a filter');
  const chain: Msg[] = [];
  const seen = new Set<number>();
  for (let at: number | undefined = num(newest); at !== undefined; ) {
    const f: Msg | undefined = set.seccomp[at];
    if (!f) throw new ImageError(set.seccomp.length ? 'seccomp.img' : image, set.seccomp.length ? `seccomp_filters[${at}]` : 'thread_core.seccomp_filter', `filter ${at} does not exist`);
    if (seen.has(at)) throw new ImageError('seccomp.img', `seccomp_filters[${at}].prev`, 'the chain loops');
    seen.add(at);
    const len = (f.filter as Uint8Array | undefined)?.length ?? 0;
    if (!len || len % 8 || len / 8 > 4096) throw new ImageError('seccomp.img', `seccomp_filters[${at}].filter`, `${len} bytes is not a BPF program`);
    chain.unshift(f);
    at = f.prev === undefined || f.prev === null ? undefined : num(f.prev);
  }
  return chain;
}

function checkFile(set: ImageSet, id: number, f: Msg): void {
  const type = num(f.type);
  if (type === 14) checkNsFile(id, f);
  if (type === 18 && !set.memfds.has(num(f.memfd.inode_id))) throw new ImageError('files.img', `id ${id}.memfd.inode_id`, `inode ${f.memfd.inode_id} not in memfd.img`);
  if (type === 11) {
    const info = set.ttyInfos.get(num(f.tty.tty_info_id));
    if (!info) throw new ImageError('files.img', `id ${id}.tty.tty_info_id`, `${f.tty.tty_info_id} not in tty-info.img`);
    // PTY (with its index), CONSOLE, VT, CTTY (/dev/tty)
    if (![1, 2, 3, 4].includes(num(info.type))) throw new ImageError('tty-info.img', `id ${info.id}.type`, `terminal type ${info.type} is not restored (pseudo-terminals, the console, virtual terminals and /dev/tty only)`);
    if ((num(info.type) === 1) !== !!info.pty) throw new ImageError('tty-info.img', `id ${info.id}.pty`, num(info.type) === 1 ? 'a pseudo-terminal without its index' : 'pty data on a terminal that is not one');
  }
  if (type === 5) {
    const u = f.usk;
    const kind = num(u.type);
    if (![SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET].includes(kind)) throw new ImageError('files.img', `id ${id}.usk.type`, `socket type ${kind} is not restored`);
    if (u.name_dir && !String(u.name_dir).startsWith('/')) throw new ImageError('files.img', `id ${id}.usk.name_dir`, `${u.name_dir} is not an absolute directory`);
    const name = Buffer.from((u.name ?? new Uint8Array()) as Uint8Array);
    if (name.length > 108) throw new ImageError('files.img', `id ${id}.usk.name`, `${name.length} bytes is longer than sun_path`);
    if (name.length && name[0] !== 0 && name[0] !== 0x2f && !u.name_dir) throw new ImageError('files.img', `id ${id}.usk.name`, 'a relative socket path without its directory (name_dir)');
  }
  if (type === 4) checkInetEntry(id, f.isk, !!set.inventory.tcp_close);
  if (type === 10) checkPacketEntry(id, f.psk);
  if (type === 13) checkNetlinkEntry(id, f.nlsk);
  if (type === 12) checkFanotifyEntry(id, f);
  if (type === 8) {
    for (const [i, w] of ((f.ify.wd ?? []) as Msg[]).entries())
      if (!w.f_handle?.path) throw new ImageError('files.img', `id ${id}.ify.wd[${i}].f_handle.path`, 'watch without a path (resolve by handle is not supported)');
  }
}
