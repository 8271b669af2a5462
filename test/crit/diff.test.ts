// crit diff: two scratch copies of a corpus set, one changed in known ways with the codec
// (a task's comm, a file position, a VMA's protection, bytes of one page, a removed fd),
// must differ in exactly those ways; every set compared with itself must not differ.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { corpusSets, haveCorpus } from '../helpers/corpus';
import { crit } from '../helpers/cli';
import { copySet, cleanScratch, writeRenderNode } from '../helpers/scratch';
import { loadImage, writeImage } from '../../images/files';
import { diffSets } from '../../images/query/diff';
import { ImageSet, entryFlags, entryPages, PE_PRESENT } from '../../images/imageset';
import { parseJson } from '../../images/json/parse';

const counter = corpusSets().find((s) => s.name.startsWith('criu-4.2') && s.name.endsWith('/counter'));

/** Rewrites an image after `fn` changed its decoded entries (the codec is byte-exact). */
function rewrite(file: string, fn: (entries: ReturnType<typeof loadImage>['entries']) => ReturnType<typeof loadImage>['entries'] | void): void {
  const img = loadImage(file);
  const out = fn(img.entries) ?? img.entries;
  writeImage(file, img.magic, out.map((e) => ({ type: e.type, msg: e.msg, extra: e.extra })));
}

describe.skipIf(!counter)('crit diff on two synthetic sets', () => {
  let A: string, B: string;
  let pid: number;
  const want: { section: string; op: string; path: string }[] = [];
  let oldComm: string, filePos: number, fileIdx: number, vmaIdx: number, oldProt: number, pageAddr: bigint, patchAt: bigint;
  let fdinfoName: string;

  beforeAll(() => {
    A = copySet(counter!.dir, 'diffA');
    B = copySet(counter!.dir, 'diffB');
    const set = new ImageSet(B);
    pid = set.tasks()[0].pid;
    fdinfoName = `fdinfo-${set.ids(pid).files_id}.img`;
    // 1. the task's comm
    rewrite(path.join(B, `core-${pid}.img`), (es) => { oldComm = es[0].msg.tc.comm; es[0].msg.tc.comm = 'changed'; });
    want.push({ section: 'processes', op: 'changed', path: `core-${pid}.img[0].tc.comm` });
    // 2. the position of the file behind the highest fd
    const fds = set.fdinfo(pid);
    const lastFd = fds.reduce((a, b) => (Number(b.fd) > Number(a.fd) ? b : a));
    rewrite(path.join(B, 'files.img'), (es) => {
      fileIdx = es.findIndex((e) => Number(e.msg.id) === Number(lastFd.id));
      filePos = Number(es[fileIdx].msg.reg.pos);
      es[fileIdx].msg.reg.pos = filePos + 7;
    });
    want.push({ section: 'files', op: 'changed', path: `files.img[${fileIdx!}].reg.pos` });
    // 3. the protection of the first writable private anonymous VMA
    rewrite(path.join(B, `mm-${pid}.img`), (es) => {
      const vmas = es[0].msg.vmas;
      vmaIdx = vmas.findIndex((v: any) => Number(v.prot) === 3 && !(Number(v.status) & 0xc0));
      oldProt = Number(vmas[vmaIdx].prot);
      vmas[vmaIdx].prot = oldProt | 4;
    });
    want.push({ section: 'vmas', op: 'changed', path: `mm-${pid}.img[0].vmas[${vmaIdx!}].prot` });
    // 4. five bytes of the second page of the first present pagemap entry with two pages or more
    const pm = set.pagemap(pid);
    let off = 0;
    for (const e of pm.entries) {
      const n = entryPages(e);
      if (entryFlags(e) & PE_PRESENT) {
        if (n >= 2) { pageAddr = BigInt(e.vaddr) + 4096n; off += 4096; break; }
        off += n * 4096;
      }
    }
    const fd = fs.openSync(path.join(B, `pages-${pm.pagesId}.img`), 'r+');
    const old = Buffer.alloc(5);
    fs.readSync(fd, old, 0, 5, off + 100);
    fs.writeSync(fd, Buffer.from(old.map((b) => b ^ 0xa5)), 0, 5, off + 100);
    fs.closeSync(fd);
    patchAt = pageAddr! + 100n;
    want.push({ section: 'memory', op: 'changed', path: `memory[${pid}][0x${pageAddr!.toString(16)}-0x${(pageAddr! + 4096n).toString(16)}]` });
    // 5. fd 0 is gone
    rewrite(path.join(B, fdinfoName), (es) => es.filter((e) => Number(e.msg.fd) !== 0));
    const fd0 = fds.findIndex((e) => Number(e.fd) === 0);
    want.push({ section: 'fds', op: 'removed', path: `${fdinfoName}[${fd0}]` });
    set.close();
  });
  afterAll(cleanScratch);

  it('reports exactly the five changes, with their paths and values', () => {
    const d = diffSets(A, B);
    const got = d.changes.map((c) => ({ section: c.section, op: c.op, path: c.path }));
    expect(got.sort((x, y) => x.path.localeCompare(y.path))).toEqual([...want].sort((x, y) => x.path.localeCompare(y.path)));
    const by = (p: string) => d.changes.find((c) => c.path === p)!;
    expect(by(`core-${pid}.img[0].tc.comm`)).toMatchObject({ old: oldComm, new: 'changed', pid });
    expect(by(`files.img[${fileIdx}].reg.pos`)).toMatchObject({ old: filePos, new: filePos + 7 });
    expect(by(`mm-${pid}.img[0].vmas[${vmaIdx}].prot`)).toMatchObject({ old: oldProt, new: oldProt | 4 });
    const mem = d.changes.find((c) => c.section === 'memory')!;
    expect(mem.run).toMatchObject({ kind: 'differ', start: pageAddr, end: pageAddr + 4096n, pages: 1, bytes: 5, first: patchAt });
  });

  it('a set against itself and against an identical copy: no differences', () => {
    expect(diffSets(A, A).changes).toEqual([]);
    expect(diffSets(counter!.dir, A).changes).toEqual([]);
  });

  it('the CLI: exit 1 and one line per change; --json; --memory shows the differing bytes', () => {
    const r = crit(['diff', A, B]);
    expect(r.status, r.stderr.toString()).toBe(1);
    const text = r.stdout.toString();
    expect(text).not.toContain('\x1b['); // not a terminal: no colour
    expect(text).toContain(`core-${pid}.img[0].tc.comm: ${JSON.stringify(oldComm)} -> "changed"`);
    expect(text).toContain(`files.img[${fileIdx}].reg.pos: ${filePos} -> ${filePos + 7}`);
    expect(text).toContain(`mm-${pid}.img[0].vmas[${vmaIdx}].prot: PROT_READ | PROT_WRITE -> PROT_READ | PROT_WRITE | PROT_EXEC`);
    expect(text).toContain(`5 bytes differ, first at 0x${patchAt.toString(16)}`);
    expect(text).toMatch(new RegExp(`- ${fdinfoName.replace('.', '\\.')}\\[\\d+\\]`));
    const j = parseJson(crit(['diff', '--json', A, B]).stdout.toString()) as any;
    expect(j.equal).toBe(false);
    expect(j.changes.length).toBe(5);
    expect(j.counts).toEqual({ processes: 1, fds: 1, files: 1, vmas: 1, memory: 1 });
    const mem = crit(['diff', '--memory', A, B]).stdout.toString();
    const row = (patchAt - (patchAt % 16n)).toString(16).padStart(16, '0');
    expect(mem).toContain(`    ${row}  A `);
    expect(mem.split('\n').filter((l) => /^\s+[0-9a-f]{16}  A /.test(l)).length).toBe(1);
  });

  it('the CLI: exit 0 for equal sets, 2 for trouble', () => {
    const same = crit(['diff', A, A]);
    expect(same.status).toBe(0);
    expect(same.stdout.toString()).toContain('no differences');
    const bad = crit(['diff', A, path.join(A, 'nonexistent')]);
    expect(bad.status).toBe(2);
    expect(bad.stderr.toString()).toMatch(/^crit: .*nonexistent.*\n$/);
    const broken = copySet(A, 'diffbad');
    fs.truncateSync(path.join(broken, 'pstree.img'), 11);
    const r = crit(['diff', A, broken]);
    expect(r.status).toBe(2);
    expect(r.stderr.toString()).toMatch(/pstree\.img: at byte \d+/);
  });

  it('an added task is one change, not one per image', () => {
    const C = copySet(A, 'diffC');
    const fake = 99999;
    rewrite(path.join(C, 'pstree.img'), (es) => [...es, { ...es[0], msg: { ...es[0].msg, pid: fake, ppid: pid, threads: [fake] } }]);
    for (const k of ['core', 'mm', 'ids', 'fs', 'pagemap']) fs.copyFileSync(path.join(C, `${k}-${pid}.img`), path.join(C, `${k}-${fake}.img`));
    const d = diffSets(A, C);
    expect(d.changes.map((c) => [c.section, c.op, c.pid])).toEqual([['processes', 'added', fake]]);
  });
});

describe.skipIf(!haveCorpus)('crit diff: every corpus set against itself', () => {
  for (const set of corpusSets()) {
    it(set.name, () => {
      const d = diffSets(set.dir, set.dir);
      expect(d.changes).toEqual([]);
    });
  }
});

describe.skipIf(!counter)('crit diff: GPU buffer objects', () => {
  afterAll(cleanScratch);
  it('a changed BO size and changed BO contents are reported per buffer object', () => {
    const A = copySet(counter!.dir, 'gpuA');
    const B = copySet(counter!.dir, 'gpuB');
    const c0 = Buffer.alloc(8192, 0x11), c1 = Buffer.alloc(4096, 0x22);
    writeRenderNode(A, [c0, c1]);
    const c1b = Buffer.from(c1);
    c1b[1000] = 0x23;
    c1b[1001] = 0x24;
    writeRenderNode(B, [c0, c1b]);
    expect(diffSets(A, A).changes).toEqual([]);
    let d = diffSets(A, B);
    expect(d.changes.map((c) => [c.section, c.path])).toEqual([['gpu', 'amdgpu-renderD-5.img.bo_entries[1].contents']]);
    expect(d.changes[0].new).toMatchObject({ bytes_differ: 2, first: 1000 });
    writeRenderNode(B, [c0, Buffer.concat([c1, Buffer.alloc(4096)])]);
    d = diffSets(A, B);
    expect(d.changes.map((c) => [c.section, c.path])).toContainEqual(['gpu', 'amdgpu-renderD-5.img[0].bo_entries[1].size']);
  });
});

describe('crit diff: pages files no task maps', () => {
  afterAll(cleanScratch);
  it('a deleted or changed pages file of an unmapped shmem pagemap is a difference', () => {
    const fixture = path.join(__dirname, '..', '..', 'fixtures', 'sets', 'counter');
    const A = copySet(fixture, 'pgA');
    // a shared-memory pagemap (e.g. a memfd nobody maps) with one page in pages-9.img
    for (const d of [A]) {
      writeImage(path.join(d, 'pagemap-shmem-77.img'), 'PAGEMAP', [{ msg: { pages_id: 9 } }, { msg: { vaddr: 0, compat_nr_pages: 0, nr_pages: 1, flags: PE_PRESENT } }]);
      fs.writeFileSync(path.join(d, 'pages-9.img'), Buffer.alloc(4096, 0x5a));
    }
    const B = copySet(A, 'pgB');
    expect(diffSets(A, B).changes).toEqual([]);
    fs.unlinkSync(path.join(B, 'pages-9.img'));
    let d = diffSets(A, B);
    expect(d.changes.map((c) => [c.section, c.op, c.path, c.label])).toEqual([['memory', 'removed', 'pages-9.img', 'page data of pagemap-shmem-77.img']]);
    const r = crit(['diff', '--memory', A, B]);
    expect(r.status).toBe(1);
    expect(r.stdout.toString()).toContain('pages-9.img');
    const page = Buffer.alloc(4096, 0x5a);
    page[100] = 1;
    fs.writeFileSync(path.join(B, 'pages-9.img'), page);
    d = diffSets(A, B);
    expect(d.changes.map((c) => [c.section, c.op, c.path, c.newText])).toEqual([['memory', 'changed', 'pages-9.img', '4096 bytes, 1 differ from byte 100']]);
    // a task's own pages file deleted is reported too (as a removed file, and per page)
    const C = copySet(A, 'pgC');
    const pid = new ImageSet(C).tasks()[0].pid;
    const own = `pages-${new ImageSet(C).pagemap(pid).pagesId}.img`;
    fs.unlinkSync(path.join(C, own));
    d = diffSets(A, C);
    expect(d.changes.filter((c) => c.path === own).map((c) => c.op)).toEqual(['removed']);
    expect(d.changes.some((c) => c.run?.kind === 'only-a')).toBe(true);
  });
});
