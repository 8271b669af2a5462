// A SIGEV_THREAD timer is dumped as the kernel holds it (SIGEV_SIGNAL | SIGEV_THREAD_ID, aimed at
// glibc's helper thread) and comes back aimed at the same thread, still ticking; read as a plain
// SIGEV_SIGNAL timer it would kill the restored process with glibc's SIGTIMER.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING SIGEV_THREAD timer tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('SIGEV_THREAD timers', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let helperTid = 0;

  beforeAll(async () => {
    work = tempDir('sigevthread');
    target = startTarget(compile('sigevthread', work), [], work);
    await target.waitFor(/ready\n/);
    helperTid = Number(/notify: signal\/tid\.(\d+)/.exec(fs.readFileSync(`/proc/${target.pid}/timers`, 'utf8'))![1]);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('are dumped with SIGEV_THREAD_ID and the helper thread', () => {
    const t = decode(path.join(dir, `core-${target.pid}.img`))[0].tc.timers.posix[0];
    expect(t.it_sigev_notify).toBe(4);
    expect(t.notify_thread_id).toBe(helperTid);
  });

  it('come back aimed at that thread, still ticking', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    expect(fs.readFileSync(`/proc/${target.pid}/timers`, 'utf8')).toMatch(new RegExp(`notify: signal/tid\\.${helperTid}\\n`));
    process.kill(target.pid, 'SIGUSR1');
    const m = await target.waitFor(/ticks=(\d+)\n/);
    expect(Number(m[1])).toBeGreaterThan(5);
  });
});
