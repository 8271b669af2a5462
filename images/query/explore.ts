// The data behind `crit x DIR ps|fds|mems|rss|sk|tree|gpu`, as CRIT's explorers compute it
// (same order, same descriptions) but without its crashes. Text rendering lives in crit/.
import { ImageSet, entryPages } from '../imageset';
import { VMA, VMA_FILE } from '../flags';
import type { Msg } from '../codec';
import { enumType } from '../schema';
import { qpEncode } from '../json/quopri';

export interface PsRow {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  comm: string;
  depth: number;
  threads: number[];
  state?: number;
}

/** Depth-first from the root (ppid 0; the last one if several), children in pstree order. */
export function psRows(set: ImageSet): PsRow[] {
  const tasks = set.tasks();
  const children = new Map<number, typeof tasks>();
  let root: (typeof tasks)[number] | undefined;
  const pids = new Set(tasks.map((t) => t.pid));
  const orphans: typeof tasks = [];
  for (const t of tasks) {
    if (t.ppid === 0) root = t;
    else if (!pids.has(t.ppid)) orphans.push(t); // CRIT crashes here; we list them as extra roots
    else {
      const l = children.get(t.ppid) || [];
      l.push(t);
      children.set(t.ppid, l);
    }
  }
  const rows: PsRow[] = [];
  const visit = (t: (typeof tasks)[number], depth: number) => {
    let comm = '';
    let state: number | undefined;
    try {
      const tc = set.core(t.pid).tc;
      comm = tc?.comm ?? '';
      state = tc?.task_state !== undefined ? Number(tc.task_state) : undefined;
    } catch { /* no core: leave blank */ }
    rows.push({ pid: t.pid, ppid: t.ppid, pgid: t.pgid, sid: t.sid, comm: typeof comm === 'string' ? comm : '?', depth, threads: t.threads, state });
    for (const c of children.get(t.pid) || []) visit(c, depth + 1);
  };
  const roots = [...(root ? [root] : []), ...orphans];
  for (const r of roots) visit(r, 0);
  return rows;
}

const FD_TYPES = () => enumType('fd_types');

/** CRIT's description of an open file: path, pipe[...], unix[...], or TYPE.id. */
export function fileDescription(set: ImageSet, type: number | string, id: number): string {
  const tname = typeof type === 'string' ? type : FD_TYPES().byValue.get(type) ?? String(type);
  if (tname !== 'REG' && tname !== 'PIPE' && tname !== 'UNIXSK') return `${tname}.${id}`;
  let f: Msg | undefined = set.file(id);
  let sub: Msg | undefined;
  if (f) sub = tname === 'REG' ? f.reg : tname === 'PIPE' ? f.pipe : f.usk;
  else {
    // legacy images, only when files.img lacks the id
    const legacy = tname === 'REG' ? 'reg-files.img' : tname === 'PIPE' ? 'pipes.img' : 'unixsk.img';
    f = set.tryImage(legacy)?.entries.find((e) => Number(e.msg.id) === id)?.msg;
    sub = f;
  }
  if (tname === 'REG') return sub && typeof sub.name === 'string' ? sub.name : 'unknown path';
  if (tname === 'PIPE') return sub ? `pipe[${sub.pipe_id}]` : 'pipe[?]';
  if (!sub) return 'unix[?]';
  const name: Uint8Array | undefined = sub.name;
  const nm = name && name.length ? ' ' + qpEncode(name) : '';
  return `unix[${sub.ino} (${sub.peer})${nm}]`;
}

export interface FdRow {
  fd: number | 'cwd' | 'root';
  type: string;
  id: number;
  desc: string;
}

export interface FdsOfTask {
  pid: number;
  /** why there is nothing to show (a zombie has only a core image) */
  note?: string;
  fds: FdRow[];
}

export function fdsRows(set: ImageSet): FdsOfTask[] {
  return set.tasks().map((t) => {
    if (!set.has(`ids-${t.pid}.img`)) return { pid: t.pid, note: set.isZombie(t.pid) ? 'zombie: no files' : `no ids-${t.pid}.img`, fds: [] };
    const fds: FdRow[] = [];
    for (const e of set.fdinfo(t.pid)) {
      const type = FD_TYPES().byValue.get(Number(e.type)) ?? String(e.type);
      fds.push({ fd: Number(e.fd), type, id: Number(e.id), desc: fileDescription(set, type, Number(e.id)) });
    }
    const fsm = set.fsEntry(t.pid);
    fds.push({ fd: 'cwd', type: 'REG', id: Number(fsm.cwd_id), desc: fileDescription(set, 'REG', Number(fsm.cwd_id)) });
    fds.push({ fd: 'root', type: 'REG', id: Number(fsm.root_id), desc: fileDescription(set, 'REG', Number(fsm.root_id)) });
    return { pid: t.pid, fds };
  });
}

export interface MemRow {
  start: bigint;
  end: bigint;
  prot: string;
  /** CRIT's suffix: file, [stack], shmem[n], ... (with its leading space) */
  desc: string;
  vma: Msg;
}

export interface MemsOfTask {
  pid: number;
  note?: string;
  exe?: string;
  vmas: MemRow[];
}

function protString(p: number): string {
  return (p & 1 ? 'r' : '-') + (p & 2 ? 'w' : '-') + (p & 4 ? 'x' : '-');
}

export function memsRows(set: ImageSet): MemsOfTask[] {
  const shmids = new Map<number, number>(); // CRIT numbers shared objects across all tasks
  return set.tasks().map((t) => {
    if (!set.has(`mm-${t.pid}.img`)) return { pid: t.pid, note: set.isZombie(t.pid) ? 'zombie: no memory' : `no mm-${t.pid}.img`, vmas: [] };
    const mm = set.mm(t.pid);
    const exe = fileDescription(set, 'REG', Number(mm.exe_file_id));
    const vmas: MemRow[] = (mm.vmas || []).map((v: Msg) => {
      const st = Number(v.status);
      let desc: string;
      const shared = (kind: string) => {
        const id = Number(v.shmid);
        if (!shmids.has(id)) shmids.set(id, shmids.size + 1);
        return ` ${kind}[${shmids.get(id)!.toString(16)}]`;
      };
      if (st & VMA.SYSVIPC) desc = shared('ips');
      else if (st & VMA.ANON_SHARED) desc = shared('shmem');
      else if (st & VMA.SOCKET) desc = shared('packet');
      else if (st & VMA_FILE) {
        desc = ' ' + fileDescription(set, 'REG', Number(v.shmid));
        if (BigInt(v.pgoff) !== 0n) desc += ` + 0x${BigInt(v.pgoff).toString(16)}`;
        if (st & VMA.FILE_SHARED) desc += ' (s)';
      } else if (st & VMA.STACK) desc = ' [stack]';
      else if (st & VMA.VSYSCALL) desc = ' [vsyscall]';
      else if (st & VMA.VDSO) desc = ' [vdso]';
      else if (Number(v.flags) & 0x100) desc = ' [stack?]';
      else desc = '';
      if (!(st & VMA.REGULAR)) desc += ' *';
      return { start: BigInt(v.start), end: BigInt(v.end), prot: protString(Number(v.prot)), desc, vma: v };
    });
    return { pid: t.pid, exe, vmas };
  });
}

export interface RssLine {
  vaddr: bigint;
  pages: number;
  /** VMAs the entry touches: [start, pages, file?]; null marks CRIT's "~" (same VMA as the previous line) */
  vmas: ({ start: bigint; pages: number; file?: string } | null)[];
}

export interface RssOfTask {
  pid: number;
  note?: string;
  lines: RssLine[];
}

/** CRIT's rss walk (4 KiB pages, as CRIT assumes), reading nr_pages from field 5 or field 2. */
export function rssRows(set: ImageSet): RssOfTask[] {
  return set.tasks().map((t) => {
    if (!set.has(`mm-${t.pid}.img`) || !set.has(`pagemap-${t.pid}.img`)) return { pid: t.pid, note: set.isZombie(t.pid) ? 'zombie: no memory' : 'no mm or pagemap image', lines: [] };
    const vmas = set.vmas(t.pid);
    const lines: RssLine[] = [];
    let i = 0;
    let p = -1;
    for (const e of set.pagemap(t.pid).entries) {
      const vaddr = BigInt(e.vaddr);
      const nr = entryPages(e);
      while (i < vmas.length && BigInt(vmas[i].end) <= vaddr) i++;
      const pend = vaddr + (BigInt(nr) << 12n);
      const touched: RssLine['vmas'] = [];
      while (i < vmas.length && BigInt(vmas[i].start) < pend) {
        const v = vmas[i];
        if (i === p) touched.push(null);
        else {
          const st = Number(v.status);
          touched.push({ start: BigInt(v.start), pages: Number((BigInt(v.end) - BigInt(v.start)) >> 12n), file: st & VMA_FILE ? fileDescription(set, 'REG', Number(v.shmid)) : undefined });
          p = i;
        }
        i++;
      }
      i = Math.max(i - 1, 0); // CRIT steps back one (and would wrap to the last VMA at -1)
      lines.push({ vaddr, pages: nr, vmas: touched });
    }
    return { pid: t.pid, lines };
  });
}
