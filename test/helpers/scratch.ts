// Scratch copies of corpus image sets (the corpus itself is read-only and never modified),
// and the hand-made damaged files of fixtures/corrupt turned into binaries.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT } from './cli';
import { writeImage } from '../../images/files';

const made: string[] = [];

/** A writable copy of the files (not the subdirectories) of an images directory. */
export function copySet(dir: string, tag = 'set'): string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), `crit-${tag}-`));
  made.push(out);
  for (const n of fs.readdirSync(dir)) {
    const p = path.join(dir, n);
    if (!fs.lstatSync(p).isFile()) continue;
    fs.copyFileSync(p, path.join(out, n));
    fs.chmodSync(path.join(out, n), 0o644);
  }
  return out;
}

export function scratchDir(tag = 'tmp'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `crit-${tag}-`));
  made.push(d);
  return d;
}

export function cleanScratch(): void {
  for (const d of made.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export interface HexFixture {
  /** the image file name it stands for */
  name: string;
  bytes: Buffer;
  /** `# key: value` lines */
  meta: Record<string, string>;
}

/** fixtures/corrupt/*.hex: hex digits, '#' comments, `# key: value` expectations. */
export function hexFixtures(): HexFixture[] {
  const dir = path.join(ROOT, 'fixtures', 'corrupt');
  return fs.readdirSync(dir).filter((f) => f.endsWith('.hex')).sort().map((f) => {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    const meta: Record<string, string> = {};
    let hex = '';
    for (const line of text.split('\n')) {
      const m = /^#\s*([a-z-]+):\s*(.*)$/.exec(line);
      if (m) meta[m[1]] = m[2].trim();
      hex += line.replace(/#.*/, '').replace(/\s+/g, '');
    }
    if (!/^([0-9a-f]{2})*$/i.test(hex)) throw new Error(`${f}: not hex bytes`);
    return { name: f.slice(0, -4), bytes: Buffer.from(hex, 'hex'), meta };
  });
}

/** A render node with two buffer objects and their contents files (amdgpu plugin layout). */
export function writeRenderNode(dir: string, contents: Buffer[]): void {
  const bo = (i: number, size: number) => ({ addr: 0x100000 * (i + 1), size, offset: 0, alloc_flags: 0, alignment: 4096, preferred_domains: 4, handle: i + 1, is_import: 0, num_of_vms: 0 });
  writeImage(path.join(dir, 'amdgpu-renderD-5.img'), 'AMDGPU_RENDER_NODE', [{ msg: { gpu_id: 0x1234, id: 5, drm_render_minor: 128, num_of_bos: contents.length, bo_entries: contents.map((c, i) => bo(i, c.length)) } }]);
  contents.forEach((c, i) => {
    const hdr = Buffer.alloc(8);
    hdr.writeBigUInt64LE(BigInt(c.length));
    fs.writeFileSync(path.join(dir, `amdgpu-drm-pages-5-128-${i.toString(16).padStart(4, '0')}.img`), Buffer.concat([hdr, c]));
  });
}

