// Namespace files (/proc/PID/ns/*) held open: dumped as CRIU's NS entries naming the tree's own
// namespaces, opened again in them at restore; one of another namespace is refused at dump.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING namespace file tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('namespace files', () => {
  let work: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('nsfiles');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  it('are recorded with the tree\'s namespace ids and opened in the same namespaces again', async () => {
    const t = startTarget(compile('nsfiles', work), [], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const dir = path.join(work, 'images');
    await dumpAndReap(t.pid, dir);
    const ids = decode(path.join(dir, `ids-${t.pid}.img`))[0];
    const nsf = decode(path.join(dir, 'files.img')).filter((f) => f.type === 14).map((f) => f.nsf);
    expect(nsf.map((n) => [n.ns_cflag, n.ns_id])).toEqual([[0x40000000, ids.net_ns_id], [0x04000000, ids.uts_ns_id], [0x00020000, ids.mnt_ns_id]]);
    expect(restoreOk(dir)).toBe(t.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^ns (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^ns ok$/m);
  });

  it('refuses one of a namespace no task of the tree is in, naming task and fd', async () => {
    fs.rmSync(path.join(work, 'go'), { force: true });
    const t = startTarget(compile('nsfiles', work), ['other'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'other')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd \\d+: namespace file uts:\\[\\d+\\] of another uts namespace than the tree's`));
    expect(alive(t.pid)).toBe(true);
  });
});
