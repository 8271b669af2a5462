// A thread caught inside an rseq critical section is aborted the way the kernel aborts it on a
// preemption (ip at the abort handler, rseq_cs cleared) before the engine injects anything, so no
// section ever completes unprotected: neither in the live task after --leave-running dumps nor in
// the restored one.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, Target, cleanUp, dumpAndReap, restoreOk } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING rseq tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('rseq critical sections', () => {
  let work: string;
  let exe: string;

  beforeAll(() => {
    work = tempDir('rseq');
    exe = compile('rseqcs', work);
  });

  afterAll(() => cleanUp(undefined, work));

  it('are aborted, never left unprotected, in a task dumped with --leave-running', async () => {
    const t: Target = startTarget(exe, [], work);
    try {
      await t.waitFor(/ready\n/);
      for (let i = 0; i < 5; i++) {
        const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, `live-${i}`), '-R']);
        expect(r.stderr).toBe('');
      }
      process.kill(t.pid, 'SIGUSR1');
      await t.waitFor(/(PASS|FAIL).*\n/);
      expect(t.output()).toMatch(/\nPASS /);
    } finally {
      t.kill();
    }
  });

  it('are aborted, never left unprotected, after a restore', async () => {
    const t: Target = startTarget(exe, [], work);
    try {
      await t.waitFor(/ready\n/);
      const dir = path.join(work, 'images');
      await dumpAndReap(t.pid, dir);
      expect(restoreOk(dir)).toBe(t.pid);
      process.kill(t.pid, 'SIGUSR1');
      await t.waitFor(/(PASS|FAIL).*\n/);
      expect(t.output()).toMatch(/\nPASS /);
    } finally {
      t.kill();
    }
  });
});
