// Shared memory on the kernel's internal mounts, which /proc shows as unlinked files: MAP_SHARED
// mappings of /dev/zero and fds onto them ("/dev/zero (deleted)"), MAP_HUGETLB memory shared
// ("/anon_hugepage (deleted)") and private, hugetlb memfds; all shared by a parent and a child.
// They are dumped as CRIU 4.2 does (memfd.img with hugetlb_flag, MAP_HUGETLB and the page size in
// the VMA flags) and come back with their contents, allocated huge pages, offsets, /proc names
// and sharing. The hugetlb part needs free huge pages: it is skipped, loudly, when none can be had.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive } from './helpers';
import { mapsOf, fdTable } from './dump-support';
import { loadImage, writeImage } from '../../images/files';

if (!IS_ROOT) console.warn(`SKIPPING hugetlb / internal shmem tests: ${SKIP_REASON}`);

const MAP_SHARED = 0x1, MAP_PRIVATE = 0x2, MAP_ANON = 0x20, MAP_HUGETLB = 0x40000, MFD_HUGETLB = 4;
const VMA_REGULAR = 0x1, VMA_FILE_SHARED = 0x80, VMA_ANON_PRIVATE = 0x200, VMA_MEMFD = 0x4000;
/** huge pages the fixture holds at once, with some room */
const NEED = 8;
const NR = '/proc/sys/vm/nr_hugepages';

function meminfo(key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Makes NEED huge pages free if it can; returns why not, and how to give back what it took. */
function getHugePages(): { why?: string; giveBack: () => void } {
  const none = () => {};
  if (!meminfo('Hugepagesize')) return { why: 'this kernel has no huge pages', giveBack: none };
  const free = meminfo('HugePages_Free');
  if (free >= NEED) return { giveBack: none };
  let nr: number;
  try {
    nr = Number(fs.readFileSync(NR, 'utf8'));
    fs.writeFileSync(NR, String(nr + NEED - free));
  } catch (e) {
    return { why: `cannot raise ${NR}: ${(e as Error).message}`, giveBack: none };
  }
  const giveBack = () => fs.writeFileSync(NR, String(nr));
  if (meminfo('HugePages_Free') < NEED) {
    giveBack();
    return { why: `only ${meminfo('HugePages_Free')} huge pages could be allocated, ${NEED} are needed`, giveBack: none };
  }
  return { giveBack };
}

const hp = BigInt(meminfo('Hugepagesize')) * 1024n;
const sizeFlag = (hp.toString(2).length - 1) << 26;
/** a maps line without its inode (a restored object is a new one) */
const line = (m: { start: bigint; end: bigint; perms: string; dev: string; name: string }) => `${m.start.toString(16)}-${m.end.toString(16)} ${m.perms} ${m.dev} ${m.name}`;

describe.skipIf(!IS_ROOT)('shared memory of the internal shmem and hugetlbfs mounts', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let child: number;
  let huge: boolean;
  let giveBack = () => {};
  let addrs: bigint[];
  let fds: number[];
  const before = new Map<number, string[]>();
  const linesOf = (pid: number) => {
    const maps = mapsOf(pid);
    return addrs.map((a) => line(maps.find((m) => m.start === a)!));
  };

  beforeAll(async () => {
    work = tempDir('hugeshm');
    const h = getHugePages();
    giveBack = h.giveBack;
    huge = h.why === undefined;
    if (!huge) console.warn(`SKIPPING the hugetlb part of the internal-mount shared memory tests: ${h.why}`);
    target = startTarget(compile('hugeshm', work), huge ? ['huge'] : [], work);
    const m = await target.waitFor(/kid=(\d+) zs=(\S+) hs=(\S+) hpv=(\S+) hm=(\S+) fds=(\d+),(\d+),(\d+),(\d+)/);
    child = Number(m[1]);
    addrs = (huge ? [m[2], m[3], m[4], m[5]] : [m[2]]).map((a) => BigInt(a));
    fds = m.slice(6, 10).map(Number);
    await target.waitFor(/count=2\n/);
    await target.waitFor(/child=2\n/);
    for (const pid of [target.pid, child]) before.set(pid, linesOf(pid));
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, child]);
  });

  afterAll(() => {
    cleanUp(target, work, child);
    giveBack();
  });

  it('records /dev/zero memory and its fds as memfd objects named "/dev/zero", the device fd as a file', () => {
    const inodes = decode(path.join(dir, 'memfd.img'));
    const zero = inodes.filter((e) => e.name === '/dev/zero');
    expect(zero.map((e) => Number(e.size)).sort((a, b) => a - b)).toEqual([10000, 16384]);
    for (const e of zero) expect(e).toMatchObject({ seals: 1, mode: 0o100777 });
    const t = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
    const [devFd, zFd, onlyFd] = fds;
    expect(t.get(devFd)![1]).toMatchObject({ type: 1, reg: { name: '/dev/zero' } });
    for (const [fd, size, pos] of [[zFd, 16384, 5], [onlyFd, 10000, 0]]) {
      const f = t.get(fd)![1];
      expect(f.type).toBe(18);
      expect(Number(f.memfd.pos)).toBe(pos);
      expect(Number(inodes.find((e) => e.inode_id === f.memfd.inode_id).size)).toBe(size);
    }
    // the mapping and the fd opened through map_files are one object
    const zs = decode(path.join(dir, `mm-${target.pid}.img`))[0].vmas.find((v: { start: bigint }) => BigInt(v.start) === addrs[0]);
    expect(decode(path.join(dir, 'files.img')).find((f) => f.id === zs.shmid).memfd.inode_id).toBe(t.get(zFd)![1].memfd.inode_id);
  });

  it('records hugetlb memory with MAP_HUGETLB and its page size, and only its allocated huge pages', (ctx) => {
    if (!huge) return ctx.skip();
    const inodes = decode(path.join(dir, 'memfd.img'));
    const anon = inodes.find((e) => e.name === '/anon_hugepage');
    const memfd = inodes.find((e) => e.name === 'engine-huge');
    expect(anon).toMatchObject({ hugetlb_flag: MFD_HUGETLB | sizeFlag, seals: 1 });
    expect(BigInt(anon.size)).toBe(3n * hp);
    expect(memfd).toMatchObject({ hugetlb_flag: MFD_HUGETLB | sizeFlag, seals: 1 }); // made without MFD_ALLOW_SEALING
    expect(BigInt(memfd.size)).toBe(2n * hp);
    const pages = (e: { shmid: number }) => decode(path.join(dir, `pagemap-shmem-${e.shmid}.img`)).slice(1)
      .map((r) => [BigInt(r.vaddr), BigInt(r.vaddr) + BigInt(r.nr_pages) * 4096n]);
    // page 0 written, page 1 only read (zeros, but allocated and mapped), page 2 never touched
    expect(pages(anon)[0][0]).toBe(0n);
    expect(pages(anon).at(-1)![1]).toBe(2n * hp);
    expect(pages(memfd)[0][0]).toBe(hp);
    expect(pages(memfd).at(-1)![1]).toBe(2n * hp);
    for (const pid of [target.pid, child]) {
      const vmas = decode(path.join(dir, `mm-${pid}.img`))[0].vmas;
      const at = (a: bigint) => vmas.find((v: { start: bigint }) => BigInt(v.start) === a);
      expect(at(addrs[1])).toMatchObject({ status: VMA_REGULAR | VMA_FILE_SHARED | VMA_MEMFD, flags: MAP_SHARED | MAP_HUGETLB | sizeFlag });
      expect(at(addrs[2])).toMatchObject({ status: VMA_REGULAR | VMA_ANON_PRIVATE, flags: MAP_PRIVATE | MAP_ANON | MAP_HUGETLB | sizeFlag });
      expect(at(addrs[3])).toMatchObject({ status: VMA_REGULAR | VMA_FILE_SHARED | VMA_MEMFD, flags: MAP_SHARED | MAP_HUGETLB | sizeFlag });
    }
  });

  it('restores contents, fds, allocated pages and /proc names, shared again by parent and child', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    for (const pid of [target.pid, child]) expect(linesOf(pid)).toEqual(before.get(pid));
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^parent (ok|fail.*)$/m, 10_000);
    await target.waitFor(/^child (ok|fail.*)$/m, 10_000);
    expect(target.output()).toMatch(/^parent ok$/m);
    expect(target.output()).toMatch(/^child ok$/m);
  });

  it('refuses at restore hugetlb memory of a page size this machine lacks', () => {
    const bad = path.join(work, 'bad');
    fs.cpSync(dir, bad, { recursive: true });
    const img = loadImage(path.join(bad, 'memfd.img'));
    const i = img.entries.findIndex((e) => e.msg.name === '/dev/zero');
    img.entries[i].msg.hugetlb_flag = MFD_HUGETLB | (40 << 26); // 1 TiB pages
    writeImage(path.join(bad, 'memfd.img'), 'MEMFD_INODE', img.entries);
    const r = runEngine(['restore', '-D', bad, '-d']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`memfd.img: entry ${i}.hugetlb_flag: hugetlb memory /dev/zero: this machine has no huge pages of 1073741824 kB`);
  });
});

describe.skipIf(!IS_ROOT)('shared memory of the internal mounts that cannot be restored exactly', () => {
  let work: string;
  const targets: Target[] = [];
  let giveBack = () => {};

  beforeAll(() => {
    work = tempDir('hugeshm-refuse');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
    giveBack();
  });

  async function refused(mode: string, re: (pid: number, fd: number) => RegExp): Promise<void> {
    const t = startTarget(compile('hugeshm', work), [mode], work);
    targets.push(t);
    const fd = Number((await t.waitFor(/fd=(\d+)/))[1]);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, mode)]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(re(t.pid, fd));
    expect(fs.existsSync(path.join(work, mode))).toBe(false);
    expect(alive(t.pid)).toBe(true);
  }

  it('refuses a memfd named "/dev/zero" (memfd.img would say anonymous shared memory), naming task and fd', async () => {
    await refused('memfd-devzero', (pid, fd) => new RegExp(`^engine: task ${pid} fd ${fd}: a memfd named "/dev/zero" would read as anonymous shared memory`));
  });

  it('refuses an allocated hugetlb page of zeros that no task maps (where it is cannot be told)', async (ctx) => {
    const h = getHugePages();
    if (h.why) {
      console.warn(`SKIPPING the hugetlb refusal test: ${h.why}`);
      return ctx.skip();
    }
    giveBack = h.giveBack;
    await refused('zero-unmapped', (pid, fd) =>
      new RegExp(`^engine: task ${pid} fd ${fd}: hugetlb memory /memfd:engine-zero \\(deleted\\) \\(inode \\d+\\): 1 of its 1 allocated huge pages hold only zeros and no dumped task maps them`));
  });
});
