// A failed dump leaves the target running as before and no image set behind.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, lastCount, consecutive, Target } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine fault tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine dump: failures leave the target unharmed', () => {
  let work: string;
  const targets: Target[] = [];
  let mounted: string | undefined;

  beforeAll(() => {
    work = tempDir('faults');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    if (mounted) {
      try {
        execFileSync('umount', [mounted]);
      } catch {
        /* busy or gone */
      }
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function expectUnharmed(t: Target): Promise<void> {
    expect(alive(t.pid)).toBe(true);
    const before = lastCount(t.output());
    await t.waitFor(new RegExp(`count=${before + 3}\\n`));
    expect(consecutive(t.output())).toBe(true);
    const status = fs.readFileSync(`/proc/${t.pid}/status`, 'utf8');
    expect(status).toMatch(/TracerPid:\s+0\n/);
  }

  it('refuses an unsupported fd kind, naming task, fd and kind', async () => {
    const exe = compile('unsupported', work);
    const t = startTarget(exe, [], work);
    targets.push(t);
    const fd = (await t.waitFor(/sk=(\d+)/))[1];
    await t.waitFor(/count=2\n/);
    const mapsBefore = fs.readFileSync(`/proc/${t.pid}/maps`, 'utf8');
    const dir = path.join(work, 'sock-images');
    const r = runEngine(['dump', '-t', String(t.pid), '-D', dir]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`task ${t.pid} fd ${fd}: vsock socket \\(socket:\\[\\d+\\]\\) is not supported`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readdirSync(work).filter((n) => n.includes('.tmp'))).toEqual([]);
    // the injected scratch page is gone again
    expect(fs.readFileSync(`/proc/${t.pid}/maps`, 'utf8')).toBe(mapsBefore);
    await expectUnharmed(t);
  });

  it('fails cleanly when the output filesystem fills up', async () => {
    const mnt = path.join(work, 'small');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
    mounted = mnt;
    const exe = compile('counter', work);
    const t = startTarget(exe, [path.join(work, 'c.txt'), '20000', String(4 << 20)], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const dir = path.join(mnt, 'images');
    const r = runEngine(['dump', '-t', String(t.pid), '-D', dir]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/no space left/i);
    expect(fs.readdirSync(mnt)).toEqual([]);
    await expectUnharmed(t);
  });

  it('reports a missing process and a non-empty directory in one line', () => {
    const r1 = runEngine(['dump', '-t', '999999', '-D', path.join(work, 'x')]);
    expect(r1.status).not.toBe(0);
    expect(r1.stderr).toBe('engine: no such process: 999999\n');
    fs.writeFileSync(path.join(work, 'junk'), 'x');
    const r2 = runEngine(['dump', '-t', String(process.pid), '-D', work]);
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toMatch(/is not empty/);
    const r3 = runEngine(['dump', '-D', work]);
    expect(r3.status).not.toBe(0);
    expect(r3.stderr).toMatch(/-t PID is required/);
  });
});
