// crit xray's VMA filters (--prot, --range, --kind): what each kind means, how protections and
// ranges parse, and that the list, search and strings keep exactly the chosen VMAs and bytes,
// on the engine-made fixture set (its VMAs read independently from mm-15629.img).
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import { crit, ROOT } from '../helpers/cli';
import { loadMessages } from '../../images/files';
import { vmaKinds, parseVmaFilter, VmaFilterError } from '../../images/query/vmafilter';
import type { Vma } from '../../images/memory/reader';

const SET = path.join(ROOT, 'fixtures', 'sets', 'counter');
const PID = '15629';
const mm = loadMessages(path.join(SET, `mm-${PID}.img`))[0];
const vmas: { start: bigint; end: bigint; prot: number; status: number; flags: number }[] = mm.vmas.map((v: Record<string, number>) => ({
  start: BigInt(v.start), end: BigInt(v.end), prot: Number(v.prot), status: Number(v.status), flags: Number(v.flags) }));

const listed = (args: string[]) => {
  const r = crit(['xray', SET, '--pid', PID, ...args]);
  expect(r.status, r.stderr.toString()).toBe(0);
  return [...r.stdout.toString().matchAll(/^ {2}VMA #(\d+) /gm)].map((m) => Number(m[1]));
};
const hits = (args: string[]) => {
  const r = crit(['xray', SET, '--pid', PID, '--context', '0', ...args]);
  expect(r.status, r.stderr.toString()).toBe(0);
  return [...r.stdout.toString().matchAll(/^0x([0-9a-f]+) \(\d+ bytes\) in VMA #(\d+)/gm)].map((m) => ({ addr: BigInt('0x' + m[1]), vma: Number(m[2]) }));
};
const indices = (pred: (v: (typeof vmas)[number]) => boolean) => vmas.flatMap((v, i) => (pred(v) ? [i] : []));

describe('VMA kinds', () => {
  const k = (status: number, flags = 0x22) => [...vmaKinds({ status, flags })].sort();
  it('each VMA is every kind it is', () => {
    expect(k(0x21)).toEqual(['heap']);
    expect(k(0x203)).toEqual(['stack']);
    expect(k(0x201, 0x122)).toEqual(['stack']); // MAP_GROWSDOWN without CRIU's stack mark
    expect(k(0x201)).toEqual(['anon']);
    expect(k(0x9)).toEqual(['vdso']);
    expect(k(0x1001)).toEqual(['vvar']);
    expect(k(0x5)).toEqual(['vsyscall']);
    expect(k(0x41, 0x2)).toEqual(['file']);
    expect(k(0x81, 0x1)).toEqual(['file', 'shared']);
    expect(k(0x101, 0x21)).toEqual(['shared']);
    expect(k(0x401, 0x1)).toEqual(['shared', 'sysv']);
    expect(k(0x4081, 0x1)).toEqual(['file', 'memfd', 'shared']);
  });
});

describe('parsing filters', () => {
  const v = (prot: number, start = 0x1000n, end = 0x2000n) => ({ prot, start, end, status: 0x201, flags: 0x22 }) as Vma;
  it('--prot: exact with dashes, at least with letters, alternatives with commas', () => {
    const f = (p: string) => parseVmaFilter({ prot: p })!;
    expect([0, 1, 3, 5, 7].filter((p) => f('r-x').test(v(p)))).toEqual([5]);
    expect([0, 1, 3, 5, 7].filter((p) => f('w').test(v(p)))).toEqual([3, 7]);
    expect([0, 1, 3, 5, 7].filter((p) => f('rx').test(v(p)))).toEqual([5, 7]);
    expect([0, 1, 3, 5, 7].filter((p) => f('r--,rw-').test(v(p)))).toEqual([1, 3]);
    expect([0, 1, 3, 5, 7].filter((p) => f('---').test(v(p)))).toEqual([0]);
  });
  it('--range is hex as maps prints it and keeps VMAs that overlap it', () => {
    const f = parseVmaFilter({ range: '1800-0x3000' })!;
    expect(f.clip).toEqual({ start: 0x1800n, end: 0x3000n });
    expect([v(1, 0x1000n, 0x1800n), v(1, 0x1000n, 0x1801n), v(1, 0x2fffn, 0x4000n), v(1, 0x3000n, 0x4000n)].map((x) => f.test(x))).toEqual([false, true, true, false]);
  });
  it('no filter is undefined; bad ones name the option', () => {
    expect(parseVmaFilter({})).toBeUndefined();
    for (const [spec, msg] of [[{ prot: 'rwz' }, /--prot: 'rwz'/], [{ prot: 'rr' }, /--prot: 'rr'/], [{ range: '10' }, /--range: '10' is not START-END/],
      [{ range: '2000-1000' }, /ends before it starts/], [{ range: 'x-1000' }, /'x' is not a hex address/], [{ kind: 'heap,bss' }, /--kind: 'bss' is not one of/]] as const)
      expect(() => parseVmaFilter(spec as never)).toThrow(new RegExp(msg.source));
    expect(() => parseVmaFilter({ kind: '' })).toThrow(VmaFilterError);
  });
});

describe('crit xray with VMA filters', () => {
  it('the list keeps exactly the VMAs each filter chooses, and all filters must match', () => {
    expect(listed(['--kind', 'heap'])).toEqual(indices((v) => !!(v.status & 0x20)));
    expect(listed(['--prot', 'r-x'])).toEqual(indices((v) => v.prot === 5));
    expect(listed(['--prot', 'w', '--kind', 'file'])).toEqual(indices((v) => !!(v.prot & 2) && !!(v.status & 0xc0)));
    expect(listed(['--kind', 'stack,vdso'])).toEqual(indices((v) => !!(v.status & 0xa) || !!(v.flags & 0x100)));
    const [a, b] = [vmas[3].start + 16n, vmas[5].start + 1n];
    expect(listed(['--range', `${a.toString(16)}-${b.toString(16)}`])).toEqual([3, 4, 5]);
    expect(listed(['--kind', 'heap', '--prot', 'r-x'])).toEqual([]);
    const r = crit(['xray', SET, '--pid', PID, '--kind', 'heap', '--json']);
    const rows = JSON.parse(r.stdout.toString());
    expect(rows.map((x: { vma: number }) => x.vma)).toEqual(indices((v) => !!(v.status & 0x20)));
    expect(rows[0].kinds).toEqual(['heap']);
  });

  it('search and strings see only the chosen VMAs and, with --range, only its bytes', () => {
    // data_pattern (byte i = i*7+1) starts in the program's .data and runs on into the anonymous VMA after it
    const pat = ['--hex', '01 08 0f 16 1d'];
    const all = hits(pat);
    expect(all.length).toBeGreaterThan(2);
    const file = hits([...pat, '--kind', 'file']);
    const anon = hits([...pat, '--kind', 'anon']);
    expect(file.length).toBeGreaterThan(0);
    expect(anon.length).toBeGreaterThan(0);
    expect(file.every((h) => !!(vmas[h.vma].status & 0xc0))).toBe(true);
    expect(anon.every((h) => !(vmas[h.vma].status & 0xc0))).toBe(true);
    expect([...file, ...anon].sort((x, y) => (x.addr < y.addr ? -1 : 1))).toEqual(all.filter((h) => [...file, ...anon].some((x) => x.vma === h.vma)));
    const start = 0x55c94f33f000n;
    const clipped = hits([...pat, '--range', `${start.toString(16)}-${(start + 0x100n).toString(16)}`]);
    expect(clipped).toEqual(all.filter((h) => h.addr >= start && h.addr + 5n <= start + 0x100n));
    expect(clipped.map((h) => h.addr)).toEqual([0x55c94f33f080n]);
    const strings = (args: string[]) => crit(['xray', SET, '--pid', PID, '--strings', ...args]).stdout.toString().split('\n').filter(Boolean);
    const stack = vmas.find((v) => v.flags & 0x100)!;
    const inStack = strings(['--kind', 'stack']);
    expect(inStack.length).toBeGreaterThan(10);
    expect(inStack).toEqual(strings([]).filter((l) => { const a = BigInt('0x' + l.slice(0, 16)); return a >= stack.start && a < stack.end; }));
  });

  it('errors: one line, exit 1; filters are refused where --addr/--vma name the bytes', () => {
    for (const [args, msg] of [[['--kind', 'bogus'], /^crit: --kind: 'bogus' is not one of stack, heap/], [['--prot', 'rwz'], /^crit: --prot: 'rwz'/],
      [['--range', '5-3'], /^crit: --range: 5-3 ends before it starts/], [['--kind', 'heap', '--vma', '1'], /^crit: --kind heap: the VMA filters choose VMAs/]] as const) {
      const r = crit(['xray', SET, '--pid', PID, ...args]);
      expect(r.status).toBe(1);
      expect(r.stderr.toString()).toMatch(msg);
      expect(r.stderr.toString().trim().split('\n')).toHaveLength(1);
    }
  });
});
