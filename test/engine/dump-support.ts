// Helpers of the dump tests beyond helpers.ts: reading any pagemap (task or shmem) back, and
// comparing the kinds of images we write with a CRIU 4.2 set of the corpus.
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'vitest';
import { decode, pyCritDecode, ROOT } from './helpers';

export const CORPUS = path.resolve(ROOT, '..', 'shared', 'corpus', 'criu-4.2-22-g2cf8f13ca');

/** Bytes at [addr, addr+len) of the object described by a pagemap image (undefined if not all dumped). */
export function pagemapBytes(dir: string, pagemapFile: string, addr: bigint, len: number): Buffer | undefined {
  const pm = decode(path.join(dir, pagemapFile));
  const pages = fs.readFileSync(path.join(dir, `pages-${pm[0].pages_id}.img`));
  const out = Buffer.alloc(len);
  let off = 0;
  let covered = 0;
  for (const e of pm.slice(1)) {
    const vaddr = BigInt(e.vaddr);
    const bytes = Number(e.nr_pages ?? e.compat_nr_pages) * 4096;
    const lo = vaddr > addr ? vaddr : addr;
    const end = vaddr + BigInt(bytes);
    const hi = end < addr + BigInt(len) ? end : addr + BigInt(len);
    if (lo < hi) {
      pages.copy(out, Number(lo - addr), off + Number(lo - vaddr), off + Number(hi - vaddr));
      covered += Number(hi - lo);
    }
    if ((Number(e.flags ?? 4) & 4) !== 0) off += bytes;
  }
  return covered === len ? out : undefined;
}

/** Image names with numbers replaced by N (core-N.img, pagemap-shmem-N.img, ...). */
export function imageKinds(dir: string): string[] {
  return [...new Set(fs.readdirSync(dir).filter((n) => n.endsWith('.img') || n === 'stats-dump').map((n) => n.replace(/\d+/g, 'N')))].sort();
}

/** Every image decodes with our crit and, where installed, with Debian's. */
export function checkAllImagesDecode(dir: string): string[] {
  const names = fs.readdirSync(dir).sort();
  for (const n of names) {
    if (/^pages-\d+\.img$/.test(n)) continue;
    expect(() => decode(path.join(dir, n)), n).not.toThrow();
    const py = pyCritDecode(path.join(dir, n));
    if (py) expect(py.ok, `/usr/bin/crit decode ${n}: ${py.err}`).toBe(true);
  }
  return names;
}

export interface MapsEntry {
  start: bigint;
  end: bigint;
  perms: string;
  dev: string;
  inode: number;
  name: string;
}

export function mapsOf(pid: number): MapsEntry[] {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ (\S+) (\d+)\s*(.*)$/.exec(l)!;
      return { start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), perms: m[3], dev: m[4], inode: Number(m[5]), name: m[6] };
    });
}

/** fd number -> [fdinfo entry, files.img entry] of a task. */
export function fdTable(dir: string, filesId: number): Map<number, [any, any]> {
  const files = decode(path.join(dir, 'files.img'));
  const fdinfo = decode(path.join(dir, `fdinfo-${filesId}.img`));
  return new Map(fdinfo.map((f) => [f.fd, [f, files.find((e) => e.id === f.id)]]));
}
