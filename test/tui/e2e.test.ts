// The real built `crit tui` in a pseudo-terminal (python3's pty module relays the bytes; a
// small VT screen in vt.ts turns them back into screen text): open a task, jump to an address,
// search a string, open an image entry, quit.
import { describe, it, expect } from 'vitest';
import { spawn, spawnSync, ChildProcessWithoutNullStreams } from 'child_process';
import * as path from 'path';
import { corpusSets } from '../helpers/corpus';
import { CRIT_BIN, crit } from '../helpers/cli';
import { Screen } from './vt';

const counter = corpusSets().find((s) => s.name === 'criu-4.2-22-g2cf8f13ca/counter');
const havePython = spawnSync('python3', ['-c', 'import pty']).status === 0;
if (!havePython) console.warn('\n*** python3 with the pty module not found: the TUI end-to-end test is SKIPPED ***\n');

class Term {
  screen = new Screen(80, 24);
  raw = '';
  exit?: number | null;
  constructor(private p: ChildProcessWithoutNullStreams) {
    p.stdout.on('data', (d: Buffer) => {
      const s = d.toString('utf8');
      this.raw += s;
      this.screen.write(s);
    });
    p.on('exit', (c) => { this.exit = c; });
  }
  text(): string {
    return this.screen.text();
  }
  async waitFor(want: string | RegExp, ms = 15000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const t = this.text();
      if (typeof want === 'string' ? t.includes(want) : want.test(t)) return t;
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${want}; screen:\n${t}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  async keys(...ks: string[]): Promise<void> {
    for (const k of ks) {
      this.p.stdin.write(k);
      await new Promise((r) => setTimeout(r, 60));
    }
  }
  async exited(ms = 10000): Promise<number | null | undefined> {
    const t0 = Date.now();
    while (this.exit === undefined && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 20));
    return this.exit;
  }
}

function start(dir: string, env: Record<string, string> = {}): Term {
  const e: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color', ...env };
  if (!('NO_COLOR' in env)) delete e.NO_COLOR;
  delete e.FORCE_COLOR; // vitest sets it for its own output
  delete e.NODE_ENV;
  const p = spawn('python3', [path.join(__dirname, 'pty-relay.py'), '80', '24', process.execPath, CRIT_BIN, 'tui', dir], { env: e });
  return new Term(p);
}

describe.skipIf(!counter || !havePython)('crit tui in a terminal', () => {
  it('opens a task, jumps to an address, searches, opens an image entry, quits', async () => {
    const t = start(counter!.dir);
    try {
      const t0 = Date.now();
      let s = await t.waitFor('core-32288.img');
      const firstFrame = Date.now() - t0;
      expect(s).toContain(' crit tui › counter');
      expect(s).toMatch(/tasks 1\s+threads 1\s+\(counter\)/);
      // colours reach a real terminal
      expect(t.raw).toMatch(/\x1b\[(3[0-7]|9[0-7])m/);
      // the process tree, then the task
      await t.keys('2');
      s = await t.waitFor(/32288\s+0\s+32288\s+32288\s+alive/);
      await t.keys('\r');
      s = await t.waitFor('registers of thread 32288');
      expect(s).toContain('[core]');
      await t.keys('\t', '\t', '\t');
      s = await t.waitFor('[vmas]');
      expect(s).toMatch(/56151aeb0000 56151aed1000 rw-\s+132 KiB\s+2/);
      // jump to an address
      await t.keys(':', 'm', 'e', 'm', ' ', ...'5614e2ee3010', '\r');
      s = await t.waitFor('inspector @5614e2ee3010');
      expect(s).toMatch(/5614e2ee3010 75 2d 74 65 73 74 73 2f  72 75 6e 2f 63 6f 75 6e u-tests\/run\/coun/);
      expect(s).toContain('r--p /tmp/criu-tests/src/counter');
      // search a string, next match
      await t.keys('/', ...'counter', '\r');
      s = await t.waitFor(/\/counter: 1\/4/);
      expect(s).toContain('inspector @5614e2ee301c');
      await t.keys('n');
      s = await t.waitFor(/\/counter: 2\/4/);
      // open an image entry
      await t.keys(':', ...'img files.img 5', '\r');
      s = await t.waitFor('magic: "FILES"');
      expect(s).toMatch(/▾ \[5\]: \{\d+\}/);
      expect(s).toContain('flags: "O_WRONLY | O_APPEND | O_LARGEFILE"');
      expect(s).toMatch(/0001e0  2f 72 75 6e .*\/run\/counter\.out/);
      expect(s).toMatch(/entry 5: bytes \d+\.\.\d+/);
      // back through the breadcrumb, then quit
      await t.keys('\x1b');
      await new Promise((r) => setTimeout(r, 150));
      s = await t.waitFor('inspector @');
      await t.keys('q');
      expect(await t.exited()).toBe(0);
      console.log(`crit tui: first frame after ${firstFrame} ms (node start, ink load, overview)`);
    } finally {
      if (t.exit === undefined) t.keys('q');
    }
  });

  it('NO_COLOR: no colours, still usable', async () => {
    const t = start(counter!.dir, { NO_COLOR: '1' });
    try {
      await t.waitFor('core-32288.img');
      await t.keys(':', ...'mem 5614e2ee3010', '\r');
      await t.waitFor('inspector @5614e2ee3010');
      expect(t.raw).not.toMatch(/\x1b\[(3[0-9]|9[0-7]|38;)[0-9;]*m/);
      await t.keys('q');
      expect(await t.exited()).toBe(0);
    } finally {
      if (t.exit === undefined) t.keys('q');
    }
  });
});

describe('crit tui without a terminal', () => {
  it('says to use the crit commands and exits 1', () => {
    const r = crit(['tui', counter?.dir ?? '.']);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/^crit tui: not a terminal; use the crit commands instead \(crit x .* ps\|fds\|mems\|rss, crit show IMAGE, crit decode\)\n$/);
    expect(r.stdout.length).toBe(0);
  });

  it('usage errors exit 2', () => {
    const r = crit(['tui']);
    expect(r.status).toBe(2);
    expect(r.stderr.toString()).toContain('the following arguments are required: dir');
    const h = crit(['tui', '-h']);
    expect(h.status).toBe(0);
    expect(h.stdout.toString()).toContain(':mem [PID] ADDR');
  });
});
