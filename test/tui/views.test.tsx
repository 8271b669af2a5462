// Component tests of every view, rendered headless at 80x24 on corpus sets and small fixtures.
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { corpusSets } from '../helpers/corpus';
import { tui, Tui, ESC, ENTER, DOWN, TAB, PGDN } from './helpers';
import { KEYS, helpLines } from '../../tui/keys';
import { noColor, tone } from '../../tui/ui';
import { writeImage } from '../../images/files';
import { loadMessages } from '../../images/files';

const sets = corpusSets();
const byName = (n: string) => sets.find((s) => s.name.endsWith('/' + n) && s.name.startsWith('criu-4.2'));
const counter = byName('counter');
const manyvmas = byName('manyvmas');
const counter41 = sets.find((s) => s.name === 'criu-4.1/counter');
if (!counter) console.warn('\n*** corpus counter set not found: TUI corpus tests are SKIPPED ***\n');

let open: Tui | undefined;
afterEach(() => {
  open?.unmount();
  open = undefined;
});

function tmpCopy(dir: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-tui-'));
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    if (fs.statSync(p).isFile()) fs.copyFileSync(p, path.join(d, f));
  }
  for (const f of fs.readdirSync(d)) fs.chmodSync(path.join(d, f), 0o644);
  return d;
}

describe.skipIf(!counter)('tui on the counter set', () => {
  it('overview: inventory, tasks, pages, check, files with kinds and entry counts', async () => {
    const t = (open = await tui(counter!.dir));
    const first = await t.waitFor('check:');
    expect(first).toContain('tasks 1');
    const f = await t.waitFor(/check: \d+ files|check: \d+ problem/);
    expect(f).toMatch(/pages 27 stored/);
    expect(f).toMatch(/core-32288\.img\s+1\.8 KiB\s+1\s+CORE/);
    expect(f).toMatch(/pagemap-32288\.img.*13\s+PAGEMAP/);
    expect(f).toContain('raw page data');
    // fits 80x24: no line is wider, and there are exactly 23 lines (one short of the terminal)
    const lines = f.split('\n');
    expect(lines.length).toBe(23);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
  });

  it('process tree -> task: core, fds, sockets, vmas with resident pages', async () => {
    const t = (open = await tui(counter!.dir));
    await t.press('2');
    let f = await t.waitFor('PID');
    expect(f).toMatch(/32288\s+0\s+32288\s+32288\s+alive\s+1\s+counter/);
    await t.press(ENTER);
    f = await t.waitFor('registers of thread 32288');
    expect(f).toContain('[core]');
    expect(f).toContain('credentials');
    expect(f).toContain('signals');
    expect(f).toContain('timers');
    expect(f).toMatch(/bp\s+0x000056151aeb02a0\s+-> rw-p \[heap\]/);
    await t.press(TAB);
    f = await t.waitFor('[fds]');
    expect(f).toContain('/tmp/criu-tests/run/counter.out');
    expect(f).toMatch(/cwd\s+REG/);
    await t.press(TAB);
    await t.waitFor('[sockets]');
    await t.press(TAB);
    f = await t.waitFor('[vmas]');
    expect(f).toMatch(/START\s+END\s+PROT\s+SIZE\s+RSS\s+MAPPING/);
    expect(f).toMatch(/5614e2ee3000 5614e2ee4000 r--\s+4\.0 KiB\s+1\s+\/tmp\/criu-tests\/src\/counter \+/);
    // the breadcrumb, and Esc back through it
    expect(f).toContain('counter › processes › 32288 counter');
    await t.press(ESC);
    await t.waitFor('COMM');
    await t.press(ESC);
    await t.waitFor('tasks 1');
  });

  it('memory x-ray: goto, hexdump with VMA/file, inspector, search with n/N, follow a pointer', async () => {
    const t = (open = await tui(counter!.dir));
    await t.press(':');
    await t.type('mem 5614e2ee3010');
    await t.press(ENTER);
    let f = await t.waitFor('inspector @5614e2ee3010');
    expect(f).toContain('0x5614e2ee3010  r--p /tmp/criu-tests/src/counter +0x2000 +0x10  pages-1.img+0x');
    expect(f).toMatch(/5614e2ee3010 75 2d 74 65 73 74 73 2f  72 75 6e 2f 63 6f 75 6e u-tests\/run\/coun/);
    expect(f).toMatch(/u8 117\s+i8 117/);
    // search: text, then n and N
    await t.press('/');
    await t.type('counter');
    await t.press(ENTER);
    f = await t.waitFor(/\/counter: \d+\/\d+/);
    const m = /\/counter: (\d+)\/(\d+)/.exec(f)!;
    const total = Number(m[2]);
    expect(total).toBeGreaterThan(1);
    await t.press('n');
    f = await t.waitFor(`/counter: ${(Number(m[1]) % total) + 1}/${total}`);
    await t.press('N');
    await t.waitFor(`/counter: ${m[1]}/${total}`);
    // hex search
    await t.press('/');
    await t.type('x:2f 63 72 69 75');
    await t.press(ENTER);
    f = await t.waitFor(/\/x:2f 63 72 69 75: \d+\/\d+/);
    // a range the image does not hold is one line with the reason
    await t.press(':');
    await t.type('mem 5614e2ee0000');
    await t.press(ENTER);
    f = await t.waitFor('inspector @5614e2ee0000');
    expect(f).toMatch(/5614e2ee0000\.\.5614e2ee1000 4\.0 KiB\s+clean page of \/tmp\/criu-tests\/src\/counter/);
    // follow a pointer: the saved bp register points at the heap; the stack holds pointers
    await t.press(':');
    await t.type('mem 7ffcd73ed868');
    await t.press(ENTER);
    f = await t.waitFor('inspector @7ffcd73ed868');
    if (/ptr -> /.test(f)) {
      await t.press('p');
      f = await t.waitFor(/memory @[0-9a-f]+ › memory @[0-9a-f]+/);
      await t.press(ESC);
      await t.waitFor('inspector @7ffcd73ed868');
    }
    // cursor motion
    await t.press('l', 'l', DOWN);
    await t.waitFor('inspector @7ffcd73ed87a');
    await t.press(']');
    f = await t.waitFor('inspector @ffffffffff600000');
    expect(f).toMatch(/ffffffffff600000\.\.ffffffffff601000 4\.0 KiB\s+vsyscall page: kernel text, never d/);
    await t.press('[');
    await t.waitFor(/inspector @7ffcd/);
  });

  it('image browser: JSON tree with sizes, h/l, wire bytes, search', async () => {
    const t = (open = await tui(counter!.dir));
    await t.press(':');
    await t.type('img core');
    await t.press(ENTER);
    let f = await t.waitFor('magic: "CORE"');
    expect(f).toMatch(/▾ entries: \[1\]/);
    expect(f).toMatch(/▾ \[0\]: \{4\}/);
    expect(f).toContain('header: bytes 0..8 (magic words)');
    await t.press(DOWN, DOWN);
    f = await t.waitFor("entry 0: bytes 8..1854 (1846 B: size word + payload)");
    expect(f).toMatch(/000000                          32 07 00 00 08 01/);
    await t.press(DOWN);
    f = await t.waitFor('mtype: "X86_64"');
    await t.press(DOWN); // thread_info
    await t.press('h');
    f = await t.waitFor(/▸ thread_info: \{\d+\}/);
    await t.press('l');
    await t.waitFor(/▾ thread_info: \{\d+\}/);
    await t.press('/');
    await t.type('comm');
    await t.press(ENTER);
    f = await t.waitFor(/\/comm: 1\/2/);
    expect(f).toContain('.entries[0].tc.comm');
    await t.press('n');
    await t.waitFor(/\/comm: 2\/2/);
    await t.press('w');
    f = await t.waitFor(/\/comm: 2\/2/);
    expect(f).not.toMatch(/entry 0: bytes/);
  });

  it('help is generated from the key table', async () => {
    const t = (open = await tui(counter!.dir));
    await t.press('?');
    const f = await t.waitFor('Everywhere');
    expect(f).toContain('quit');
    // every binding appears in the help of some context
    const all = new Set<string>();
    for (const c of ['global', 'list', 'tree', 'task', 'memory', 'json'] as const) for (const l of helpLines(c)) all.add(l);
    const text = [...all].join('\n');
    for (const b of KEYS) expect(text).toContain(b.help);
    await t.press('?');
    await t.waitFor('tasks 1');
  });

  it('filter with / in lists, Esc clears', async () => {
    const t = (open = await tui(counter!.dir));
    await t.press('/');
    await t.type('pagemap');
    await t.press(ENTER);
    const f = await t.waitFor('filter /pagemap: 1 of');
    expect(f).toContain('pagemap-32288.img');
    expect(f).not.toContain('core-32288.img');
    await t.press(ESC);
    await t.waitFor('core-32288.img');
  });

  it('colours follow NO_COLOR (the real terminal check is in the e2e test)', () => {
    expect(noColor({ NO_COLOR: '1' })).toBe(true);
    expect(noColor({ NO_COLOR: '' })).toBe(false);
    expect(noColor({})).toBe(false);
    expect(tone('printable', true).color).toBeDefined();
    expect(tone('printable', false)).toEqual({ bold: undefined });
    expect(tone('error', false)).toEqual({ bold: true });
  });

  it('edit a field: validated, written atomically, the crit edit command shown', async () => {
    const dir = tmpCopy(counter!.dir);
    const t = (open = await tui(dir));
    await t.press(':');
    await t.type('img core-32288.img');
    await t.press(ENTER);
    await t.waitFor('magic: "CORE"');
    await t.press('/');
    await t.type('comm');
    await t.press(ENTER);
    await t.waitFor('/comm: 1/2');
    await t.press('E');
    await t.waitFor('set entries[0].tc.comm');
    await t.press('\x15'); // ctrl+u clears the prefilled value
    await t.type('"renamed"');
    await t.press(ENTER);
    const f = await t.waitFor('written atomically');
    expect(f).toContain("crit edit");
    expect(loadMessages(path.join(dir, 'core-32288.img'))[0].tc.comm).toBe('renamed');
    await t.waitFor('"renamed"');
    // an invalid value is refused and the file is left alone
    await t.press('/');
    await t.type('comm');
    await t.press(ENTER);
    await t.waitFor('/comm: 1/2');
    await t.press('E');
    await t.press('\x15');
    await t.type('{"nope": 1}');
    await t.press(ENTER);
    await t.waitFor('entries[0].tc.comm: expected a string');
    expect(loadMessages(path.join(dir, 'core-32288.img'))[0].tc.comm).toBe('renamed');
  });
});

describe('tui on fixtures', () => {
  it('a damaged image: the overview flags it, the browser shows where decoding stopped', async () => {
    if (!counter) return;
    const dir = tmpCopy(counter.dir);
    const core = path.join(dir, 'core-32288.img');
    fs.truncateSync(core, 900);
    const t = (open = await tui(dir));
    let f = await t.waitFor('DAMAGED');
    expect(f).toMatch(/core-32288\.img.*DAMAGED: at byte \d+/);
    await t.press(':');
    await t.type('img core-32288.img');
    await t.press(ENTER);
    f = await t.waitFor('decoding stopped');
    expect(f).toMatch(/✗ decoding stopped: at byte 8, entry 0: size word says 1842 bytes but only 888/);
    expect(f).toMatch(/decoding stopped at byte 8/);
  });

  it('GPU buffers: BOs with VA mappings, contents in the hex pane', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-tui-gpu-'));
    writeImage(path.join(dir, 'amdgpu-renderD-1.img'), 'AMDGPU_RENDER_NODE', [{
      msg: { gpu_id: 0x1234, id: 1, drm_render_minor: 128, num_of_bos: 1, bo_entries: [{ addr: 0x10000, size: 64, offset: 0, alloc_flags: 0, alignment: 4096, preferred_domains: 4, handle: 7, is_import: 0, num_of_vms: 1, vm_entries: [{ addr: 0x400000, size: 64, offset: 0, flags: 0 }] }] },
    }]);
    const contents = Buffer.alloc(8 + 64);
    contents.write('GPU buffer contents!', 8, 'latin1');
    fs.writeFileSync(path.join(dir, 'amdgpu-drm-pages-1-128-0000.img'), contents);
    const t = (open = await tui(dir));
    await t.press('4');
    let f = await t.waitFor('amdgpu-renderD-1.img');
    expect(f).toMatch(/render node gpu 1234 renderD128\s+1 BOs/);
    expect(f).toMatch(/0\s+7\s+64 B VRAM\s+0x10000 va 0x400000\+64 B\s+amdgpu-drm-/);
    await t.press(DOWN, ENTER);
    f = await t.waitFor('inspector');
    expect(f).toMatch(/00000000 47 50 55 20 62 75 66 66  65 72 20 63 6f 6e 74 65 GPU buffer conte/);
    await t.press('/');
    await t.type('contents');
    await t.press(ENTER);
    await t.waitFor('/contents: 1/1');
  });

  it('a directory with no tasks still opens', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-tui-empty-'));
    const t = (open = await tui(dir));
    await t.waitFor('tasks 0');
    await t.press('2');
    await t.waitFor('no pstree.img');
  });
});

describe.skipIf(!counter || !counter41)('diff mode', () => {
  it('the tree of differences; Enter on a field opens its image entry', async () => {
    const t = (open = await tui(counter41!.dir, { dirB: counter!.dir }));
    let f = await t.waitFor(/differences/);
    expect(f).toMatch(/▾ processes \(2\)/);
    expect(f).toMatch(/files\.img\[5\]\.reg\.name/);
    // collapse a section
    await t.press(ENTER);
    f = await t.waitFor(/▸ processes \(2\)/);
    await t.press('/');
    await t.type('reg.pos');
    await t.press(ENTER);
    await t.waitFor('filter /reg.pos');
    await t.press(ENTER);
    f = await t.waitFor('files.img[5]');
    expect(f).toContain('magic: "FILES"');
  });

  it('a changed memory range shows both sides', async () => {
    const { MemDiffView } = await import('../../tui/views/diff');
    expect(typeof MemDiffView).toBe('function');
    // same set on both sides: no bytes differ, both panes show the same bytes
    const t = (open = await tui(counter!.dir, { dirB: counter!.dir, start: { v: 'memdiff', pid: 32288, addr: 0x5614e2ee3010n } }));
    const f = await t.waitFor('bytes differ here');
    expect(f).toContain('0 of');
    expect(f.match(/5614e2ee3010 75 2d 74 65/g)?.length).toBe(2);
  });
});

describe.skipIf(!manyvmas)('30,021 VMAs', () => {
  it('opens in under a second and scrolls without lag', async () => {
    const t0 = performance.now();
    const t = (open = await tui(manyvmas!.dir));
    await t.waitFor('mm-18291.img');
    const opened = performance.now() - t0;
    await t.press(':');
    await t.type('mm');
    await t.press(ENTER);
    let f = await t.waitFor('30021 VMAs');
    const toVmas = performance.now() - t0;
    const s0 = performance.now();
    for (let i = 0; i < 20; i++) await t.press(PGDN);
    await t.press('G');
    f = await t.waitFor(/7ff/);
    const scroll = (performance.now() - s0) / 21;
    await t.press('/');
    await t.type('[vdso]');
    await t.press(ENTER);
    f = await t.waitFor('filter /[vdso]: 1 of 30021');
    console.log(`manyvmas: overview ${opened.toFixed(0)} ms, VMA list ${toVmas.toFixed(0)} ms, ${scroll.toFixed(1)} ms per page (incl. ~20 ms test ticks)`);
    expect(opened).toBeLessThan(1000);
    expect(toVmas).toBeLessThan(2000);
    expect(scroll).toBeLessThan(100);
  });
});
