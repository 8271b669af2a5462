// engine dump of per-task extras: the SIGIO owner of a file (fown), GDT TLS slots, seccomp filter
// chains shared between parent and child (and injected syscalls still work under a filter that
// denies one of them), and no cgroup.img when the tree is in the engine's cgroups (as CRIU).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, decode, alive, lastCount, consecutive, Target, dumpOk, cleanUp } from './helpers';
import { checkAllImagesDecode, fdTable } from './dump-support';

if (!IS_ROOT) console.warn(`SKIPPING engine task extras tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('engine dump: fown, TLS, seccomp, cgroups', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let pipeFd: number;
  let child: number;

  beforeAll(async () => {
    work = tempDir('extras');
    const exe = compile('owned', work);
    target = startTarget(exe, [], work);
    const m = await target.waitFor(/pipe=(\d+) tls=12 child=(\d+)/);
    pipeFd = +m[1];
    child = +m[2];
    await target.waitFor(/child=2\n/);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
  });

  afterAll(() => cleanUp(target, work, child));

  it('records the owner and signal of an owned file, zeros elsewhere', () => {
    checkAllImagesDecode(dir);
    const t = fdTable(dir, decode(path.join(dir, `ids-${target.pid}.img`))[0].files_id);
    expect(t.get(pipeFd)![1].pipe.fown).toEqual({ uid: 0, euid: 0, signum: 10, pid_type: 1, pid: target.pid });
    expect(t.get(pipeFd + 1)![1].pipe.fown).toEqual({ uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 });
  });

  it('saves the GDT TLS slot set with set_thread_area, and the empty ones', () => {
    for (const pid of [target.pid, child]) {
      const tls = decode(path.join(dir, `core-${pid}.img`))[0].thread_info.tls;
      expect(tls.map((e: { entry_number: number }) => e.entry_number)).toEqual([12, 13, 14]);
      expect(tls[0]).toEqual({
        entry_number: 12, base_addr: 0x12345000, limit: 0xfff, seg_32bit: true, contents_h: false, contents_l: false,
        read_exec_only: false, limit_in_pages: true, seg_not_present: false, usable: true,
      });
      expect(tls[1]).toMatchObject({ base_addr: 0, seg_not_present: true, read_exec_only: true });
    }
  });

  it('stores each filter once, chained oldest first, and points each thread at its newest', () => {
    const filters = decode(path.join(dir, 'seccomp.img'))[0].seccomp_filters;
    expect(filters).toHaveLength(3);
    expect(filters[0].prev).toBeUndefined();
    expect(filters[1].prev).toBe(0);
    expect(filters[2].prev).toBe(1);
    expect(filters.map((f: { filter: Uint8Array }) => f.filter.length)).toEqual([4 * 8, 8, 2 * 8]);
    const parent = decode(path.join(dir, `core-${target.pid}.img`))[0].thread_core;
    const kid = decode(path.join(dir, `core-${child}.img`))[0].thread_core;
    expect(parent).toMatchObject({ seccomp_mode: 2, seccomp_filter: 1 });
    expect(kid).toMatchObject({ seccomp_mode: 2, seccomp_filter: 2 });
    // getitimer is denied by the filter, yet the injected one returned the real itimers
    expect(decode(path.join(dir, `core-${target.pid}.img`))[0].tc.timers.real).toBeDefined();
  });

  it('writes no cgroup.img for a tree in the engine\'s own cgroups', () => {
    expect(fs.existsSync(path.join(dir, 'cgroup.img'))).toBe(false);
    expect(decode(path.join(dir, `core-${target.pid}.img`))[0].thread_core.cg_set).toBe(1);
  });

  it('leaves both tasks running', async () => {
    const c = lastCount(target.output(), 'child');
    await target.waitFor(new RegExp(`child=${c + 3}\\n`));
    expect(consecutive(target.output(), 'child')).toBe(true);
    expect(consecutive(target.output())).toBe(true);
    expect(alive(target.pid)).toBe(true);
  });
});
