// No signal is lost to a dump: a target counting queued real-time signals, dumped with
// --leave-running over and over while another process sends it 20,000 of them (some arrive
// mid-freeze, some are pending while it is stopped and injected into), has counted every one.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'child_process';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, Target, cleanUp, until } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING signal tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('signals sent during dumps', () => {
  let work: string;
  let exe: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('rtsig');
    exe = compile('rtsig', work);
    target = startTarget(exe, ['count'], work);
    await target.waitFor(/ready\n/);
  });

  afterAll(() => cleanUp(target, work));

  it('are all counted after dumps taken while they keep coming', async () => {
    const N = 20000;
    const sender = spawn(exe, ['send', String(target.pid), String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let sent = false;
    sender.stdout!.on('data', (d) => { if (String(d).includes('sent')) sent = true; });
    let dumps = 0;
    while (!sent && dumps < 8) {
      const r = runEngine(['dump', '-t', String(target.pid), '-D', path.join(work, `img-${dumps}`), '-R']);
      expect(r.stderr).toBe('');
      dumps++;
    }
    await until(() => sent, 'the sender to finish', 60_000);
    await new Promise((r) => setTimeout(r, 200));
    process.kill(target.pid, 'SIGUSR2');
    const m = await target.waitFor(/count=(\d+)\n/);
    expect(dumps).toBeGreaterThan(0);
    expect(Number(m[1])).toBe(N);
  });
});
