// What changed between two checkpoints: the process tree, per-task core fields, fds and
// files, sockets, VMAs, memory pages, GPU buffer objects, and every other image entry by
// entry, field by field. Each image is compared exactly once, in the section that owns it.
// Data only: crit/commands/diff.ts renders it, the TUI can too.
import { protString, vmaWhat } from './vma';
import { VMA_FILE } from '../flags';
import * as fs from 'fs';
import * as path from 'path';
import { ImageSet } from '../imageset';
import type { Entry } from '../image';
import type { Msg } from '../codec';
import { rawImageKind } from '../magic';
import { enumType } from '../schema';
import { diffMessages, diffExtras, FieldChange, messageValue, messageText } from './fielddiff';
import { diffMemory, PagePair, PageRun } from './memdiff';
import { fileDescription } from './explore';
import { gpuRows } from './explore-more';
import { readFd } from '../source';
import { withoutMeta, isCompressedPagemap } from '../memory/compressed';
import { openPagesOf } from '../memory/reader';
import type { PageSource } from '../memory/pagesource';

/**
 * Compressed or not is how the pages are stored, not what was checkpointed: when either side is
 * compressed, its compress fields and the version bump to 3 that compression brings are not
 * differences (the pages themselves are compared through the memory reader).
 */
function storageNeutralInventory(a: Msg, b: Msg): [Msg, Msg] {
  if (!Number(a.compress ?? 0) && !Number(b.compress ?? 0)) return [a, b];
  const strip = (m: Msg): Msg => {
    const o = { ...m };
    delete o.compress;
    delete o.compress_region_size;
    return o;
  };
  const na = strip(a);
  const nb = strip(b);
  const va = Number(a.img_version);
  const vb = Number(b.img_version);
  if (va !== vb && (va === 2 || va === 3) && (vb === 2 || vb === 3)) nb.img_version = a.img_version;
  return [na, nb];
}

export const SECTIONS = ['processes', 'core', 'fds', 'files', 'sockets', 'vmas', 'memory', 'gpu', 'images'] as const;
export type Section = (typeof SECTIONS)[number];

export interface Change extends FieldChange {
  section: Section;
  /** the task it concerns, when there is one */
  pid?: number;
  /** what the path points at, for people: "task 12 (bash)", "fd 3 of task 12", ... */
  label?: string;
  /** memory: the page run */
  run?: PageRun;
}

export interface SetDiff {
  a: string;
  b: string;
  changes: Change[];
  /** differing pages kept for a hex diff (opts.keepPages) */
  pages: PagePair[];
  droppedPages: number;
  comparedPages: number;
}

export interface SetDiffOptions {
  /** keep up to this many differing pages for a hex diff (crit diff --memory) */
  keepPages?: number;
  /** compare memory contents (default true) */
  memory?: boolean;
}

type Cls = 'pstree' | 'core' | 'mm' | 'fdinfo' | 'files' | 'pagemap' | 'pages' | 'gpu-meta' | 'gpu-raw' | 'sockets' | 'raw' | 'task' | 'generic';

function classify(name: string): { cls: Cls; id?: number } {
  let m: RegExpExecArray | null;
  if (name === 'pstree.img') return { cls: 'pstree' };
  if ((m = /^core-(\d+)\.img$/.exec(name))) return { cls: 'core', id: Number(m[1]) };
  if ((m = /^mm-(\d+)\.img$/.exec(name))) return { cls: 'mm', id: Number(m[1]) };
  if ((m = /^fdinfo-(\d+)\.img$/.exec(name))) return { cls: 'fdinfo', id: Number(m[1]) };
  if (name === 'files.img') return { cls: 'files' };
  if ((m = /^pagemap-(\d+)\.img$/.exec(name))) return { cls: 'pagemap', id: Number(m[1]) };
  if (/^pagemap-shmem-\d+\.img$/.test(name)) return { cls: 'pagemap' };
  if (/^pages-\d+\.img$/.test(name)) return { cls: 'pages' };
  if (/^amdgpu-(kfd|renderD|dmabuf)/.test(name)) return { cls: 'gpu-meta' };
  if (/^amdgpu-/.test(name)) return { cls: 'gpu-raw' };
  if (name === 'sk-queues.img' || /^tcp-stream-[0-9a-f]+\.img$/.test(name)) return { cls: 'sockets' };
  if (rawImageKind(name)) return { cls: 'raw' };
  if ((m = /^(ids|fs)-(\d+)\.img$/.exec(name))) return { cls: 'task', id: Number(m[2]) };
  return { cls: 'generic' };
}

/** Files of an images directory that are images (not logs, not the expected/ folders). */
export function imageNames(set: ImageSet): string[] {
  return set.names().filter((n) => {
    if (!(/\.img$/.test(n) || /^stats-/.test(n) || n === 'irmap-cache' || /\.tar\.gz$/.test(n))) return false;
    try {
      return fs.statSync(set.path(n)).isFile();
    } catch {
      return false;
    }
  });
}

const SOCKET_SUBS = ['usk', 'isk', 'psk', 'nlsk'];
const FD_TYPES = () => enumType('fd_types');

function tasksOf(set: ImageSet) {
  return set.has('pstree.img') ? set.tasks() : [];
}

function commOf(set: ImageSet, pid: number): string {
  try {
    const c = set.core(pid).tc?.comm;
    return typeof c === 'string' ? c : '?';
  } catch {
    return '?';
  }
}

/** Entry keys that survive insertions and removals; undefined = match by position. */
function keyOf(magic: string, e: Entry, i: number): string | undefined {
  const m = e.msg;
  if (magic === 'PAGEMAP') return i === 0 ? 'head' : `vaddr=${BigInt(m.vaddr).toString(16)}`;
  if (magic === 'FDINFO') return `fd=${m.fd}`;
  if (magic === 'PSTREE') return `pid=${m.pid}`;
  if (magic === 'MEMFD_INODE') return `inode=${m.inode_id}`;
  if (m && (typeof m.id === 'number' || typeof m.id === 'bigint')) return `id=${m.id}`;
  return undefined;
}

/** Pairs of entry indexes [a, b]: matched by key when keys are unique on both sides. */
function matchEntries(magic: string, ea: Entry[], eb: Entry[]): [number | undefined, number | undefined][] {
  const ka = ea.map((e, i) => keyOf(magic, e, i));
  const kb = eb.map((e, i) => keyOf(magic, e, i));
  const unique = (ks: (string | undefined)[]) => ks.every((k) => k !== undefined) && new Set(ks).size === ks.length;
  const out: [number | undefined, number | undefined][] = [];
  if (!unique(ka) || !unique(kb)) {
    for (let i = 0; i < Math.max(ea.length, eb.length); i++) out.push([i < ea.length ? i : undefined, i < eb.length ? i : undefined]);
    return out;
  }
  const bIdx = new Map(kb.map((k, i) => [k!, i]));
  const used = new Set<number>();
  ka.forEach((k, i) => {
    const j = bIdx.get(k!);
    if (j !== undefined) used.add(j);
    out.push([i, j]);
  });
  kb.forEach((_, j) => { if (!used.has(j)) out.push([undefined, j]); });
  return out;
}

interface ImageOpts {
  section: Section;
  pid?: number;
  /** label of an entry, from either side */
  label?: (e: Entry, set: ImageSet) => string | undefined;
  /** section of one change (e.g. comm and state go to processes) */
  sectionOf?: (c: FieldChange, e: Entry) => Section;
  skip?: Set<string>;
  /** per matched pair, after the field diff (e.g. VMAs) */
  extra?: (a: Entry, b: Entry, path: string) => void;
  /** the messages to compare instead (how pages are stored is not what was checkpointed) */
  normalize?: (a: Msg, b: Msg) => [Msg, Msg];
  /** do not report the image itself as added/removed (its task is) */
  quietPresence?: boolean;
  /** only entries present on both sides (the others are reported elsewhere) */
  pairsOnly?: boolean;
}

class Differ {
  changes: Change[] = [];
  pages: PagePair[] = [];
  dropped = 0;
  compared = 0;
  private filesIds = new Map<ImageSet, Map<number, number[]>>();

  constructor(private A: ImageSet, private B: ImageSet, private opts: SetDiffOptions) {}

  push(c: Change): void {
    this.changes.push(c);
  }

  private fieldChanges(list: FieldChange[], base: Change, e?: Entry, sectionOf?: ImageOpts['sectionOf']): void {
    for (const c of list) this.push({ ...base, ...c, section: sectionOf && e ? sectionOf(c, e) : base.section });
  }

  /** Compares one image present in either set, entry by entry. */
  image(name: string, o: ImageOpts): void {
    const inA = this.A.has(name);
    const inB = this.B.has(name);
    if (!inA && !inB) return;
    if (!inA || !inB) {
      if (o.quietPresence) return;
      const img = (inA ? this.A : this.B).image(name);
      this.push({ section: o.section, pid: o.pid, op: inA ? 'removed' : 'added', path: name, label: `image (${img.entries.length} entr${img.entries.length === 1 ? 'y' : 'ies'})` });
      return;
    }
    const ia = this.A.image(name);
    const ib = this.B.image(name);
    if (ia.magic !== ib.magic) {
      this.push({ section: o.section, pid: o.pid, op: 'changed', path: name, old: ia.magic, new: ib.magic, oldText: ia.magic, newText: ib.magic, label: 'image kind' });
      return;
    }
    for (const [i, j] of matchEntries(ia.magic, ia.entries, ib.entries)) {
      const ea = i !== undefined ? ia.entries[i] : undefined;
      const eb = j !== undefined ? ib.entries[j] : undefined;
      if (ea && eb) {
        if (!ea.type || ea.type !== eb.type) continue; // raw amdgpu contents: compared per BO
        const p = `${name}[${i}]`;
        const list: FieldChange[] = [];
        const [ma, mb] = o.normalize ? o.normalize(ea.msg, eb.msg) : [ea.msg, eb.msg];
        diffMessages(ea.type, ma, mb, p, list, { skip: o.skip });
        diffExtras(ea.extra, eb.extra, p, list);
        const label = o.label?.(ea, this.A);
        const labelB = o.label?.(eb, this.B);
        this.fieldChanges(list, { section: o.section, pid: o.pid, op: 'changed', path: p, label: label !== labelB && label && labelB ? `${label} -> ${labelB}` : label }, ea, o.sectionOf);
        o.extra?.(ea, eb, p);
      } else {
        const e = (ea ?? eb)!;
        const set = ea ? this.A : this.B;
        if (!e.type || o.pairsOnly) continue;
        const sec = o.sectionOf ? o.sectionOf({ op: 'added', path: '' }, e) : o.section;
        this.push({
          section: sec, pid: o.pid, op: ea ? 'removed' : 'added', path: `${name}[${ea ? i : j}]`, label: o.label?.(e, set),
          [ea ? 'old' : 'new']: messageValue(e.type, e.msg), [ea ? 'oldText' : 'newText']: messageText(e.type, e.msg),
        } as Change);
      }
    }
  }

  /** pids sharing an fd table, per set */
  private filesOwners(set: ImageSet): Map<number, number[]> {
    let m = this.filesIds.get(set);
    if (!m) {
      m = new Map();
      for (const t of tasksOf(set)) {
        if (!set.has(`ids-${t.pid}.img`)) continue;
        const id = Number(set.ids(t.pid).files_id);
        m.set(id, [...(m.get(id) || []), t.pid]);
      }
      this.filesIds.set(set, m);
    }
    return m;
  }

  run(): void {
    const A = this.A;
    const B = this.B;
    const tasksA = new Map(tasksOf(A).map((t) => [t.pid, t]));
    const tasksB = new Map(tasksOf(B).map((t) => [t.pid, t]));
    // files of tasks that exist on one side only are summarised by "task added/removed"
    const quiet = new Set<string>();
    const ownerOfTid = new Map<number, number>();
    for (const [tasks, other] of [[tasksA, tasksB], [tasksB, tasksA]] as const) {
      for (const t of tasks.values()) {
        for (const tid of t.threads) ownerOfTid.set(tid, t.pid);
        ownerOfTid.set(t.pid, t.pid);
        if (other.has(t.pid)) continue;
        for (const tid of [t.pid, ...t.threads]) quiet.add(`core-${tid}.img`);
        for (const k of ['mm', 'pagemap', 'ids', 'fs']) quiet.add(`${k}-${t.pid}.img`);
      }
    }
    const at = (tasks: Map<number, unknown>, pid: number) => [...tasks.keys()].indexOf(pid);
    for (const [pid, t] of tasksA) {
      if (!tasksB.has(pid)) this.push({ section: 'processes', pid, op: 'removed', path: `pstree.img[${at(tasksA, pid)}]`, label: `task ${pid} (${commOf(A, pid)})`, old: messageValue('pstree_entry', t.entry), oldText: `ppid ${t.ppid} pgid ${t.pgid} sid ${t.sid} threads ${t.threads.join(',')}` });
    }
    for (const [pid, t] of tasksB) {
      if (!tasksA.has(pid)) this.push({ section: 'processes', pid, op: 'added', path: `pstree.img[${at(tasksB, pid)}]`, label: `task ${pid} (${commOf(B, pid)})`, new: messageValue('pstree_entry', t.entry), newText: `ppid ${t.ppid} pgid ${t.pgid} sid ${t.sid} threads ${t.threads.join(',')}` });
    }

    const names = [...new Set([...imageNames(A), ...imageNames(B)])].sort(byNumber);
    const pagesFiles: string[] = [];
    for (const name of names) {
      const { cls, id } = classify(name);
      const quietPresence = quiet.has(name);
      switch (cls) {
        case 'pstree': {
          // added/removed tasks are reported above; here only tasks on both sides
          this.image(name, { section: 'processes', quietPresence, pairsOnly: true, label: (e, s) => `task ${e.msg.pid} (${commOf(s, Number(e.msg.pid))})` });
          break;
        }
        case 'core': {
          const pid = ownerOfTid.get(id!) ?? id!;
          const lbl = pid === id ? `task ${pid} (${commOf(A.has(name) ? A : B, pid)})` : `thread ${id} of task ${pid}`;
          this.image(name, {
            section: 'core', pid, quietPresence, label: () => lbl,
            sectionOf: (c) => (/\.tc\.(comm|task_state)$/.test(c.path) ? 'processes' : 'core'),
          });
          break;
        }
        case 'mm':
          this.image(name, { section: 'vmas', pid: id, quietPresence, label: () => `task ${id}`, skip: new Set(['vmas']), extra: (a, b, p) => this.vmas(id!, a.msg, b.msg, p) });
          break;
        case 'fdinfo': {
          const owners = (s: ImageSet) => this.filesOwners(s).get(id!) || [];
          const who = (s: ImageSet) => { const o = owners(s); return o.length ? ` of task ${o.join(',')}` : ''; };
          this.image(name, {
            section: 'fds', pid: (owners(A)[0] ?? owners(B)[0]),
            label: (e, s) => `fd ${e.msg.fd}${who(s)}: ${fileDescription(s, Number(e.msg.type), Number(e.msg.id))}`,
          });
          break;
        }
        case 'files':
          this.image(name, {
            section: 'files',
            label: (e, s) => {
              const t = FD_TYPES().byValue.get(Number(e.msg.type)) ?? String(e.msg.type);
              const d = fileDescription(s, t, Number(e.msg.id));
              return `file id ${e.msg.id} (${t}${d.startsWith(t + '.') ? '' : ' ' + d})`;
            },
            sectionOf: (_c, e) => (SOCKET_SUBS.some((k) => e.msg[k] !== undefined) ? 'sockets' : 'files'),
          });
          break;
        case 'sockets':
          this.image(name, { section: 'sockets' });
          break;
        case 'pagemap':
          this.image(name, { section: 'memory', pid: id, quietPresence, label: (e) => (e.type === 'pagemap_head' ? 'pagemap head' : `pages at 0x${BigInt(e.msg.vaddr).toString(16)}`), normalize: (a, b) => [withoutMeta(a), withoutMeta(b)] });
          break;
        case 'pages':
          pagesFiles.push(name); // compared page by page through the memory reader, below
          break;
        case 'gpu-meta':
          this.image(name, { section: 'gpu' });
          break;
        case 'gpu-raw':
          if (A.has(name) !== B.has(name)) this.push({ section: 'gpu', op: A.has(name) ? 'removed' : 'added', path: name, label: 'GPU buffer contents' });
          break; // contents compared per buffer object, below
        case 'raw':
          this.rawFile(name);
          break;
        case 'task':
          this.image(name, { section: 'images', pid: id, quietPresence, label: () => `task ${id}` });
          break;
        default:
          this.image(name, { section: 'images', normalize: name === 'inventory.img' ? storageNeutralInventory : undefined });
      }
    }
    this.parentLink();
    const reached = new Set<number>();
    if (this.opts.memory !== false) this.memory(tasksA, tasksB, reached);
    for (const n of pagesFiles) this.pagesFile(n, reached);
    this.gpuContents();
  }

  /**
   * A pages file present on one side only is a difference even when no task maps its pages
   * (a memfd or SysV segment nobody has mapped); one no compared task reaches is compared
   * byte for byte.
   */
  private pagesFile(name: string, reached: Set<number>): void {
    const inA = this.A.has(name), inB = this.B.has(name);
    const id = Number(/^pages-(\d+)\.img$/.exec(name)![1]);
    const users = (s: ImageSet) => pagemapsUsing(s, id);
    if (inA !== inB) {
      const u = users(inA ? this.A : this.B);
      this.push({ section: 'memory', op: inA ? 'removed' : 'added', path: name, label: `page data${u.length ? ` of ${u.join(', ')}` : ''}`, [inA ? 'oldText' : 'newText']: `${fs.statSync((inA ? this.A : this.B).path(name)).size} bytes` } as Change);
      return;
    }
    if (this.opts.memory === false || reached.has(id)) return;
    // compressed on either side: the page data compared, not its storage
    const pa = users(this.A)[0], pb = users(this.B)[0];
    const compressed = (s: ImageSet, pm: string | undefined) => !!pm && isCompressedPagemap(s.pagemapFile(pm).entries);
    if (pa && pb && (compressed(this.A, pa) || compressed(this.B, pb))) return this.pageDataFile(name, pa, pb);
    const sa = fs.statSync(this.A.path(name)).size, sb = fs.statSync(this.B.path(name)).size;
    const d = compareRanges(this.A.path(name), 0, this.B.path(name), 0, Math.min(sa, sb));
    if (!d && sa === sb) return;
    const u = users(this.A);
    this.push({ section: 'memory', op: 'changed', path: name, label: `page data${u.length ? ` of ${u.join(', ')}` : ''}, mapped by no compared task`, oldText: `${sa} bytes`, newText: `${sb} bytes${d ? `, ${d.bytes} differ from byte ${d.first}` : ''}`, old: { size: sa }, new: { size: sb, bytes_differ: d?.bytes ?? 0, first: d?.first } });
  }

  /** An unmapped pages file stored compressed on either side: its page data compared. */
  private pageDataFile(name: string, pa: string, pb: string): void {
    const a = openPagesOf(this.A, pa), b = openPagesOf(this.B, pb);
    if (!a || !b) return;
    try {
      const d = comparePageData(a, b, Math.min(a.size, b.size));
      if (!d && a.size === b.size) return;
      this.push({ section: 'memory', op: 'changed', path: name, label: `page data of ${pa}, mapped by no compared task`, oldText: `${a.size} bytes of page data`, newText: `${b.size} bytes of page data${d ? `, ${d.bytes} differ from byte ${d.first}` : ''}`, old: { size: a.size }, new: { size: b.size, bytes_differ: d?.bytes ?? 0, first: d?.first } });
    } finally {
      a.close();
      b.close();
    }
  }

  /** VMAs matched by start address, then by overlap: added, removed, resized, changed. */
  private vmas(pid: number, ma: Msg, mb: Msg, p: string): void {
    const va: Msg[] = ma.vmas || [];
    const vb: Msg[] = mb.vmas || [];
    const pairs = new Map<number, number>();
    const byStart = new Map(vb.map((v, j) => [BigInt(v.start), j]));
    const usedB = new Set<number>();
    va.forEach((v, i) => {
      const j = byStart.get(BigInt(v.start));
      if (j !== undefined) { pairs.set(i, j); usedB.add(j); }
    });
    // a VMA that moved its start (a stack that grew down) pairs with the one it overlaps
    va.forEach((v, i) => {
      if (pairs.has(i)) return;
      const s = BigInt(v.start), e = BigInt(v.end);
      const hits = vb.map((w, j) => [w, j] as const).filter(([w, j]) => !usedB.has(j) && BigInt(w.start) < e && s < BigInt(w.end));
      if (hits.length === 1) { pairs.set(i, hits[0][1]); usedB.add(hits[0][1]); }
    });
    const rng = (v: Msg) => `0x${BigInt(v.start).toString(16)}-0x${BigInt(v.end).toString(16)}`;
    const desc = (set: ImageSet, v: Msg) => {
      const st = Number(v.status);
      const file = st & VMA_FILE ? fileDescription(set, 'REG', Number(v.shmid)) : undefined;
      return `${protString(Number(v.prot))} ${vmaWhat({ status: st, flags: Number(v.flags), shmid: Number(v.shmid), pgoff: 0n, file })}`;
    };
    va.forEach((v, i) => {
      const j = pairs.get(i);
      if (j === undefined) {
        this.push({ section: 'vmas', pid, op: 'removed', path: `${p}.vmas[${i}]`, label: `task ${pid} vma ${rng(v)} ${desc(this.A, v)}`, old: messageValue('vma_entry', v), oldText: `${rng(v)} ${desc(this.A, v)}` });
        return;
      }
      const w = vb[j];
      const list: FieldChange[] = [];
      diffMessages('vma_entry', v, w, `${p}.vmas[${i}]`, list);
      if (!list.length) return;
      const resized = BigInt(v.start) !== BigInt(w.start) || BigInt(v.end) !== BigInt(w.end);
      const label = `task ${pid} vma ${rng(v)}${resized ? ` resized to ${rng(w)}` : ''} ${desc(this.A, v)}`;
      for (const c of list) this.push({ ...c, section: 'vmas', pid, label });
    });
    vb.forEach((w, j) => {
      if (!usedB.has(j)) this.push({ section: 'vmas', pid, op: 'added', path: `${p}.vmas[${j}]`, label: `task ${pid} vma ${rng(w)} ${desc(this.B, w)}`, new: messageValue('vma_entry', w), newText: `${rng(w)} ${desc(this.B, w)}` });
    });
  }

  private memory(tasksA: Map<number, unknown>, tasksB: Map<number, unknown>, reached: Set<number>): void {
    for (const pid of tasksA.keys()) {
      if (!tasksB.has(pid)) continue;
      const ok = (s: ImageSet) => s.has(`mm-${pid}.img`) && s.has(`pagemap-${pid}.img`);
      if (!ok(this.A) || !ok(this.B)) continue;
      // the pages files this comparison reads (through VMAs), on both sides
      for (const s of [this.A, this.B]) {
        const r = s.memory(pid);
        const used = [`pagemap-${pid}.img`, ...r.vmas.map((v) => r.shmemName(v)).filter((n): n is string => !!n)];
        for (const n of used) {
          try {
            if (s.has(n)) reached.add(s.pagemapFile(n).pagesId);
          } catch { /* a damaged pagemap is reported through the memory reader */ }
        }
      }
      const keep = Math.max(0, (this.opts.keepPages ?? 0) - this.pages.length);
      const d = diffMemory(pid, this.A.memory(pid), this.B.memory(pid), { keepPages: keep });
      this.pages.push(...d.pages);
      this.dropped += d.dropped;
      this.compared += d.compared;
      for (const r of d.runs) {
        const rng = `0x${r.start.toString(16)}-0x${r.end.toString(16)}`;
        const what = `${r.pages} page${r.pages === 1 ? '' : 's'}${r.where ? ', ' + r.where : ''}`;
        const c: Change = { section: 'memory', pid, run: r, path: `memory[${pid}][${rng}]`, op: r.kind === 'differ' ? 'changed' : r.kind === 'only-a' ? 'removed' : 'added', label: `task ${pid} ${rng} (${what})` };
        if (r.kind === 'differ') c.newText = `${r.bytes} byte${r.bytes === 1 ? '' : 's'} differ, first at 0x${r.first!.toString(16)}`;
        else if (r.kind === 'only-a') c.oldText = `only in A (B: ${r.reason})`;
        else c.newText = `only in B (A: ${r.reason})`;
        this.push(c);
      }
    }
  }

  private gpuContents(): void {
    const hasGpu = (s: ImageSet) => s.names().some((n) => /^amdgpu-(kfd|renderD)-/.test(n));
    if (!hasGpu(this.A) || !hasGpu(this.B)) return;
    const ga = new Map(gpuRows(this.A).map((f) => [f.file, f]));
    for (const fb of gpuRows(this.B)) {
      const fa = ga.get(fb.file);
      if (!fa) continue;
      for (const bb of fb.bos) {
        const ba = fa.bos[bb.index];
        if (!ba || !ba.contentFile || !bb.contentFile || ba.contentOffset === undefined || bb.contentOffset === undefined) continue;
        const len = Number(ba.size) === Number(bb.size) ? Number(ba.size) : Math.min(Number(ba.size), Number(bb.size));
        const d = compareRanges(this.A.path(ba.contentFile), ba.contentOffset, this.B.path(bb.contentFile), bb.contentOffset, len);
        if (d) this.push({ section: 'gpu', op: 'changed', path: `${fb.file}.bo_entries[${bb.index}].contents`, label: `${fb.kind} BO #${bb.index} (handle ${bb.handle})`, newText: `${d.bytes} bytes differ, first at +0x${d.first.toString(16)} (${bb.contentFile})`, old: { file: ba.contentFile, offset: ba.contentOffset }, new: { file: bb.contentFile, offset: bb.contentOffset, bytes_differ: d.bytes, first: d.first } });
      }
    }
  }

  private rawFile(name: string): void {
    const inA = this.A.has(name), inB = this.B.has(name);
    if (inA !== inB) {
      this.push({ section: 'images', op: inA ? 'removed' : 'added', path: name, label: rawImageKind(name) });
      return;
    }
    const sa = fs.statSync(this.A.path(name)).size, sb = fs.statSync(this.B.path(name)).size;
    const d = compareRanges(this.A.path(name), 0, this.B.path(name), 0, Math.min(sa, sb));
    if (d || sa !== sb) this.push({ section: 'images', op: 'changed', path: name, label: rawImageKind(name), oldText: `${sa} bytes`, newText: `${sb} bytes${d ? `, ${d.bytes} differ from byte ${d.first}` : ''}`, old: { size: sa }, new: { size: sb, bytes_differ: d?.bytes ?? 0, first: d?.first } });
  }

  private parentLink(): void {
    const link = (s: ImageSet) => {
      try {
        return fs.readlinkSync(s.path('parent'));
      } catch {
        return undefined;
      }
    };
    const la = link(this.A), lb = link(this.B);
    if (la === lb) return;
    this.push({ section: 'images', op: la === undefined ? 'added' : lb === undefined ? 'removed' : 'changed', path: 'parent', label: 'parent link (incremental dump)', old: la, new: lb, oldText: la, newText: lb });
  }
}

/** pagemap images of a set whose pages live in pages-<id>.img */
/** The first differing byte and the number of differing bytes of two page sources, up to n. */
function comparePageData(a: PageSource, b: PageSource, n: number): { first: number; bytes: number } | undefined {
  const CHUNK = 1 << 20;
  const ba = Buffer.alloc(Math.min(CHUNK, n)), bb = Buffer.alloc(Math.min(CHUNK, n));
  let first = -1, bytes = 0;
  for (let off = 0; off < n; off += CHUNK) {
    const len = Math.min(CHUNK, n - off);
    a.read(off, ba, 0, len);
    b.read(off, bb, 0, len);
    for (let i = 0; i < len; i++) if (ba[i] !== bb[i]) {
      if (first < 0) first = off + i;
      bytes++;
    }
  }
  return first < 0 ? undefined : { first, bytes };
}

function pagemapsUsing(set: ImageSet, id: number): string[] {
  return set.names().filter((n) => {
    if (!/^pagemap-(shmem-)?\d+\.img$/.test(n)) return false;
    try {
      return set.pagemapFile(n).pagesId === id;
    } catch {
      return false;
    }
  });
}

function byNumber(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Differing bytes of two file ranges, read in bounded blocks; undefined when equal. */
export function compareRanges(fa: string, offA: number, fb: string, offB: number, len: number): { bytes: number; first: number } | undefined {
  const BLK = 1 << 20;
  const a = Buffer.alloc(BLK), b = Buffer.alloc(BLK);
  const da = fs.openSync(fa, 'r'), db = fs.openSync(fb, 'r');
  let bytes = 0, first = -1;
  try {
    for (let done = 0; done < len; ) {
      const n = Math.min(BLK, len - done);
      const ga = readFull(da, a, n, offA + done), gb = readFull(db, b, n, offB + done);
      const m = Math.min(ga, gb);
      if (a.compare(b, 0, m, 0, m) !== 0) {
        for (let i = 0; i < m; i++) if (a[i] !== b[i]) { if (first < 0) first = done + i; bytes++; }
      }
      if (ga !== gb || m < n) {
        if (first < 0) first = done + m;
        bytes += Math.max(ga, gb) - m + (len - done - n);
        break;
      }
      done += n;
    }
  } finally {
    fs.closeSync(da);
    fs.closeSync(db);
  }
  return bytes ? { bytes, first } : undefined;
}

function readFull(fd: number, buf: Buffer, n: number, pos: number): number {
  let got = 0;
  while (got < n) {
    const k = readFd(fd, buf, got, n - got, pos + got);
    if (k === 0) break;
    got += k;
  }
  return got;
}

/** Compares two image sets. Throws ImageError/ImageSetError when an image cannot be read. */
export function diffSets(dirA: string, dirB: string, opts: SetDiffOptions & { pageSize?: number } = {}): SetDiff {
  const A = new ImageSet(dirA, { pageSize: opts.pageSize });
  const B = new ImageSet(dirB, { pageSize: opts.pageSize });
  try {
    const d = new Differ(A, B, opts);
    d.run();
    const order = new Map(SECTIONS.map((s, i) => [s, i]));
    const changes = d.changes.map((c, i) => [c, i] as const).sort((x, y) => order.get(x[0].section)! - order.get(y[0].section)! || x[1] - y[1]).map(([c]) => c);
    return { a: path.resolve(dirA), b: path.resolve(dirB), changes, pages: d.pages, droppedPages: d.dropped, comparedPages: d.compared };
  } finally {
    A.close();
    B.close();
  }
}
