// crit edit: a changed field re-decodes to the new value and every other byte of the file is
// unchanged (other entries, unknown fields, extras); values are read as crit encode reads
// them; bad paths and values give one clear line and leave the file untouched. And the
// memory patch core (patchMemory) that crit xray --patch uses.
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { corpusSets } from '../helpers/corpus';
import { crit } from '../helpers/cli';
import { copySet, cleanScratch } from '../helpers/scratch';
import { loadImage, writeImage } from '../../images/files';
import { editImage, parseAssignment } from '../../images/query/edit';
import { patchMemory, parseHexBytes, PatchError } from '../../images/memory/patch';
import { ImageSet, entryFlags, entryPages, PE_PRESENT, PE_PARENT } from '../../images/imageset';
import { UNKNOWN } from '../../images/codec';

afterAll(cleanScratch);

const set = (name: string) => corpusSets().find((s) => s.name.startsWith('criu-4.2') && s.name.endsWith('/' + name));
const counter = set('counter');
const fdsSet = set('fds');

/** Bytes of `before` and `after` agree outside [from, from+oldLen) / [from, from+newLen). */
function sameOutside(before: Buffer, after: Buffer, from: number, oldLen: number, newLen: number): void {
  expect(after.subarray(0, from).equals(before.subarray(0, from))).toBe(true);
  expect(after.subarray(from + newLen).equals(before.subarray(from + oldLen))).toBe(true);
}

describe.skipIf(!counter)('crit edit', () => {
  it('one field of one entry: it re-decodes to the new value, every other byte is unchanged', () => {
    const d = copySet(counter!.dir, 'edit');
    const f = path.join(d, 'files.img');
    const before = fs.readFileSync(f);
    const img = loadImage(f);
    const k = img.entries.findIndex((e, i) => i > 0 && i < img.entries.length - 1 && e.msg.reg);
    const start = img.entries[k].offset;
    const oldLen = img.entries[k + 1].offset - start;
    const r = editImage(f, [parseAssignment(`entries[${k}].reg.pos=123456789012`)]);
    expect(r.reencoded).toEqual([k]);
    const after = fs.readFileSync(f);
    const back = loadImage(f);
    expect(back.entries[k].msg.reg.pos).toBe(123456789012);
    const newLen = (k + 1 < back.entries.length ? back.entries[k + 1].offset : after.length) - start;
    sameOutside(before, after, start, oldLen, newLen);
    // the entry itself differs only in that field
    const { pos: _a, ...restOld } = img.entries[k].msg.reg;
    const { pos: _b, ...restNew } = back.entries[k].msg.reg;
    expect(restNew).toEqual(restOld);
    expect(back.entries.length).toBe(img.entries.length);
  });

  it('the CLI in place and with -o; values as crit encode reads them', () => {
    const d = copySet(counter!.dir, 'editcli');
    const pid = new ImageSet(d).tasks()[0].pid;
    const mm = path.join(d, `mm-${pid}.img`);
    fs.chmodSync(mm, 0o640);
    const orig = fs.readFileSync(mm);
    const out = path.join(d, 'out.img');
    let r = crit(['edit', mm, '--set', '[0].vmas[1].prot=PROT_READ | PROT_EXEC', '--set', 'entries[0].mm_brk=0x1000', '-o', out]);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(r.stdout.toString()).toContain('entries[0].vmas[1].prot: PROT_READ | PROT_EXEC -> PROT_READ | PROT_EXEC');
    expect(fs.readFileSync(mm).equals(orig)).toBe(true); // -o leaves the input alone
    const m = loadImage(out).entries[0].msg;
    expect(m.mm_brk).toBe(0x1000);
    expect(Number(m.vmas[1].prot)).toBe(5);
    r = crit(['edit', mm, '--set', '[0].vmas[2].prot=7', '--set', '[0].vmas[2].madv=null', '--set', '[0].mm_saved_auxv[0]=33']);
    expect(r.status, r.stderr.toString()).toBe(0);
    const m2 = loadImage(mm).entries[0].msg;
    expect(Number(m2.vmas[2].prot)).toBe(7);
    expect(m2.vmas[2].madv).toBeUndefined();
    expect(Number(m2.mm_saved_auxv[0])).toBe(33);
    expect(fs.statSync(mm).mode & 0o777).toBe(0o640); // in place keeps the mode
    // enum names and JSON sub-messages
    const fdinfo = path.join(d, `fdinfo-${new ImageSet(d).ids(pid).files_id}.img`);
    r = crit(['edit', fdinfo, '--set', '[0].type=PIPE']);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(Number(loadImage(fdinfo).entries[0].msg.type)).toBe(2);
    const core = path.join(d, `core-${pid}.img`);
    r = crit(['edit', core, '--set', '[0].tc.rlimits={"rlimits": [{"cur": 18446744073709551615, "max": 1}]}']);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(loadImage(core).entries[0].msg.tc.rlimits.rlimits).toEqual([{ cur: 18446744073709551615n, max: 1 }]);
    expect(fs.readdirSync(d).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('bad paths and values: one line naming the problem, exit 1, the file untouched', () => {
    const d = copySet(counter!.dir, 'editbad');
    const pid = new ImageSet(d).tasks()[0].pid;
    const core = path.join(d, `core-${pid}.img`);
    const orig = fs.readFileSync(core);
    const cases: [string, RegExp][] = [
      ['[0].tc.nosuch=1', /task_core_entry has no field 'nosuch'/],
      ['[0].tc.exit_code=-1', /entries\[0\]\.tc\.exit_code: value -1 out of range for uint32/],
      ['[0].tc.comm={"a": 1}', /entries\[0\]\.tc\.comm: expected a string/],
      ['[0].mtype=PDP11', /'PDP11' is not a value of enum/],
      ['[5].tc.comm=x', /the image has 1 entry/],
      ['tc.comm=x', /a path starts with the entry/],
      ['[0].tc.comm', /expected PATH=VALUE/],
      ['[0].tc.task_state=null', /required in task_core_entry and cannot be removed/],
      ['[0].tc.comm.x=1', /a string has no fields/],
    ];
    for (const [arg, re] of cases) {
      const r = crit(['edit', core, '--set', arg]);
      expect(r.status, arg).toBe(1);
      const err = r.stderr.toString();
      expect(err, arg).toMatch(re);
      expect(err.trim().split('\n'), arg).toHaveLength(1);
      expect(err).toMatch(/^crit: /);
    }
    expect(fs.readFileSync(core).equals(orig)).toBe(true);
    expect(fs.readdirSync(d).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(crit(['edit', core]).status).toBe(2); // no --set: a usage error
  });

  it('unknown fields of the edited entry and of every other entry survive', () => {
    const d = copySet(counter!.dir, 'editunk');
    const f = path.join(d, 'files.img');
    const img = loadImage(f);
    const extraField = Uint8Array.from([0xa8, 0x06, 0x2a]); // field 101, varint 42: unknown to the schema
    img.entries[1].msg[UNKNOWN] = [{ no: 101, bytes: extraField }];
    img.entries[2].msg[UNKNOWN] = [{ no: 101, bytes: extraField }];
    writeImage(f, img.magic, img.entries);
    const before = fs.readFileSync(f);
    const old2 = loadImage(f).entries[2].offset;
    editImage(f, [parseAssignment('[1].reg.flags=1')]);
    const back = loadImage(f);
    expect(Number(back.entries[1].msg.reg.flags)).toBe(1);
    expect(back.entries[1].msg[UNKNOWN]).toEqual([{ no: 101, bytes: extraField }]);
    expect(back.entries[2].msg[UNKNOWN]).toEqual([{ no: 101, bytes: extraField }]);
    const after = fs.readFileSync(f);
    expect(after.subarray(back.entries[2].offset).equals(before.subarray(old2))).toBe(true);
    expect(after.subarray(0, back.entries[1].offset).equals(before.subarray(0, back.entries[1].offset))).toBe(true);
  });
});

describe.skipIf(!fdsSet)('crit edit: extras are copied verbatim', () => {
  it('pipes-data: an edit keeps the data; changing its length is refused', () => {
    const d = copySet(fdsSet!.dir, 'editextra');
    const f = path.join(d, 'pipes-data.img');
    const img = loadImage(f);
    const before = fs.readFileSync(f);
    editImage(f, [parseAssignment('[0].pipe_id=4242')]);
    const back = loadImage(f);
    expect(Number(back.entries[0].msg.pipe_id)).toBe(4242);
    expect(back.entries[0].extra).toEqual(img.entries[0].extra);
    const mid = fs.readFileSync(f);
    // the data after the entry's payload is the same bytes, to the end of the file
    const data = (img.entries[0].extra as { data: Uint8Array }).data.length;
    const tailOld = img.entries.length > 1 ? img.entries[1].offset : before.length;
    const tailNew = back.entries.length > 1 ? back.entries[1].offset : mid.length;
    expect(mid.subarray(tailNew - data).equals(before.subarray(tailOld - data))).toBe(true);
    expect(() => editImage(f, [parseAssignment(`[0].bytes=${Number(img.entries[0].msg.bytes) + 1}`)])).toThrow(/would not read back|reads back/);
    expect(fs.readFileSync(f).equals(mid)).toBe(true);
    expect(fs.readdirSync(d).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe.skipIf(!counter)('patchMemory (crit xray --patch)', () => {
  it('writes the bytes where the reader finds them, nothing else in the pages file changes', () => {
    const d = copySet(counter!.dir, 'patch');
    let s = new ImageSet(d);
    const pid = s.tasks()[0].pid;
    const pm = s.pagemap(pid);
    const e = pm.entries.find((x) => entryFlags(x) & PE_PRESENT && entryPages(x) >= 2)!;
    const addr = BigInt(e.vaddr) + 4090n; // across a page boundary
    const pagesFile = path.join(d, `pages-${pm.pagesId}.img`);
    const before = fs.readFileSync(pagesFile);
    const bytes = parseHexBytes('de ad be ef 00 11 22 33 44 55');
    const r = patchMemory(s, pid, addr, bytes);
    expect(r.files).toEqual([pagesFile]);
    expect(r.old.length).toBe(bytes.length);
    s.close();
    s = new ImageSet(d);
    expect(Buffer.from(s.memory(pid).readBytes(addr, bytes.length)).equals(Buffer.from(bytes))).toBe(true);
    const after = fs.readFileSync(pagesFile);
    const diffAt: number[] = [];
    for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) diffAt.push(i);
    expect(diffAt.length).toBeLessThanOrEqual(bytes.length);
    expect(after.length).toBe(before.length);
    s.close();
  });

  it('refuses bytes the image does not hold, and bytes that live in a parent image', () => {
    const base = copySet(counter!.dir, 'patchbase');
    const d = copySet(counter!.dir, 'patchchild');
    let s = new ImageSet(d);
    const pid = s.tasks()[0].pid;
    const vmas = s.memory(pid).vmas;
    const gap = vmas[0].start - 0x10000n;
    expect(() => patchMemory(s, pid, gap, parseHexBytes('00'))).toThrow(/not mapped/);
    // the last present entry becomes PE_PARENT: its pages are now the parent's
    const f = path.join(d, `pagemap-${pid}.img`);
    const img = loadImage(f);
    let j = -1;
    img.entries.forEach((x, i) => { if (i > 0 && entryFlags(x.msg) & PE_PRESENT) j = i; });
    const n = Number(img.entries[j].msg.nr_pages ?? img.entries[j].msg.compat_nr_pages);
    img.entries[j].msg.flags = PE_PARENT;
    writeImage(f, img.magic, img.entries);
    const pages = path.join(d, `pages-${img.entries[0].msg.pages_id}.img`);
    fs.truncateSync(pages, fs.statSync(pages).size - n * 4096);
    fs.symlinkSync(base, path.join(d, 'parent'));
    s.close();
    s = new ImageSet(d);
    const before = fs.readFileSync(pages);
    expect(() => patchMemory(s, pid, BigInt(img.entries[j].msg.vaddr), parseHexBytes('01 02'))).toThrow(PatchError);
    expect(() => patchMemory(s, pid, BigInt(img.entries[j].msg.vaddr), parseHexBytes('01 02'))).toThrow(/parent image/);
    expect(fs.readFileSync(pages).equals(before)).toBe(true);
    expect(() => parseHexBytes('xyz')).toThrow(PatchError);
    s.close();
  });
});
