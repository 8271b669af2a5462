// Named pipes: read-write, separate reader and writer descriptions, and an unlinked one, each
// holding queued bytes, dumped and restored; the program finds its data and flags as they were.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING FIFO tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('FIFOs', () => {
  let work: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('fifo');
    target = startTarget(compile('fifo', work), [work], work);
    await target.waitFor(/ready\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('are dumped with their data, the unlinked one as a ghost', () => {
    const data = decode(path.join(dir, 'fifo-data.img'));
    expect(data.map((d) => Number(d.bytes)).sort((a, b) => a - b)).toEqual([3, 5, 1000]);
    expect(decode(path.join(dir, 'remap-fpath.img'))).toHaveLength(2); // the reader's and the writer's path entries
  });

  it('come back with their bytes, flags and names', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL.*)\n/);
    expect(target.output()).toMatch(/^ready\nPASS\n$/);
  });
});
