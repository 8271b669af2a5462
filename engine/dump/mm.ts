// mm-<pid>.img: the address space as CRIU describes it, with a page-dumping policy per VMA.
import type { Msg } from '../../images/codec';
import type { Vma } from '../proc/maps';
import type { ProcStat } from '../proc/stat';
import type { FileTable } from './files';
import { UnsupportedError } from '../errors';
import { SHMEM_DEV } from './shmem';
import { deviceVma } from '../plugins/glue';
import { VMA } from '../../images/flags';
import { vmaAdvice, withAdviceFlags } from '../kinds/madvise';
import { isAioRing, aioRingEntries } from '../kinds/aio';
import { hugetlbOfDev, MAP_HUGETLB } from '../kinds/hugetlb';
import { procPath } from '../proc/read';
import * as fs from 'fs';

export { VMA };
const MAP_SHARED = 0x1, MAP_PRIVATE = 0x2, MAP_ANON = 0x20;
const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;

/** How the page dumper treats a VMA. */
export type PagePolicy = 'anon' | 'file-private' | 'vdso' | 'none' | 'shmem' | 'aio';

export interface PlannedVma {
  entry: Msg;
  start: bigint;
  end: bigint;
  policy: PagePolicy;
  readable: boolean;
  /** CRIU marks anonymous private pages lazily restorable */
  lazy: boolean;
  /** shared memory object (shmem inode) and the offset of start in it */
  shmid?: number;
  pgoff: bigint;
}

function isShmemDev(dev: string): boolean {
  return dev === SHMEM_DEV;
}

export function planVmas(pid: number, vmas: Vma[], files: FileTable): PlannedVma[] {
  const out: PlannedVma[] = [];
  for (let i = 0; i < vmas.length; i++) {
    const v = vmas[i];
    let end = v.end;
    const prot = (v.read ? PROT_READ : 0) | (v.write ? PROT_WRITE : 0) | (v.exec ? PROT_EXEC : 0);
    let flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    let status = 0;
    let shmid: bigint | number = 0;
    let policy: PagePolicy = 'anon';
    let fdflags: number | undefined;
    // madvise hints and MAP_GROWSDOWN/LOCKED/NORESERVE/DROPPABLE, from VmFlags
    const advice = vmaAdvice(v.vmFlags);
    flags = withAdviceFlags(flags, advice);
    if (v.name === '[vsyscall]') {
      flags |= MAP_ANON;
      status = VMA.VSYSCALL | VMA.ANON_PRIVATE;
      policy = 'none';
    } else if (v.name === '[vvar]' || v.name === '[vvar_vclock]') {
      // CRIU 4.2 records [vvar] and the following [vvar_vclock] as one area
      while (i + 1 < vmas.length && vmas[i + 1].name === '[vvar_vclock]' && vmas[i + 1].start === end) end = vmas[++i].end;
      flags |= MAP_ANON;
      status = VMA.REGULAR | VMA.ANON_PRIVATE | VMA.VVAR;
      policy = 'none';
    } else if (v.name === '[vdso]') {
      flags |= MAP_ANON;
      status = VMA.REGULAR | VMA.VDSO | VMA.ANON_PRIVATE;
      policy = 'vdso';
    } else if (v.inode !== 0 && hugetlbOfDev(v.dev)) {
      // hugetlb memory of the kernel's internal mounts (kinds/hugetlb): the page size goes into the flags
      const range = `${v.start.toString(16)}-${v.end.toString(16)}`;
      const who = `task ${pid} mapping ${range}`;
      if (v.name.startsWith('/SYSV')) throw new UnsupportedError(`${who}: System V shared memory ${v.name} (hugetlb) is not supported`);
      flags |= MAP_HUGETLB | hugetlbOfDev(v.dev)!.flag;
      // MAP_PRIVATE | MAP_ANONYMOUS: a file of its own that holds no page (they are the VMA's own)
      if (!v.shared && v.name === '/anon_hugepage (deleted)' && fs.statSync(procPath(pid, 'map_files', range)).blocks === 0) {
        files.shmem.privateAnonHuge(v.inode, who);
        flags |= MAP_ANON;
        status = VMA.REGULAR | VMA.ANON_PRIVATE;
      } else {
        shmid = files.memfdMapping(pid, v.name, v.start, v.end, v.inode, v.shared);
        files.shmem.noteMapping(v.inode, { pid, start: v.start, end: v.end, pgoff: v.pgoff });
        status = VMA.REGULAR | VMA.MEMFD | (v.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE);
        fdflags = v.shared && v.write ? 2 : 0;
        policy = v.shared ? 'none' : 'file-private';
      }
    } else if (v.vmFlags.has('ht')) {
      throw new UnsupportedError(`task ${pid}: hugetlb mapping ${v.name} at 0x${v.start.toString(16)} is not on an internal hugetlbfs mount of a page size this machine has (files of a mounted hugetlbfs are not supported)`);
    } else if (v.inode === 0 || v.name === '' || v.name === '[heap]' || v.name === '[stack]' || v.name.startsWith('[anon')) {
      if (v.shared) throw new UnsupportedError(`task ${pid}: shared anonymous mapping ${v.start.toString(16)} without an inode`);
      flags |= MAP_ANON;
      status = VMA.REGULAR | VMA.ANON_PRIVATE | (v.name === '[heap]' ? VMA.HEAP : 0);
      if (advice.droppable) policy = 'none'; // its pages may vanish any time: not saved
    } else if (isAioRing(pid, v)) {
      // an io_setup context's ring (kinds/aio): all its pages are saved, the context is made again
      status = VMA.AIORING;
      policy = 'aio';
      fdflags = 2; // O_RDWR: the kernel's ring file is open for reading and writing (CRIU records it)
    } else if (isShmemDev(v.dev)) {
      if (v.name.startsWith('/SYSV')) throw new UnsupportedError(`task ${pid}: System V shared memory at 0x${v.start.toString(16)} is not supported`);
      // memfd and anonymous shared memory: the file is a memfd entry, the pages go to pagemap-shmem
      shmid = files.memfdMapping(pid, v.name, v.start, v.end, v.inode, v.shared);
      status = VMA.REGULAR | VMA.MEMFD | (v.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE);
      fdflags = v.shared && v.write ? 2 : 0;
      policy = v.shared ? 'none' : 'file-private';
    } else if (deviceVma(files.plugins, pid, v.name, v.start, v.end, v.pgoff)) {
      // a device plugin owns it: metadata only, remapped at restore through UPDATE_VMA_MAP
      shmid = files.mappedFile(pid, v.name, v.start, v.end, v.dev, v.inode, v.shared);
      status = VMA.REGULAR | VMA.FILE_SHARED | VMA.EXT_PLUGIN;
      fdflags = v.write ? 2 : 0;
      policy = 'none';
    } else if (v.name.startsWith('/')) {
      shmid = files.mappedFile(pid, v.name, v.start, v.end, v.dev, v.inode, v.shared);
      status = VMA.REGULAR | (v.shared ? VMA.FILE_SHARED : VMA.FILE_PRIVATE);
      fdflags = v.shared && v.write ? 2 : 0;
      policy = v.shared ? 'none' : 'file-private';
    } else {
      throw new UnsupportedError(`task ${pid}: unsupported mapping ${v.name} at 0x${v.start.toString(16)}`);
    }
    // maps shows the file offset in bytes, as vma_entry.pgoff wants it
    const pgoff = status & (VMA.FILE_PRIVATE | VMA.FILE_SHARED) ? v.pgoff : 0n;
    const entry: Msg = { start: v.start, end, pgoff, shmid, prot, flags, status, fd: -1 };
    if (advice.madv) entry.madv = advice.madv;
    if (fdflags !== undefined) entry.fdflags = fdflags;
    out.push({
      entry, start: v.start, end, policy, readable: v.read, pgoff: v.pgoff,
      lazy: policy === 'anon' && (status & VMA.ANON_PRIVATE) !== 0 && !(flags & MAP_HUGETLB),
    });
  }
  refusePartialVdso(pid, out);
  return out;
}

/**
 * The vDSO block is restored whole (this kernel's [vvar] and [vdso] at the dumped place) or, for
 * a task that unmapped both, not at all (no VDSO/VVAR area in mm.img, as CRIU records it). A task
 * that kept only one of them cannot be given back as it was.
 */
function refusePartialVdso(pid: number, vmas: PlannedVma[]): void {
  const vdso = vmas.some((v) => (v.entry.status as number) & VMA.VDSO);
  const vvar = vmas.some((v) => (v.entry.status as number) & VMA.VVAR);
  if (vdso !== vvar) throw new UnsupportedError(`task ${pid}: has ${vdso ? '[vdso] without [vvar]' : '[vvar] without [vdso]'}; a partly unmapped vDSO block is not restored`);
}

export function mmEntry(stat: ProcStat, brk: bigint, exeFileId: number, auxv: Buffer, vmas: PlannedVma[], dumpable: number, thpDisabled: boolean): Msg {
  const saved: bigint[] = [];
  for (let o = 0; o + 16 <= auxv.length; o += 16) {
    const type = auxv.readBigUInt64LE(o);
    if (type === 0n) break; // AT_NULL ends the vector; CRIU does not keep it
    saved.push(type, auxv.readBigUInt64LE(o + 8));
  }
  return {
    mm_start_code: stat.startCode, mm_end_code: stat.endCode, mm_start_data: stat.startData, mm_end_data: stat.endData,
    mm_start_stack: stat.startStack, mm_start_brk: stat.startBrk, mm_brk: brk, mm_arg_start: stat.argStart,
    mm_arg_end: stat.argEnd, mm_env_start: stat.envStart, mm_env_end: stat.envEnd, exe_file_id: exeFileId,
    mm_saved_auxv: saved, vmas: vmas.map((v) => v.entry), dumpable, thp_disabled: thpDisabled, ...aioRingEntries(vmas),
  };
}
