// A cwd in the /proc directory of a process that is gone (zdtm unhashed_proc, kinds/deadproc):
// dumped as CRIU's PROCFS remap of the dead PID, made again with a helper holding that PID while
// the task changes into it. After the restore getcwd() still says ENOENT, /proc/self/cwd reads
// the same, and the helper is gone.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING dead /proc directory tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine restore: a cwd in a dead process\'s /proc directory', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let child: number;
  let before: string;

  beforeAll(async () => {
    work = tempDir('deadproc');
    target = startTarget(compile('deadproc', work), [], work);
    child = Number((await target.waitFor(/^ready child=(\d+)$/m))[1]);
    before = (await target.waitFor(/^before .*$/m))[0];
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid]);
  });

  afterAll(() => cleanUp(target, work));

  it('is recorded as a PROCFS remap of the dead PID', () => {
    expect(before).toBe(`before getcwd=ENOENT cwd=/proc/${child} (deleted)`);
    const remaps = decode(path.join(dir, 'remap-fpath.img'));
    expect(remaps).toEqual([expect.objectContaining({ remap_id: child, remap_type: 2 })]); // PROCFS
    const cwd = decode(path.join(dir, 'files.img')).find((f: any) => f.id === remaps[0].orig_id);
    expect(cwd.reg.name).toBe(`/proc/${child}`);
  });

  it('comes back in that directory, gone again, the helper reaped', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    process.kill(target.pid, 'SIGUSR1');
    const after = (await target.waitFor(/^after .*$/m))[0];
    expect(after).toBe(before.replace(/^before/, 'after'));
    expect((await target.waitFor(/^child dir \w+$/m))[0]).toBe('child dir gone');
  });
});
