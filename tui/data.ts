// What the views show, computed once per image set from the shared query layer
// (images/imageset.ts, images/query/*) and cached; no UI here.
import * as fs from 'fs';
import { kindByName } from '../images/query/names';
import { ImageSet, entryPages, entryFlags, PE_PRESENT } from '../images/imageset';
import { rawImageKind } from '../images/magic';
import { psRows, fdsRows, memsRows, PsRow, FdRow, MemsOfTask } from '../images/query/explore';
import { socketRows, gpuRows, SocketRow, GpuFile } from '../images/query/explore-more';
import { inspectImage, InspectedImage } from '../images/query/imagefile';
import { TASK_STATES } from '../images/json/dicts';
import { checkSet, CheckReport } from '../images/query/check';

interface Cache {
  files?: FileRow[];
  info: Map<string, ImageInfo>;
  inspected: Map<string, InspectedImage>;
  ps?: PsRow[];
  fds?: Map<number, { note?: string; fds: FdRow[] }>;
  mems?: Map<number, MemsOfTask>;
  sockets?: Map<number, SocketRow[]>;
  gpu?: GpuFile[] | Error;
  resident: Map<string, number>;
  pages?: PagesSummary;
}

const caches = new WeakMap<ImageSet, Cache>();

function cache(set: ImageSet): Cache {
  let c = caches.get(set);
  if (!c) {
    c = { info: new Map(), inspected: new Map(), resident: new Map() };
    caches.set(set, c);
  }
  return c;
}

export interface FileRow {
  name: string;
  size: number;
  /** a raw file (pages, network dump): never decoded */
  raw?: string;
  dir: boolean;
}

export function fileRows(set: ImageSet): FileRow[] {
  const c = cache(set);
  if (!c.files) {
    c.files = set.names().map((name) => {
      let st: fs.Stats | undefined;
      try { st = fs.statSync(set.path(name)); } catch { /* dangling */ }
      const dir = !!st?.isDirectory();
      return { name, size: st && !dir ? st.size : 0, dir, raw: dir ? 'directory' : rawImageKind(name) ?? (name.endsWith('.img') || kindByName(name) ? undefined : 'not an image') };
    });
  }
  return c.files;
}

export interface ImageInfo {
  magic?: string;
  entries?: number;
  error?: string;
}

/** Kind and entry count of one image, decoding it on first use (lazily, for visible rows). */
export function imageInfo(set: ImageSet, name: string, compute = true): ImageInfo | undefined {
  const c = cache(set);
  let i = c.info.get(name);
  if (!i && compute) {
    try {
      const img = set.image(name);
      i = { magic: img.magic, entries: img.entries.length };
    } catch (e) {
      i = { error: (e as Error).message.replace(set.path(name) + ': ', '') };
    }
    c.info.set(name, i);
  }
  return i;
}

/** One image decoded entry by entry, kept up to where a damaged file stops. */
export function inspected(set: ImageSet, name: string): InspectedImage {
  const c = cache(set);
  let i = c.inspected.get(name);
  if (!i) {
    i = inspectImage(set.path(name));
    c.inspected.set(name, i);
  }
  return i;
}

export function processes(set: ImageSet): PsRow[] {
  const c = cache(set);
  if (!c.ps) {
    try { c.ps = psRows(set); } catch { c.ps = []; }
  }
  return c.ps;
}

export function stateName(s: number | undefined): string {
  return s === undefined ? '?' : TASK_STATES[s] ?? String(s);
}

export function taskFds(set: ImageSet, pid: number): { note?: string; fds: FdRow[] } {
  const c = cache(set);
  if (!c.fds) {
    c.fds = new Map();
    for (const t of set.tasks()) {
      try {
        const r = fdsRows(new Proxy(set, { get: (o, k) => (k === 'tasks' ? () => [t] : Reflect.get(o, k, o)) }) as ImageSet)[0];
        c.fds.set(t.pid, r);
      } catch (e) {
        c.fds.set(t.pid, { note: (e as Error).message, fds: [] });
      }
    }
  }
  return c.fds.get(pid) ?? { note: `no task ${pid}`, fds: [] };
}

export function taskVmas(set: ImageSet, pid: number): MemsOfTask {
  const c = cache(set);
  if (!c.mems) {
    c.mems = new Map();
    try {
      for (const m of memsRows(set)) c.mems.set(m.pid, m);
    } catch (e) {
      for (const t of set.tasks()) c.mems.set(t.pid, { pid: t.pid, note: (e as Error).message, vmas: [] });
    }
  }
  return c.mems.get(pid) ?? { pid, note: `no task ${pid}`, vmas: [] };
}

export function taskSockets(set: ImageSet, pid: number): SocketRow[] {
  const c = cache(set);
  if (!c.sockets) {
    c.sockets = new Map();
    try {
      for (const s of socketRows(set)) c.sockets.set(s.pid, s.sockets);
    } catch { /* no files */ }
  }
  return c.sockets.get(pid) ?? [];
}

/** Pages of [start, end) the image holds (the VMA's resident pages, as rss counts them). */
export function residentPages(set: ImageSet, pid: number, start: bigint, end: bigint): number | undefined {
  const c = cache(set);
  const k = `${pid}:${start}`;
  let v = c.resident.get(k);
  if (v === undefined) {
    if (!set.has(`pagemap-${pid}.img`)) return undefined;
    try {
      const mem = set.memory(pid);
      let bytes = 0;
      for (const s of mem.layout(start, Number(end - start))) if (s.present || (s.absent && / is missing| too short/.test(s.absent))) bytes += s.len;
      v = Math.round(bytes / set.pageSize);
    } catch {
      return undefined;
    }
    c.resident.set(k, v);
  }
  return v;
}

export function gpu(set: ImageSet): GpuFile[] | Error {
  const c = cache(set);
  if (!c.gpu) {
    try { c.gpu = gpuRows(set); } catch (e) { c.gpu = e as Error; }
  }
  return c.gpu;
}

export interface PagesSummary {
  /** pages the pagemaps say are stored in this set */
  stored: number;
  inParent: number;
  lazy: number;
  /** bytes of pages-*.img present */
  fileBytes: number;
  pagemaps: number;
}

export function pagesSummary(set: ImageSet, compute = true): PagesSummary | undefined {
  const c = cache(set);
  if (!c.pages && compute) {
    const s: PagesSummary = { stored: 0, inParent: 0, lazy: 0, fileBytes: 0, pagemaps: 0 };
    for (const f of fileRows(set)) {
      if (/^pages-\d+\.img$/.test(f.name)) s.fileBytes += f.size;
      if (!/^pagemap-/.test(f.name)) continue;
      s.pagemaps++;
      try {
        for (const e of set.pagemapFile(f.name).entries) {
          const n = entryPages(e);
          const fl = entryFlags(e);
          if (fl & PE_PRESENT) s.stored += n;
          else if (fl & 1) s.inParent += n;
          else if (fl & 2) s.lazy += n;
        }
      } catch { /* damaged: shown in the file list */ }
    }
    c.pages = s;
  }
  return c.pages;
}

const checks = new WeakMap<ImageSet, CheckReport | Error>();

/** crit check's report, computed once (it reads every file, so views ask for it after painting). */
export function checkReport(set: ImageSet, compute = true): CheckReport | Error | undefined {
  let r = checks.get(set);
  if (!r && compute) {
    try {
      r = checkSet(set.dir, { pageSize: set.pageSize });
    } catch (e) {
      r = e as Error;
    }
    checks.set(set, r);
  }
  return r;
}

/** Forget what was decoded from `name` (after an edit rewrote it). */
export function forgetImage(set: ImageSet, name: string): void {
  const c = cache(set);
  c.info.delete(name);
  c.inspected.delete(name);
  c.ps = undefined;
  c.fds = undefined;
  c.mems = undefined;
  c.sockets = undefined;
  c.gpu = undefined;
  c.pages = undefined;
  c.resident.clear();
  checks.delete(set);
  // ImageSet keeps decoded images in a private cache and has no public way to drop one yet
  (set as unknown as { cache: Map<string, unknown> }).cache.delete(name);
}
