// Choosing VMAs of a dumped task by protection, address range and kind, so that listings,
// searches and string scans can be narrowed to, say, the writable heap or one library's text.
import { VMA, VMA_FILE } from '../flags';
import type { MemoryReader, Vma } from '../memory/reader';
import { protString } from './vma';

export class VmaFilterError extends Error {}

export const VMA_KINDS = ['stack', 'heap', 'anon', 'file', 'shared', 'vdso', 'vvar', 'vsyscall', 'memfd', 'sysv'] as const;
export type VmaKind = (typeof VMA_KINDS)[number];

const MAP_SHARED = 0x1;
const MAP_GROWSDOWN = 0x100;

/** Every kind a VMA is (a shared file mapping is both "file" and "shared"). */
export function vmaKinds(v: Pick<Vma, 'status' | 'flags'>): Set<VmaKind> {
  const st = v.status;
  const k = new Set<VmaKind>();
  if (st & VMA.STACK || v.flags & MAP_GROWSDOWN) k.add('stack');
  if (st & VMA.HEAP) k.add('heap');
  if (st & VMA.VDSO) k.add('vdso');
  if (st & VMA.VVAR) k.add('vvar');
  if (st & VMA.VSYSCALL) k.add('vsyscall');
  if (st & VMA.MEMFD) k.add('memfd');
  if (st & VMA.SYSVIPC) k.add('sysv');
  const file = !!(st & (VMA_FILE | VMA.MEMFD));
  if (file) k.add('file');
  const shared = !!(st & (VMA.ANON_SHARED | VMA.FILE_SHARED | VMA.SYSVIPC) || v.flags & MAP_SHARED);
  if (shared) k.add('shared');
  // plain anonymous memory: what maps would show without a name
  if (!file && !shared && !k.size) k.add('anon');
  return k;
}

export interface VmaFilterSpec {
  /** "r-x" (exactly), "w" or "rx" (at least these); several separated by commas */
  prot?: string;
  /** "A-B" in hex (0x optional): VMAs overlapping [A, B), and only those bytes */
  range?: string;
  /** kinds separated by commas (any of them) */
  kind?: string;
}

export interface VmaFilter {
  /** what was asked, for messages: "--kind heap --prot rw-" */
  text: string;
  test(v: Vma): boolean;
  /** the address range to keep, if --range was given */
  clip?: { start: bigint; end: bigint };
}

/** Hex with or without 0x, as /proc/PID/maps prints addresses (so "400000" is 0x400000). */
function parseHexAddr(s: string, what: string): bigint {
  const t = s.trim().replace(/_/g, '').toLowerCase().replace(/^0x/, '');
  if (/^[0-9a-f]{1,16}$/.test(t)) return BigInt('0x' + t);
  throw new VmaFilterError(`${what}: '${s}' is not a hex address`);
}

function protMatcher(spec: string): (prot: number) => boolean {
  const alts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (!alts.length) throw new VmaFilterError(`--prot: '${spec}' names no protection (e.g. r-x, rw-, w)`);
  const tests = alts.map((a) => {
    if (/^[r-][w-][x-]$/.test(a)) return (p: number) => protString(p) === a;
    if (/^(?!.*(.).*\1)[rwx]+$/.test(a)) {
      const need = (a.includes('r') ? 1 : 0) | (a.includes('w') ? 2 : 0) | (a.includes('x') ? 4 : 0);
      return (p: number) => (p & need) === need;
    }
    throw new VmaFilterError(`--prot: '${a}' is neither exact permissions like r-x nor letters like rw`);
  });
  return (p) => tests.some((t) => t(p));
}

/** A filter from the command line's --prot, --range and --kind (all must match), or undefined. */
export function parseVmaFilter(spec: VmaFilterSpec): VmaFilter | undefined {
  const tests: ((v: Vma) => boolean)[] = [];
  const words: string[] = [];
  let clip: VmaFilter['clip'];
  if (spec.prot !== undefined) {
    const m = protMatcher(spec.prot);
    tests.push((v) => m(v.prot));
    words.push(`--prot ${spec.prot}`);
  }
  if (spec.range !== undefined) {
    const m = /^\s*([^-\s]+)\s*-\s*([^-\s]+)\s*$/.exec(spec.range);
    if (!m) throw new VmaFilterError(`--range: '${spec.range}' is not START-END (e.g. 0x7f0000000000-0x7fffffffffff)`);
    const start = parseHexAddr(m[1], '--range');
    const end = parseHexAddr(m[2], '--range');
    if (end <= start) throw new VmaFilterError(`--range: ${spec.range} ends before it starts`);
    clip = { start, end };
    tests.push((v) => v.start < end && v.end > start);
    words.push(`--range ${spec.range}`);
  }
  if (spec.kind !== undefined) {
    const kinds = spec.kind.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
    const bad = kinds.filter((k) => !(VMA_KINDS as readonly string[]).includes(k));
    if (!kinds.length || bad.length) throw new VmaFilterError(`--kind: '${bad[0] ?? spec.kind}' is not one of ${VMA_KINDS.join(', ')}`);
    tests.push((v) => { const ks = vmaKinds(v); return kinds.some((k) => ks.has(k as VmaKind)); });
    words.push(`--kind ${spec.kind}`);
  }
  if (!tests.length) return undefined;
  return { text: words.join(' '), test: (v) => tests.every((t) => t(v)), clip };
}

/** The VMAs a filter keeps (all without one). */
export function filterVmas(vmas: Vma[], f: VmaFilter | undefined): Vma[] {
  return f ? vmas.filter((v) => f.test(v)) : vmas;
}

/** The address runs the image holds bytes for, inside the VMAs the filter keeps and its range. */
export function* filteredRanges(mem: MemoryReader, f: VmaFilter | undefined): Generator<{ start: bigint; end: bigint }> {
  for (const r of mem.presentRanges()) {
    if (f) {
      const v = mem.vmaAt(r.start);
      if (!v || !f.test(v)) continue;
      const start = f.clip && f.clip.start > r.start ? f.clip.start : r.start;
      const end = f.clip && f.clip.end < r.end ? f.clip.end : r.end;
      if (start >= end) continue;
      yield { start, end };
    } else yield r;
  }
}
