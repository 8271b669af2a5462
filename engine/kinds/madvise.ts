// VMA advice and the mmap flags smaps reveals, both halves. Dump: smaps' VmFlags give the
// madvise hints (vma_entry.madv, a mask of 1 << MADV_*) and the mmap flags that made the area
// (vma_entry.flags: MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE, MAP_DROPPABLE), as CRIU 4.2 records
// them. A droppable area's pages are not saved (the kernel may drop them at any time; CRIU skips
// them too), and its type is MAP_DROPPABLE instead of MAP_PRIVATE. Restore: the advice is given
// once every task of the tree exists, so that MADV_DONTFORK and MADV_WIPEONFORK cannot act on the
// forks that build the tree (each child's memory is its own dumped contents), and a failing
// madvise fails the restore.
import type { Msg } from '../../images/codec';
import { VMA } from '../../images/flags';
import type { Ctx, Proc } from '../restore/context';
import { big, num, ImageError, TaskImage } from '../restore/imageset';
import type { Call } from '../restore/remote';
import { NR } from '../restore/sys';

export const MAP_PRIVATE = 0x2;
export const MAP_DROPPABLE = 0x08;
const MAP_TYPE = 0x0f;

/** VmFlags mnemonics -> MADV_* numbers */
const MADV_OF_VMFLAG: Record<string, number> = { rr: 1, sr: 2, dc: 10, mg: 12, hg: 14, nh: 15, dd: 16, wf: 18 };
/** VmFlags mnemonics -> the mmap flags that made them */
const MAP_OF_VMFLAG: Record<string, number> = { gd: 0x100, lo: 0x2000, nr: 0x4000, dp: MAP_DROPPABLE };
/** every advice bit restore gives back (anything else in vma_entry.madv is refused) */
const KNOWN_MADV = Object.values(MADV_OF_VMFLAG).reduce((m, b) => m | (1n << BigInt(b)), 0n);

export interface VmaAdvice {
  /** vma_entry.madv */
  madv: bigint;
  /** mmap flags to OR into vma_entry.flags */
  mapFlags: number;
  /** MAP_DROPPABLE: replaces MAP_PRIVATE, pages not saved */
  droppable: boolean;
}

/** Dump half: what one VMA's VmFlags say. */
export function vmaAdvice(vmFlags: Set<string>): VmaAdvice {
  let madv = 0n, mapFlags = 0;
  for (const f of vmFlags) {
    if (MADV_OF_VMFLAG[f] !== undefined) madv |= 1n << BigInt(MADV_OF_VMFLAG[f]);
    if (MAP_OF_VMFLAG[f] !== undefined) mapFlags |= MAP_OF_VMFLAG[f];
  }
  return { madv, mapFlags, droppable: vmFlags.has('dp') };
}

/** vma_entry.flags of an area with this advice (a droppable area is not MAP_PRIVATE). */
export function withAdviceFlags(flags: number, a: VmaAdvice): number {
  const f = flags | a.mapFlags;
  return a.droppable ? f & ~MAP_PRIVATE : f;
}

/** Restore-side check (before anything exists): advice and mapping types this engine gives back. */
export function checkAdvice(t: TaskImage): void {
  const image = `mm-${t.pid}.img`;
  ((t.mm?.vmas ?? []) as Msg[]).forEach((v, i) => {
    const unknown = big(v.madv) & ~KNOWN_MADV;
    if (unknown) throw new ImageError(image, `vmas[${i}].madv`, `advice 0x${unknown.toString(16)} at 0x${big(v.start).toString(16)} is not restored`);
    const type = num(v.flags) & MAP_TYPE;
    if (type === MAP_DROPPABLE && !(num(v.status) & VMA.ANON_PRIVATE))
      throw new ImageError(image, `vmas[${i}].flags`, `MAP_DROPPABLE at 0x${big(v.start).toString(16)} is not private anonymous memory`);
  });
}

/**
 * Restore half: madvise of every dumped VMA (injected), after every task of the tree was forked
 * and its pages written. Device VMAs get none (CRIU skips them too).
 */
export function applyAdvice(ctx: Ctx, p: Proc): void {
  const t = p.img;
  const devs = ctx.devices?.vmasOf(t.pid);
  const calls: Call[] = [];
  ((t.mm?.vmas ?? []) as Msg[]).forEach((v, i) => {
    if (num(v.status) & (VMA.VVAR | VMA.VDSO | VMA.VSYSCALL) || devs?.has(i)) return;
    const start = big(v.start), len = big(v.end) - start, madv = big(v.madv);
    for (let b = 0n; madv >> b; b++)
      if (madv & (1n << b)) calls.push({ nr: NR.madvise, args: [start, len, b], what: `madvise(0x${start.toString(16)}, ${len / 4096n} pages, ${b}) of mm-${t.pid}.img vmas[${i}]` });
  });
  p.remote.reset();
  p.remote.run(p.host, calls);
}
