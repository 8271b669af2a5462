// What a VMA is, in words, for every view that names one (xray, diff, the TUI): the backing
// file (and offset), or [stack], [heap], [vdso], [vvar], shared or SysV memory, memfd, anon.
import { VMA } from '../flags';
import type { Vma } from '../memory/reader';

export function protString(prot: number): string {
  return (prot & 1 ? 'r' : '-') + (prot & 2 ? 'w' : '-') + (prot & 4 ? 'x' : '-');
}

/** "/usr/lib/libc.so.6 +0x26000", "[stack]", "[shared anon 3]", ... */
export function vmaWhat(v: Pick<Vma, 'status' | 'flags' | 'shmid' | 'pgoff' | 'file'>): string {
  const st = v.status;
  if (v.file) return v.file + (v.pgoff ? ` +0x${v.pgoff.toString(16)}` : '');
  if (st & VMA.STACK) return '[stack]';
  if (st & VMA.HEAP) return '[heap]';
  if (st & VMA.VDSO) return '[vdso]';
  if (st & VMA.VVAR) return '[vvar]';
  if (st & VMA.VSYSCALL) return '[vsyscall]';
  if (st & VMA.SYSVIPC) return `[SysV shm ${v.shmid}]`;
  if (st & VMA.MEMFD) return '[memfd]';
  if (st & VMA.ANON_SHARED) return `[shared anon ${v.shmid}]`;
  if (v.flags & 0x100) return '[stack?]'; // MAP_GROWSDOWN without the stack mark, as crit x mems says
  return '[anon]';
}

/** "VMA #3 7f00-7f10 rw- [heap]" */
export function vmaLabel(v: Vma): string {
  return `VMA #${v.index} ${v.start.toString(16)}-${v.end.toString(16)} ${protString(v.prot)} ${vmaWhat(v)}`;
}
