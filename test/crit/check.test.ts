// crit check: every undamaged corpus set passes clean; each kind of damage made to a scratch
// copy (truncation, flipped bytes, a deleted image, a dangling fdinfo id, a pages file too
// short or too long, a broken parent chain) is reported in the right file at the right byte
// and entry; the hand-made files of fixtures/corrupt are reported where their comments say,
// and `crit decode --salvage` recovers what they still hold.
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { corpusSets, haveCorpus } from '../helpers/corpus';
import { crit } from '../helpers/cli';
import { copySet, cleanScratch, scratchDir, hexFixtures, writeRenderNode } from '../helpers/scratch';
import { loadImage, writeImage } from '../../images/files';
import { checkSet, Problem } from '../../images/query/check';
import { ImageSet, entryFlags, PE_PRESENT, PE_PARENT } from '../../images/imageset';
import { parseJson } from '../../images/json/parse';

afterAll(cleanScratch);

const errors = (dir: string): Problem[] => checkSet(dir).problems.filter((p) => p.severity === 'error');

describe.skipIf(!haveCorpus)('crit check: the undamaged corpus is clean', () => {
  for (const set of corpusSets()) {
    it(set.name, () => {
      expect(errors(set.dir)).toEqual([]);
      const r = crit(['check', set.dir]);
      expect(r.status, r.stdout.toString()).toBe(0);
      expect(r.stdout.toString()).toContain('no problems found');
    });
  }
});

const counter = corpusSets().find((s) => s.name.startsWith('criu-4.2') && s.name.endsWith('/counter'));

describe.skipIf(!counter)('crit check: damage is located', () => {
  const fresh = () => copySet(counter!.dir, 'check');
  const pidOf = (dir: string) => new ImageSet(dir).tasks()[0].pid;
  const offsets = (file: string) => loadImage(file).entries.map((e) => e.offset);

  it('a truncated image: the entry that is cut, at its payload', () => {
    const d = fresh();
    const f = path.join(d, 'files.img');
    const offs = offsets(f);
    const k = offs.length - 1;
    fs.truncateSync(f, offs[k] + 4 + 3);
    const p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: 'files.img', offset: offs[k] + 4, entry: k });
    expect(p[0].what).toContain('truncated payload');
    const r = crit(['check', d]);
    expect(r.status).toBe(1);
    expect(r.stdout.toString()).toContain(`${path.join(d, 'files.img')}: at byte ${offs[k] + 4}, entry ${k}: truncated payload`);
  });

  it('flipped bytes in a size word: that entry, at its size word', () => {
    const d = fresh();
    const f = path.join(d, 'files.img');
    const offs = offsets(f);
    const k = 2;
    const b = fs.readFileSync(f);
    b[offs[k] + 3] ^= 0x7f;
    fs.writeFileSync(f, b);
    const p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: 'files.img', offset: offs[k], entry: k });
  });

  it('flipped bytes in a magic: the file, at byte 4', () => {
    const d = fresh();
    const pid = pidOf(d);
    const f = path.join(d, `core-${pid}.img`);
    const b = fs.readFileSync(f);
    b[5] ^= 0x01;
    fs.writeFileSync(f, b);
    const p = errors(d);
    expect(p.map((x) => [x.file, x.offset])).toEqual([[`core-${pid}.img`, 4]]);
  });

  it('flipped bytes that still decode: a pagemap range outside every VMA, at that entry', () => {
    const d = fresh();
    const pid = pidOf(d);
    const f = path.join(d, `pagemap-${pid}.img`);
    const img = loadImage(f);
    const k = 3;
    img.entries[k].msg.vaddr = BigInt(img.entries[k].msg.vaddr) ^ (1n << 44n);
    writeImage(f, img.magic, img.entries);
    const off = offsets(f)[k];
    const p = errors(d).filter((x) => x.file === `pagemap-${pid}.img`);
    expect(p.length).toBeGreaterThanOrEqual(1);
    expect(p.some((x) => x.offset === off && x.entry === k && /outside every VMA|out of order/.test(x.what))).toBe(true);
  });

  it('a deleted image: named as missing, with who needs it', () => {
    const d = fresh();
    const pid = pidOf(d);
    fs.unlinkSync(path.join(d, `mm-${pid}.img`));
    const p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: `mm-${pid}.img` });
    expect(p[0].what).toMatch(/^missing: pstree\.img entry 0 lists task \d+/);
  });

  it('a dangling fdinfo id: the fdinfo entry, at its offset', () => {
    const d = fresh();
    const set = new ImageSet(d);
    const name = `fdinfo-${set.ids(pidOf(d)).files_id}.img`;
    const f = path.join(d, name);
    const img = loadImage(f);
    img.entries[1].msg.id = 9999;
    writeImage(f, img.magic, img.entries);
    const p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: name, entry: 1, offset: offsets(f)[1] });
    expect(p[0].what).toContain('file id 9999');
  });

  it('a pages file that is too short or too long: where its data ends, which entry lost its pages', () => {
    const d = fresh();
    const set = new ImageSet(d);
    const pm = set.pagemap(pidOf(d));
    const pages = path.join(d, `pages-${pm.pagesId}.img`);
    const size = fs.statSync(pages).size;
    let last = -1;
    pm.entries.forEach((e, i) => { if (entryFlags(e) & PE_PRESENT) last = i; });
    fs.truncateSync(pages, size - 4096);
    let p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: `pages-${pm.pagesId}.img`, offset: size - 4096 });
    expect(p[0].what).toContain(`entry ${last + 1}`); // entry indexes count the head
    fs.truncateSync(pages, size + 100);
    p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: `pages-${pm.pagesId}.img`, offset: size });
    expect(p[0].what).toContain('100 bytes after the last page');
    fs.unlinkSync(pages);
    expect(errors(d).map((x) => [x.file, /^missing/.test(x.what)])).toEqual([[`pages-${pm.pagesId}.img`, true]]);
  });

  it('PE_PARENT pages without a parent, and a parent link to nowhere', () => {
    const d = fresh();
    const pid = pidOf(d);
    const f = path.join(d, `pagemap-${pid}.img`);
    const img = loadImage(f);
    const k = img.entries.findIndex((e, i) => i > 0 && !(entryFlags(e.msg) & PE_PRESENT)) ;
    const j = k > 0 ? k : img.entries.length - 1;
    const n = Number(img.entries[j].msg.nr_pages ?? img.entries[j].msg.compat_nr_pages);
    const wasPresent = !!(entryFlags(img.entries[j].msg) & PE_PRESENT);
    img.entries[j].msg.flags = PE_PARENT;
    writeImage(f, img.magic, img.entries);
    if (wasPresent) {
      const pages = path.join(d, `pages-${img.entries[0].msg.pages_id}.img`);
      fs.truncateSync(pages, fs.statSync(pages).size - n * 4096); // the last present entry's data goes away with it
    }
    let p = errors(d);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ file: `pagemap-${pid}.img`, entry: j, offset: offsets(f)[j] });
    expect(p[0].what).toContain('no parent link');
    fs.symlinkSync('../no-such-predump', path.join(d, 'parent'));
    p = errors(d);
    expect(p.some((x) => x.file === 'parent' && /does not exist/.test(x.what))).toBe(true);
  });

  it('--json: the same problems, machine-readable', () => {
    const d = fresh();
    fs.unlinkSync(path.join(d, 'files.img'));
    const r = crit(['check', '--json', d]);
    expect(r.status).toBe(1);
    const j = parseJson(r.stdout.toString()) as any;
    expect(j.ok).toBe(false);
    expect(j.problems.filter((x: any) => x.severity === 'error').length).toBe(j.errors);
    expect(j.problems.map((x: any) => x.file)).toContain(`fdinfo-${new ImageSet(d).ids(pidOf(d)).files_id}.img`);
  });
});

describe('crit check and decode --salvage on fixtures/corrupt', () => {
  const fixtures = hexFixtures();
  it('there are fixtures', () => expect(fixtures.length).toBeGreaterThanOrEqual(5));
  for (const fx of fixtures) {
    it(`${fx.name}: ${fx.meta.expect}`, () => {
      const d = scratchDir('fixture');
      const f = path.join(d, fx.name);
      fs.writeFileSync(f, fx.bytes);
      const p = checkSet(d).problems.filter((x) => x.file === fx.name && x.severity === 'error');
      expect(p, JSON.stringify(checkSet(d).problems)).toHaveLength(1);
      expect(p[0].what).toContain(fx.meta.expect);
      expect(p[0].offset).toBe(fx.meta['expect-offset'] !== undefined ? Number(fx.meta['expect-offset']) : undefined);
      expect(p[0].entry).toBe(fx.meta['expect-entry'] !== undefined ? Number(fx.meta['expect-entry']) : undefined);
      const r = crit(['decode', '--salvage', '-i', f]);
      expect(r.status, r.stderr.toString()).toBe(Number(fx.meta['salvage-exit']));
      const doc = parseJson(r.stdout.toString()) as any;
      expect(doc.entries.length).toBe(Number(fx.meta.salvage));
      const err = r.stderr.toString();
      if (r.status) {
        expect(err).toMatch(/^crit: .* \(stopped there; \d+ entr(y|ies) recovered\)\n$/);
        expect(err).toContain(`at byte ${fx.meta['expect-offset']}`);
      }
      // without --salvage, decode refuses the damaged file with the same location
      const plain = crit(['decode', '-i', f]);
      if (fx.meta['salvage-exit'] === '1' || fx.meta['expect-offset'] === '4') {
        expect(plain.status).toBe(1);
        expect(plain.stderr.toString()).toContain(`at byte ${fx.meta['expect-offset']}`);
      }
    });
  }
});

describe.skipIf(!counter)('crit check: amdgpu plugin files', () => {
  it('contents files referenced by a render node exist and match its buffer sizes', () => {
    const d = copySet(counter!.dir, 'checkgpu');
    writeRenderNode(d, [Buffer.alloc(4096, 1), Buffer.alloc(8192, 2)]);
    // CRIU 4.2 lists the plugins that took part in the dump
    expect(crit(['edit', path.join(d, 'inventory.img'), '--set', 'entries[0].plugins_entry.plugins=["amdgpu_plugin"]']).status).toBe(0);
    expect(errors(d)).toEqual([]);
    fs.truncateSync(path.join(d, 'amdgpu-drm-pages-5-128-0001.img'), 8 + 4096);
    expect(errors(d).map((p) => [p.file, p.offset])).toEqual([['amdgpu-drm-pages-5-128-0001.img', 8 + 4096]]);
    fs.unlinkSync(path.join(d, 'amdgpu-drm-pages-5-128-0000.img'));
    expect(errors(d).map((p) => p.file)).toContain('amdgpu-drm-pages-5-128-0000.img');
  });
});

describe('crit check: a set with no process', () => {
  it('a pstree.img that holds only its magic is a finding, not "no problems"', () => {
    const d = copySet(path.join(__dirname, '..', '..', 'fixtures', 'sets', 'counter'), 'checkempty');
    const ps = path.join(d, 'pstree.img');
    fs.truncateSync(ps, 8);
    expect(errors(d).map((p) => [p.file, p.offset, p.what])).toEqual([['pstree.img', 8, 'holds no process (nothing after its magic): there is no task to restore']]);
    const r = crit(['check', d]);
    expect(r.status).toBe(1);
    expect(r.stdout.toString()).not.toContain('no problems');
  });
});

describe('crit check: registers, signal handlers, the tree, plugins (sets edited with crit edit)', () => {
  const fixture = path.join(__dirname, '..', '..', 'fixtures', 'sets', 'counter');
  const pid = 15629;
  const edit = (file: string, ...sets: string[]) => {
    const r = crit(['edit', file, ...sets.flatMap((s) => ['--set', s])]);
    expect(r.status, r.stderr.toString()).toBe(0);
  };
  const found = (d: string) => errors(d).map((p) => `${p.file}: ${p.what}`);

  it('the unedited fixture is clean', () => {
    expect(found(copySet(fixture, 'sem'))).toEqual([]);
  });

  it('ip, sp and fs_base outside the mappings they need', () => {
    const d = copySet(fixture, 'sem');
    const core = path.join(d, `core-${pid}.img`);
    edit(core, 'entries[0].thread_info.gpregs.ip=0x1234');
    expect(found(d)).toEqual([`core-${pid}.img: task ${pid}: ip 0x1234 is not in an executable VMA of mm-${pid}.img (no VMA maps it): the thread would resume there`]);
    const p = errors(d)[0];
    expect([p.offset, p.entry]).toEqual([8, 0]);
    // a data mapping: mapped, but not executable
    const stack = new ImageSet(d).vmas(pid).find((v) => Number(v.prot) === 3)!;
    edit(core, `entries[0].thread_info.gpregs.ip=${BigInt(stack.start) + 16n}`, 'entries[0].thread_info.gpregs.sp=0x10', 'entries[0].thread_info.gpregs.fs_base=0x20');
    const f = found(d);
    expect(f).toHaveLength(3);
    expect(f[0]).toMatch(new RegExp(`ip 0x${(BigInt(stack.start) + 16n).toString(16)} is not in an executable VMA .*\\(it is in 0x${BigInt(stack.start).toString(16)}-0x${BigInt(stack.end).toString(16)} rw-`));
    expect(f[1]).toContain('sp 0x10 is not in a writable VMA');
    expect(f[2]).toContain('fs_base 0x20 (the thread\'s TLS) is not mapped');
    const r = crit(['check', d]);
    expect(r.status).toBe(1);
    expect(r.stdout.toString()).toContain(`core-${pid}.img: at byte 8, entry 0: task ${pid}: ip 0x`);
  });

  it('a signal handler outside executable memory; SIG_DFL and SIG_IGN are not addresses', () => {
    const d = copySet(fixture, 'sem');
    const core = path.join(d, `core-${pid}.img`);
    edit(core, 'entries[0].tc.sigactions[1].sigaction=0x4242', 'entries[0].tc.sigactions[2].sigaction=1', 'entries[0].tc.sigactions[3].sigaction=0');
    expect(found(d)).toEqual([`core-${pid}.img: task ${pid}: the handler of signal 2 (tc.sigactions[1]) is at 0x4242, not in an executable VMA (no VMA maps it)`]);
    // index 8 is signal 10: SIGKILL (9) has no entry
    edit(core, 'entries[0].tc.sigactions[1].sigaction=0', 'entries[0].tc.sigactions[8].sigaction=0x4242');
    expect(found(d)[0]).toContain('the handler of signal 10 (tc.sigactions[8])');
  });

  it('the tree: threads, one root, no cycles, sessions and groups', () => {
    const d = copySet(fixture, 'sem');
    const ps = path.join(d, 'pstree.img');
    edit(ps, `entries[0].threads=[${pid}, ${pid}]`);
    expect(found(d)).toEqual([`pstree.img: task ${pid} lists a thread twice (${pid}, ${pid})`]);
    edit(ps, 'entries[0].threads=[4242]');
    expect(found(d)).toContain(`pstree.img: task ${pid} is not among its own threads (4242)`);
    // a second task, made of the first one's images
    const child = 99999;
    edit(ps, `entries[0].threads=[${pid}]`);
    const img = loadImage(ps);
    const root = img.entries[0].msg;
    writeImage(ps, 'PSTREE', [{ msg: root }, { msg: { pid: child, ppid: pid, pgid: root.pgid, sid: root.sid, threads: [child] } }]);
    for (const k of ['core', 'mm', 'ids', 'fs']) fs.copyFileSync(path.join(d, `${k}-${pid}.img`), path.join(d, `${k}-${child}.img`));
    writeImage(path.join(d, `pagemap-${child}.img`), 'PAGEMAP', [{ msg: { pages_id: 2 } }]);
    expect(found(d)).toEqual([]);
    // the child leads its own session but stays in the root's process group
    writeImage(ps, 'PSTREE', [{ msg: root }, { msg: { pid: child, ppid: pid, pgid: root.pgid, sid: child, threads: [child] } }]);
    expect(found(d)).toEqual([`pstree.img: task ${child} is in process group ${root.pgid} and session ${child}, but task ${pid} of the same group is in session ${root.sid} (a process group lies within one session)`]);
    // a session no task leads is a note (CRIU restores it with a helper), not an error
    writeImage(ps, 'PSTREE', [{ msg: root }, { msg: { pid: child, ppid: pid, pgid: child, sid: 4242, threads: [child] } }]);
    expect(found(d)).toEqual([]);
    expect(checkSet(d).problems.map((p) => p.what)).toContain(`task ${child} is in session 4242, which no task of the tree leads (its leader exited; CRIU restores the session with a helper task)`);
    // a session named after a task of the tree that is in another session
    expect(Number(root.sid)).toBe(pid); // the root leads its session
    writeImage(ps, 'PSTREE', [{ msg: { ...root, sid: child } }, { msg: { pid: child, ppid: pid, pgid: child, sid: pid, threads: [child] } }]);
    expect(found(d)).toContain(`pstree.img: task ${pid} is in session ${child}, but task ${child} of the tree is in session ${pid} (a session leader never leaves its session)`);
    // two roots; a cycle
    writeImage(ps, 'PSTREE', [{ msg: root }, { msg: { pid: child, ppid: 0, pgid: root.pgid, sid: root.sid, threads: [child] } }]);
    expect(found(d)).toEqual(['pstree.img: 2 tasks have ppid 0 (entries 0, 1): a tree has one root']);
    writeImage(ps, 'PSTREE', [{ msg: { ...root, ppid: child } }, { msg: { pid: child, ppid: pid, pgid: root.pgid, sid: root.sid, threads: [child] } }]);
    expect(found(d).filter((f) => /own ancestor/.test(f))).toHaveLength(2);
  });

  it('inventory plugins against the plugin files present', () => {
    const d = copySet(fixture, 'sem');
    edit(path.join(d, 'inventory.img'), 'entries[0].plugins_entry.plugins=["amdgpu_plugin"]');
    expect(found(d)).toEqual(['inventory.img: plugins_entry lists amdgpu_plugin, but the set has no amdgpu plugin files (amdgpu-kfd-*, amdgpu-renderD-*)']);
    edit(path.join(d, 'inventory.img'), 'entries[0].plugins_entry=null');
    writeRenderNode(d, [Buffer.alloc(4096, 1)]);
    expect(found(d)).toEqual([]); // no plugins_entry at all: an older CRIU, which enables every plugin
    edit(path.join(d, 'inventory.img'), 'entries[0].plugins_entry={}');
    expect(found(d)[0]).toMatch(/^inventory\.img: the set has 2 amdgpu plugin files \(amdgpu-drm-pages-5-128-0000\.img, \.\.\.\) but plugins_entry does not list amdgpu_plugin/);
  });
});
