// CRIU's LZ4-compressed pages (spec compressed-pages.md): liblz4 against the spec's vectors, the
// worked G1/G2 examples read through the memory reader, schema recognition (and the wrong-schema
// reading rejected, not misread), crit compress/decompress on corpus and fixture sets in both
// schemas (every reader sees the same bytes, check is clean, diff finds nothing, decompress gives
// the original files back), and damaged blocks reported on one line.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { createHash } from 'crypto';
import { ImageSet } from '../../images/imageset';
import { decodeMessage, encodeMessage } from '../../images/codec';
import { loadMessages, writeImage } from '../../images/files';
import { analysePagemap, buildLayout, withMeta, Schema } from '../../images/memory/compressed';
import { lz4DecodeExact, lz4DecodeBatch, lz4Encode, lz4Bound } from '../../images/memory/lz4';
import { compressSet, decompressSet, CompressOptions } from '../../images/memory/convert';
import { checkSet } from '../../images/query/check';
import { diffSets } from '../../images/query/diff';
import { searchMemory } from '../../images/query/search';
import { crit, ROOT } from '../helpers/cli';
import { corpusSets } from '../helpers/corpus';
import { scratchDir, cleanScratch } from '../helpers/scratch';

const PAGE = 4096;
const hx = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const ff = (n: number) => 'ff'.repeat(n);
const seq = (from: number, to: number) => Buffer.from(Array.from({ length: to - from + 1 }, (_, i) => from + i)).toString('hex');

// §12 inputs
const A = Buffer.alloc(PAGE, 0x61);
const C = Buffer.concat([Buffer.from('CRIU'), Buffer.alloc(PAGE - 4)]);
const I = Buffer.concat(Array.from({ length: 16 }, () => hx(seq(0, 255))));
const XY = Buffer.concat([Buffer.alloc(PAGE, 0x78), Buffer.alloc(PAGE, 0x79)]);
const Z = Buffer.alloc(PAGE);
const R4 = Buffer.concat([A, Z, I, C]);
const RAW = Buffer.concat(Array.from({ length: 128 }, (_, i) => createHash('sha256').update(`criu-raw-${i}`).digest()));

// §12 LZ4 blocks
const LZ = {
  A: hx('1f610100fffffffffffffffffffffffffffffff6506161616161'),
  C: hx('5f43524955000100fffffffffffffffffffffffffffffff2500000000000'),
  I: hx('fff1' + seq(0, 255) + '0001fffffffffffffffffffffffffffff650fbfcfdfeff'),
  XY: hx('1f780100fffffffffffffffffffffffffffffffb1f790100fffffffffffffffffffffffffffffff6507979797979'),
  R4: hx('1f610100' + ff(15) + 'fb' + '1f000100' + ff(15) + 'fc' + 'fff0' + seq(1, 255) + '0001' + ff(14) + 'fb' + '4f435249550320' + ff(15) + 'f3' + '500000000000'),
};

// §12.1 / §12.2 pagemap entries
const ENT = {
  g1: { E1: '0880800410002004280332041a00990238b302', E3: '088080081000200c2802320380201e389e20', E5: '088080101000200428053203d7021a38f1024004' },
  g2: { E1: '08808004100020042803320d0a041a00990210b30218012000', E3: '088080081000200c2802320c0a0380201e109e2018012000', E5: '08808010100020042805320c0a03d7021a10f10218042000' },
  E2: '0880e004100020022801',
  E4: '0880800c1000200c2801',
  E1padded: '088080041000200c2803320d0a041a00990210804018012001',
};
const PAGEMAP_G1_FILE = hx(
  '19435654254008560200000008011300000008808004100020042803320' +
    '41a00990238b3020a0000000880e00410002002280112000000088080081000200c2802320380201e389e200a00000008' +
    '80800c1000200c2801',
);

const entry = (h: string) => decodeMessage('pagemap_entry', hx(h));

afterAll(() => cleanScratch());

describe('liblz4 against the spec vectors (§12)', () => {
  it('inputs are the ones the spec describes', () => {
    expect(sha(A)).toBe('c93eee2d0db02f10acc7460d9576e122dcf8cd53c4bf8dfcae1b3e74ebcfff5a');
    expect(sha(C)).toBe('f5bdf69280a2b5e76b02757cae56859ea359725c9143ca39c922d2d980239fb6');
    expect(sha(I)).toBe('c8f5d0341d54d951a71b136e6e2afcb14d11ed8489a7ae126a8fee0df6ecf193');
    expect(sha(R4)).toBe('1f48ff2d9fff18a60cd9c929cbaaa655114c9d0ad023fdb4c9031383aed2c760');
    expect(RAW.subarray(0, 16).toString('hex')).toBe('152abe864f182ecb621b05d643a60394');
    expect(sha(RAW)).toBe('46ee41509f0f5e5990dcbf3cbd4a539501149247683b86261d93dbdb275e724b');
  });

  it('decodes every vector to exactly its input, and refuses a buffer one byte off either way', () => {
    for (const [name, input] of [['A', A], ['C', C], ['I', I], ['XY', XY], ['R4', R4]] as const) {
      const blk = LZ[name];
      const out = Buffer.alloc(input.length);
      lz4DecodeExact(blk, out);
      expect(out.equals(input), name).toBe(true);
      expect(() => lz4DecodeExact(blk, Buffer.alloc(input.length - 1)), name).toThrow(/not a valid LZ4 block/);
      expect(() => lz4DecodeExact(blk, Buffer.alloc(input.length + 1)), name).toThrow(/decodes to \d+ bytes, not/);
    }
    expect(LZ.I.length).toBe(281);
    expect(LZ.R4.length).toBe(343);
  });

  it('the batch decoder decodes blocks in one call and stops at the first that is not exact', () => {
    const src = Buffer.concat([LZ.A, LZ.I, LZ.C]);
    const dst = Buffer.alloc(3 * PAGE);
    const plan = Float64Array.from([0, 26, 0, PAGE, 26, 281, PAGE, PAGE, 307, 30, 2 * PAGE, PAGE]);
    expect(lz4DecodeBatch(src, dst, plan, 3)).toBe(3);
    expect(dst.equals(Buffer.concat([A, I, C]))).toBe(true);
    plan[7] = PAGE + 1; // I asked for one byte more than it holds
    expect(lz4DecodeBatch(src, dst, plan, 3)).toBe(1);
  });

  it('compresses at acceleration 1 to the same bytes as the spec (CRIU links the same liblz4)', () => {
    const dst = Buffer.alloc(lz4Bound(4 * PAGE));
    for (const [name, input] of [['A', A], ['C', C], ['I', I], ['XY', XY], ['R4', R4]] as const) {
      const n = lz4Encode(input, dst, 1);
      expect(dst.subarray(0, n).toString('hex'), name).toBe(LZ[name].toString('hex'));
    }
    // RAW does not shrink below CRIU's 7/8 threshold: writers store it raw
    expect(lz4Encode(RAW, dst, 1)).toBeGreaterThanOrEqual(3584);
  });
});

/** pages-1.img of §12.1 (the G2 entries of §12.2 describe the same file). */
function workedPages(): Buffer {
  const f = Buffer.alloc(16384);
  LZ.A.copy(f, 0);
  LZ.I.copy(f, 26);
  RAW.copy(f, 4096);
  LZ.C.copy(f, 8192);
  I.copy(f, 12288);
  return f;
}

/** A minimal set around one pagemap: inventory, an mm with one anonymous VMA, pagemap-1, pages-1. */
function vectorSet(entries: string[], pages: Buffer, compress = 1): string {
  const dir = scratchDir('lz4vec');
  writeImage(path.join(dir, 'inventory.img'), 'INVENTORY', [{ msg: { img_version: 3, compress } }]);
  const mm = loadMessages(path.join(ROOT, 'fixtures', 'sets', 'counter', 'mm-15629.img'))[0];
  mm.vmas = [{ start: 0x10000, end: 0x60000, pgoff: 0, shmid: 0, prot: 3, flags: 0x22, status: 0x201, fd: -1 }];
  writeImage(path.join(dir, 'mm-1.img'), 'MM', [{ msg: mm }]);
  writeImage(path.join(dir, 'pagemap-1.img'), 'PAGEMAP', [{ msg: { pages_id: 1 } }, ...entries.map((h) => ({ msg: entry(h) }))]);
  fs.writeFileSync(path.join(dir, 'pages-1.img'), pages);
  return dir;
}

describe('the worked examples through the memory reader (§12.1, §12.2)', () => {
  it('the G1 pagemap file decodes, and our encoder writes its metadata back byte for byte', () => {
    expect(sha(workedPages())).toBe('1f6e29a7552afb5dd5b67515ab27a33552bf75fe1b7d3a5e9e0547922c2afe40');
    const dir = vectorSet([ENT.g1.E1, ENT.E2, ENT.g1.E3, ENT.E4], workedPages());
    expect(fs.readFileSync(path.join(dir, 'pagemap-1.img')).equals(PAGEMAP_G1_FILE)).toBe(true);
    // metadata made by withMeta from the plain entries equals the spec's entries
    const plain = (h: string, flags: number) => ({ ...entry(h.slice(0, h.indexOf('28') + 4)), flags });
    const g1 = withMeta(plain(ENT.g1.E1, 4), { sizes: [26, 0, 281], ppb: 1, padded: false }, 'g1', PAGE, false);
    expect(Buffer.from(encodeMessage('pagemap_entry', g1)).toString('hex')).toBe(ENT.g1.E1);
    const g2 = withMeta(plain(ENT.g2.E1, 4), { sizes: [26, 0, 281], ppb: 1, padded: false }, 'g2', PAGE, false);
    expect(Buffer.from(encodeMessage('pagemap_entry', g2)).toString('hex')).toBe(ENT.g2.E1);
    const g2e5 = withMeta(plain(ENT.g2.E5, 4), { sizes: [343, 26], ppb: 4, padded: false }, 'g2', PAGE, false);
    expect(Buffer.from(encodeMessage('pagemap_entry', g2e5)).toString('hex')).toBe(ENT.g2.E5);
    const g1e5 = withMeta(plain(ENT.g1.E5, 4), { sizes: [343, 26], ppb: 4, padded: false }, 'g1', PAGE, true);
    expect(Buffer.from(encodeMessage('pagemap_entry', g1e5)).toString('hex')).toBe(ENT.g1.E5);
    const pad = withMeta(plain(ENT.E1padded, 12), { sizes: [26, 0, 281], ppb: 1, padded: true }, 'g2', PAGE, false);
    expect(Buffer.from(encodeMessage('pagemap_entry', pad)).toString('hex')).toBe(ENT.E1padded);
  });

  for (const schema of ['g1', 'g2'] as const) {
    it(`${schema}: every byte at its address, the lazy entry absent, check clean for the pages`, () => {
      const dir = vectorSet([ENT[schema].E1, ENT.E2, ENT[schema].E3, ENT.E4], workedPages());
      const set = new ImageSet(dir, { pageSize: PAGE });
      const mem = set.memory(1);
      const e1 = mem.readBytes(0x10000n, 3 * PAGE);
      expect(sha(e1)).toBe('4f7b3633b77a62550e37e00cffc8772579cab26b06376ac152c4487eb75fb9b8');
      expect(Buffer.from(e1).equals(Buffer.concat([A, Z, I]))).toBe(true);
      expect(mem.read(0x13000n, PAGE)[0].absent).toMatch(/lazy/);
      const e3 = mem.readBytes(0x20000n, 2 * PAGE);
      expect(sha(e3)).toBe('4110107e4d0bddae1ea717b54cd45440e59d9207d857aecd782994bb5da8efed');
      expect(Buffer.from(mem.readBytes(0x30000n, PAGE)).equals(I)).toBe(true);
      // a read inside a block, across blocks, and through readInto (search's path)
      expect(Buffer.from(mem.readBytes(0x10ff0n, 0x20)).equals(Buffer.concat([A.subarray(PAGE - 16), Z.subarray(0, 16)]))).toBe(true);
      const buf = Buffer.alloc(3 * PAGE);
      mem.readInto(0x10000n, buf, 0, 3 * PAGE);
      expect(buf.equals(Buffer.concat([A, Z, I]))).toBe(true);
      expect(mem.layout(0x20000n, 1)[0].origin).toBe(`pages-1.img+0x1000 (raw block, pagemap-1.img entry 3, block 0)`);
      expect(mem.layout(0x30000n, 1)[0].origin).toBe('pages-1.img+0x3000'); // aligned entry without metadata: plain
      expect(mem.storage()[0]).toMatchObject({ compressed: true, schema: expect.stringContaining(schema.toUpperCase()) });
      set.close();
      const r = checkSet(dir);
      expect(r.problems.filter((p) => /pages-1|pagemap-1|inventory/.test(p.file))).toEqual([]);
    });
  }

  it('G2 blocks of 4 pages (E5, a short last block) and G1 region_pages 4 read the same', () => {
    const pages = Buffer.concat([LZ.R4, LZ.A]);
    for (const [schema, h, mode] of [['g2', ENT.g2.E5, 1], ['g1', ENT.g1.E5, 2]] as const) {
      const dir = vectorSet([h], pages, mode);
      const set = new ImageSet(dir, { pageSize: PAGE });
      expect(Buffer.from(set.memory(1).readBytes(0x40000n, 5 * PAGE)).equals(Buffer.concat([R4, A])), schema).toBe(true);
      // part of the big block, then the next: through the cache of decoded blocks
      expect(Buffer.from(set.memory(1).readBytes(0x43ff0n, 0x20)).equals(Buffer.concat([C.subarray(PAGE - 16), A.subarray(0, 16)]))).toBe(true);
      set.close();
    }
  });

  it('G2 padded blocks (payload_padded) skip their padding', () => {
    const pages = Buffer.alloc(8192);
    LZ.A.copy(pages, 0);
    LZ.I.copy(pages, 4096);
    const dir = vectorSet([ENT.E1padded], pages);
    const set = new ImageSet(dir, { pageSize: PAGE });
    expect(Buffer.from(set.memory(1).readBytes(0x10000n, 3 * PAGE)).equals(Buffer.concat([A, Z, I]))).toBe(true);
    set.close();
  });
});

describe('which schema (§10)', () => {
  const g1 = [ENT.g1.E1, ENT.E2, ENT.g1.E3, ENT.E4].map(entry);
  const g2 = [ENT.g2.E1, ENT.E2, ENT.g2.E3, ENT.E4].map(entry);

  it('each set is read in its own schema; the other reading is rejected with its reason', () => {
    const a = analysePagemap(g1, PAGE, { pagesSize: 16384 });
    expect(a.schema).toBe('g1');
    expect(a.layout!.physSize).toBe(16384);
    const b = analysePagemap(g2, PAGE, { pagesSize: 16384 });
    expect(b.schema).toBe('g2');
    expect(b.rejected).toEqual({ schema: 'g1', problem: { entry: 1, what: '11 block sizes for 3 pages in blocks of 1 (needs 3)' } });
  });

  it('a parser forced to the wrong schema finds problems instead of misreading the blocks', () => {
    expect(buildLayout(g2, PAGE, 'g1').layout).toBeUndefined();
    expect(buildLayout(g2, PAGE, 'g1').problems[0].what).toMatch(/block sizes for 3 pages/);
    expect(buildLayout(g1, PAGE, 'g2').problems[0].what).toBe('field 7 does not exist in the G2 schema');
    // G1 without the optional total still fails as G2: packed sizes are no pagemap_blocks message
    const noTotal = entry('0880800410002004280332041a009902');
    expect(buildLayout([noTotal], PAGE, 'g2').problems[0].what).toMatch(/pagemap_blocks/);
    expect(analysePagemap([noTotal], PAGE, { pagesSize: 307 }).schema).toBe('g1');
  });

  it('when both readings hold, the pages file size decides; inventory compress = 2 means G1', () => {
    // field 6 = 0a 01 00 10 00 18 07: G2 one zero block of 7 pages (0 bytes stored), or G1 seven
    // block sizes 10,1,0,16,0,24,7 (58 bytes)
    const e = entry('08808004100020042807' + '3207' + '0a010010001807');
    expect(analysePagemap([e], PAGE, { pagesSize: 0 }).schema).toBe('g2');
    expect(analysePagemap([e], PAGE, { pagesSize: 58 }).schema).toBe('g1');
    expect(analysePagemap([e], PAGE, { pagesSize: 0, inventoryCompress: 2 }).schema).toBe('g1');
    expect(analysePagemap([e], PAGE, { pagesSize: 99 }).ambiguous).toBe(true);
  });

  it('a metadata error of the chosen schema names the entry, in the reader and in check', () => {
    // E1 with compressed_size [26, 0, 4097] (total 4123): a block larger than a page
    const dir = vectorSet(['0880800410002004280332041a008120389b20'], Buffer.alloc(4123));
    const set = new ImageSet(dir, { pageSize: PAGE });
    expect(() => set.memory(1).readBytes(0x10000n, 16)).toThrow(/pagemap-1\.img: at byte 14, entry 1: block 2 has stored size 4097, more than its 4096 decoded bytes \(read as the G1/);
    set.close();
    const p = checkSet(dir).problems.filter((x) => x.file === 'pagemap-1.img');
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ offset: 14, entry: 1, severity: 'error' });
    expect(p[0].what).toMatch(/^block 2 has stored size 4097/);
  });
});

interface Case {
  name: string;
  dir: string;
  modes: typeof MODES;
}

/** Every mode on the fixture set and on the corpus's shmem set (shmem pagemaps), one mode in turn on the others (seconds, not minutes). */
function sourceSets(): Case[] {
  const out: Case[] = [{ name: 'fixtures/sets/counter', dir: path.join(ROOT, 'fixtures', 'sets', 'counter'), modes: MODES }];
  const corpus = corpusSets();
  if (!corpus.length) console.warn('\n*** corpus absent: compressed-set tests run on fixtures/sets only ***\n');
  let k = 0;
  for (const s of corpus) {
    if (!fs.readdirSync(s.dir).some((n) => /^pages-\d+\.img$/.test(n))) continue;
    out.push({ ...s, modes: /shmem$/.test(s.name) ? MODES : [MODES[k++ % MODES.length]] });
  }
  return out;
}

const MODES: { label: string; opts: CompressOptions }[] = [
  { label: 'G1 per page', opts: { schema: 'g1' } },
  { label: 'G1 64K regions', opts: { schema: 'g1', blockBytes: 64 << 10 } },
  { label: 'G2 per page', opts: { schema: 'g2' } },
  { label: 'G2 256K padded blocks', opts: { schema: 'g2', blockBytes: 256 << 10, padded: true } },
];

function tasksWithMemory(set: ImageSet): number[] {
  return set.tasks().map((t) => t.pid).filter((pid) => set.has(`mm-${pid}.img`) && set.has(`pagemap-${pid}.img`));
}

describe('crit compress / decompress on real sets, both schemas', () => {
  const cases = sourceSets();
  const made = new Map<string, string>();
  beforeAll(() => {
    for (const c of cases) for (const m of c.modes) {
      const out = path.join(scratchDir('lz4set'), 'out');
      compressSet(c.dir, out, m.opts);
      made.set(`${c.name} ${m.label}`, out);
    }
  });

  for (const c of cases) {
    for (const m of c.modes) {
      it(`${c.name}, ${m.label}: same memory through read, readInto and search; check clean; diff empty`, () => {
        const out = made.get(`${c.name} ${m.label}`)!;
        const inv = loadMessages(path.join(out, 'inventory.img'))[0];
        expect(inv.img_version).toBe(3);
        expect(inv.compress).toBe(m.opts.schema === 'g1' && m.opts.blockBytes ? 2 : 1);
        const A0 = new ImageSet(c.dir);
        const B0 = new ImageSet(out);
        let compared = 0;
        try {
          for (const pid of tasksWithMemory(A0)) {
            const ma = A0.memory(pid);
            const mb = B0.memory(pid);
            expect(mb.storage().some((s) => s.compressed)).toBe(true);
            for (const v of ma.vmas) {
              const len = Number(v.end - v.start);
              const sa = ma.read(v.start, len);
              const sb = mb.read(v.start, len);
              expect(sb.map((s) => [s.addr, s.len, !!s.data, s.absent])).toEqual(sa.map((s) => [s.addr, s.len, !!s.data, s.absent]));
              sa.forEach((s, k) => { if (s.data) expect(Buffer.from(sb[k].data!).equals(Buffer.from(s.data))).toBe(true); });
              compared += sa.reduce((n, s) => n + (s.data ? s.len : 0), 0);
            }
            // bulk path: every present range through readInto
            for (const r of ma.presentRanges()) {
              const n = Number(r.end - r.start);
              const ba = Buffer.alloc(n);
              const bb = Buffer.alloc(n);
              ma.readInto(r.start, ba, 0, n);
              mb.readInto(r.start, bb, 0, n);
              expect(bb.equals(ba)).toBe(true);
            }
            // search for 12 varied bytes from the middle of the largest present range
            const big = [...ma.presentRanges()].sort((x, y) => Number(y.end - y.start - (x.end - x.start)))[0];
            const mid = big && ma.readBytes(big.start, Number(big.end - big.start));
            let at = mid ? mid.length >> 1 : 0;
            while (mid && at + 12 <= mid.length && new Set(mid.subarray(at, at + 12)).size < 6) at += 12;
            if (mid && at + 12 <= mid.length) {
              const needle = mid.slice(at, at + 12);
              const hits = (mem: typeof ma) => [...searchMemory(mem, { kind: 'bytes', bytes: needle })].slice(0, 1000).map((h) => h.addr);
              const want = hits(ma);
              expect(want).toContain(big.start + BigInt(at));
              expect(hits(mb)).toEqual(want);
            }
          }
        } finally {
          A0.close();
          B0.close();
        }
        expect(compared).toBeGreaterThan(0);
        const r = checkSet(out);
        expect(r.problems.filter((p) => p.severity === 'error')).toEqual(checkSet(c.dir).problems.filter((p) => p.severity === 'error'));
        expect(diffSets(c.dir, out).changes).toEqual([]);
      });
    }
    it(`${c.name}: decompress gives back every pages file, pagemap and the inventory byte for byte`, () => {
      for (const m of c.modes) {
        const back = path.join(scratchDir('lz4back'), 'out');
        const rep = decompressSet(made.get(`${c.name} ${m.label}`)!, back);
        expect(rep.already).toBe(false);
        for (const n of fs.readdirSync(c.dir).filter((x) => /^(pages|pagemap)-.*\.img$|^inventory\.img$/.test(x))) {
          expect(fs.readFileSync(path.join(back, n)).equals(fs.readFileSync(path.join(c.dir, n))), `${m.label}: ${n}`).toBe(true);
        }
      }
    });
  }
});

describe('the crit commands', () => {
  const src = path.join(ROOT, 'fixtures', 'sets', 'counter');

  it('crit compress / decompress print CRIT\'s lines; xray --raw and diff agree with the original', () => {
    const out = path.join(scratchDir('lz4cli'), 'c');
    const r = crit(['compress', src, '-o', out, '--schema', 'g2', '--region', '64K']);
    expect(r.status, r.stderr.toString()).toBe(0);
    const lines = r.stdout.toString().trim().split('\n');
    expect(lines[0]).toBe(`Compressing checkpoint in ${src}`);
    expect(lines[1]).toMatch(/^ {2}pagemap-15629\.img: \d+ pages \(\d+K -> \d+K, \d+\.\d% saved\)$/);
    expect(lines.at(-1)).toMatch(new RegExp(`^Done: ${out} \\(LZ4, blocks of 65536 bytes, G2 schema`));
    const x = (d: string) => crit(['xray', d, '--pid', '15629', '--vma', '5', '--raw', '--zero-fill']).stdout;
    expect(x(out).length).toBeGreaterThan(0);
    expect(x(out).equals(x(src))).toBe(true);
    expect(crit(['diff', src, out]).status).toBe(0);
    expect(crit(['check', out]).status).toBe(0);
    const again = crit(['compress', out, '-o', path.join(scratchDir('lz4cli'), 'again')]);
    expect(again.stdout.toString()).toMatch(`Checkpoint in ${out} is already compressed`);
    const back = path.join(scratchDir('lz4cli'), 'd');
    const d = crit(['decompress', out, '-o', back]);
    expect(d.status).toBe(0);
    expect(d.stdout.toString()).toMatch(/^Decompressing checkpoint in .*\n {2}pagemap-15629\.img: \d+ pages \(\d+K -> \d+K\)\nDone: /);
    expect(fs.readFileSync(path.join(back, 'pages-1.img')).equals(fs.readFileSync(path.join(src, 'pages-1.img')))).toBe(true);
    expect(crit(['--help']).stdout.toString()).toMatch(/compress +a copy of an images directory with its memory pages LZ4-compressed/);
  });

  it('refuses a non-empty OUT and bad options with one line, leaving nothing behind', () => {
    const base = scratchDir('lz4cli');
    const full = path.join(base, 'full');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'x'), 'keep');
    const r = crit(['compress', src, '-o', full]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toBe(`crit: failed to compress checkpoint: ${full}: exists and is not empty (refusing to overwrite)\n`);
    expect(fs.readFileSync(path.join(full, 'x'), 'utf8')).toBe('keep');
    expect(crit(['compress', src, '-o', path.join(base, 'o'), '--region', '5000']).stderr.toString()).toMatch(/^crit: failed to compress checkpoint: block size 5000 must be a multiple of the 4096-byte page size/);
    expect(crit(['compress', src, '-o', path.join(base, 'o'), '--padded']).stderr.toString()).toMatch(/padded blocks exist only in the G2 schema/);
    expect(fs.readdirSync(base).sort()).toEqual(['full']);
  });
});

describe('damaged compressed sets', () => {
  function damaged(schema: Schema): { dir: string; file: string; at: number; entry: number; size: number; addr: bigint } {
    const dir = path.join(scratchDir('lz4bad'), 'c');
    compressSet(path.join(ROOT, 'fixtures', 'sets', 'counter'), dir, { schema });
    for (const n of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, n), 0o644);
    // the first LZ4 block of the task's pagemap
    const set = new ImageSet(dir);
    const mem = set.memory(15629);
    let found: { at: number; entry: number; size: number; addr: bigint } | undefined;
    for (const r of mem.presentRanges()) {
      for (let a = r.start; a < r.end && !found; a += BigInt(PAGE)) {
        const m = /\+0x([0-9a-f]+) \(LZ4 block of (\d+) bytes, pagemap-15629\.img entry (\d+)/.exec(mem.layout(a, 1)[0].origin ?? '');
        if (m && Number(m[2]) > 40) found = { at: parseInt(m[1], 16), entry: Number(m[3]), size: Number(m[2]), addr: a };
      }
      if (found) break;
    }
    set.close();
    expect(found).toBeDefined();
    return { dir, file: path.join(dir, 'pages-1.img'), ...found! };
  }

  for (const schema of ['g1', 'g2'] as const) {
    it(`${schema}: a corrupted LZ4 block: one-line errors from xray, check and decompress (OUT not created)`, () => {
      const d = damaged(schema);
      // LZ4 has no checksum: damage the block's structure (a literal run past its end), not just its data
      const fd = fs.openSync(d.file, 'r+');
      fs.writeSync(fd, Buffer.alloc(d.size, 0xff), 0, d.size, d.at);
      fs.closeSync(fd);
      const set = new ImageSet(d.dir);
      let msg = '';
      try { set.memory(15629).readBytes(d.addr, PAGE); } catch (e) { msg = (e as Error).message; }
      set.close();
      expect(msg).toMatch(new RegExp(`^0x${d.addr.toString(16)}: .*pages-1\\.img: at byte ${d.at}: pagemap-15629\\.img entry ${d.entry}, block \\d+ \\(${d.size} bytes stored, 4096 decoded\\): not a valid LZ4 block`));
      expect(msg).not.toMatch(/\n/);
      const xr = crit(['xray', d.dir, '--pid', '15629', '--addr', '0x' + d.addr.toString(16), '--len', '16', '--raw']);
      expect(xr.status).toBe(1);
      expect(xr.stderr.toString().split('\n').filter(Boolean)).toHaveLength(1);
      const c = checkSet(d.dir);
      const errs = c.problems.filter((p) => p.severity === 'error');
      expect(errs.length).toBeGreaterThan(0);
      expect(errs[0]).toMatchObject({ file: 'pages-1.img', offset: d.at });
      expect(errs[0].what).toMatch(new RegExp(`^pagemap-15629\\.img entry ${d.entry}, block \\d+: damaged \\d+-byte block: `));
      const ck = crit(['check', d.dir]);
      expect(ck.status).toBe(1);
      expect(ck.stdout.toString()).toMatch(`pages-1.img: at byte ${d.at}: pagemap-15629.img entry ${d.entry}`);
      const out = path.join(path.dirname(d.dir), 'plain');
      const r = crit(['decompress', d.dir, '-o', out]);
      expect(r.status).toBe(1);
      const err = r.stderr.toString();
      expect(err.split('\n').filter(Boolean)).toHaveLength(1);
      expect(err).toMatch(new RegExp(`^crit: failed to decompress checkpoint: .*pages-1\\.img: at byte ${d.at}: pagemap-15629\\.img entry ${d.entry}, block \\d+ \\(\\d+ bytes stored, \\d+ decoded\\): `));
      expect(err).not.toMatch(/\n\s+at /);
      expect(fs.existsSync(out)).toBe(false);
      expect(fs.readdirSync(path.dirname(d.dir)).sort()).toEqual(['c']);
    });
  }

  it('a truncated pages file and trailing bytes are located; the reader says which block is missing', () => {
    const d = damaged('g2');
    const size = fs.statSync(d.file).size;
    fs.truncateSync(d.file, size - 100);
    let p = checkSet(d.dir).problems.filter((x) => x.file === 'pages-1.img');
    expect(p[0].what).toMatch(new RegExp(`^file ends after ${size - 100} bytes but pagemap-15629\\.img accounts for ${size}: pagemap-15629\\.img entry \\d+`));
    const e = damaged('g2');
    fs.appendFileSync(e.file, Buffer.alloc(10));
    p = checkSet(e.dir).problems.filter((x) => x.file === 'pages-1.img');
    expect(p).toEqual([{ file: 'pages-1.img', offset: size, entry: undefined, what: `10 bytes after the last block pagemap-15629.img accounts for (it accounts for ${size} of ${size + 10})`, severity: 'error' }]);
    const r = crit(['decompress', e.dir, '-o', path.join(path.dirname(e.dir), 'x')]);
    expect(r.stderr.toString()).toMatch(`unexpected trailing data (10 bytes after the ${size}`);
  });

  it('a compressed layout under an inventory that says compress is off is an error', () => {
    const d = damaged('g1');
    writeImage(path.join(d.dir, 'inventory.img'), 'INVENTORY', [{ msg: { ...loadMessages(path.join(d.dir, 'inventory.img'))[0], compress: undefined } }]);
    const p = checkSet(d.dir).problems.filter((x) => x.file === 'pagemap-15629.img');
    expect(p[0].what).toMatch(/inventory\.img says compress is off/);
  });
});
