// fanotify groups (fixtures/engine/fanotify.c): dumped as files.img FANOTIFY entries with their
// init flags, event flags and inode and mount marks, made again inside the task, after which the
// group's fdinfo is the same and events come for the marked objects and not for the ignored ones.
// What cannot come back is refused at dump, naming task, fd and kind, and the task runs on.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, ChildProcess, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, restoreOk, runEngine, alive, pyCritDecode } from './helpers';
import { native } from '../../native';

if (!IS_ROOT) console.warn(`SKIPPING fanotify tests: ${SKIP_REASON}`);

/** A work directory with a tmpfs of its own at work/mnt (a mount no other process touches). */
function workWithMount(prefix: string): { work: string; mnt: string } {
  const work = tempDir(prefix);
  const mnt = path.join(work, 'mnt');
  fs.mkdirSync(mnt);
  native().mount('tmpfs', mnt, 'tmpfs');
  return { work, mnt };
}

function unmount(mnt: string | undefined): void {
  if (mnt) try { execFileSync('umount', ['-l', mnt]); } catch { /* not mounted */ }
}

describe.skipIf(!IS_ROOT)('fanotify groups', () => {
  let work: string;
  let mnt: string;
  let target: Target;
  let dir: string;
  let exe: string;

  beforeAll(async () => {
    ({ work, mnt } = workWithMount('fanotify'));
    exe = compile('fanotify', work);
    target = startTarget(exe, ['ok', mnt], work);
    await target.waitFor(/^ready$/m);
    expect(target.output()).toMatch(/^pre ok$/m);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => {
    target?.kill();
    unmount(mnt);
    cleanUp(undefined, work);
  });

  it('writes the group with its flags and marks as CRIU 4.2 does', () => {
    const files = decode(path.join(dir, 'files.img'));
    const ffy = files.filter((f) => f.type === 12).map((f) => f.ffy);
    expect(ffy).toHaveLength(1);
    const g = ffy[0];
    // FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE; O_RDONLY | O_LARGEFILE
    expect(g.faflags).toBe(0x13);
    expect(g.evflags).toBe(0o100000);
    // the file itself: O_RDWR, blocking by now
    expect(g.flags).toBe(2);
    const name = (m: { type: number; ie?: { f_handle: { path: string } }; me?: { path: string } }) => (m.type === 2 ? `mount ${m.me!.path}` : m.ie!.f_handle.path);
    // fdinfo order (newest first)
    const at = (n: string) => path.join(mnt, n);
    expect(g.mark.map(name)).toEqual([at('evict'), at('trick'), at('sub'), at('reader'), at('quiet'), `mount ${mnt}`, at('watched')]);
    const byName = new Map(g.mark.map((m: { type: number }) => [name(m as never), m]));
    expect(byName.get(`mount ${mnt}`)).toMatchObject({ type: 2, mflags: 0x40, mask: 0x40000030, ignored_mask: 0x1 });
    expect(byName.get(path.join(mnt, 'sub'))).toMatchObject({ type: 1, mflags: 0x440, mask: 0, ignored_mask: 0x40000020 });
    expect(byName.get(path.join(mnt, 'trick'))).toMatchObject({ mflags: 0x400, mask: 0x8, ignored_mask: 0 });
    expect(byName.get(path.join(mnt, 'evict'))).toMatchObject({ mflags: 0x200, mask: 0x20 });
    const ie = (byName.get(path.join(mnt, 'watched')) as { ie: { i_ino: bigint | number } }).ie;
    expect(BigInt(ie.i_ino)).toBe(BigInt(fs.statSync(path.join(mnt, 'watched')).ino));
    const py = pyCritDecode(path.join(dir, 'files.img'));
    if (py) expect(py.err).toBe('');
  });

  it('makes the group again: same fdinfo, fd flags, and events for the marked objects only', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^fanotify (ok|fail.*)$/m, 10_000);
    expect(target.output()).toMatch(/^fanotify ok$/m);
  });
});

describe.skipIf(!IS_ROOT)('fanotify state that cannot come back', () => {
  let work: string;
  let mnt: string;
  let exe: string;
  const targets: Target[] = [];
  let opener: ChildProcess | undefined;

  beforeAll(() => {
    ({ work, mnt } = workWithMount('fanotify-refused'));
    fs.chmodSync(work, 0o755); // "unpriv" marks a file here as nobody
    exe = compile('fanotify', work);
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    opener?.kill('SIGKILL');
    unmount(mnt);
    cleanUp(undefined, work);
  });

  async function refused(mode: string, why: RegExp, before?: (t: Target) => Promise<void>): Promise<void> {
    for (const f of fs.readdirSync(mnt)) fs.rmSync(path.join(mnt, f), { recursive: true, force: true });
    const t = startTarget(exe, [mode, mnt], work);
    targets.push(t);
    await t.waitFor(/^ready$/m);
    if (before) await before(t);
    const images = path.join(work, `images-${mode}`);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', images]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid} fd \\d+: ${why.source}`));
    expect(fs.existsSync(images)).toBe(false);
    expect(alive(t.pid)).toBe(true);
  }

  it('refuses events queued and not read', () => refused('queued', /fanotify group with events queued and not read yet/));
  it('refuses filesystem marks', () => refused('fsmark', /fanotify filesystem mark \(FAN_MARK_FILESYSTEM\)/));
  it('refuses marks on unlinked files', () => refused('unlinked', /fanotify mark 0 \(inode \d+\) on (the|an) unlinked/));
  it('refuses marks with both masks empty', () => refused('empty', /fanotify mark 0: a mark with empty masks/));
  it('refuses FID groups held without CAP_SYS_ADMIN (maybe made unprivileged)', () => refused('unpriv', /fanotify group \(flags 0x200\) held by a task without CAP_SYS_ADMIN/));
  it('refuses a permission event read and not answered', () =>
    refused('perm', /fanotify group with permission marks while task \d+ waits for a fanotify permission answer/, async (t) => {
      opener = spawn('cat', [path.join(mnt, 'guarded')], { stdio: 'ignore' });
      await t.waitFor(/^asked$/m);
    }));
});
