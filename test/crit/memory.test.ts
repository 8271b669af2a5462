// The memory reader and crit xray on a real dump made by our engine (known bytes at known
// addresses), and on synthetic incremental sets whose parent chains are three deep.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { ImageSet } from '../../images/imageset';
import { searchMemory } from '../../images/query/search';
import { writeImage } from '../../images/files';
import { crit, ROOT } from '../helpers/cli';
import { IS_ROOT, SKIP_REASON, startTarget, runEngine, Target } from '../engine/helpers';

const BASE = 0x10000000n;
const PAGE = 4096;

function expectedPage(i: number): Buffer {
  const b = Buffer.alloc(PAGE);
  for (let j = 0; j < PAGE; j++) b[j] = (i * 7 + j) & 0xff;
  const h = Buffer.from(`PAGE-${String(i).padStart(4, '0')}\0`);
  h.copy(b);
  return b;
}

if (!IS_ROOT) console.warn(`\n*** memory reader tests on live dumps SKIPPED: ${SKIP_REASON} ***\n`);

describe.skipIf(!IS_ROOT)('memory reader on a dump made by our engine', () => {
  let work: string;
  let dir: string;
  let target: Target;
  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-mem-'));
    const exe = path.join(work, 'patterns');
    execFileSync('gcc', ['-O1', '-o', exe, path.join(ROOT, 'fixtures', 'memory', 'patterns.c')]);
    target = startTarget(exe, [], work);
    await target.waitFor(/ready/);
    dir = path.join(work, 'img');
    const r = runEngine(['dump', '-t', String(target.pid), '-D', dir, '--leave-running']);
    expect(r.status, r.stderr).toBe(0);
  });
  afterAll(() => {
    target?.kill();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('every page pattern is at its address; the untouched page is absent with its reason', () => {
    const set = new ImageSet(dir);
    const mem = set.memory(target.pid);
    for (let i = 0; i < 16; i++) {
      const addr = BASE + BigInt(i * PAGE);
      if (i === 5) {
        const spans = mem.read(addr, PAGE);
        expect(spans).toHaveLength(1);
        expect(spans[0].data).toBeUndefined();
        expect(spans[0].absent).toMatch(/never written/);
        continue;
      }
      const want = expectedPage(i);
      if (i === 8) Buffer.from('CROSS-B').copy(want, PAGE - 7);
      if (i === 9) Buffer.from('OUNDARY-MARK').copy(want, 0);
      expect(Buffer.from(mem.readBytes(addr, PAGE)).equals(want), `page ${i}`).toBe(true);
    }
    expect(() => mem.readBytes(BASE + 5n * BigInt(PAGE), 16)).toThrow(/0x10005000: never written/);
    expect(Buffer.from(mem.readBytes(BASE + 5n * BigInt(PAGE), 16, true)).equals(Buffer.alloc(16))).toBe(true);
    set.close();
  });

  it('search finds a marker across a page boundary, by text, hex and regex', () => {
    const set = new ImageSet(dir);
    const mem = set.memory(target.pid);
    const hits = [...searchMemory(mem, { kind: 'bytes', bytes: Buffer.from('CROSS-BOUNDARY-MARK') })];
    expect(hits.map((h) => h.addr)).toEqual([BASE + 9n * BigInt(PAGE) - 7n]);
    const r = crit(['xray', dir, '--pid', String(target.pid), '--regex', 'CROSS-[A-Z]+-MARK', '--json']);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain(`"addr": ${BASE + 9n * BigInt(PAGE) - 7n}`);
    const h = crit(['xray', dir, '--pid', String(target.pid), '--hex', Buffer.from('PAGE-0012').toString('hex'), '--context', '0']);
    expect(h.stdout.toString()).toMatch(/^0x1000c000 \(9 bytes\) in VMA #\d+ 10000000-10010000 rw- \[anon\]$/m);
    set.close();
  });

  it('xray hexdump: addresses, squeezed repeats, absent pages named; --raw gives the exact bytes', () => {
    const pid = String(target.pid);
    const dump = crit(['xray', dir, '--pid', pid, '--addr', '0x20000000', '--len', '65536', '--color', 'never']).stdout.toString();
    expect(dump).toMatch(/^0000000020000000  ab ab ab ab ab ab ab ab  ab ab ab ab ab ab ab ab  │××××××××××××××××│$/m);
    expect(dump.split('\n').filter((l) => l === '*')).toHaveLength(1);
    const gap = crit(['xray', dir, '--pid', pid, '--addr', '0x10004ff0', '--len', '0x1020', '--color', 'never']).stdout.toString();
    expect(gap).toContain('10005000-10006000 (4096 bytes) not in the image: never written (zero page, not stored)');
    expect(gap).toMatch(/^0000000010006000  50 41 47 45 2d 30 30 30  36 00/m);
    const raw = crit(['xray', dir, '--pid', pid, '--addr', '0x10003000', '--len', '4096', '--raw']);
    expect(raw.status).toBe(0);
    expect(raw.stdout.equals(expectedPage(3))).toBe(true);
    const bad = crit(['xray', dir, '--pid', pid, '--addr', '0x10004000', '--len', '8192', '--raw']);
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toMatch(/^crit: 0x10005000: never written \(zero page, not stored\) \(use --zero-fill/);
    const zf = crit(['xray', dir, '--pid', pid, '--addr', '0x10004000', '--len', '8192', '--raw', '--zero-fill']);
    expect(zf.stdout.equals(Buffer.concat([expectedPage(4), Buffer.alloc(PAGE)]))).toBe(true);
  });

  it('colour follows NO_COLOR and --color', () => {
    const pid = String(target.pid);
    const plain = crit(['xray', dir, '--pid', pid, '--addr', '0x20000000', '--len', '32', '--color', 'always']).stdout.toString();
    expect(plain).toContain('\x1b[33mab');
    const r = crit(['xray', dir, '--pid', pid, '--addr', '0x20000000', '--len', '32']);
    expect(r.stdout.toString()).not.toContain('\x1b['); // not a terminal
  });
});

// ---- synthetic incremental dumps: a page is found in the right layer of a 3-deep chain ----

function makeLayer(dir: string, parent: string | undefined, pages: Map<number, { flags: number; byte?: number }>): void {
  fs.mkdirSync(dir, { recursive: true });
  const pid = 42;
  writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid, ppid: 0, pgid: pid, sid: pid, threads: [pid] } }]);
  const vma = { start: 0x400000, end: 0x400000 + 8 * PAGE, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 };
  const mm = { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas: [vma] };
  writeImage(path.join(dir, `mm-${pid}.img`), 'MM', [{ msg: mm }]);
  const entries = [{ msg: { pages_id: 1 } }];
  const data: Buffer[] = [];
  for (const [i, p] of [...pages].sort((a, b) => a[0] - b[0])) {
    entries.push({ msg: { vaddr: 0x400000 + i * PAGE, compat_nr_pages: 0, flags: p.flags, nr_pages: 1 } as never });
    if (p.flags & 4) data.push(Buffer.alloc(PAGE, p.byte!));
  }
  writeImage(path.join(dir, `pagemap-${pid}.img`), 'PAGEMAP', entries);
  fs.writeFileSync(path.join(dir, 'pages-1.img'), Buffer.concat(data));
  if (parent) fs.symlinkSync(path.relative(dir, parent), path.join(dir, 'parent'));
}

describe('parent chains (incremental dumps)', () => {
  it('PE_PARENT pages resolve through three layers to the layer that holds them', () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-chain-'));
    try {
      const l0 = path.join(work, 'l0'), l1 = path.join(work, 'l1'), l2 = path.join(work, 'l2'), l3 = path.join(work, 'l3');
      makeLayer(l0, undefined, new Map([[0, { flags: 4, byte: 0xa0 }], [1, { flags: 4, byte: 0xa1 }], [2, { flags: 4, byte: 0xa2 }], [3, { flags: 4, byte: 0xa3 }]]));
      makeLayer(l1, l0, new Map([[0, { flags: 1 }], [1, { flags: 4, byte: 0xb1 }], [2, { flags: 1 }], [3, { flags: 1 }]]));
      makeLayer(l2, l1, new Map([[0, { flags: 1 }], [1, { flags: 1 }], [2, { flags: 4, byte: 0xc2 }], [3, { flags: 1 }], [4, { flags: 2 }]]));
      makeLayer(l3, l2, new Map([[0, { flags: 1 }], [1, { flags: 1 }], [2, { flags: 1 }], [3, { flags: 4, byte: 0xd3 }], [4, { flags: 1 }]]));
      const set = new ImageSet(l3);
      const mem = set.memory(42);
      const firstByte = (i: number) => mem.readBytes(0x400000n + BigInt(i * PAGE), 1)[0];
      expect([0, 1, 2, 3].map(firstByte)).toEqual([0xa0, 0xb1, 0xc2, 0xd3]);
      const origin = mem.read(0x400000n, PAGE)[0].origin;
      expect(origin).toBe('parent/parent/parent/pages-1.img+0x0');
      // page 4: l3 says "in parent", l2 says lazy: absent with that reason
      expect(mem.read(0x400000n + 4n * BigInt(PAGE), PAGE)[0].absent).toMatch(/lazy page/);
      expect(mem.read(0x400000n + 6n * BigInt(PAGE), PAGE)[0].absent).toMatch(/never written/);
      set.close();
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('page size', () => {
  function set(mtype: number, boundaries: number[]): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-ps-'));
    writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid: 9, ppid: 0, pgid: 9, sid: 9, threads: [9] } }]);
    writeImage(path.join(dir, 'core-9.img'), 'CORE', [{ msg: { mtype } }]);
    const vmas = [];
    for (let i = 0; i + 1 < boundaries.length; i += 2) vmas.push({ start: boundaries[i], end: boundaries[i + 1], pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 });
    writeImage(path.join(dir, 'mm-9.img'), 'MM', [{ msg: { mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0, mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1, vmas } }]);
    return dir;
  }
  it('is 4096 on x86-64; on aarch64 it is read off the VMA boundaries; --page-size wins', () => {
    const dirs = [set(1, [0x10000, 0x30000]), set(3, [0x10000, 0x30000, 0x7f0000, 0x800000]), set(3, [0x10000, 0x31000])];
    try {
      expect(new ImageSet(dirs[0]).pageSize).toBe(4096);
      expect(new ImageSet(dirs[1]).pageSize).toBe(65536);
      expect(new ImageSet(dirs[2]).pageSize).toBe(4096);
      expect(new ImageSet(dirs[1], { pageSize: 16384 }).pageSize).toBe(16384);
    } finally {
      for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
