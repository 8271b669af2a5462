// engine dump of shared memory: anonymous MAP_SHARED memory and memfds (mapped by parent and
// child, and held only as an fd) land in memfd.img + pagemap-shmem-<inode>.img as CRIU 4.2 does.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, sleep, Target, dumpOk, cleanUp } from './helpers';
import { CORPUS, pagemapBytes, imageKinds, checkAllImagesDecode, mapsOf, fdTable, MapsEntry } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine shmem tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine dump: shared anonymous memory and memfd', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let child: number;
  let anonAddr: bigint, memfdAddr: bigint;
  let fds: number[];
  let anonMap: MapsEntry, memfdMap: MapsEntry;
  let fdonlyIno: number;

  beforeAll(async () => {
    work = tempDir('shmem');
    const exe = compile('shmem', work);
    target = startTarget(exe, [], work);
    const m = await target.waitFor(/anon=0x([0-9a-f]+) memfd=0x([0-9a-f]+) fds=(\d+),(\d+) child=(\d+)/);
    anonAddr = BigInt('0x' + m[1]);
    memfdAddr = BigInt('0x' + m[2]);
    fds = [Number(m[3]), Number(m[4])];
    child = Number(m[5]);
    await target.waitFor(/count=3\n/);
    await target.waitFor(/child=3\n/);
    const maps = mapsOf(target.pid);
    anonMap = maps.find((v) => v.start === anonAddr)!;
    memfdMap = maps.find((v) => v.start === memfdAddr)!;
    fdonlyIno = fs.statSync(`/proc/${target.pid}/fd/${fds[1]}`).ino;
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
  });

  afterAll(() => cleanUp(target, work, child));

  it('writes the image kinds CRIU 4.2 wrote for the same program (corpus shmem/), all decodable', () => {
    checkAllImagesDecode(dir);
    const corpus = path.join(CORPUS, 'shmem');
    if (fs.existsSync(corpus)) expect(imageKinds(dir)).toEqual(imageKinds(corpus));
    expect(anonMap.name).toBe('/dev/zero (deleted)');
    expect(memfdMap.name).toBe('/memfd:engine-memfd (deleted)');
  });

  it('records one memfd_inode_entry per object with /proc truth', () => {
    const inodes = decode(path.join(dir, 'memfd.img'));
    const byIno = new Map(inodes.map((e) => [e.shmid, e]));
    expect(inodes).toHaveLength(3);
    expect(byIno.get(anonMap.inode)).toMatchObject({ name: '/dev/zero', size: 65536, uid: 0, gid: 0, mode: 0o100777, seals: 1 });
    expect(byIno.get(memfdMap.inode)).toMatchObject({ name: 'engine-memfd', size: 32768, mode: 0o100777 });
    expect(byIno.get(fdonlyIno)).toMatchObject({ name: 'engine-fdonly', size: 72 });
    expect(inodes.map((e) => Number(e.inode_id))).toEqual([1, 2, 3]);
  });

  it('dumps exactly the populated pages of each object, at their offsets', () => {
    const pm = (ino: number) => decode(path.join(dir, `pagemap-shmem-${ino}.img`)).slice(1);
    expect(pm(anonMap.inode).map((e) => [Number(e.vaddr), Number(e.nr_pages), e.flags])).toEqual([[0, 16, 4]]);
    // pages 5-7 of the memfd were never touched: holes are not dumped
    expect(pm(memfdMap.inode).map((e) => [Number(e.vaddr), Number(e.nr_pages)])).toEqual([[0, 5]]);
    const anon = pagemapBytes(dir, `pagemap-shmem-${anonMap.inode}.img`, 0n, 65535)!;
    for (let i = 0; i < 65535; i += 331) expect(anon[i]).toBe((i * 13 + 5) & 0xff);
    const mem = pagemapBytes(dir, `pagemap-shmem-${memfdMap.inode}.img`, 0n, 5 * 4096)!;
    for (let i = 0; i < 5 * 4096; i += 97) expect(mem[i]).toBe((i * 3 + 1) & 0xff);
    const only = pagemapBytes(dir, `pagemap-shmem-${fdonlyIno}.img`, 0n, 72)!;
    expect(only.toString()).toBe('abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrst');
    const stats = decode(path.join(dir, 'stats-dump'))[0].dump;
    expect(Number(stats.shpages_scanned)).toBe(16 + 8 + 1);
    expect(Number(stats.shpages_written)).toBe(16 + 5 + 1);
    // shmem pagemaps take their pages ids before the task that first maps them (CRIU's order)
    const shIds = [anonMap.inode, memfdMap.inode, fdonlyIno].map((i) => decode(path.join(dir, `pagemap-shmem-${i}.img`))[0].pages_id);
    expect(shIds).toEqual([1, 2, 3]);
    expect(decode(path.join(dir, `pagemap-${target.pid}.img`))[0].pages_id).toBe(4);
  });

  it('maps the objects as shared MEMFD VMAs of the same files in parent and child', () => {
    const files = decode(path.join(dir, 'files.img'));
    const inodes = decode(path.join(dir, 'memfd.img'));
    for (const pid of [target.pid, child]) {
      const vmas = decode(path.join(dir, `mm-${pid}.img`))[0].vmas;
      for (const [addr, map] of [[anonAddr, anonMap], [memfdAddr, memfdMap]] as const) {
        const v = vmas.find((x: { start: bigint | number }) => BigInt(x.start) === addr);
        expect(v).toMatchObject({ status: 0x4081, flags: 1, prot: 3, fdflags: 2 });
        expect(BigInt(v.end)).toBe(map.end);
        const f = files.find((e) => e.id === v.shmid);
        expect(f.type).toBe(18);
        expect(inodes.find((e) => e.inode_id === f.memfd.inode_id).shmid).toBe(map.inode);
      }
    }
    const parentVmas = decode(path.join(dir, `mm-${target.pid}.img`))[0].vmas;
    const childVmas = decode(path.join(dir, `mm-${child}.img`))[0].vmas;
    const idAt = (vmas: { start: bigint | number; shmid: number }[], a: bigint) => vmas.find((x) => BigInt(x.start) === a)!.shmid;
    expect(idAt(childVmas, anonAddr)).toBe(idAt(parentVmas, anonAddr));
    expect(idAt(childVmas, memfdAddr)).toBe(idAt(parentVmas, memfdAddr));
    // shared pages are not duplicated into the task pagemaps
    expect(pagemapBytes(dir, `pagemap-${target.pid}.img`, anonAddr, 4096)).toBeUndefined();
  });

  it('records the memfd fds with flags, offset and inode', () => {
    const ids = decode(path.join(dir, `ids-${target.pid}.img`))[0];
    const t = fdTable(dir, ids.files_id);
    const inodes = decode(path.join(dir, 'memfd.img'));
    const [i1, f1] = t.get(fds[0])!;
    expect(i1.type).toBe(18);
    expect(i1.flags).toBe(1); // FD_CLOEXEC
    expect(Number(f1.memfd.pos)).toBe(0);
    expect(inodes.find((e) => e.inode_id === f1.memfd.inode_id).name).toBe('engine-memfd');
    const [i2, f2] = t.get(fds[1])!;
    expect(i2.flags).toBe(0);
    expect(Number(f2.memfd.pos)).toBe(22);
    expect(f2.memfd.flags & 3).toBe(2);
    expect(inodes.find((e) => e.inode_id === f2.memfd.inode_id).shmid).toBe(fdonlyIno);
  });

  it('leaves parent and child running', async () => {
    expect(alive(target.pid) && alive(child)).toBe(true);
    const n = lastCount(target.output());
    const c = lastCount(target.output(), 'child');
    await target.waitFor(new RegExp(`count=${n + 3}\\n`));
    await target.waitFor(new RegExp(`child=${c + 3}\\n`));
    expect(consecutive(target.output())).toBe(true);
    expect(consecutive(target.output(), 'child')).toBe(true);
    await sleep(1);
  });
});
