// Damaged input gets one clear line (file, byte offset, entry, what was expected), exit 1 and
// no stack trace; a closed pipe ends quietly; encode never leaves a partial output file.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crit, sh, CRIT_BIN } from '../helpers/cli';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crit-err-')); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

function bad(name: string, bytes: Buffer): { code: number | null; err: string; out: string } {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  const r = crit(['decode', '-i', f]);
  return { code: r.status, err: r.stderr.toString(), out: r.stdout.toString() };
}

function expectOneLine(err: string): void {
  expect(err.trim().split('\n')).toHaveLength(1);
  expect(err).not.toMatch(/^\s+at /m); // no stack trace
}

describe('decode errors name file, offset and entry', () => {
  it('unknown magic', () => {
    const r = bad('mystery.img', hex('efbeadde 00000000'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/mystery\.img: at byte 0: unknown magic -0x21524111/);
    expectOneLine(r.err);
  });
  it('a raw pages file is named for what it is', () => {
    const r = bad('pages-1.img', Buffer.alloc(4096, 0x41));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/pages-1\.img: at byte 0: this is raw page data, not a CRIU protobuf image/);
  });
  it('truncated size word', () => {
    const r = bad('fs-1.img', hex('19435654 12394051 06000000 080110021812 0600'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/fs-1\.img: at byte 18, entry 1: truncated size word: 2 of 4 bytes before end of file/);
    expectOneLine(r.err);
  });
  it('truncated payload', () => {
    const r = bad('fs-2.img', hex('19435654 12394051 06000000 0801'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/fs-2\.img: at byte 12, entry 0: truncated payload: fs_entry of 6 bytes, but the file ends after 2/);
  });
  it('a size larger than the whole file', () => {
    const r = bad('fs-3.img', hex('19435654 12394051 ffffff7f 0801'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/fs-3\.img: at byte 8, entry 0: size word says 2147483647 bytes but only 2 remain in the file/);
  });
  it('malformed protobuf', () => {
    const r = bad('fs-4.img', hex('19435654 12394051 06000000 080110021812 03000000 0801ff'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/fs-4\.img: at byte 25, entry 1: malformed protobuf in fs_entry \(payload of 3 bytes at byte 22\): truncated varint/);
  });
  it('missing required field', () => {
    const r = bad('fs-5.img', hex('19435654 12394051 04000000 08011803'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/fs-5\.img: at byte 12, entry 0: fs_entry is missing required field root_id/);
  });
  it('a missing input file', () => {
    const r = crit(['decode', '-i', path.join(dir, 'nope.img')]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/nope\.img: no such file/);
  });
  it('usage errors exit 2', () => {
    const r = crit(['decode', '--bogus']);
    expect(r.status).toBe(2);
    expect(r.stderr.toString()).toMatch(/unrecognized arguments: --bogus/);
  });
});

describe('encode', () => {
  it('never leaves a partial output file, and keeps an existing one intact', () => {
    const out = path.join(dir, 'out.img');
    fs.writeFileSync(out, 'previous contents');
    const json = '{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "umask": 18}, {"cwd_id": 1}]}';
    const r = crit(['encode', '-o', out], json);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/entries\[1\]: fs_entry is missing required field root_id/);
    expectOneLine(r.stderr.toString());
    expect(fs.readFileSync(out, 'utf8')).toBe('previous contents');
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });
  it('rejects binary input with a hint, and unknown magic names', () => {
    const r = crit(['encode'], hex('19435654 12394051 ff fe'));
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/not UTF-8 text/);
    const r2 = crit(['encode'], '{"magic": "NOPE", "entries": []}');
    expect(r2.status).toBe(1);
    expect(r2.stderr.toString()).toMatch(/unknown "magic" "NOPE"/);
  });
  it('bad values are named by JSON path', () => {
    const r = crit(['encode'], '{"magic": "FS", "entries": [{"cwd_id": "twelve", "root_id": 2, "umask": 18}]}');
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/entries\[0\]\.cwd_id: invalid literal for int\(\) with base 0: 'twelve'/);
  });
});

describe('pipes', () => {
  it('a closed pipe (| head) ends quietly with status 0', () => {
    // a pagemap with many entries makes plenty of output
    const parts = [hex('19435654 25400856 02000000 0801')];
    for (let i = 0; i < 50000; i++) parts.push(hex('0b000000 0880c08002 1000 2004 2802'));
    const f = path.join(dir, 'pagemap-1.img');
    fs.writeFileSync(f, Buffer.concat(parts));
    const r = sh(`'${process.execPath}' '${CRIT_BIN}' decode --pretty -i '${f}' | head -c 100 >/dev/null; echo "status=\${PIPESTATUS[0]}"`);
    expect(r.stdout.toString()).toContain('status=0');
    expect(r.stderr.toString()).toBe('');
  });
  it('decode reads stdin and encode writes stdout', () => {
    const img = hex('19435654 12394051 06000000 080110021812');
    const j = crit(['decode'], img);
    expect(j.stdout.toString()).toBe('{"magic": "FS", "entries": [{"cwd_id": 1, "root_id": 2, "umask": 18}]}\n');
    const b = crit(['encode'], j.stdout);
    expect(b.stdout.equals(img)).toBe(true);
  });
});
