// An ELF core file per dumped task, laid out as the Linux kernel writes one: the ELF header,
// PT_NOTE then one PT_LOAD per VMA, the notes, padding to a page, then each VMA's bytes in
// order. Bytes come from the memory reader; pages CRIU did not store are the mapped file's
// (when it is on this host) or zeros, which are left as holes in a sparse file. The file is
// streamed in bounded chunks into a temporary file that is renamed only once complete.
import * as fs from 'fs';
import * as path from 'path';
import type { ImageSet, Task } from '../imageset';
import type { Msg } from '../codec';
import type { MemoryReader, Vma } from '../memory/reader';
import { AtomicOutput } from '../atomic';
import { VMA, VMA_FILE } from '../flags';
import { Note, noteSize, encodeNote, elfHeader, encodePhdr, extnumShdr, EHDR_SIZE, PHDR_SIZE, PT_LOAD, PT_NOTE, PF_R, PF_W, PF_X, PN_XNUM } from './elf';
import { archOf, CoredumpError } from './arch';
import { prstatus, prpsinfo, siginfo, auxv, fileNote, MappedFile, ThreadState } from './notes';

export { CoredumpError } from './arch';

const CHUNK = 1 << 20;
const MADV_DONTDUMP = 16;

export interface CoreResult {
  pid: number;
  file: string;
  arch: string;
  threads: number[];
  /** PT_LOAD segments (one per VMA) */
  segments: number;
  size: number;
  /** bytes written from the image's pages, and from mapped files on this host */
  fromImage: number;
  fromFiles: number;
  /** what could not be filled (written as zeros), one line each */
  warnings: string[];
}

const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));
const hex = (a: bigint) => `0x${a.toString(16)}`;

/** How many bytes of a VMA go into the core (the rest of p_memsz is absent). */
function dumpedBytes(v: Vma): number {
  if (v.status & (VMA.VVAR | VMA.VSYSCALL)) return 0; // kernel pages CRIU never reads
  if (!(v.prot & 7)) return 0; // PROT_NONE: guard pages and reservations hold nothing
  if (big(v.msg.madv) & (1n << BigInt(MADV_DONTDUMP))) return 0;
  return Number(v.end - v.start);
}

function segFlags(prot: number): number {
  return (prot & 1 ? PF_R : 0) | (prot & 2 ? PF_W : 0) | (prot & 4 ? PF_X : 0);
}

/** The path the kernel would list in NT_FILE for a VMA, if it maps a file. */
function mappedName(set: ImageSet, v: Vma): { name: string; hostPath?: string; size?: bigint } | undefined {
  const f = set.file(v.shmid);
  if (v.status & VMA.MEMFD) {
    const inode = f?.memfd?.inode_id;
    const ino = inode === undefined ? undefined : set.tryImage('memfd.img')?.entries.find((e) => Number(e.msg.inode_id) === Number(inode));
    return { name: `/memfd:${ino?.msg.name ?? '?'} (deleted)` };
  }
  if (!(v.status & VMA_FILE) || !f?.reg) return undefined;
  return { name: String(f.reg.name), hostPath: String(f.reg.name), size: f.reg.size !== undefined ? big(f.reg.size) : undefined };
}

/** Mapped files opened on this host, once each; a missing or different file is remembered why. */
class HostFiles {
  private open = new Map<string, { fd: number; size: number } | { why: string }>();
  get(p: string, dumpedSize?: bigint): { fd: number; size: number } | { why: string } {
    let h = this.open.get(p);
    if (!h) {
      try {
        const fd = fs.openSync(p, 'r');
        const st = fs.fstatSync(fd);
        if (!st.isFile()) { fs.closeSync(fd); h = { why: 'is not a regular file on this host' }; }
        else if (dumpedSize !== undefined && BigInt(st.size) !== dumpedSize) {
          fs.closeSync(fd);
          h = { why: `differs on this host (${st.size} bytes, ${dumpedSize} when dumped)` };
        } else h = { fd, size: st.size };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        h = { why: code === 'ENOENT' ? 'is not on this host' : `cannot be read on this host (${code ?? (e as Error).message})` };
      }
      this.open.set(p, h);
    }
    return h;
  }
  close(): void {
    for (const h of this.open.values()) if ('fd' in h) try { fs.closeSync(h.fd); } catch { /* closed */ }
  }
}

function preadFull(fd: number, buf: Uint8Array, at: number, len: number, pos: number): number {
  let got = 0;
  while (got < len) {
    const n = fs.readSync(fd, buf, at + got, len - got, pos + got);
    if (n <= 0) break;
    got += n;
  }
  return got;
}

function threadOrder(t: Task): number[] {
  return [t.pid, ...t.threads.filter((x) => x !== t.pid)];
}

function credsOf(set: ImageSet, pid: number, core: Msg): { uid: number; gid: number } {
  const c = core.thread_core?.creds ?? set.tryImage(`creds-${pid}.img`)?.entries[0]?.msg;
  return { uid: Number(c?.uid ?? 0), gid: Number(c?.gid ?? 0) };
}

function argsOf(mem: MemoryReader, mm: Msg): Uint8Array {
  const a = big(mm.mm_arg_start);
  const e = big(mm.mm_arg_end);
  if (e <= a) return new Uint8Array(0);
  const n = e - a > 79n ? 79 : Number(e - a);
  return mem.readBytes(a, n, true);
}

/** The notes of task `pid`, in the kernel's order (first thread's status, then process notes). */
function buildNotes(set: ImageSet, task: Task, mem: MemoryReader): { notes: Note[]; arch: ReturnType<typeof archOf>; files: MappedFile[] } {
  const mm = set.mm(task.pid);
  const threads: ThreadState[] = threadOrder(task).map((tid) => ({ tid, core: set.core(tid), file: set.path(`core-${tid}.img`) }));
  const main = threads[0];
  const arch = archOf(main.core, main.file);
  for (const t of threads.slice(1)) {
    const a = archOf(t.core, t.file);
    if (a !== arch) throw new CoredumpError(`${t.file}: thread of ${arch.name} task ${task.pid} says ${a.name}`);
  }
  const files: MappedFile[] = [];
  for (const v of mem.vmas) {
    const m = mappedName(set, v);
    if (m) files.push({ start: v.start, end: v.end, pgoff: v.pgoff, name: m.name });
  }
  const notes: Note[] = [];
  threads.forEach((t, i) => {
    const blocked = big(t.core.thread_core?.blk_sigset ?? (i === 0 ? t.core.tc?.blk_sigset : 0));
    notes.push(prstatus(arch, task, t, blocked));
    if (i === 0) {
      const { uid, gid } = credsOf(set, task.pid, main.core);
      notes.push(prpsinfo({ task, core: main.core, uid, gid, args: argsOf(mem, mm) }));
      notes.push(siginfo());
      notes.push(auxv(mm.mm_saved_auxv));
      notes.push(fileNote(files, set.pageSize));
    }
    notes.push(...arch.regsets(t.core, t.file));
  });
  return { notes, arch, files };
}

/** Writes the core of task `pid` of `set` to `outFile` (atomically). */
export function writeCore(set: ImageSet, pid: number, outFile: string): CoreResult {
  const task = set.task(pid);
  if (!task) throw new CoredumpError(`${set.path('pstree.img')}: no task ${pid}`);
  if (!set.has(`mm-${pid}.img`)) throw new CoredumpError(`task ${pid} has no ${set.path(`mm-${pid}.img`)}${set.isZombie(pid) ? ' (a zombie has no memory)' : ''}: no core can be written`);
  const mem = set.memory(pid);
  const { notes, arch } = buildNotes(set, task, mem);
  const page = set.pageSize;
  const vmas = mem.vmas;
  const phnum = vmas.length + 1;
  const notesOff = EHDR_SIZE + phnum * PHDR_SIZE;
  const notesLen = notes.reduce((n, x) => n + noteSize(x), 0);
  const dataOff = Math.ceil((notesOff + notesLen) / page) * page;

  const head = Buffer.alloc(dataOff);
  let off = dataOff;
  const segs = vmas.map((v) => {
    const s = { v, offset: off, filesz: dumpedBytes(v) };
    off += s.filesz;
    return s;
  });
  const end = off;
  const ext = phnum >= PN_XNUM;
  elfHeader(arch.machine, phnum, end).copy(head, 0);
  encodePhdr({ type: PT_NOTE, flags: 0, offset: notesOff, vaddr: 0n, filesz: notesLen, memsz: 0n, align: 4 }, head, EHDR_SIZE);
  segs.forEach((s, i) => encodePhdr({ type: PT_LOAD, flags: segFlags(s.v.prot), offset: s.offset, vaddr: s.v.start, filesz: s.filesz, memsz: s.v.end - s.v.start, align: page }, head, EHDR_SIZE + (i + 1) * PHDR_SIZE));
  let at = notesOff;
  for (const n of notes) at += encodeNote(n).copy(head, at);

  const result: CoreResult = { pid, file: outFile, arch: arch.name, threads: threadOrder(task), segments: vmas.length, size: end + (ext ? 64 : 0), fromImage: 0, fromFiles: 0, warnings: [] };
  const lost = new Map<string, { first: bigint; bytes: number }>();
  const note = (why: string, a: bigint, n: number) => {
    const l = lost.get(why);
    if (l) l.bytes += n;
    else lost.set(why, { first: a, bytes: n });
  };

  const host = new HostFiles();
  const out = new AtomicOutput(outFile);
  const buf = Buffer.alloc(CHUNK);
  try {
    out.write(head, 0);
    for (const s of segs) {
      const v = s.v;
      const mapped = s.filesz ? mappedName(set, v) : undefined;
      for (let done = 0; done < s.filesz; done += CHUNK) {
        const len = Math.min(CHUNK, s.filesz - done);
        const base = v.start + BigInt(done);
        let run = -1; // start (in buf) of bytes filled but not yet written
        let fill = 0;
        const flush = () => {
          if (run >= 0 && fill > run) out.write(buf.subarray(run, fill), s.offset + done + run);
          run = -1;
        };
        for (const sp of mem.layout(base, len)) {
          const i = Number(sp.addr - base);
          if (sp.present) {
            try {
              mem.readInto(sp.addr, buf, i, sp.len);
            } catch (e) {
              throw new CoredumpError(`task ${pid} ${hex(sp.addr)} (${sp.origin ?? 'pages'}): ${(e as Error).message}`);
            }
            result.fromImage += sp.len;
          } else if (sp.unstored && mapped?.hostPath) {
            const h = host.get(mapped.hostPath, mapped.size);
            if ('why' in h) { flush(); note(`${mapped.hostPath} ${h.why}`, sp.addr, sp.len); continue; }
            const pos = v.pgoff + (sp.addr - v.start);
            const got = pos < BigInt(h.size) ? preadFull(h.fd, buf, i, sp.len, Number(pos)) : 0;
            buf.fill(0, i + got, i + sp.len); // past the file's end: zeros (SIGBUS in the task)
            result.fromFiles += got;
          } else {
            flush();
            if (!sp.unstored) note(sp.absent ?? 'not in the image', sp.addr, sp.len);
            continue;
          }
          if (run < 0) run = i;
          fill = i + sp.len;
        }
        flush();
      }
    }
    if (ext) out.write(extnumShdr(phnum), end);
    else fs.ftruncateSync(out.fd, end); // trailing holes
    for (const [why, l] of lost) result.warnings.push(`${path.basename(outFile)}: ${why}: ${l.bytes} bytes from ${hex(l.first)} on are zeros in the core`);
    out.commit();
  } catch (e) {
    out.abort();
    throw e;
  } finally {
    host.close();
  }
  return result;
}

/**
 * Cores of every task of the set (or only `pid`) into outDir as core.<pid>. Zombies have no
 * memory and get no core: said in `skipped` (an error when asked for by pid).
 */
export function writeCores(set: ImageSet, outDir: string, opts: { pid?: number; onCore?: (r: CoreResult) => void } = {}): { results: CoreResult[]; skipped: string[] } {
  const tasks = set.tasks();
  const pick = opts.pid !== undefined ? tasks.filter((t) => t.pid === opts.pid) : tasks;
  if (opts.pid !== undefined && !pick.length) throw new CoredumpError(`${set.path('pstree.img')}: no task ${opts.pid} (tasks: ${tasks.map((t) => t.pid).join(', ')})`);
  fs.mkdirSync(outDir, { recursive: true });
  const results: CoreResult[] = [];
  const skipped: string[] = [];
  for (const t of pick) {
    if (opts.pid === undefined && !set.has(`mm-${t.pid}.img`) && set.isZombie(t.pid)) {
      skipped.push(`task ${t.pid} is a zombie: no memory, no core`);
      continue;
    }
    const r = writeCore(set, t.pid, path.join(outDir, `core.${t.pid}`));
    results.push(r);
    opts.onCore?.(r);
  }
  return { results, skipped };
}
