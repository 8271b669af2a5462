// crit check: validate a whole images directory and say exactly where it is damaged. Every
// file's framing and required fields (through the normal reader, so offsets and entry indexes
// are the reader's), then the cross-references CRIU relies on at restore. Also the salvage
// reader behind `crit decode --salvage`. Data only; crit/commands/check.ts prints it.
import { VMA, VMA_FILE } from '../flags';
import { protString } from './vma';
import * as fs from 'fs';
import * as path from 'path';
import { ByteSource } from '../source';
import { readHeader, readEntries, Entry, ImageError, ImageHeader } from '../image';
import { magicValue, rawImageKind } from '../magic';
import { entryPages, entryFlags, PE_PARENT, PE_PRESENT } from '../imageset';
import { enumType } from '../schema';
import type { Msg } from '../codec';
import { kindByName, SINGLE_ENTRY } from './names';
import { clipText } from '../json/clip';
import { analysePagemap, isCompressedPagemap, parseMeta, hasMetaField, SCHEMA_LABEL, KIND_LZ4 } from '../memory/compressed';
import { LayoutPageSource } from '../memory/pagesource';

export interface Problem {
  /** file name inside the directory ('' for the directory itself) */
  file: string;
  offset?: number;
  entry?: number;
  what: string;
  /** notes do not make a set fail (e.g. pages files a corpus left out on purpose) */
  severity: 'error' | 'note';
}

export interface CheckReport {
  dir: string;
  problems: Problem[];
  /** files whose framing was read */
  files: number;
}

export interface CheckOptions {
  pageSize?: number;
}

/** `file: at byte N, entry K: what`, the same shape as every other crit error. */
export function problemLine(dir: string, p: Problem): string {
  const where = [p.offset !== undefined ? `at byte ${p.offset}` : '', p.entry !== undefined ? `entry ${p.entry}` : ''].filter(Boolean).join(', ');
  return `${p.file ? path.join(dir, p.file) : dir}: ${where ? where + ': ' : ''}${p.severity === 'note' ? 'note: ' : ''}${p.what}`;
}

/** Images whose entries the cross-reference checks need (others are only streamed). */
const KEEP = new Set(['INVENTORY', 'PSTREE', 'CORE', 'IDS', 'MM', 'FS', 'FDINFO', 'FILES', 'PAGEMAP', 'MEMFD_INODE', 'IPCNS_SHM', 'AMDGPU_KFD', 'AMDGPU_RENDER_NODE']);

interface Loaded {
  magic: string;
  entries: Entry[];
}

const hex = (v: bigint | number) => '0x' + v.toString(16);

class Checker {
  problems: Problem[] = [];
  images = new Map<string, Loaded>();
  /** files that exist but could not be read (their cross-references are not checked) */
  broken = new Set<string>();
  names: string[];
  files = 0;
  readonly ps: number;

  constructor(readonly dir: string, opts: CheckOptions) {
    this.ps = opts.pageSize ?? 4096;
    this.names = fs.readdirSync(dir).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  }

  err(file: string, what: string, offset?: number, entry?: number): void {
    this.problems.push({ file, offset, entry, what, severity: 'error' });
  }

  note(file: string, what: string, offset?: number, entry?: number): void {
    this.problems.push({ file, offset, entry, what, severity: 'note' });
  }

  has(name: string): boolean {
    return this.names.includes(name) || this.images.has(name);
  }

  img(name: string): Loaded | undefined {
    return this.images.get(name);
  }

  size(name: string): number | undefined {
    try {
      return fs.statSync(path.join(this.dir, name)).size;
    } catch {
      return undefined;
    }
  }

  /** Framing, magic against name, required fields, entry counts: one file. */
  readFile(name: string): void {
    const full = path.join(this.dir, name);
    let st: fs.Stats;
    try {
      st = fs.statSync(full);
    } catch (e) {
      this.err(name, `cannot be read: ${(e as Error).message}`);
      this.broken.add(name);
      return;
    }
    if (!st.isFile()) return;
    const byName = kindByName(name);
    const raw = rawImageKind(name);
    if (raw) return; // raw data: checked against the images that describe it
    const isImage = byName || /\.img$/.test(name);
    if (!isImage) return; // logs and other companions
    this.files++;
    let src: ByteSource;
    try {
      src = ByteSource.open(full);
    } catch (e) {
      this.err(name, `cannot be opened: ${(e as Error).message}`);
      this.broken.add(name);
      return;
    }
    let index = 0;
    try {
      const hdr = readHeader(src, name);
      if (byName && hdr.magic !== byName) {
        this.err(name, `the file name says ${byName} but the magic is ${hdr.magic} (${hex(magicValue(hdr.magic) ?? 0)}): damaged magic, or a misnamed file`, hdr.head === undefined ? 0 : 4);
        this.broken.add(name);
        return;
      }
      if (byName && byName !== 'INVENTORY' && hdr.head === undefined && !hdr.magic.startsWith('AMDGPU')) {
        this.note(name, 'no head magic (a v1.0 image, or the head word is damaged)', 0);
      }
      const keep = KEEP.has(hdr.magic);
      const entries: Entry[] = [];
      let second: number | undefined;
      for (const e of readEntries(src, hdr)) {
        if (keep) entries.push(e);
        if (index === 1) second = e.offset;
        index++;
      }
      this.checkCount(name, hdr, index, second);
      if (keep) this.images.set(name, { magic: hdr.magic, entries });
    } catch (e) {
      if (!(e instanceof ImageError)) throw e;
      this.problems.push({ file: name, offset: e.offset, entry: e.entry, what: e.what, severity: 'error' });
      this.broken.add(name);
    } finally {
      src.close();
    }
  }

  private checkCount(name: string, hdr: ImageHeader, n: number, second: number | undefined): void {
    const body = hdr.head === undefined ? 4 : 8;
    if (SINGLE_ENTRY.has(hdr.magic) && n === 0) this.err(name, `${hdr.magic} images hold exactly one entry, this one has none`, body);
    if (SINGLE_ENTRY.has(hdr.magic) && n > 1) this.err(name, `${hdr.magic} images hold exactly one entry, this one has ${n} (the second starts here)`, second, 1);
    if (hdr.kind.layout === 'pagemap' && n === 0) this.err(name, 'pagemap without its pagemap_head entry', body);
  }

  run(): void {
    for (const n of this.names) this.readFile(n);
    for (const must of ['inventory.img', 'pstree.img']) if (!this.has(must)) this.err(must, 'missing: every images directory has one');
    this.tasks();
    this.treeIds();
    this.registers();
    this.sigactions();
    this.plugins();
    this.filesImage();
    this.pagemaps();
    this.shmem();
    this.parentChain();
    this.amdgpu();
  }

  first(name: string): Msg | undefined {
    return this.img(name)?.entries[0]?.msg;
  }

  /** the files.img ids (undefined when files.img is unreadable, so nothing is reported twice) */
  private fileIds?: Map<number, Entry> | null;
  fileMap(): Map<number, Entry> | undefined {
    if (this.fileIds === undefined) {
      const f = this.img('files.img');
      if (!f) this.fileIds = this.broken.has('files.img') ? null : new Map();
      else {
        this.fileIds = new Map();
        f.entries.forEach((e) => this.fileIds!.set(Number(e.msg.id), e));
      }
    }
    return this.fileIds ?? undefined;
  }

  private refFile(file: string, e: Entry | undefined, index: number | undefined, id: number, what: string): void {
    const m = this.fileMap();
    if (!m || m.has(id)) return;
    this.err(file, `${what} refers to file id ${id}, which files.img does not have`, e?.offset, index);
  }

  private tasks(): void {
    const ps = this.img('pstree.img');
    if (!ps) return;
    if (!ps.entries.length) {
      const hdrLen = this.size('pstree.img') ?? 0;
      this.err('pstree.img', 'holds no process (nothing after its magic): there is no task to restore', Math.min(hdrLen, 8));
    }
    const pids = new Map<number, number>();
    ps.entries.forEach((e, k) => {
      const pid = Number(e.msg.pid);
      if (pids.has(pid)) this.err('pstree.img', `task ${pid} is listed twice (also entry ${pids.get(pid)})`, e.offset, k);
      pids.set(pid, k);
    });
    const filesIds = new Set<number>();
    ps.entries.forEach((e, k) => {
      const pid = Number(e.msg.pid);
      const ppid = Number(e.msg.ppid);
      if (ppid !== 0 && !pids.has(ppid)) this.err('pstree.img', `task ${pid} has parent ${ppid}, which is not in the tree`, e.offset, k);
      const why = `pstree.img entry ${k} lists task ${pid}`;
      const core = `core-${pid}.img`;
      if (!this.has(core)) {
        this.err(core, `missing: ${why}`);
        return;
      }
      const state = Number(this.first(core)?.tc?.task_state);
      const zombie = state === 2 || state === 6;
      if (zombie) return; // a zombie has only its core image
      for (const tid of (e.msg.threads || []).map(Number)) if (tid !== pid && tid !== 0 && !this.has(`core-${tid}.img`)) this.err(`core-${tid}.img`, `missing: ${why} with thread ${tid}`);
      for (const k2 of ['ids', 'mm', 'pagemap', 'fs']) {
        const n = `${k2}-${pid}.img`;
        if (!this.has(n)) this.err(n, `missing: ${why}, which is not a zombie`);
      }
      const ids = this.first(`ids-${pid}.img`);
      if (ids) {
        const fd = `fdinfo-${ids.files_id}.img`;
        if (!this.has(fd)) this.err(fd, `missing: ids-${pid}.img says task ${pid} has files_id ${ids.files_id}`);
        else filesIds.add(Number(ids.files_id));
      }
      const fsm = this.img(`fs-${pid}.img`)?.entries[0];
      if (fsm) {
        this.refFile(`fs-${pid}.img`, fsm, 0, Number(fsm.msg.cwd_id), 'cwd_id');
        this.refFile(`fs-${pid}.img`, fsm, 0, Number(fsm.msg.root_id), 'root_id');
      }
      this.mm(pid);
    });
    const types = enumType('fd_types');
    for (const id of filesIds) {
      const name = `fdinfo-${id}.img`;
      const fi = this.img(name);
      if (!fi) continue;
      const fds = new Map<number, number>();
      fi.entries.forEach((e, k) => {
        const fd = Number(e.msg.fd);
        if (fds.has(fd)) this.err(name, `fd ${fd} appears twice (also entry ${fds.get(fd)})`, e.offset, k);
        fds.set(fd, k);
        const m = this.fileMap();
        const f = m?.get(Number(e.msg.id));
        if (m && !f) this.err(name, `fd ${fd} refers to file id ${e.msg.id}, which files.img does not have`, e.offset, k);
        else if (f && Number(f.msg.type) !== Number(e.msg.type)) {
          this.err(name, `fd ${fd} is of type ${types.byValue.get(Number(e.msg.type)) ?? e.msg.type} but files.img id ${e.msg.id} is ${types.byValue.get(Number(f.msg.type)) ?? f.msg.type}`, e.offset, k);
        }
      });
    }
    // images of tasks the tree does not list
    for (const n of this.names) {
      const m = /^(core|mm|pagemap|ids|fs)-(\d+)\.img$/.exec(n);
      if (!m) continue;
      const id = Number(m[2]);
      const known = m[1] === 'core' ? ps.entries.some((e) => Number(e.msg.pid) === id || (e.msg.threads || []).map(Number).includes(id)) : pids.has(id);
      if (!known) this.note(n, `not used: pstree.img lists no task ${m[1] === 'core' ? 'or thread ' : ''}${id}`);
    }
  }

  /** Tasks of the tree that have memory (not zombies), with their pstree entries. */
  private liveTasks(): { pid: number; e: Entry; k: number }[] {
    const ps = this.img('pstree.img');
    if (!ps) return [];
    return ps.entries.map((e, k) => ({ pid: Number(e.msg.pid), e, k })).filter(({ pid }) => {
      const st = Number(this.first(`core-${pid}.img`)?.tc?.task_state);
      return st !== 2 && st !== 6;
    });
  }

  /**
   * The tree's identities: a thread belongs to one task and its leader is among its threads;
   * one root; no task its own ancestor; a session named by a task of the tree is led by it;
   * a process group lies within one session. Groups and sessions led from outside the tree
   * (inherited from the root, or whose leader exited) are only notes: CRIU restores them.
   */
  private treeIds(): void {
    const ps = this.img('pstree.img');
    if (!ps || !ps.entries.length) return;
    const byPid = new Map<number, { e: Entry; k: number }>();
    ps.entries.forEach((e, k) => { if (!byPid.has(Number(e.msg.pid))) byPid.set(Number(e.msg.pid), { e, k }); });
    const owner = new Map<number, number>();
    const roots: number[] = [];
    ps.entries.forEach((e, k) => {
      const pid = Number(e.msg.pid);
      const threads: number[] = (e.msg.threads || []).map(Number);
      if (pid <= 0) this.err('pstree.img', `pid ${pid} is not a process id`, e.offset, k);
      // a zombie's thread list is [0]
      if (threads.length && !threads.includes(pid) && !threads.every((t) => t === 0)) this.err('pstree.img', `task ${pid} is not among its own threads (${threads.join(', ')})`, e.offset, k);
      if (new Set(threads).size !== threads.length) this.err('pstree.img', `task ${pid} lists a thread twice (${threads.join(', ')})`, e.offset, k);
      for (const t of threads) {
        if (t === 0) continue;
        const o = owner.get(t);
        if (o !== undefined && o !== pid) this.err('pstree.img', `thread ${t} of task ${pid} is also a thread of task ${o}`, e.offset, k);
        owner.set(t, pid);
      }
      if (Number(e.msg.ppid) === 0) roots.push(k);
      for (const [what, v] of [['pgid', Number(e.msg.pgid)], ['sid', Number(e.msg.sid)]] as const) if (v <= 0) this.err('pstree.img', `task ${pid} has ${what} ${v}`, e.offset, k);
    });
    if (roots.length > 1) this.err('pstree.img', `${roots.length} tasks have ppid 0 (entries ${roots.join(', ')}): a tree has one root`, ps.entries[roots[1]].offset, roots[1]);
    // ancestry: walking up from any task must end at the root
    ps.entries.forEach((e, k) => {
      const seen = new Set<number>([Number(e.msg.pid)]);
      for (let p = Number(e.msg.ppid); p !== 0 && byPid.has(p); p = Number(byPid.get(p)!.e.msg.ppid)) {
        if (seen.has(p)) {
          this.err('pstree.img', `task ${e.msg.pid} is its own ancestor (ppid chain ${[...seen].join(' -> ')} -> ${p})`, e.offset, k);
          break;
        }
        seen.add(p);
      }
    });
    const root = roots.length ? ps.entries[roots[0]].msg : ps.entries[0].msg;
    const groupSid = new Map<number, { sid: number; pid: number }>();
    ps.entries.forEach((e, k) => {
      const pid = Number(e.msg.pid), pgid = Number(e.msg.pgid), sid = Number(e.msg.sid);
      if (pgid <= 0 || sid <= 0) return;
      const leader = byPid.get(sid);
      if (leader && Number(leader.e.msg.sid) !== sid) this.err('pstree.img', `task ${pid} is in session ${sid}, but task ${sid} of the tree is in session ${leader.e.msg.sid} (a session leader never leaves its session)`, e.offset, k);
      else if (!leader && sid !== Number(root.sid)) this.note('pstree.img', `task ${pid} is in session ${sid}, which no task of the tree leads (its leader exited; CRIU restores the session with a helper task)`, e.offset, k);
      const g = groupSid.get(pgid);
      if (g && g.sid !== sid) this.err('pstree.img', `task ${pid} is in process group ${pgid} and session ${sid}, but task ${g.pid} of the same group is in session ${g.sid} (a process group lies within one session)`, e.offset, k);
      else if (!g) groupSid.set(pgid, { sid, pid });
      if (!byPid.has(pgid) && pgid !== Number(root.pgid)) this.note('pstree.img', `task ${pid} is in process group ${pgid}, which no task of the tree leads (its leader exited or left it)`, e.offset, k);
    });
  }

  /** VMAs of a task, sorted for lookups (undefined when its mm image is not readable). */
  private vmasOf(pid: number): { start: bigint; end: bigint; prot: number }[] | undefined {
    const mm = this.img(`mm-${pid}.img`)?.entries[0];
    if (!mm) return undefined;
    return (mm.msg.vmas || []).map((v: Msg) => ({ start: BigInt(v.start), end: BigInt(v.end), prot: Number(v.prot) })).sort((a: { start: bigint }, b: { start: bigint }) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  private where(vmas: { start: bigint; end: bigint; prot: number }[], a: bigint): { start: bigint; end: bigint; prot: number } | undefined {
    return vmas.find((v) => v.start <= a && a < v.end);
  }

  private describe(vmas: { start: bigint; end: bigint; prot: number }[], a: bigint): string {
    const v = this.where(vmas, a);
    return v ? `it is in ${hex(v.start)}-${hex(v.end)} ${protString(v.prot)}` : 'no VMA maps it';
  }

  /**
   * Every thread's registers against its task's mappings: the instruction pointer in an
   * executable VMA, the stack pointer in a writable one, the TLS base mapped. A restored
   * thread resumes exactly there.
   */
  private registers(): void {
    const ps = this.img('pstree.img');
    for (const { pid, e } of this.liveTasks()) {
      const vmas = this.vmasOf(pid);
      if (!vmas) continue;
      for (const tid of (e.msg.threads || [pid]).map(Number)) {
        const name = `core-${tid}.img`;
        const ce = this.img(name)?.entries[0];
        if (!ce) continue;
        const regs = threadRegs(ce.msg);
        if (!regs) continue;
        const who = `${tid === pid ? 'task' : `thread ${tid} of task`} ${pid}`;
        const exec = (a: bigint) => { const v = this.where(vmas, a); return !!v && (v.prot & 0x4) !== 0; };
        // an empty stack's pointer is the VMA's end: the byte below it counts
        const writable = (a: bigint) => [a, a - 1n].some((x) => { const v = this.where(vmas, x); return !!v && (v.prot & 0x2) !== 0; });
        if (!exec(regs.ip)) this.err(name, `${who}: ${regs.ipName} ${hex(regs.ip)} is not in an executable VMA of mm-${pid}.img (${this.describe(vmas, regs.ip)}): the thread would resume there`, ce.offset, 0);
        if (!writable(regs.sp)) this.err(name, `${who}: sp ${hex(regs.sp)} is not in a writable VMA of mm-${pid}.img (${this.describe(vmas, regs.sp)})`, ce.offset, 0);
        if (regs.tls !== undefined && regs.tls !== 0n && !this.where(vmas, regs.tls)) this.err(name, `${who}: ${regs.tlsName} ${hex(regs.tls)} (the thread's TLS) is not mapped in mm-${pid}.img`, ce.offset, 0);
      }
    }
    void ps;
  }

  /** Signal handlers (other than SIG_DFL and SIG_IGN) and their restorers point into executable memory. */
  private sigactions(): void {
    for (const { pid } of this.liveTasks()) {
      const vmas = this.vmasOf(pid);
      const name = `core-${pid}.img`;
      const ce = this.img(name)?.entries[0];
      if (!vmas || !ce) continue;
      const sas: Msg[] = ce.msg.tc?.sigactions || [];
      const exec = (a: bigint) => { const v = this.where(vmas, a); return !!v && (v.prot & 0x4) !== 0; };
      sas.forEach((sa, i) => {
        const sig = signalOfIndex(i);
        const h = BigInt(sa.sigaction ?? 0);
        if (h > 1n && !exec(h)) this.err(name, `task ${pid}: the handler of signal ${sig} (tc.sigactions[${i}]) is at ${hex(h)}, not in an executable VMA (${this.describe(vmas, h)})`, ce.offset, 0);
        const SA_RESTORER = 0x04000000n;
        const r = BigInt(sa.restorer ?? 0);
        if (h > 1n && BigInt(sa.flags ?? 0) & SA_RESTORER && !exec(r)) this.err(name, `task ${pid}: the restorer of signal ${sig} (tc.sigactions[${i}]) is at ${hex(r)}, not in an executable VMA (${this.describe(vmas, r)})`, ce.offset, 0);
      });
    }
  }

  /** inventory.img's plugins (CRIU >= 4.1 lists those that took part) against the plugin files present. */
  private plugins(): void {
    const inv = this.img('inventory.img')?.entries[0];
    if (!inv || inv.msg.plugins_entry === undefined) return; // an older CRIU: every plugin enabled
    const listed: string[] = inv.msg.plugins_entry.plugins || [];
    const amd = this.names.filter((n) => /^amdgpu-/.test(n));
    const lists = listed.some((p) => /^amdgpu/.test(p));
    if (amd.length && !lists) this.err('inventory.img', `the set has ${amd.length} amdgpu plugin files (${amd[0]}${amd.length > 1 ? ', ...' : ''}) but plugins_entry does not list amdgpu_plugin: restore would not require the plugin that reads them`, inv.offset, 0);
    if (lists && !amd.length) this.err('inventory.img', 'plugins_entry lists amdgpu_plugin, but the set has no amdgpu plugin files (amdgpu-kfd-*, amdgpu-renderD-*)', inv.offset, 0);
  }

  private mm(pid: number): void {
    const name = `mm-${pid}.img`;
    const e = this.img(name)?.entries[0];
    if (!e) return;
    if (e.msg.exe_file_id !== undefined) this.refFile(name, e, 0, Number(e.msg.exe_file_id), 'exe_file_id');
    const vmas: Msg[] = e.msg.vmas || [];
    const ps = BigInt(this.ps);
    let prevEnd = -1n;
    vmas.forEach((v, i) => {
      const s = BigInt(v.start), en = BigInt(v.end), st = Number(v.status);
      const at = `vma ${i} (${hex(s)}-${hex(en)})`;
      if (en <= s) this.err(name, `${at} ends before it starts`, e.offset, 0);
      if (s % ps || en % ps) this.err(name, `${at} is not aligned to the ${this.ps}-byte page size (--page-size?)`, e.offset, 0);
      if (s < prevEnd) this.err(name, `${at} overlaps the VMA before it or is out of order`, e.offset, 0);
      prevEnd = en;
      if (st & VMA_FILE) this.refFile(name, e, 0, Number(v.shmid), `${at} (file mapping)`);
    });
  }

  private filesImage(): void {
    const f = this.img('files.img');
    if (!f) return;
    const seen = new Map<number, number>();
    const memfd = this.img('memfd.img');
    f.entries.forEach((e, k) => {
      const id = Number(e.msg.id);
      if (seen.has(id)) this.err('files.img', `file id ${id} appears twice (also entry ${seen.get(id)})`, e.offset, k);
      seen.set(id, k);
      if (e.msg.memfd && e.msg.memfd.inode_id !== undefined && !this.broken.has('memfd.img')) {
        const ino = Number(e.msg.memfd.inode_id);
        if (!memfd) this.err('memfd.img', `missing: files.img entry ${k} is a memfd (inode ${ino})`);
        else if (!memfd.entries.some((m) => Number(m.msg.inode_id) === ino)) this.err('files.img', `memfd file id ${id} refers to inode ${ino}, which memfd.img does not have`, e.offset, k);
      }
    });
  }

  /** pagemap-N and pagemap-shmem-N against pages files, VMAs and the parent link. */
  private pagemaps(): void {
    const omitted = this.omittedPages();
    const users = new Map<number, string>();
    const ps = BigInt(this.ps);
    for (const [name, img] of this.images) {
      if (img.magic !== 'PAGEMAP') continue;
      const head = img.entries[0];
      if (!head) continue;
      const id = Number(head.msg.pages_id);
      if (users.has(id)) this.err(name, `pages_id ${id} is also used by ${users.get(id)}`, head.offset, 0);
      users.set(id, name);
      const task = /^pagemap-(\d+)\.img$/.exec(name);
      const vmas: Msg[] = task ? this.img(`mm-${task[1]}.img`)?.entries[0]?.msg.vmas || [] : [];
      const checkVmas = !!task && this.img(`mm-${task[1]}.img`) !== undefined;
      let total = 0;
      let prevEnd = -1n;
      let firstParent: number | undefined;
      const starts: { k: number; off: number; e: Entry }[] = [];
      let vi = 0;
      img.entries.forEach((e, k) => {
        if (k === 0) return;
        const va = BigInt(e.msg.vaddr);
        const n = entryPages(e.msg);
        const end = va + BigInt(n) * ps;
        const f = entryFlags(e.msg);
        const at = `pages ${hex(va)}-${hex(end)}`;
        if (n === 0) this.err(name, `${at}: an entry of zero pages`, e.offset, k);
        if (va % ps) this.err(name, `vaddr ${hex(va)} is not aligned to the ${this.ps}-byte page size (--page-size?)`, e.offset, k);
        if (va < prevEnd) this.err(name, `${at} overlap the entry before or are out of order (entries must ascend)`, e.offset, k);
        prevEnd = end;
        if (f & PE_PARENT && firstParent === undefined) firstParent = k;
        if (f & PE_PRESENT) {
          starts.push({ k, off: total, e });
          total += n * this.ps;
        }
        if (checkVmas) {
          // entries ascend and VMAs ascend: one forward walk; a range may span adjacent VMAs
          while (vi < vmas.length && BigInt(vmas[vi].end) <= va) vi++;
          let a = va;
          let j = vi;
          while (a < end && j < vmas.length && BigInt(vmas[j].start) <= a) {
            a = BigInt(vmas[j].end);
            j++;
          }
          if (a < end) this.err(name, `${at} lie outside every VMA of mm-${task![1]}.img (first uncovered page ${hex(a)})`, e.offset, k);
        }
      });
      if (firstParent !== undefined) {
        if (!this.names.includes('parent')) this.err(name, 'PE_PARENT entry (pages kept in the parent image), but the set has no parent link', img.entries[firstParent].offset, firstParent);
        else {
          const p = path.join(this.dir, 'parent');
          if (fs.existsSync(p) && !fs.existsSync(path.join(p, name))) this.err(name, `PE_PARENT entry, but the parent image has no ${name}`, img.entries[firstParent].offset, firstParent);
        }
      }
      const pages = `pages-${id}.img`;
      const size = this.size(pages);
      if (isCompressedPagemap(img.entries.slice(1).map((e) => e.msg))) {
        this.compressedPages(name, img, pages, size, omitted.get(pages));
        continue;
      }
      if (size === undefined) {
        if (!total) continue;
        const o = omitted.get(pages);
        if (o !== undefined) {
          this.note(pages, `left out of this set on purpose (PAGES-OMITTED.txt: ${o} bytes); ${name} accounts for ${total}`);
          if (o !== total) this.err(pages, `PAGES-OMITTED.txt says it had ${o} bytes but ${name} accounts for ${total}`);
        } else this.err(pages, `missing: ${name} has ${total / this.ps} pages of data in it`);
        continue;
      }
      if (size < total) {
        const cut = starts.find((s) => s.off + entryPages(s.e.msg) * this.ps > size)!;
        this.err(pages, `file ends after ${size} bytes but ${name} accounts for ${total}: the data of entry ${cut.k} (${hex(BigInt(cut.e.msg.vaddr) + BigInt(Math.max(0, size - cut.off)))} on) and later is missing`, size);
      } else if (size > total) {
        this.err(pages, `${size - total} bytes after the last page ${name} accounts for (it accounts for ${total} of ${size})`, total);
      }
    }
    for (const n of this.names) {
      const m = /^pages-(\d+)\.img$/.exec(n);
      if (m && !users.has(Number(m[1])) && ![...this.broken].some((b) => b.startsWith('pagemap-'))) this.note(n, 'not used: no pagemap has this pages_id');
    }
  }

  /** inventory.img's compress mode (0 off, 1 per-page/block, 2 region), checked once. */
  private invCompress?: { mode: number; region?: number };
  private compressMode(): { mode: number; region?: number } {
    if (this.invCompress) return this.invCompress;
    const inv = this.img('inventory.img')?.entries[0];
    const mode = Number(inv?.msg.compress ?? 0);
    const region = inv?.msg.compress_region_size !== undefined ? Number(inv.msg.compress_region_size) : undefined;
    if (inv && mode > 2) this.err('inventory.img', `compress ${mode} is not a known mode (0 off, 1 per-page or block, 2 region)`, inv.offset, 0);
    if (inv && mode && Number(inv.msg.img_version) !== 3) this.err('inventory.img', `compress ${mode} needs img_version 3 (CRIU's fence against readers that do not know compressed pages), but it is ${inv.msg.img_version}`, inv.offset, 0);
    if (inv && mode === 2 && (!region || region % this.ps || region > 4 << 20)) this.err('inventory.img', `region mode with compress_region_size ${region ?? 'absent'} (needs a multiple of ${this.ps}, at most 4 MiB)`, inv.offset, 0);
    return (this.invCompress = { mode, region });
  }

  /**
   * A pagemap in CRIU's compressed layout: which schema it uses, every entry's metadata, the
   * block sizes against the pages file (it must end exactly where the last block does), the
   * inventory's mode, and every LZ4 block decoded to its exact size.
   */
  private compressedPages(name: string, img: Loaded, pages: string, size: number | undefined, omitted: number | undefined): void {
    const inv = this.compressMode();
    const msgs = img.entries.slice(1).map((e) => e.msg);
    const a = analysePagemap(msgs, this.ps, { pagesSize: size ?? omitted, inventoryCompress: inv.mode });
    const at = (k: number) => img.entries[k]?.offset;
    const as = a.schema ? ` (read as the ${SCHEMA_LABEL[a.schema]}${a.rejected ? `; as the ${SCHEMA_LABEL[a.rejected.schema]}, entry ${a.rejected.problem.entry}: ${a.rejected.problem.what}` : ''})` : '';
    for (const p of a.problems) this.err(name, p.what + as, at(p.entry), p.entry);
    if (a.ambiguous) this.note(name, `its compression metadata reads validly in both schemas and the pages file's size does not tell them apart; read as the ${SCHEMA_LABEL[a.schema!]}`);
    if (inv.mode === 0) {
      const k = msgs.findIndex((e) => parseMeta(e, a.schema ?? 'g1') !== undefined || (Number(e.flags ?? 0) & 8));
      if (k >= 0) this.err(name, 'compressed layout (compression metadata or PE_PAYLOAD_ALIGNED), but inventory.img says compress is off', at(k + 1), k + 1);
    } else if (a.schema === 'g1' && a.layout) {
      // G1's two modes: per-page entries carry no region_pages, region entries the inventory's size
      msgs.forEach((e, i) => {
        const m = parseMeta(e, 'g1');
        if (!m || typeof m === 'string') return;
        const rp = hasMetaField(e, 8);
        if (inv.mode === 1 && rp && m.ppb !== 1) this.err(name, `region_pages ${m.ppb} in per-page mode (inventory.img compress = 1)`, at(i + 1), i + 1);
        if (inv.mode === 2 && inv.region && m.ppb * this.ps !== inv.region) this.err(name, `region_pages ${m.ppb} (${m.ppb * this.ps} bytes) but inventory.img's compress_region_size is ${inv.region}`, at(i + 1), i + 1);
      });
    }
    const l = a.layout;
    if (!l) return;
    if (size === undefined) {
      if (!l.physSize) return;
      if (omitted !== undefined) {
        this.note(pages, `left out of this set on purpose (PAGES-OMITTED.txt: ${omitted} bytes); ${name} accounts for ${l.physSize}`);
        if (omitted !== l.physSize) this.err(pages, `PAGES-OMITTED.txt says it had ${omitted} bytes but ${name} accounts for ${l.physSize}`);
      } else this.err(pages, `missing: ${name} has ${l.logicalSize / this.ps} pages of data in it (${l.physSize} bytes stored)`);
      return;
    }
    const block = (i: number) => `${name} entry ${l.entry[i]}${l.block[i] >= 0 ? `, block ${l.block[i]}` : ''}`;
    if (size < l.physSize) {
      let i = 0;
      while (i < l.count && l.phys[i] + l.stored[i] <= size) i++;
      this.err(pages, `file ends after ${size} bytes but ${name} accounts for ${l.physSize}: ${block(i)} needs bytes ${l.phys[i]}..${l.phys[i] + l.stored[i]}`, size);
    } else if (size > l.physSize) {
      this.err(pages, `${size - l.physSize} bytes after the last block ${name} accounts for (it accounts for ${l.physSize} of ${size})`, l.physSize);
    }
    // every LZ4 block must decode to exactly its size: the only way to find a damaged one
    let src: LayoutPageSource;
    try {
      src = new LayoutPageSource(path.join(this.dir, pages), l, name);
    } catch (e) {
      this.err(pages, `cannot be read: ${(e as Error).message}`);
      return;
    }
    let bad = 0;
    const buf = new Uint8Array(4 << 20);
    try {
      for (let i = 0; i < l.count; i++) {
        if (l.kind[i] !== KIND_LZ4 || l.phys[i] + l.stored[i] > size) continue;
        try {
          src.read(l.logical[i], buf, 0, l.decoded[i]);
        } catch (e) {
          if (++bad <= 20) this.err(pages, `${block(i)}: damaged ${l.stored[i]}-byte block: ${(e as Error).message.replace(/^.*\): /, '')}`, l.phys[i]);
        }
      }
    } finally {
      src.close();
    }
    if (bad > 20) this.err(pages, `${bad - 20} more damaged LZ4 blocks`);
  }

  /** PAGES-OMITTED.txt (our corpus convention): "pages-1.img   268554240 bytes". */
  private omittedPages(): Map<string, number> {
    const m = new Map<string, number>();
    try {
      const t = fs.readFileSync(path.join(this.dir, 'PAGES-OMITTED.txt'), 'utf8');
      for (const x of t.matchAll(/^\s*(pages-\d+\.img)\s+(\d+)\s+bytes/gm)) m.set(x[1], Number(x[2]));
    } catch { /* none */ }
    return m;
  }

  /** Shared memory: VMAs, memfd inodes and SysV segments whose pagemap-shmem must exist. */
  private shmem(): void {
    const need = (shmid: number, file: string, what: string, offset?: number, entry?: number) => {
      const n = `pagemap-shmem-${shmid}.img`;
      if (!this.has(n)) this.err(file, `${what}: its contents (${n}) are missing`, offset, entry);
    };
    const memfd = this.img('memfd.img');
    memfd?.entries.forEach((e, k) => { if (Number(e.msg.size) > 0) need(Number(e.msg.shmid), 'memfd.img', `memfd ${clipText(JSON.stringify(e.msg.name) ?? "")} (inode ${e.msg.inode_id})`, e.offset, k); });
    const files = this.fileMap();
    for (const [name, img] of this.images) {
      if (img.magic === 'IPCNS_SHM') img.entries.forEach((e, k) => { if (e.msg.in_pagemaps) need(Number(e.msg.desc?.id), name, `SysV segment ${e.msg.desc?.id}`, e.offset, k); });
      if (img.magic !== 'MM') continue;
      const e = img.entries[0];
      (e?.msg.vmas || []).forEach((v: Msg, i: number) => {
        const st = Number(v.status);
        const at = `vma ${i} (${hex(BigInt(v.start))}-${hex(BigInt(v.end))})`;
        if (st & VMA.MEMFD) {
          const f = files?.get(Number(v.shmid));
          if (!f || !memfd) return; // reported as a dangling file id / missing memfd.img
          const ino = f.msg.memfd?.inode_id;
          if (ino === undefined) this.err(name, `${at} is a memfd mapping but files.img id ${v.shmid} is not a memfd`, e.offset, 0);
        } else if (st & (VMA.ANON_SHARED | VMA.SYSVIPC)) need(Number(v.shmid), name, `${at} (shared memory ${v.shmid})`, e.offset, 0);
      });
    }
  }

  private parentChain(): void {
    let dir = this.dir;
    const seen = new Set<string>([fs.realpathSync(dir)]);
    for (let depth = 1; ; depth++) {
      const link = path.join(dir, 'parent');
      let target: string;
      try {
        target = fs.readlinkSync(link);
      } catch {
        if (fs.existsSync(link) && !fs.statSync(link).isDirectory()) this.err('parent', 'is not a link to the parent images directory');
        return;
      }
      const label = depth === 1 ? 'parent' : `parent (${depth} levels up: ${link})`;
      const abs = path.resolve(dir, target);
      if (!fs.existsSync(abs) || !fs.statSync(abs).isDirectory()) {
        this.err(label, `link to ${target}, which does not exist${path.isAbsolute(target) ? ' (CRIU wants relative parent links)' : ''}`);
        return;
      }
      if (!fs.existsSync(path.join(abs, 'inventory.img'))) this.err(label, `${target} has no inventory.img: not an images directory`);
      const real = fs.realpathSync(abs);
      if (seen.has(real)) {
        this.err(label, `the parent chain loops back to ${real}`);
        return;
      }
      seen.add(real);
      dir = abs;
    }
  }

  /** amdgpu plugin files: the contents files they reference exist and match their headers. */
  private amdgpu(): void {
    for (const [name, img] of this.images) {
      const e = img.entries[0];
      if (!e) continue;
      const id = /-(\d+)\.img$/.exec(name)?.[1];
      if (img.magic === 'AMDGPU_KFD') {
        const perGpu = new Map<number, number>();
        for (const b of e.msg.bo_entries || []) if (Number(b.alloc_flags) & 0x3) perGpu.set(Number(b.gpu_id), (perGpu.get(Number(b.gpu_id)) ?? 0) + Number(b.size));
        for (const [gpu, total] of perGpu) {
          const f = `amdgpu-pages-${id}-${gpu.toString(16).padStart(4, '0')}.img`;
          const size = this.size(f);
          if (size === undefined) { this.err(f, `missing: ${name} has ${total} bytes of VRAM/GTT buffers on GPU ${hex(gpu)}`); continue; }
          const header = this.u64At(f);
          if (header !== undefined && header !== BigInt(total)) this.err(f, `header says ${header} bytes but ${name}'s buffers on GPU ${hex(gpu)} add up to ${total}`, 0);
          if (size !== 8 + total) this.err(f, `holds ${size - 8} bytes of buffer contents, ${name} accounts for ${total}`, Math.min(size, 8 + total));
        }
      } else if (img.magic === 'AMDGPU_RENDER_NODE') {
        const minor = Number(e.msg.drm_render_minor);
        (e.msg.bo_entries || []).forEach((b: Msg, i: number) => {
          if (Number(b.is_import)) return;
          const f = `amdgpu-drm-pages-${id}-${minor}-${i.toString(16).padStart(4, '0')}.img`;
          const size = this.size(f);
          if (size === undefined) this.err(f, `missing: buffer object ${i} of ${name} (${b.size} bytes)`);
          else if (size !== 8 + Number(b.size)) this.err(f, `holds ${size - 8} bytes, buffer object ${i} of ${name} is ${b.size}`, Math.min(size, 8 + Number(b.size)));
        });
      }
    }
  }

  private u64At(name: string): bigint | undefined {
    try {
      const fd = fs.openSync(path.join(this.dir, name), 'r');
      const b = Buffer.alloc(8);
      const n = fs.readSync(fd, b, 0, 8, 0);
      fs.closeSync(fd);
      return n === 8 ? b.readBigUInt64LE(0) : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The registers a restored thread resumes with: x86-64 and aarch64 (others are not checked). */
function threadRegs(core: Msg): { ip: bigint; sp: bigint; tls?: bigint; ipName: string; tlsName: string } | undefined {
  const x86 = core.thread_info?.gpregs;
  if (x86 && x86.ip !== undefined && x86.sp !== undefined) {
    const compat = x86.mode === 2; // a 32-bit task's TLS is a segment, not fs_base
    return { ip: BigInt(x86.ip), sp: BigInt(x86.sp), tls: compat || x86.fs_base === undefined ? undefined : BigInt(x86.fs_base), ipName: 'ip', tlsName: 'fs_base' };
  }
  const a64 = core.ti_aarch64;
  if (a64?.gpregs && a64.gpregs.pc !== undefined) return { ip: BigInt(a64.gpregs.pc), sp: BigInt(a64.gpregs.sp), tls: a64.tls !== undefined ? BigInt(a64.tls) : undefined, ipName: 'pc', tlsName: 'tls' };
  return undefined;
}

/** CRIU dumps the actions of signals 1..64 except SIGKILL (9) and SIGSTOP (19), in order. */
function signalOfIndex(i: number): number {
  let sig = 0;
  for (let k = -1; k < i; ) {
    sig++;
    if (sig !== 9 && sig !== 19) k++;
  }
  return sig;
}

export class CheckError extends Error {}

/** Validates an images directory; problems come in file order, then cross-reference order. */
export function checkSet(dir: string, opts: CheckOptions = {}): CheckReport {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CheckError(`${dir}: not an images directory`);
  const c = new Checker(dir, opts);
  c.run();
  return { dir, problems: c.problems, files: c.files };
}

export { salvageEntries, Salvage } from './salvage';
