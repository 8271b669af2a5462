// A python3 and a node process (interpreters, not our C targets): dumped with the real engine,
// decodable by both crits, still running after --leave-running; then killed, restored with the
// same PID, and their own output goes on from where it stopped.
import { describe, it, expect, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { IS_ROOT, SKIP_REASON, runEngine, tempDir, pyCritDecode, Target, sleep, lastCount, consecutive, ROOT, until } from './helpers';
import { crit } from '../helpers/cli';

if (!IS_ROOT) console.warn(`SKIPPING interpreter dump/restore tests: ${SKIP_REASON}`);

const targets: Target[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const t of targets) t.kill();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

const CASES: [string, string, string[]][] = [
  ['python3', '/usr/bin/python3', [path.join(ROOT, 'fixtures', 'engine', 'loop.py')]],
  ['node', process.execPath, [path.join(ROOT, 'fixtures', 'engine', 'timer.js')]],
];

function startAppending(exe: string, args: string[], dir: string): Target {
  const outFile = path.join(dir, 'out');
  const fd = fs.openSync(outFile, 'a');
  const child = spawn(exe, args, { detached: true, stdio: ['ignore', fd, fd], cwd: dir });
  fs.closeSync(fd);
  const output = () => fs.readFileSync(outFile, 'utf8');
  return {
    child, pid: child.pid!, outFile, output,
    async waitFor(re, ms = 10_000) {
      await until(() => re.test(output()), `${exe} to print ${re}`, ms);
      return output().match(re)!;
    },
    kill() {
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    },
  };
}

function counts(text: string): number[] {
  return [...text.matchAll(/^count=(\d+)$/gm)].map((m) => Number(m[1]));
}

describe.skipIf(!IS_ROOT)('dump and restore of interpreters', () => {
  for (const [name, exe, args] of CASES) {
    it(`${name}: dump --leave-running, both crits decode, restore continues the sequence`, async () => {
      const work = tempDir(`interp-${name}`);
      dirs.push(work);
      // output opened O_APPEND: a restore refuses a file whose size changed, unless it appends
      const t = startAppending(exe, args, work);
      targets.push(t);
      await t.waitFor(/count=3\b/);
      const dir = path.join(work, 'img');
      const lo = lastCount(t.output());
      const d = runEngine(['dump', '-t', String(t.pid), '-D', dir, '--leave-running']);
      const hi = lastCount(t.output());
      expect(d.status, d.stderr).toBe(0);
      // every image decodes with our crit, and with Debian's where it knows the kind
      for (const f of fs.readdirSync(dir).filter((x) => !x.startsWith('pages-'))) {
        const r = crit(['decode', '-i', path.join(dir, f)]);
        expect(r.status, `${f}: ${r.stderr}`).toBe(0);
        const py = pyCritDecode(path.join(dir, f));
        if (py) expect(py.ok, `${f}: ${py.err}`).toBe(true);
      }
      const threads = crit(['x', dir, 'ps', '--json']).stdout.toString();
      expect(threads).toContain(`"pid": ${t.pid}`);
      // still running after the dump, output without a gap
      const before = lastCount(t.output());
      await until(() => lastCount(t.output()) >= before + 3, `${name} to go on after the dump`, 10_000);
      expect(consecutive(t.output())).toBe(true);
      // kill, restore, and it continues from where the dump caught it
      process.kill(t.pid, 'SIGKILL');
      await until(() => !fs.existsSync(`/proc/${t.pid}`), `${name} to be reaped`, 10_000);
      const seen = counts(t.output()).length;
      const r = runEngine(['restore', '-D', dir, '-d']);
      expect(r.status, r.stderr).toBe(0);
      await until(() => counts(t.output()).length >= seen + 5, `restored ${name} to print`, 10_000);
      // the restored process goes on from the checkpoint: right after the count it had at dump time
      const after = counts(t.output()).slice(seen);
      expect(after[0] - 1, `counts at dump ${lo}..${hi}, after restore ${after.slice(0, 5)}`).toBeGreaterThanOrEqual(lo);
      expect(after[0] - 1).toBeLessThanOrEqual(hi);
      expect(after.every((v, i) => v === after[0] + i)).toBe(true);
      // and its memory pattern is intact (the same checksum before and after)
      const checks = new Set([...t.output().matchAll(/^check=(\d+)$/gm)].map((m) => m[1]));
      expect(checks.size, `checksums: ${[...checks]}`).toBe(1);
      process.kill(t.pid, 'SIGKILL');
    }, 60_000);
  }
});
