// An images directory as a whole: lazily decoded, cached images and the lookups every view
// needs (tasks, per-task core/mm/ids/fs/fdinfo, files by id, pagemaps, memory). This is the
// query layer shared by crit's commands and the TUI; nothing here prints.
import * as fs from 'fs';
import * as path from 'path';
import { loadImage, LoadedImage } from './files';
import type { Msg } from './codec';
import { MemoryReader } from './memory/reader';
import { PE } from './flags';
import { ImageError } from './image';
import { kindByName } from './query/names';

export class ImageSetError extends Error {}

export interface Task {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  threads: number[];
  /** the pstree entry */
  entry: Msg;
}

export class ImageSet {
  readonly dir: string;
  private cache = new Map<string, LoadedImage | Error>();
  private filesById?: Map<number, Msg>;
  private memReaders = new Map<number, MemoryReader>();
  private parentSet?: ImageSet | null;
  private explicitPageSize?: number;
  private inferredPageSize?: number;

  constructor(dir: string, opts: { pageSize?: number } = {}) {
    this.dir = dir;
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new ImageSetError(`${dir}: not an images directory`);
    this.explicitPageSize = opts.pageSize;
  }

  /**
   * The dumping machine's page size, which no image records: given (--page-size), else 4096
   * on x86-64, s390 and arm, else the largest of 64K/16K/4K that divides every VMA boundary.
   */
  get pageSize(): number {
    if (this.explicitPageSize) return this.explicitPageSize;
    if (this.inferredPageSize === undefined) this.inferredPageSize = this.inferPageSize();
    return this.inferredPageSize;
  }

  private inferPageSize(): number {
    try {
      const tasks = this.tasks();
      const mtype = Number(this.core(tasks[0].threads[0] ?? tasks[0].pid).mtype);
      if (mtype === 1 || mtype === 2 || mtype === 5) return 4096;
      let all = 0n;
      for (const t of tasks) {
        if (!this.has(`mm-${t.pid}.img`)) continue;
        for (const v of this.vmas(t.pid)) all |= BigInt(v.start) | BigInt(v.end);
      }
      for (const ps of [65536n, 16384n]) if (all !== 0n && all % ps === 0n) return Number(ps);
    } catch {
      /* an incomplete set: fall back to the common size */
    }
    return 4096;
  }

  path(name: string): string {
    return path.join(this.dir, name);
  }

  has(name: string): boolean {
    return fs.existsSync(this.path(name));
  }

  names(): string[] {
    return fs.readdirSync(this.dir).sort();
  }

  /** A decoded image; throws ImageError for damaged files, ImageSetError for missing ones. */
  image(name: string): LoadedImage {
    const c = this.cache.get(name);
    if (c instanceof Error) throw c;
    if (c) return c;
    if (!this.has(name)) {
      const e = new ImageSetError(`${this.path(name)}: no such image`);
      this.cache.set(name, e);
      throw e;
    }
    try {
      const img = loadImage(this.path(name));
      // the views trust a file to be the kind its name says (a pagemap's entries are pagemap
      // entries): one whose magic says otherwise is damaged, as crit check reports it
      const want = kindByName(name);
      if (want && img.magic !== want) throw new ImageError(this.path(name), want === 'INVENTORY' || want.startsWith('AMDGPU') ? 0 : 4, undefined, `the file name says ${want} but the magic is ${img.magic}: damaged magic, or a misnamed file`);
      this.cache.set(name, img);
      return img;
    } catch (e) {
      this.cache.set(name, e as Error);
      throw e;
    }
  }

  tryImage(name: string): LoadedImage | undefined {
    try {
      return this.image(name);
    } catch {
      return undefined;
    }
  }

  messages(name: string): Msg[] {
    return this.image(name).entries.map((e) => e.msg);
  }

  first(name: string): Msg {
    const m = this.messages(name)[0];
    if (!m) throw new ImageSetError(`${this.path(name)}: has no entries`);
    return m;
  }

  inventory(): Msg {
    return this.first('inventory.img');
  }

  tasks(): Task[] {
    return this.messages('pstree.img').map((e) => ({
      pid: Number(e.pid),
      ppid: Number(e.ppid),
      pgid: Number(e.pgid),
      sid: Number(e.sid),
      threads: (e.threads || []).map(Number),
      entry: e,
    }));
  }

  task(pid: number): Task | undefined {
    return this.tasks().find((t) => t.pid === pid);
  }

  core(tid: number): Msg {
    return this.first(`core-${tid}.img`);
  }

  /** CRIU's task states: 1 alive, 2 dead, 3 stopped, 6 zombie. */
  taskState(pid: number): number | undefined {
    try {
      return Number(this.core(pid).tc?.task_state);
    } catch {
      return undefined;
    }
  }

  isZombie(pid: number): boolean {
    return this.taskState(pid) === 6 || this.taskState(pid) === 2;
  }

  ids(pid: number): Msg {
    return this.first(`ids-${pid}.img`);
  }

  mm(pid: number): Msg {
    return this.first(`mm-${pid}.img`);
  }

  vmas(pid: number): Msg[] {
    return this.mm(pid).vmas || [];
  }

  fsEntry(pid: number): Msg {
    return this.first(`fs-${pid}.img`);
  }

  fdinfo(pid: number): Msg[] {
    return this.messages(`fdinfo-${this.ids(pid).files_id}.img`);
  }

  /** files.img entries by id (empty when the image is absent or unreadable, as CRIT treats it). */
  files(): Map<number, Msg> {
    if (!this.filesById) {
      this.filesById = new Map();
      const img = this.tryImage('files.img');
      for (const e of img?.entries || []) if (!this.filesById.has(Number(e.msg.id))) this.filesById.set(Number(e.msg.id), e.msg);
    }
    return this.filesById;
  }

  file(id: number): Msg | undefined {
    return this.files().get(id);
  }

  /** The pagemap of a task: its pages id and entries (head removed). */
  pagemap(pid: number): { pagesId: number; entries: Msg[] } {
    return this.pagemapFile(`pagemap-${pid}.img`);
  }

  pagemapFile(name: string): { pagesId: number; entries: Msg[] } {
    const msgs = this.messages(name);
    if (!msgs.length) throw new ImageSetError(`${this.path(name)}: has no pagemap head`);
    return { pagesId: Number(msgs[0].pages_id), entries: msgs.slice(1) };
  }

  /** The set this one was dumped on top of (the `parent` link of incremental dumps). */
  parent(): ImageSet | undefined {
    if (this.parentSet === undefined) {
      const p = this.path('parent');
      this.parentSet = fs.existsSync(p) ? new ImageSet(fs.realpathSync(p), { pageSize: this.pageSize }) : null;
    }
    return this.parentSet ?? undefined;
  }

  memory(pid: number): MemoryReader {
    let r = this.memReaders.get(pid);
    if (!r) {
      r = new MemoryReader(this, pid);
      this.memReaders.set(pid, r);
    }
    return r;
  }

  close(): void {
    for (const r of this.memReaders.values()) r.close();
    this.memReaders.clear();
    this.parentSet?.close();
  }
}

/** Page count of a pagemap entry: field 5 (CRIU >= 4.2) when present, else field 2. */
export function entryPages(e: Msg): number {
  return Number(e.nr_pages ?? e.compat_nr_pages ?? 0);
}

export const PE_PARENT = PE.PARENT;
export const PE_LAZY = PE.LAZY;
export const PE_PRESENT = PE.PRESENT;

/** CRIU's normalisation of legacy entries: in_parent -> PE_PARENT, no flags -> PE_PRESENT. */
export function entryFlags(e: Msg): number {
  let f = e.flags !== undefined ? Number(e.flags) : undefined;
  if (e.in_parent) f = (f ?? 0) | PE_PARENT;
  else if (f === undefined) f = PE_PRESENT;
  return f;
}
