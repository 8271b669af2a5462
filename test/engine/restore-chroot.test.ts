// A task chroot()ed while its cwd stays outside the new root comes back with both as they were
// (the cwd is entered before the chroot, both by the engine's paths).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, cleanUp, dumpAndReap, restoreOk } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING chroot tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('a chroot with the cwd outside it', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('chroot');
    target = startTarget(compile('chrootcwd', work), [work], work);
    await target.waitFor(/ready\n/);
  });

  afterAll(() => cleanUp(target, work));

  it('comes back with the same root and cwd', async () => {
    const before = { root: fs.readlinkSync(`/proc/${target.pid}/root`), cwd: fs.readlinkSync(`/proc/${target.pid}/cwd`) };
    expect(before).toEqual({ root: path.join(work, 'jail'), cwd: work });
    await dumpAndReap(target.pid, path.join(work, 'images'));
    expect(restoreOk(path.join(work, 'images'))).toBe(target.pid);
    expect({ root: fs.readlinkSync(`/proc/${target.pid}/root`), cwd: fs.readlinkSync(`/proc/${target.pid}/cwd`) }).toEqual(before);
  });
});
