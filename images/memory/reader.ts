// The bytes at any virtual address of a dumped task: private pages from pagemap-<pid> and
// pages-<id>, shared anonymous, memfd and SysV memory from pagemap-shmem-<id>, pages kept in
// a parent image (PE.PARENT) from the `parent` set at any depth. Every absent range says why.
import * as fs from 'fs';
import type { ImageSet } from '../imageset';
import type { Msg } from '../codec';
import { PagemapIndex } from './pagemap-index';
import { PageSource, PageSourceError, openPageSource, LayoutPageSource } from './pagesource';
import { analysePagemap, isCompressedPagemap, SCHEMA_LABEL } from './compressed';
import { VMA, VMA_FILE, PE } from '../flags';


export interface Vma {
  index: number;
  start: bigint;
  end: bigint;
  prot: number;
  flags: number;
  status: number;
  shmid: number;
  pgoff: bigint;
  /** backing file path, if any */
  file?: string;
  msg: Msg;
}

export interface Span {
  addr: bigint;
  len: number;
  /** the bytes, when the image holds them */
  data?: Uint8Array;
  /** why the image does not hold them */
  absent?: string;
  /** where the bytes came from, e.g. "pages-1.img+0x3000" or "parent/pages-1.img+0x0" */
  origin?: string;
  /** the image holds these bytes (set by layout(), which does not read them) */
  present?: boolean;
  /**
   * absent by design, not by damage: CRIU stores no zero pages and no clean pages of mapped
   * files, so these bytes are zeros or the file's (a core writer needs to tell the two apart)
   */
  unstored?: boolean;
}

export class MemoryError extends Error {
  constructor(message: string, public addr: bigint) {
    super(message);
  }
}

interface Store {
  index: PagemapIndex;
  source?: PageSource;
  sourceName: string;
  /** why the pages file cannot be read (damaged compression metadata) */
  broken?: string;
  /** the compression schema its pagemap uses */
  schema?: string;
}

/** Where readInto finds a present span's bytes (kept off the spans callers see and compare). */
const located = new WeakMap<Span, { source: PageSource; offset: number }>();

export class MemoryReader {
  readonly vmas: Vma[];
  private privateStore?: Store | null;
  private shmemStores = new Map<string, Store | null>();
  private parentReader?: MemoryReader | null;

  constructor(private set: ImageSet, readonly pid: number) {
    this.vmas = set.vmas(pid).map((v, index) => ({
      index,
      start: BigInt(v.start),
      end: BigInt(v.end),
      prot: Number(v.prot),
      flags: Number(v.flags),
      status: Number(v.status),
      shmid: Number(v.shmid),
      pgoff: BigInt(v.pgoff ?? 0),
      file: fileOfVma(set, v),
      msg: v,
    }));
  }

  get pageSize(): number {
    return this.set.pageSize;
  }

  vmaAt(addr: bigint): Vma | undefined {
    let lo = 0;
    let hi = this.vmas.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.vmas[mid];
      if (v.start > addr) hi = mid - 1;
      else if (v.end <= addr) lo = mid + 1;
      else return v;
    }
    return undefined;
  }

  private nextVmaStart(addr: bigint): bigint | undefined {
    for (const v of this.vmas) if (v.start > addr) return v.start;
    return undefined;
  }

  private store(): Store | undefined {
    if (this.privateStore === undefined) this.privateStore = loadStore(this.set, `pagemap-${this.pid}.img`);
    return this.privateStore ?? undefined;
  }

  /** The shmem pagemap holding a shared VMA's pages, by CRIU's naming. */
  shmemName(v: Vma): string | undefined {
    if (v.status & VMA.MEMFD) {
      const f = this.set.file(v.shmid);
      const inode = f?.memfd?.inode_id;
      if (inode === undefined) return undefined;
      const ino = this.set.tryImage('memfd.img')?.entries.find((e) => Number(e.msg.inode_id) === Number(inode));
      return ino ? `pagemap-shmem-${ino.msg.shmid}.img` : undefined;
    }
    if (v.status & (VMA.ANON_SHARED | VMA.SYSVIPC)) return `pagemap-shmem-${v.shmid}.img`;
    return undefined;
  }

  private shmemStore(name: string): Store | undefined {
    if (!this.shmemStores.has(name)) this.shmemStores.set(name, loadStore(this.set, name));
    return this.shmemStores.get(name) ?? undefined;
  }

  private parent(): MemoryReader | undefined {
    if (this.parentReader === undefined) {
      const p = this.set.parent();
      this.parentReader = p && p.has(`pagemap-${this.pid}.img`) ? p.memory(this.pid) : null;
    }
    return this.parentReader ?? undefined;
  }

  /** The spans covering [addr, addr+len): bytes where the image has them, reasons where not. */
  read(addr: bigint, len: number): Span[] {
    return this.walk(addr, len, true);
  }

  /** Like read(), but only says which ranges the image holds and where: no bytes are read. */
  layout(addr: bigint, len: number): Span[] {
    return this.walk(addr, len, false);
  }

  private walk(addr: bigint, len: number, fetch: boolean): Span[] {
    const out: Span[] = [];
    const end = addr + BigInt(len);
    let a = addr;
    while (a < end) {
      const v = this.vmaAt(a);
      if (!v) {
        const next = this.nextVmaStart(a);
        const stop = next !== undefined && next < end ? next : end;
        out.push({ addr: a, len: Number(stop - a), absent: 'not mapped in this task' });
        a = stop;
        continue;
      }
      const limit = v.end < end ? v.end : end;
      a = this.readInVma(v, a, limit, out, fetch);
    }
    return out;
  }

  private readInVma(v: Vma, a: bigint, limit: bigint, out: Span[], fetch: boolean): bigint {
    const shm = this.shmemName(v);
    if (shm) {
      const st = this.shmemStore(shm);
      const delta = v.pgoff - v.start; // object offset = address + delta
      if (!st) {
        out.push({ addr: a, len: Number(limit - a), absent: `shared memory contents missing (${shm} not in the image set)` });
        return limit;
      }
      return this.fromStore(st, a, limit, delta, out, () => 'shared page never written (zero)', false, fetch);
    }
    if (v.status & (VMA.VVAR | VMA.VSYSCALL)) {
      out.push({ addr: a, len: Number(limit - a), absent: v.status & VMA.VVAR ? 'vvar: kernel data, never dumped' : 'vsyscall page: kernel text, never dumped' });
      return limit;
    }
    const st = this.store();
    const why = () => (v.file && v.status & VMA_FILE ? `clean page of ${v.file} (restored from the file, not stored)` : 'never written (zero page, not stored)');
    if (!st) {
      out.push({ addr: a, len: Number(limit - a), absent: `no pagemap-${this.pid}.img in the image set` });
      return limit;
    }
    return this.fromStore(st, a, limit, 0n, out, why, true, fetch);
  }

  /** Walks pagemap entries over [a, limit) (object offsets = address + delta). */
  private fromStore(st: Store, a: bigint, limit: bigint, delta: bigint, out: Span[], missing: () => string, parentOk: boolean, fetch: boolean): bigint {
    const idx = st.index;
    let i = idx.firstAfter(a + delta);
    while (a < limit) {
      const o = a + delta;
      if (i >= idx.length || idx.starts[i] > o) {
        const nextAddr = i < idx.length ? idx.starts[i] - delta : limit;
        const stop = nextAddr < limit ? nextAddr : limit;
        out.push({ addr: a, len: Number(stop - a), absent: missing(), unstored: true });
        a = stop;
        continue;
      }
      const entryEnd = idx.ends[i] - delta;
      // a damaged pagemap's entries may overlap or be out of order: one that ends before `a`
      // has nothing left to give here
      if (entryEnd <= a) { i++; continue; }
      const stop = entryEnd < limit ? entryEnd : limit;
      const n = Number(stop - a);
      const f = idx.flags[i];
      if (f & PE.PRESENT) {
        const off = idx.offsets[i] + Number(o - idx.starts[i]);
        const src = st.source;
        if (!src) {
          out.push({ addr: a, len: n, absent: st.broken ?? `${st.sourceName} is missing` });
        } else if (!fetch) {
          if (off + n > src.size) out.push({ addr: a, len: n, absent: `${st.sourceName} is too short (needs bytes up to ${off + n}, has ${src.size})` });
          else {
            const sp: Span = { addr: a, len: n, present: true, origin: src.describe ? src.describe(off) : `${st.sourceName}+0x${off.toString(16)}` };
            located.set(sp, { source: src, offset: off });
            out.push(sp);
          }
        } else {
          const data = new Uint8Array(n);
          try {
            src.read(off, data, 0, n);
            out.push({ addr: a, len: n, data, present: true, origin: src.describe ? src.describe(off) : `${st.sourceName}+0x${off.toString(16)}` });
          } catch (e) {
            out.push({ addr: a, len: n, absent: (e as Error).message });
          }
        }
      } else if (f & PE.PARENT && parentOk) {
        const p = this.parent();
        if (!p) out.push({ addr: a, len: n, absent: 'in the parent image, but the set has no parent link' });
        else for (const s of p.walk(a, n, fetch)) {
          const sp = { ...s, origin: s.origin ? `parent/${s.origin}` : undefined };
          const at = located.get(s);
          if (at) located.set(sp, at);
          out.push(sp);
        }
      } else if (f & PE.LAZY) {
        out.push({ addr: a, len: n, absent: 'lazy page: not in this image (served by the lazy-pages daemon at restore)' });
      } else {
        out.push({ addr: a, len: n, absent: `pagemap entry with flags ${f} holds no data` });
      }
      a = stop;
      i++;
    }
    return a;
  }

  /** Exactly the bytes of [addr, addr+len); throws at the first byte the image lacks unless zeroFill. */
  readBytes(addr: bigint, len: number, zeroFill = false): Uint8Array {
    const buf = new Uint8Array(len);
    for (const s of this.read(addr, len)) {
      if (s.data) buf.set(s.data, Number(s.addr - addr));
      else if (!zeroFill) throw new MemoryError(`0x${s.addr.toString(16)}: ${s.absent}`, s.addr);
    }
    return buf;
  }

  /**
   * Fills buf[at..at+len) with the bytes at addr straight from the page sources (no
   * intermediate copies); throws at the first byte the image lacks. For bulk scans.
   */
  readInto(addr: bigint, buf: Uint8Array, at: number, len: number): void {
    for (const s of this.layout(addr, len)) {
      if (!s.present) throw new MemoryError(`0x${s.addr.toString(16)}: ${s.absent}`, s.addr);
      const dst = at + Number(s.addr - addr);
      const loc = located.get(s);
      if (loc) loc.source.read(loc.offset, buf, dst, s.len);
      else buf.set(this.readBytes(s.addr, s.len), dst);
    }
  }

  /** How each pages file of this task (private and shmem pagemaps loaded so far) is stored. */
  storage(): { pagemap: string; pages: string; compressed: boolean; schema?: string }[] {
    this.store();
    const out: { pagemap: string; pages: string; compressed: boolean; schema?: string }[] = [];
    const add = (pm: string, st: Store | null | undefined) => {
      if (!st) return;
      out.push({ pagemap: pm, pages: st.sourceName, compressed: st.source instanceof LayoutPageSource || !!st.broken, schema: st.schema });
    };
    add(`pagemap-${this.pid}.img`, this.privateStore);
    for (const [n, st] of this.shmemStores) add(n, st);
    return out;
  }

  /** Pagemap-backed ranges (address runs the image holds bytes for), for search and stats. */
  *presentRanges(): Generator<{ start: bigint; end: bigint }> {
    for (const v of this.vmas) {
      let run: { start: bigint; end: bigint } | undefined;
      for (const s of this.layout(v.start, Number(v.end - v.start))) {
        if (!s.present) continue;
        const e = s.addr + BigInt(s.len);
        if (run && run.end === s.addr) run.end = e;
        else {
          if (run) yield run;
          run = { start: s.addr, end: e };
        }
      }
      if (run) yield run;
    }
  }

  close(): void {
    this.privateStore?.source?.close();
    for (const s of this.shmemStores.values()) s?.source?.close();
  }
}

/** The page data a pagemap's pages file serves (decoded when it is compressed), or undefined. */
export function openPagesOf(set: ImageSet, pagemapName: string): PageSource | undefined {
  const st = loadStore(set, pagemapName);
  if (st?.broken) throw new PageSourceError(st.broken);
  return st?.source;
}

function loadStore(set: ImageSet, pagemapName: string): Store | null {
  if (!set.has(pagemapName)) return null;
  const pm = set.pagemapFile(pagemapName);
  const index = new PagemapIndex(pm.entries, set.pageSize, pm.pagesId);
  const sourceName = `pages-${pm.pagesId}.img`;
  if (!set.has(sourceName)) return { index, sourceName };
  const file = set.path(sourceName);
  if (!isCompressedPagemap(pm.entries)) return { index, source: openPageSource(file), sourceName };
  // CRIU's compressed layout: which schema, and where each block is
  let pagesSize: number | undefined;
  try { pagesSize = fs.statSync(file).size; } catch { /* read errors say it */ }
  const inv = set.tryImage('inventory.img')?.entries[0]?.msg;
  const a = analysePagemap(pm.entries, set.pageSize, { pagesSize, inventoryCompress: inv?.compress !== undefined ? Number(inv.compress) : undefined });
  const schema = a.schema ? SCHEMA_LABEL[a.schema] : undefined;
  if (!a.layout) {
    const p = a.problems[0];
    const offsets = set.image(pagemapName).entries;
    const at = offsets[p.entry] ? `at byte ${offsets[p.entry].offset}, ` : '';
    return { index, sourceName, schema, broken: `${set.path(pagemapName)}: ${at}entry ${p.entry}: ${p.what}${a.schema ? ` (read as the ${SCHEMA_LABEL[a.schema]})` : ''}` };
  }
  return { index, source: new LayoutPageSource(file, a.layout, pagemapName), sourceName, schema };
}

function fileOfVma(set: ImageSet, v: Msg): string | undefined {
  const status = Number(v.status);
  if (!(status & VMA_FILE)) return undefined;
  const f = set.file(Number(v.shmid));
  if (!f) return undefined;
  if (f.reg) return f.reg.name;
  if (f.memfd) return 'memfd';
  return undefined;
}
