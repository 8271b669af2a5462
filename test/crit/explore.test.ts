// crit x: CRIT 4.2's explorer text byte for byte on every corpus set (where CRIT crashed, its
// partial output is a prefix of ours and we go on), JSON variants that agree with the text,
// and our own explorers (sk, tree, gpu) against what the images hold.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { corpusSets, haveCorpus } from '../helpers/corpus';
import { crit } from '../helpers/cli';
import { parseJson } from '../../images/json/parse';

const WHATS = ['ps', 'fds', 'mems', 'rss'];

describe.skipIf(!haveCorpus)('crit x on the corpus', () => {
  for (const set of corpusSets()) {
    describe(set.name, () => {
      for (const what of WHATS) {
        it(`x ${what}: CRIT's text${fs.existsSync(path.join(set.dir, 'expected', `x-${what}.err`)) ? ' (CRIT crashed: its output is our prefix)' : ''}`, () => {
          const want = fs.readFileSync(path.join(set.dir, 'expected', `x-${what}.txt`), 'utf8');
          const r = crit(['x', set.dir, what]);
          expect(r.status, r.stderr.toString()).toBe(0);
          const got = r.stdout.toString();
          if (fs.existsSync(path.join(set.dir, 'expected', `x-${what}.err`))) {
            expect(got.startsWith(want)).toBe(true);
            expect(got.length).toBeGreaterThanOrEqual(want.length);
          } else expect(got).toBe(want);
        });
      }
      it('--json agrees with the text (pids, fds, VMA ranges, pagemap lines)', () => {
        const ps = parseJson(crit(['x', set.dir, 'ps', '--json']).stdout.toString()) as any[];
        const psText = crit(['x', set.dir, 'ps']).stdout.toString().trim().split('\n').slice(1);
        expect(ps.map((r) => r.pid)).toEqual(psText.map((l) => Number(l.slice(0, 7))));
        const mems = parseJson(crit(['x', set.dir, 'mems', '--json']).stdout.toString()) as any[];
        const memsText = crit(['x', set.dir, 'mems']).stdout.toString();
        for (const t of mems.filter((x) => !x.note)) {
          for (const v of t.vmas) expect(memsText).toContain(`${BigInt(v.start).toString(16).padStart(8, '0')}-${BigInt(v.end).toString(16).padStart(8, '0')}`);
        }
        const fds = parseJson(crit(['x', set.dir, 'fds', '--json']).stdout.toString()) as any[];
        const fdsText = crit(['x', set.dir, 'fds']).stdout.toString();
        for (const t of fds.filter((x) => !x.note)) for (const f of t.fds) expect(fdsText).toContain(`${String(f.fd).padStart(7)}: ${f.desc}`);
        const rss = parseJson(crit(['x', set.dir, 'rss', '--json']).stdout.toString()) as any[];
        const lines = rss.reduce((n, t) => n + t.lines.length, 0);
        const rssText = crit(['x', set.dir, 'rss']).stdout.toString();
        expect(rssText.split('\n').filter((l) => /^\t[0-9a-f]+ \/ /.test(l)).length).toBe(lines);
      });
    });
  }

  const unix = corpusSets().find((s) => s.name.endsWith('/unix'));
  it.skipIf(!unix)('x sk lists unix sockets with names and queued bytes from sk-queues.img', () => {
    const out = crit(['x', unix!.dir, 'sk']).stdout.toString();
    expect(out).toContain('unix stream listen /tmp/criu-tests/run/unix-listen.sock');
    expect(out).toContain('@criu abs=B\\x7f\\xff\\x01');
    const q = parseJson(crit(['decode', '-i', path.join(unix!.dir, 'sk-queues.img')]).stdout.toString()) as any;
    const total = q.entries.reduce((n: number, e: any) => n + e.length, 0);
    const sk = parseJson(crit(['x', unix!.dir, 'sk', '--json']).stdout.toString()) as any[];
    const listed = sk.flatMap((t) => t.sockets).reduce((n: number, s: any) => n + (s.detail.queued_bytes || 0), 0);
    expect(listed).toBe(total);
  });
  const fdkinds = corpusSets().find((s) => s.name.endsWith('/fdkinds'));
  it.skipIf(!fdkinds)('x sk shows inet addresses', () => {
    const out = crit(['x', fdkinds!.dir, 'sk']).stdout.toString();
    expect(out).toMatch(/tcp inet listen 127\.0\.0\.1:\d+ -> 0\.0\.0\.0:0/);
    expect(out).toMatch(/udp inet/);
  });
  const tree = corpusSets().find((s) => s.name.endsWith('/tree'));
  it.skipIf(!tree)("x tree uses CRIU's real states and reads argv/env from memory", () => {
    const rows = parseJson(crit(['x', tree!.dir, 'tree', '--json']).stdout.toString()) as any[];
    expect(rows.map((r) => r.state)).toEqual(['alive', 'alive', 'alive', 'stopped', 'zombie']);
    expect(rows[0].argv[0]).toBe('/tmp/criu-tests/src2/tree');
    expect(rows[0].env).toContain('HOME=/root');
    expect(rows[3].session_leader).toBe(true);
  });
  it('unknown explorer and missing directory: one-line errors', () => {
    const r = crit(['x', '/nonexistent', 'ps']);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/^crit: \/nonexistent: not an images directory\n$/);
    const r2 = crit(['x', corpusSets()[0].dir, 'bogus']);
    expect(r2.status).toBe(1);
    expect(r2.stderr.toString()).toMatch(/unknown explorer 'bogus'/);
  });
});
