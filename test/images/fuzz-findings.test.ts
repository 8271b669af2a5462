// Regression tests for what the fuzzing campaign of issue 16 found: each bad input gets one
// clean error line naming file, byte offset, entry and field path (never "internal error"),
// no size field makes us allocate or write more than the data holds, and encode refuses what
// decode would refuse, so every image it writes reads back.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crit } from '../helpers/cli';
import { decodeBuffer, encodeFromString } from '../helpers/inproc';
import { encodeMessage } from '../../images/codec';
import { magicValue, headMagicFor } from '../../images/magic';
import { ImageError } from '../../images/image';
import { parseJson } from '../../images/json/parse';
import { loadImage, writeImage } from '../../images/files';

const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };

function image(magic: string, type: string, msgs: object[]): Buffer {
  const h = headMagicFor(magic);
  const parts = [...(h !== undefined ? [u32(h)] : []), u32(magicValue(magic)!)];
  for (const m of msgs) {
    const p = Buffer.from(encodeMessage(type, m as never));
    parts.push(u32(p.length), p);
  }
  return Buffer.concat(parts);
}

const fown = { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
const opts = { so_sndbuf: 1, so_rcvbuf: 1, so_snd_tmo_sec: 0, so_snd_tmo_usec: 0, so_rcv_tmo_sec: 0, so_rcv_tmo_usec: 0 };
const isk = (src: number[]) => ({ id: 7, ino: 9, family: 2, type: 1, proto: 6, state: 10, src_port: 80, dst_port: 0, flags: 2, backlog: 5, src_addr: src, fown, opts });

function encodeErr(json: string): Error {
  try {
    encodeFromString(json);
  } catch (e) {
    return e as Error;
  }
  throw new Error('encode accepted it');
}

/** The one-line error shape: file, byte offset, entry. */
const LOCATED = /^\S+: at byte \d+, entry \d+: /;

describe('decode --pretty of an address of 2, 3 or 5 words', () => {
  for (const n of [2, 3, 5]) {
    it(`${n} words: an ImageError with file, offset, entry and field path`, () => {
      const bytes = image('FILES', 'file_entry', [{ id: 1, type: 1, reg: { id: 1, flags: 0, pos: 0, fown, name: '/x' } }, { id: 7, type: 2, isk: isk(new Array(n).fill(16777343)) }]);
      expect(decodeBuffer(bytes, 'files.img', 'plain')).toContain(`"src_addr": [${new Array(n).fill(16777343).join(', ')}]`);
      let err: unknown;
      try { decodeBuffer(bytes, 'files.img', 'pretty'); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ImageError);
      const ie = err as ImageError;
      expect(ie.entry).toBe(1);
      expect(ie.offset).toBeGreaterThan(8); // the second entry's size word
      expect(ie.message).toMatch(/files\.img: at byte \d+, entry 1: .*entries\[1\]\.isk\.src_addr: an address \(ipadd\) of \d words/);
      // and through the CLI: one line, no "internal error"
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-ff-'));
      fs.writeFileSync(path.join(dir, 'files.img'), bytes);
      const r = crit(['decode', '--pretty', '-i', path.join(dir, 'files.img')]);
      fs.rmSync(dir, { recursive: true });
      expect(r.status).toBe(1);
      expect(r.stderr.toString()).toMatch(/^crit: \S*files\.img: at byte \d+, entry 1: .*src_addr.*\n$/);
      expect(r.stderr.toString()).not.toContain('internal error');
    });
  }
  it('encode refuses such an address (written, it could not be decoded --pretty)', () => {
    const e = encodeErr(`{"magic": "FILES", "entries": [${JSON.stringify({ id: 7, type: 'INETSK', isk: { ...isk([1, 2]), family: 2 } })}]}`);
    expect(e).toBeInstanceOf(ImageError);
    expect(e.message).toMatch(LOCATED);
    expect(e.message).toContain('entries[0].isk.src_addr: an address of 2 words');
    // 5 words: --pretty would print only the first 4 (CRIT's way), so it would not read back
    const e5 = encodeErr(`{"magic": "FILES", "entries": [${JSON.stringify({ id: 7, type: 'INETSK', isk: { ...isk([0, 0, 0, 4294901760, 16777343]), family: 10 } })}]}`);
    expect(e5.message).toContain('entries[0].isk.src_addr: an address of 5 words');
    // 1 and 4 words still round-trip
    for (const w of [[16777343], [0, 0, 4294901760, 16777343]]) {
      const bytes = image('FILES', 'file_entry', [{ id: 7, type: 2, isk: isk(w) }]);
      expect(encodeFromString(decodeBuffer(bytes, 'files.img', 'pretty')).equals(bytes)).toBe(true);
    }
  });
});

describe('deeply nested input', () => {
  it('5,000 nested JSON arrays: a clean error with its location, not a stack overflow', () => {
    const deep = '['.repeat(5000) + ']'.repeat(5000);
    for (const doc of [`{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "x": ${deep}}]}`, `{"magic": "FS", "junk": ${deep}, "entries": []}`]) {
      const e = encodeErr(doc);
      expect(e).toBeInstanceOf(ImageError);
      expect(e.message).toMatch(/at byte \d+.*nested more than 1000 deep/);
    }
    expect(() => parseJson(deep)).toThrow(/nested more than 1000 deep at line 1 column 1001/);
  });
  it('sub-messages nested 200 deep in a binary image: a clean decode error (the limit is 100)', () => {
    // cgroup_dir_entry holds its children: build the nesting from the inside out
    let inner = Buffer.from(encodeMessage('cgroup_dir_entry', { dir_name: 'x', properties: [] } as never));
    for (let i = 0; i < 200; i++) {
      const len: number[] = [];
      let n = inner.length;
      do { len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n >>>= 7; } while (n);
      inner = Buffer.concat([Buffer.from([0x0a, 1, 0x78]), Buffer.from([0x12]), Buffer.from(len), inner]);
    }
    const bytes = Buffer.concat([u32(headMagicFor('CGROUP')!), u32(magicValue('CGROUP')!), u32(0)]);
    // a cgroup_entry whose controller's dir nests 200 levels
    const ctl = Buffer.concat([Buffer.from([0x0a, 1, 0x78, 0x12]), varint(inner.length), inner]);
    const entry = Buffer.concat([Buffer.from([0x12]), varint(ctl.length), ctl]);
    const img = Buffer.concat([bytes.subarray(0, 8), u32(entry.length), entry]);
    let err: unknown;
    try { decodeBuffer(img, 'cgroup.img'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/cgroup\.img: at byte \d+, entry 0: malformed protobuf .*nested more than 100 deep/);
  });
  it('a run of start-group tags is skipped without recursion', () => {
    const payload = Buffer.concat([Buffer.from([0x08, 1, 0x10, 2, 0x18, 3]), Buffer.alloc(200000, 0x4b)]); // field 9, wire type 3
    const img = Buffer.concat([u32(headMagicFor('FS')!), u32(magicValue('FS')!), u32(payload.length), payload]);
    expect(() => decodeBuffer(img, 'fs-1.img')).toThrow(/fs-1\.img: at byte \d+, entry 0: malformed protobuf in fs_entry .*truncated varint/);
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  do { out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n >>>= 7; } while (n);
  return Buffer.from(out);
}

describe('size fields are checked against the data before anything is written', () => {
  const msgDoc = (msize: string, data: string) => `{"magic": "IPCNS_MSG", "entries": [{"desc": {"key": 0, "uid": 0, "gid": 0, "cuid": 0, "cgid": 0, "mode": 0, "id": 0}, "qbytes": 0, "qnum": 1, "extra": [{"mtype": 1, "msize": ${msize}}, ${JSON.stringify(data)}]}]}`;
  it('msize of 4294967295 or 2147483648 with no data: refused at once, nothing allocated', () => {
    for (const m of ['4294967295', '2147483648']) {
      const rss = process.memoryUsage().rss;
      const t = Date.now();
      const e = encodeErr(msgDoc(m, ''));
      expect(Date.now() - t).toBeLessThan(2000);
      expect(process.memoryUsage().rss - rss).toBeLessThan(100 << 20);
      expect(e.message).toMatch(LOCATED);
      expect(e.message).toContain(`entries[0].extra[1]: holds 0 bytes but msize (entries[0].extra[0].msize) says ${m}`);
    }
  });
  it('a number with a fraction or an exponent is not silently truncated', () => {
    const e = encodeErr(msgDoc('123456789012345678901234567890e-20', ''));
    expect(e.message).toMatch(LOCATED);
    expect(e.message).toContain('entries[0].extra[0].msize: 1234567890.1234567 is not an integer (uint32)');
    expect(encodeErr('{"magic": "FS", "entries": [{"cwd_id": 1.5, "root_id": 2}]}').message).toContain('entries[0].cwd_id: 1.5 is not an integer');
    expect(encodeErr('{"magic": "FS", "entries": [{"cwd_id": 1e300, "root_id": 2}]}').message).toContain('entries[0].cwd_id: 1e+300 is not exact as written');
    const doc = '{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 4294967296}]}';
    expect(encodeErr(doc).message).toContain(`at byte ${doc.indexOf('4294967296')}, entry 0: entries[0].root_id: value 4294967296 out of range for uint32`);
  });
  it('data of exactly msize bytes still round-trips, padded to 8', () => {
    const bytes = encodeFromString(msgDoc('5', Buffer.from('hello').toString('base64')));
    expect(bytes.length % 8).toBe(0);
    expect(decodeBuffer(bytes, 'ipcns-msg-1.img')).toContain('{"mtype": 1, "msize": 5}, "aGVsbG8=\\n"');
  });
});

describe('encode refuses images it could not read back', () => {
  const head = '"uid": 0, "gid": 0, "mode": 33188';
  it('a GHOST_FILE with no entries', () => {
    const e = encodeErr('{"magic": "GHOST_FILE", "entries": []}');
    expect(e.message).toMatch(/^\S+: at byte \d+: a GHOST_FILE image needs its ghost_file_entry/);
  });
  it('a ghost_chunk_entry without its extra, or with the wrong number of bytes', () => {
    let e = encodeErr(`{"magic": "GHOST_FILE", "entries": [{${head}, "chunks": true}, {"len": 3, "off": 0}]}`);
    expect(e.message).toMatch(LOCATED);
    expect(e.message).toContain('entry 1: entries[1]: a ghost_chunk_entry of len 3 needs an "extra" of exactly that many bytes (it has none)');
    e = encodeErr(`{"magic": "GHOST_FILE", "entries": [{${head}, "chunks": true}, {"len": 3, "off": 0, "extra": "YQ==\\n"}]}`);
    expect(e.message).toContain('holds 1 bytes but len says 3');
  });
  it('an extra on a chunked ghost_file_entry', () => {
    const e = encodeErr(`{"magic": "GHOST_FILE", "entries": [{${head}, "chunks": true, "extra": "YWJj\\n"}]}`);
    expect(e.message).toMatch(LOCATED);
    expect(e.message).toContain('"chunks" keeps its contents in the ghost_chunk_entry entries');
  });
  it('a chunked ghost file with its chunks still round-trips', () => {
    const json = `{"magic": "GHOST_FILE", "entries": [{${head}, "chunks": true}, {"len": 3, "off": 4096, "extra": "YWJj\\n"}, {"len": 0, "off": 8192}]}`;
    const bytes = encodeFromString(json);
    expect(decodeBuffer(bytes, 'ghost-file-1.img')).toBe(`{"magic": "GHOST_FILE", "entries": [{${head}, "chunks": true}, {"len": 3, "off": 4096, "extra": "YWJj\\n"}, {"len": 0, "off": 8192, "extra": ""}]}`);
  });
  it('a missing required field deep down is named by its path', () => {
    const e = encodeErr('{"magic": "FILES", "entries": [{"id": 1, "type": "REG", "reg": {"id": 1, "flags": 0, "pos": 0, "name": "/x"}}]}');
    expect(e.message).toMatch(LOCATED);
    expect(e.message).toContain('entries[0].reg: reg_file_entry is missing required field fown');
  });
});

describe('error lines', () => {
  it('a 100,000-character value is clipped; the line is complete even through a pipe', () => {
    const big = 'Q'.repeat(100000);
    const doc = `{"magic": "FDINFO", "entries": [{"id": 1, "flags": 0, "type": "${big}", "fd": 0}]}`;
    const r = crit(['encode'], doc);
    expect(r.status).toBe(1);
    const err = r.stderr.toString();
    expect(err.endsWith('\n')).toBe(true);
    expect(err.split('\n')).toHaveLength(2);
    expect(err.length).toBeLessThan(1000);
    expect(err).toContain(`at byte ${doc.indexOf('"Q')}, entry 0`);
    expect(err).toMatch(/^crit: <stdin>: at byte \d+, entry 0: entries\[0\]\.type: 'Q{200}\.\.\. \(100000 characters\)' is not a value of enum fd_types\n$/);
  });
  it('a JSON syntax error names the byte and the entry', () => {
    const doc = '{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2}, {"cwd_id": 1 "root_id": 2}]}';
    expect(encodeErr(doc).message).toContain(`at byte ${doc.indexOf(' "root_id": 2}]') + 1}, entry 1: invalid JSON: Expecting ',' delimiter`);
  });
});

describe('found by the harness (bench/fuzz)', () => {
  it('_unknown_fields holding a field the schema knows is refused (it would read back as that field)', () => {
    const doc = '{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "_unknown_fields": "CAM=\\n"}]}';
    const e = encodeErr(doc);
    expect(e.message).toContain(`at byte ${doc.indexOf('"CAM=')}, entry 0: entries[0]._unknown_fields: holds field 1, which is fs_entry.cwd_id: give it as "cwd_id"`);
    // a field number the schema does not know, or a known one with another wire type, is kept
    for (const u of ['yAYB', 'CgA=']) {
      const json = `{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "_unknown_fields": "${u}\\n"}]}`;
      expect(decodeBuffer(encodeFromString(json), 'fs-1.img')).toBe(json);
    }
  });
  it('an amdgpu contents header that is no 64-bit integer is refused', () => {
    for (const h of ['1.5', '-1', '18446744073709551616', '"x"']) {
      const e = encodeErr(`{"magic": "AMDGPU_DRM_PAGES", "entries": [{"header": ${h}, "extra": ""}]}`);
      expect(e.message).toMatch(LOCATED);
      expect(e.message).toContain('entries[0].header: expected an integer 0..2^64-1');
    }
  });
  it('a set file whose magic disagrees with its name: a clean error in x and diff, not an internal one', () => {
    const fixture = path.join(__dirname, '..', '..', 'fixtures', 'sets', 'counter');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-ff-set-'));
    for (const n of fs.readdirSync(fixture)) fs.copyFileSync(path.join(fixture, n), path.join(dir, n));
    const pm = fs.readdirSync(dir).find((n) => /^pagemap-\d+\.img$/.test(n))!;
    fs.copyFileSync(path.join(dir, 'seccomp.img'), path.join(dir, pm));
    const x = crit(['x', dir, 'rss']);
    const d = crit(['diff', fixture, dir]);
    fs.rmSync(dir, { recursive: true });
    expect(x.status).toBe(1);
    expect(x.stderr.toString()).toMatch(new RegExp(`^crit: \\S*${pm}: at byte 4: the file name says PAGEMAP but the magic is SECCOMP`));
    expect(d.status).toBe(2);
    expect(d.stderr.toString()).toContain('the file name says PAGEMAP but the magic is SECCOMP');
    expect(d.stderr.toString()).not.toContain('internal error');
  });
});

describe('found by the campaign', () => {
  it('a pagemap whose entries go back (damage): diff --memory and xray read on, no internal error', () => {
    const fixture = path.join(__dirname, '..', '..', 'fixtures', 'sets', 'counter');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-ff-pm-'));
    for (const n of fs.readdirSync(fixture)) fs.copyFileSync(path.join(fixture, n), path.join(dir, n));
    const pm = path.join(dir, fs.readdirSync(dir).find((n) => /^pagemap-\d+\.img$/.test(n))!);
    const img = loadImage(pm);
    const es = img.entries.map((e) => ({ type: e.type, msg: e.msg }));
    const k = es.findIndex((e, i) => i > 0 && Number(e.msg.nr_pages) >= 10);
    const h = es[k].msg;
    // a 10-page entry, then one back at its start: the reader walked backwards into a negative length
    es.splice(k, 1, { type: 'pagemap_entry', msg: { ...h, nr_pages: 10 } }, { type: 'pagemap_entry', msg: { ...h, nr_pages: 5 } });
    writeImage(pm, 'PAGEMAP', es);
    const d = crit(['diff', '--memory', fixture, dir]);
    const x = crit(['xray', dir, '--pid', '15629', '--search', 'counter']);
    const c = crit(['check', dir]);
    fs.rmSync(dir, { recursive: true });
    expect(d.stderr.toString()).toBe('');
    expect(d.status).toBe(1);
    expect(x.status, x.stderr.toString()).toBe(0);
    expect(x.stdout.toString()).toContain('counter.txt');
    expect(c.stdout.toString()).toMatch(/overlap the entry before or are out of order/);
  });
});
