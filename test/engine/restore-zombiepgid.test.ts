// Process groups whose leader is dead and reaped (zdtm zombie01): pstree.img keeps the members'
// pgid only, and the restore makes the group with a helper that takes the dead leader's PID
// and is gone again once the members (a live task and a zombie) are in. What cannot be made
// that way (a group led by a live process outside the tree, a group with members outside it,
// a session whose leader is gone) is refused at dump.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive, gone, killPid, consecutive, lastCount } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING leaderless process group tests: ${SKIP_REASON}`);

const statOf = (pid: number) => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');

/** What R and M print on SIGUSR1 (M gets it through its group). */
async function reports(t: Target, r: number, l: number): Promise<[string, string]> {
  const before = t.output().length;
  process.kill(-l, 'SIGUSR1');
  process.kill(r, 'SIGUSR1');
  const fresh = async (re: RegExp) => {
    for (let i = 0; i < 500; i++) {
      const m = t.output().slice(before).match(re);
      if (m) return m[0];
      await new Promise((res) => setTimeout(res, 10));
    }
    throw new Error(`no ${re} after SIGUSR1 (output: ${t.output().slice(-300)})`);
  };
  return [await fresh(/^R .*$/m), await fresh(/^M .*$/m)];
}

describe.skipIf(!IS_ROOT)('engine restore: a zombie and a live task in a group whose leader is gone', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let l: number, m: number, z: number;
  let before: [string, string];

  beforeAll(async () => {
    work = tempDir('zombiepgid');
    target = startTarget(compile('zombiepgid', work), [], work);
    const ready = await target.waitFor(/ready L=(\d+) M=(\d+) Z=(\d+)/);
    [l, m, z] = ready.slice(1, 4).map(Number);
    await target.waitFor(/^m=2$/m);
    before = await reports(target, target.pid, l);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir, [target.pid, m, z]);
  });

  afterAll(() => cleanUp(target, work, m));

  it('saw the group as zdtm zombie01 sets it up', () => {
    expect(before[0]).toMatch(new RegExp(`^R zombie=${z} code=1 status=3 zpgid=${l} zsid=${target.pid} mpgid=${l} leader=gone sigchld=[12]$`));
    expect(before[1]).toBe(`M pgrp=${l} ppid=${target.pid} sigchld=0 children=none`);
  });

  it('records the members\' group and no task for the dead leader', () => {
    const tree = decode(path.join(dir, 'pstree.img'));
    expect(tree.map((e) => [e.pid, e.ppid, e.pgid, e.sid])).toEqual([
      [target.pid, 0, target.pid, target.pid], [m, target.pid, l, target.pid], [z, target.pid, l, target.pid],
    ]);
    expect(fs.existsSync(path.join(dir, `core-${l}.img`))).toBe(false);
  });

  it('restores both in the group, the zombie with its status; the helper is gone without a trace', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    // from outside: the group exists with its id, its leader does not
    expect(statOf(z)[0]).toBe('Z');
    expect(statOf(z).slice(1, 4).map(Number)).toEqual([target.pid, l, target.pid]);
    expect(statOf(m).slice(1, 4).map(Number)).toEqual([target.pid, l, target.pid]);
    expect(gone(l)).toBe(true);
    // from inside: the same as before the dump; no SIGCHLD came again (R: from the zombie made
    // again, M: from the helper) and M has no child left to reap
    expect(await reports(target, target.pid, l)).toEqual(before);
    const [r0, m0] = [lastCount(target.output(), 'r'), lastCount(target.output(), 'm')];
    await target.waitFor(new RegExp(`^r=${r0 + 3}$`, 'm'));
    await target.waitFor(new RegExp(`^m=${m0 + 3}$`, 'm'));
    expect(consecutive(target.output(), 'r')).toBe(true);
    expect(consecutive(target.output(), 'm')).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('engine dump: groups and sessions that reach outside the tree', () => {
  let work: string;
  const targets: Target[] = [];
  const extra: number[] = [];

  beforeAll(() => {
    work = tempDir('pgrpout');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    killPid(...extra);
    cleanUp(undefined, work);
  });

  function refused(t: Target, message: string): void {
    const out = path.join(work, `refused-${t.pid}`);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', out]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toBe(`engine: ${message}\n`);
    expect(fs.existsSync(out)).toBe(false);
    expect(alive(t.pid)).toBe(true);
  }

  it('refuses a group led by a live process outside the tree (that needs --shell-job)', async () => {
    const t = startTarget(compile('pgrpout', work), ['leader'], work);
    targets.push(t);
    const [, lp, cp] = (await t.waitFor(/ready L=(\d+) C=(\d+)/)).map(Number);
    extra.push(lp, cp);
    refused(t, `task ${cp} is in process group ${lp}, which is outside the dumped tree (use --shell-job)`);
    expect(alive(cp) && alive(lp)).toBe(true);
    expect(statOf(cp)[2]).toBe(String(lp));
  });

  it('refuses a group whose leader is gone but which holds a process outside the tree', async () => {
    const t = startTarget(path.join(work, 'pgrpout'), ['member'], work);
    targets.push(t);
    const [, lp, cp, wp] = (await t.waitFor(/ready L=(\d+) C=(\d+) W=(\d+)/)).map(Number);
    extra.push(cp, wp);
    expect(gone(lp)).toBe(true);
    refused(t, `task ${cp}: its process group ${lp} (whose leader is gone) also holds process ${wp}, outside the dumped tree (not supported)`);
  });

  it('refuses a session whose leader is gone', async () => {
    const t = startTarget(compile('zombiepgid', work), ['session'], work);
    targets.push(t);
    const [, lp, mp] = (await t.waitFor(/ready L=(\d+) M=(\d+) Z=(\d+)/)).map(Number);
    extra.push(mp);
    refused(t, `task ${mp} is in session ${lp}, which is outside the dumped tree (use --shell-job)`);
  });
});
