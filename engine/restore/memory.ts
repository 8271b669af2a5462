// The address space: the stub's own mappings torn down, [vvar]/[vvar_vclock]/[vdso] moved
// together to their dumped place (or, for a task dumped without them, out of the way and
// unmapped once its last call is done), every dumped VMA recreated, pages read into place by the
// task itself (pread64 from the pages image: one copy, no bounce through the engine), then
// the final protections and PR_SET_MM_MAP.
import * as path from 'path';
import type { Msg } from '../../images/codec';
import { readSmaps, Vma } from '../proc/maps';
import { EngineError } from '../errors';
import type { Ctx, Proc } from './context';
import { big, num, VMA, ImageError, TaskImage } from './imageset';
import { Call, SCRATCH_SIZE } from './remote';
import { receiveFds, CHUNK } from './fds';
import { native } from '../../native';
import type { DeviceMapping } from '../plugins/glue';
import { inheritedVmas, inheritedPages, InheritedVma } from '../kinds/cow-memory';
import { restoreAioRings } from '../kinds/aio';
import {
  NR, AT_FDCWD, O_RDONLY, O_RDWR, O_CLOEXEC, PROT_READ, PROT_WRITE, MAP_FIXED, MAP_ANONYMOUS, MAP_PRIVATE, MREMAP_FIXED,
  MREMAP_MAYMOVE, PR_SET_MM, PR_SET_MM_MAP, MAP_POPULATE, u64s,
} from './sys';

const MADV_DONTNEED = 4;

const MAP_FIXED_NOREPLACE = 0x100000;
const PAGE = 4096n;
/** one pread64 moves at most this much (the kernel caps a read at 2 GiB - 4 KiB) */
const MAX_READ = 1n << 30n;

export interface Range {
  start: bigint;
  end: bigint;
}

/** The dumped special block: the VVAR area and the vDSO right after it. */
export interface SpecialLayout {
  vvar: Range;
  vdso: Range;
}

/** The dumped block; undefined for a task that had unmapped both (it ends without them, see dropScratch). */
export function dumpedSpecials(t: TaskImage): SpecialLayout | undefined {
  const vmas = t.mm!.vmas as Msg[];
  const vvar = vmas.find((v) => num(v.status) & VMA.VVAR);
  const vdso = vmas.find((v) => num(v.status) & VMA.VDSO && !(num(v.status) & VMA.VVAR));
  if (!vdso && !vvar) return undefined;
  if (!vdso) throw new ImageError(`mm-${t.pid}.img`, 'vmas', 'no [vdso] area');
  if (!vvar) throw new ImageError(`mm-${t.pid}.img`, 'vmas', 'no [vvar] area (dumped on a kernel without one?)');
  return { vvar: { start: big(vvar.start), end: big(vvar.end) }, vdso: { start: big(vdso.start), end: big(vdso.end) } };
}

/** This kernel's special mappings in a task: [vvar] (+[vvar_vclock]) and [vdso]. */
export function liveSpecials(vmas: Vma[]): { vvar: Range; vclock?: Range; vdso: Range } {
  const v = vmas.find((m) => m.name === '[vvar]');
  const c = vmas.find((m) => m.name === '[vvar_vclock]');
  const d = vmas.find((m) => m.name === '[vdso]');
  if (!v || !d) throw new EngineError('this kernel maps no [vvar]/[vdso]; cannot restore the vDSO');
  return { vvar: { start: v.start, end: v.end }, vclock: c && { start: c.start, end: c.end }, vdso: { start: d.start, end: d.end } };
}

/** Refuses a dump whose vDSO block differs in shape from this kernel's. */
export function checkSpecials(image: string, dumped: SpecialLayout, live: ReturnType<typeof liveSpecials>): void {
  const liveVvarEnd = live.vclock && live.vclock.start === live.vvar.end ? live.vclock.end : live.vvar.end;
  const want = `[vvar] ${hex(liveVvarEnd - live.vvar.start)}, [vdso] ${hex(live.vdso.end - live.vdso.start)} at +${hex(live.vdso.start - live.vvar.start)}`;
  const got = `[vvar] ${hex(dumped.vvar.end - dumped.vvar.start)}, [vdso] ${hex(dumped.vdso.end - dumped.vdso.start)} at +${hex(dumped.vdso.start - dumped.vvar.start)}`;
  if (want !== got) throw new ImageError(image, 'vmas', `the vDSO layout differs from this kernel's (dump: ${got}; here: ${want})`);
}

const hex = (v: bigint) => '0x' + v.toString(16);

/** First gap of len bytes at or above 4 GiB that overlaps none of the ranges. */
export function findHole(used: Range[], len: bigint): bigint {
  const sorted = [...used].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  let at = 1n << 32n;
  for (const r of sorted) {
    if (r.end <= at) continue;
    if (r.start >= at + len + PAGE) break;
    at = (r.end + PAGE + 0xffffn) & ~0xffffn;
  }
  if (at + len > 0x7ffffffff000n) throw new EngineError('no free address range for the restore scratch area');
  return at;
}

function vmaRanges(t: TaskImage): Range[] {
  return (t.mm!.vmas as Msg[]).map((v) => ({ start: big(v.start), end: big(v.end) }));
}

function fileName(ctx: Ctx, id: number, image: string, field: string): string {
  const f = ctx.set.files.get(id);
  if (f?.memfd) return ctx.shmem.path(num(f.memfd.inode_id));
  if (!f?.reg) throw new ImageError(image, field, `file id ${id} is not a regular file in files.img`);
  return f.reg.name as string;
}

type Piece = { addr: bigint; len: bigint; off: bigint };

function addRead(out: Piece[], addr: bigint, len: bigint, off: bigint): void {
  if (len <= 0n) return;
  const last = out[out.length - 1];
  if (last && last.addr + last.len === addr && last.off + last.len === off && last.len + len <= MAX_READ) last.len += len;
  else out.push({ addr, len, off });
}

/**
 * Pieces of the page runs outside the skipped ranges (sorted, disjoint): the vDSO block (its
 * pages come from this kernel) and the areas a child keeps from its parent.
 */
function pageReads(t: TaskImage, skips: Range[]): Piece[] {
  const out: Piece[] = [];
  let k = 0;
  for (const r of t.pagemap!.runs) {
    const end = r.vaddr + r.nrPages * PAGE;
    let at = r.vaddr;
    while (k < skips.length && skips[k].end <= at) k++;
    for (let j = k; j < skips.length && skips[j].start < end && at < end; j++) {
      if (skips[j].end <= at) continue;
      if (skips[j].start > at) addRead(out, at, skips[j].start - at, r.fileOff + (at - r.vaddr));
      at = skips[j].end;
    }
    if (at < end) addRead(out, at, end - at, r.fileOff + (at - r.vaddr));
  }
  return out;
}

/** Parts of [start, end) outside the sorted, disjoint ranges. */
function outside(start: bigint, end: bigint, ranges: Range[]): Range[] {
  const out: Range[] = [];
  let at = start;
  for (const r of ranges) {
    if (r.end <= at || r.start >= end) continue;
    if (r.start > at) out.push({ start: at, end: r.start });
    at = r.end;
  }
  if (at < end) out.push({ start: at, end });
  return out;
}

/**
 * The dumped address space in p. from: the task whose restored memory p got by fork (absent for
 * a stub of its own); p then keeps the areas it shares with it copy-on-write (kinds/cow-memory).
 */
export function rebuildMemory(ctx: Ctx, p: Proc, from?: TaskImage): void {
  const t = p.img;
  const r = p.remote;
  const tid = p.host;
  const image = `mm-${t.pid}.img`;
  const mm = t.mm!;
  const vmas = mm.vmas as Msg[];
  const stub = readSmaps(p.host);
  const dumped = dumpedSpecials(t);
  const live = liveSpecials(stub);
  if (dumped) checkSpecials(image, dumped, live);

  // 1. a scratch area clear of both layouts
  const used = [...vmaRanges(t), ...stub.map((v) => ({ start: v.start, end: v.end }))];
  const scratch = findHole(used, SCRATCH_SIZE);
  const got = r.one(tid, 'mmap(scratch)', NR.mmap, scratch, SCRATCH_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (got !== scratch) throw new EngineError(`task ${t.pid}: scratch area landed at ${hex(got)}, not ${hex(scratch)}`);
  r.scratch = scratch;
  r.reset();

  // 2. the stub's own mappings go (a forked child's: all but what it keeps from its parent)
  const inherited = from ? inheritedVmas(t, from) : new Map<number, InheritedVma>();
  const kept = [...inherited.values()].sort((a, b) => (a.start < b.start ? -1 : 1));
  const keep = new Set(['[vvar]', '[vvar_vclock]', '[vdso]', '[vsyscall]']);
  r.run(tid, stub.filter((v) => !keep.has(v.name)).flatMap((v) => outside(v.start, v.end, kept)).map((v) => ({
    nr: NR.munmap, args: [v.start, v.end - v.start], what: `munmap(${hex(v.start)})`,
  })));

  // 3. the vDSO block moves as one, through a hole, to the dumped place; a task that had none
  // keeps the stub's (its calls go through it) where no dumped area will be, until dropScratch
  const base = live.vvar.start;
  const blockLen = live.vdso.end - base;
  const taken = [...vmaRanges(t), { start: scratch, end: scratch + SCRATCH_SIZE }];
  const clear = !taken.some((u) => u.start < base + blockLen && base < u.end);
  const target = dumped ? dumped.vvar.start : clear ? base : findHole([...used, ...taken], blockLen);
  if (base !== target) {
    const parts = [live.vvar, ...(live.vclock ? [live.vclock] : []), live.vdso]; // vdso last: the gadget lives in it
    const tmp = findHole([...used, { start: scratch, end: scratch + SCRATCH_SIZE }, { start: target, end: target + blockLen }], blockLen);
    for (const to of [tmp, target]) {
      const cur = to === tmp ? base : tmp;
      r.run(tid, parts.map((m) => ({
        nr: NR.mremap, args: [m.start - base + cur, m.end - m.start, m.end - m.start, MREMAP_MAYMOVE | MREMAP_FIXED, m.start - base + to],
        what: `mremap(${hex(m.start - base + cur)} -> ${hex(m.start - base + to)})`,
      })));
      r.gadget = r.gadget - cur + to;
    }
  }

  // 4. every dumped VMA; files opened once each
  const block = dumped && { start: dumped.vvar.start, end: dumped.vdso.end };
  const skips = [...kept, ...(block ? [block] : [])].sort((a, b) => (a.start < b.start ? -1 : 1));
  const pieces = pageReads(t, skips);
  // in the kept areas only the pages that differ from the parent's are written
  const cow = from && kept.length ? inheritedPages(t, from, kept) : undefined;
  if (cow) {
    ctx.cowPages.compared += Number(cow.compared);
    ctx.cowPages.shared += Number(cow.shared);
    pieces.push(...cow.writes);
    pieces.sort((a, b) => (a.addr < b.addr ? -1 : 1));
    ctx.log.debug(`task ${t.pid}: ${kept.length} areas kept from task ${from!.pid}: ${cow.shared} pages shared, ${cow.writes.reduce((n, w) => n + w.len / PAGE, 0n)} written, ${cow.drops.reduce((n, d) => n + (d.end - d.start) / PAGE, 0n)} dropped`);
  }
  const needsWrite = new Set<number>();
  {
    let j = 0;
    for (let i = 0; i < vmas.length; i++) {
      const s = big(vmas[i].start), e = big(vmas[i].end);
      while (j < pieces.length && pieces[j].addr + pieces[j].len <= s) j++;
      for (let k = j; k < pieces.length && pieces[k].addr < e; k++) if (pieces[k].addr + pieces[k].len > s) { needsWrite.add(i); break; }
    }
  }
  const fileIds: number[] = [];
  const fileWrite = new Map<number, boolean>();
  vmas.forEach((v, i) => {
    const st = num(v.status);
    if (!(st & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) || st & VMA.EXT_PLUGIN || inherited.has(i)) return;
    const id = num(v.shmid);
    if (!fileWrite.has(id)) fileIds.push(id);
    const rw = (st & VMA.FILE_SHARED) !== 0 && (num(v.prot) & PROT_WRITE) !== 0;
    fileWrite.set(id, (fileWrite.get(id) ?? false) || rw);
  });
  // a device plugin's mappings go through the files the plugin made (passed in), at its offsets
  const devs = ctx.devices?.vmasOf(t.pid) ?? new Map<number, DeviceMapping>();
  const devFds = passDeviceFds(ctx, p, devs);
  // a writable shared memfd mapping goes through the object's original description (restore/shmem)
  const memfdOf = (id: number) => ctx.set.files.get(id)?.memfd?.inode_id as number | undefined;
  const viaOriginal = fileIds.filter((id) => fileWrite.get(id) && memfdOf(id) !== undefined);
  const originals = ctx.shmem.passOriginals(ctx, p, viaOriginal.map((id) => num(memfdOf(id))));
  const opened = fileIds.filter((id) => !viaOriginal.includes(id));
  r.reset();
  const fds = r.run(tid, opened.map((id) => ({
    nr: NR.openat, args: [AT_FDCWD, r.cstr(fileName(ctx, id, image, `vmas.shmid ${id}`)), (fileWrite.get(id) ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0],
    what: `open ${fileName(ctx, id, image, '')} to map it`,
  })));
  const fdOf = new Map([...opened.map((id, i) => [id, fds[i]] as const), ...viaOriginal.map((id) => [id, originals.get(num(memfdOf(id)))!] as const)]);
  const maps: Call[] = [];
  const reprotect: Call[] = [];
  vmas.forEach((v, i) => {
    const st = num(v.status);
    if (st & (VMA.VVAR | VMA.VDSO | VMA.VSYSCALL)) return;
    const start = big(v.start), len = big(v.end) - start;
    const prot = num(v.prot);
    const wprot = needsWrite.has(i) ? prot | PROT_READ | PROT_WRITE : prot;
    const isFile = (st & (VMA.FILE_PRIVATE | VMA.FILE_SHARED)) !== 0;
    const flags = (num(v.flags) & ~MAP_POPULATE) | MAP_FIXED | (isFile ? 0 : MAP_ANONYMOUS);
    const dev = devs.get(i);
    if (st & VMA.EXT_PLUGIN && !dev) throw new ImageError(image, `vmas[${i}]`, 'a device plugin\'s mapping that no plugin restored');
    const mine = inherited.get(i);
    if (mine) {
      // kept from the parent: only its protection may need a change
      if (wprot !== mine.parentProt) maps.push({ nr: NR.mprotect, args: [start, len, wprot], what: `mprotect(${hex(start)}) of ${image} vmas[${i}]` });
    } else maps.push({
      nr: NR.mmap, args: [start, len, wprot, flags, dev ? devFds.get(i)! : isFile ? fdOf.get(num(v.shmid))! : -1, dev ? dev.pgoff : isFile ? big(v.pgoff) : 0],
      what: `mmap(${hex(start)}, ${len / PAGE} pages) of ${image} vmas[${i}]${dev ? ' through its device plugin\'s file' : ''}`,
    });
    if (wprot !== prot) reprotect.push({ nr: NR.mprotect, args: [start, len, prot], what: `mprotect(${hex(start)})` });
    // madvise hints come later, once the whole tree is forked (kinds/madvise applyAdvice)
  });
  r.run(tid, [...maps, ...[...fileIds.map((id) => fdOf.get(id)!), ...devFds.values()].map((fd) => ({ nr: NR.close, args: [fd], what: 'close' }))]);

  // 5. pages, read by the task from the image (page cache -> its memory)
  if (pieces.length) {
    r.reset();
    const pfd = r.one(tid, `open ${path.basename(t.pagemap!.pagesFile)}`, NR.openat, AT_FDCWD, r.cstr(t.pagemap!.pagesFile), O_RDONLY | O_CLOEXEC, 0);
    const res = r.run(tid, pieces.map((c) => ({ nr: NR.pread64, args: [pfd, c.addr, c.len, c.off], what: `read of ${path.basename(t.pagemap!.pagesFile)} into ${hex(c.addr)}` })), 60_000);
    res.forEach((n, i) => {
      if (n !== pieces[i].len) throw new EngineError(`${path.basename(t.pagemap!.pagesFile)}: short read at offset ${pieces[i].off} (${n} of ${pieces[i].len} bytes)`);
    });
    r.one(tid, 'close', NR.close, pfd);
  }
  // AIO contexts: made again and their rings moved onto the placeholders the pages went into (kinds/aio)
  restoreAioRings(p);
  // pages of the parent that the child had not (never touched, or dropped since the fork)
  const drops: Call[] = (cow?.drops ?? []).map((d) => ({ nr: NR.madvise, args: [d.start, d.end - d.start, MADV_DONTNEED], what: `madvise(${hex(d.start)}, MADV_DONTNEED)` }));
  r.run(tid, [...drops, ...reprotect]);

  // 6. mm fields, auxv and exe
  setMmMap(ctx, p, from);
}

function setMmMap(ctx: Ctx, p: Proc, from?: TaskImage): void {
  const t = p.img;
  const mm = t.mm!;
  const r = p.remote;
  r.reset();
  // a forked child has its parent's exe already; the kernel refuses to replace an exe that is
  // still mapped (EBUSY), so the same one is left as it is (exe_fd -1)
  const sameExe = from !== undefined && num(from.mm!.exe_file_id) === num(mm.exe_file_id);
  const exe = fileName(ctx, num(mm.exe_file_id), `mm-${t.pid}.img`, 'exe_file_id');
  const exeFd = sameExe ? -1n : r.one(p.host, `open exe ${exe}`, NR.openat, AT_FDCWD, r.cstr(exe), O_RDONLY | O_CLOEXEC, 0);
  const auxv = [...((mm.mm_saved_auxv ?? []) as unknown[]).map(big)];
  while (auxv.length >= 2 && auxv[auxv.length - 2] === 0n) auxv.splice(-2); // AT_NULL is appended below
  auxv.push(0n, 0n);
  const auxvAt = r.put(u64s(...auxv));
  const map = Buffer.alloc(104);
  const fields = ['mm_start_code', 'mm_end_code', 'mm_start_data', 'mm_end_data', 'mm_start_brk', 'mm_brk', 'mm_start_stack',
    'mm_arg_start', 'mm_arg_end', 'mm_env_start', 'mm_env_end'];
  fields.forEach((f, i) => map.writeBigUInt64LE(big(mm[f]), i * 8));
  map.writeBigUInt64LE(auxvAt, 88);
  map.writeUInt32LE(auxv.length * 8, 96);
  map.writeUInt32LE(Number(BigInt.asUintN(32, exeFd)), 100);
  const at = r.put(map);
  r.run(p.host, [
    { nr: NR.prctl, args: [PR_SET_MM, PR_SET_MM_MAP, at, 104, 0], what: `prctl(PR_SET_MM_MAP) with mm-${t.pid}.img` },
    ...(sameExe ? [] : [{ nr: NR.close, args: [exeFd], what: 'close' }]),
  ]);
}

/** The plugin's files for the device VMAs, passed into the task: vmas index -> fd there. */
function passDeviceFds(ctx: Ctx, p: Proc, devs: Map<number, DeviceMapping>): Map<number, bigint> {
  const out = new Map<number, bigint>();
  const all = [...devs];
  for (let c = 0; c < all.length; c += CHUNK) {
    const chunk = all.slice(c, c + CHUNK);
    p.remote.reset();
    native().sendFds(ctx.transport.engineFd, chunk.map(([, d]) => d.fd), Buffer.from([1]));
    receiveFds(ctx, p, chunk.length).forEach((fd, k) => out.set(chunk[k][0], BigInt(fd)));
  }
  return out;
}

/**
 * The scratch area goes last, after every injected call of the task; for a task dumped without
 * a vDSO block, then the stub's block too, [vdso] the very last (the gadget is in it: the step
 * over the final munmap ends in the kernel, before anything runs at the unmapped address).
 */
export function dropScratch(p: Proc): void {
  p.remote.one(p.host, 'munmap(scratch)', NR.munmap, p.remote.scratch, SCRATCH_SIZE);
  if (dumpedSpecials(p.img)) return;
  const live = readSmaps(p.host).filter((v) => v.name === '[vvar]' || v.name === '[vvar_vclock]' || v.name === '[vdso]');
  live.sort((a, b) => Number(a.name === '[vdso]') - Number(b.name === '[vdso]'));
  p.remote.run(p.host, live.map((v) => ({ nr: NR.munmap, args: [v.start, v.end - v.start], what: `munmap(${v.name} ${hex(v.start)})` })));
  p.remote.gadget = 0n;
}
