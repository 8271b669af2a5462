// The `criu` command line: CRIU's option syntax (parsed as getopt_long does), every option
// carried out or refused by name, check --feature for this engine, and a real dump and restore
// driven the way zdtm drives CRIU (log and images in an existing directory, pidfile, status fd,
// stats files whose page counts match the pages files).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs, flag, str } from '../../engine/criu/options';
import { checkFeature, featureNames } from '../../engine/criu/features';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runCriu, alive, lastCount, consecutive, Target, decode, until, gone, cleanUp } from './helpers';

describe('criu options, parsed as CRIU parses them', () => {
  it('takes long options with = or a separate value, prefixes, and the command anywhere', () => {
    const p = parseArgs(['--tree=12', '--images-dir', '/d', 'dump', '--leave-r', '--log-file', 'x.log']);
    expect(p.command).toBe('dump');
    expect(str(p, 'tree')).toBe('12');
    expect(str(p, 'images-dir')).toBe('/d');
    expect(flag(p, 'leave-running')).toBe(true);
    expect(str(p, 'log-file')).toBe('x.log');
    expect(p.refused).toEqual([]);
  });

  it('reads -v the way CRIU does: -v4, -vvv, --verbosity=N, zdtm\'s -verbosity=0', () => {
    expect(parseArgs(['check', '-v4']).verbosity).toBe(4);
    expect(parseArgs(['check', '-vvv']).verbosity).toBe(5);
    expect(parseArgs(['check', '-v']).verbosity).toBe(3);
    expect(parseArgs(['check', '--verbosity=1']).verbosity).toBe(1);
    expect(parseArgs(['check', '-verbosity=0']).verbosity).toBe(0);
    expect(parseArgs(['check']).verbosity).toBe(2);
  });

  it('bundles short options and attaches values', () => {
    const p = parseArgs(['restore', '-dj', '-D/imgs', '-t', '7']);
    expect(flag(p, 'restore-detached')).toBe(true);
    expect(flag(p, 'shell-job')).toBe(true);
    expect(str(p, 'images-dir')).toBe('/imgs');
    expect(str(p, 'tree')).toBe('7');
  });

  it('refuses what the engine does not do, by name; --no-X (the default) is fine', () => {
    const p = parseArgs(['dump', '--evasive-devices', '--freeze-cgroup=/x', '--external', 'x', '--no-link-remap', '--no-tcp-close']);
    expect(p.refused.map((r) => r.option)).toEqual(['--evasive-devices', '--freeze-cgroup', '--external']);
    expect(p.refused[0].why).toMatch(/plugins/);
    // what the engine does in its own way is taken: irmap's paths are what every dump records
    expect(parseArgs(['dump', '--link-remap', '--force-irmap', '--irmap-scan-path', '/x', '--ghost-fiemap', '-x']).refused).toEqual([]);
  });

  it('rejects unknown and ambiguous options with getopt\'s words', () => {
    expect(() => parseArgs(['dump', '--bogus'])).toThrow(/unrecognized option '--bogus'/);
    expect(() => parseArgs(['dump', '--tcp'])).toThrow(/ambiguous/);
    expect(() => parseArgs(['dump', '-q'])).toThrow(/invalid option -- 'q'/);
    expect(() => parseArgs(['dump', '--tree'])).toThrow(/requires an argument/);
    expect(() => parseArgs(['dump', '--leave-running=1'])).toThrow(/doesn't allow an argument/);
  });
});

describe('criu check answers for this engine', () => {
  it('knows every CRIU 4.2 feature name and says no, with a reason, to what the engine lacks', () => {
    expect(featureNames()).toContain('tcp_half_closed');
    expect(checkFeature('breakpoints')).toMatchObject({ ok: false });
    expect(checkFeature('userns')!.why).toMatch(/namespaces/);
    expect(checkFeature('seccomp_filters')!.ok).toBe(true);
    expect(checkFeature('nonsense')).toBeUndefined();
  });

  it('exits 0 only for a supported feature; list prints the supported ones', () => {
    expect(runCriu(['check', '--no-default-config', '-verbosity=0', '--feature', 'get_rseq_conf']).status).toBe(0);
    const no = runCriu(['check', '--feature', 'breakpoints']);
    expect(no.status).toBe(1);
    expect(no.stderr).toMatch(/breakpoints is not supported: /);
    expect(runCriu(['check', '--feature', 'nonsense']).status).toBe(1);
    const list = runCriu(['check', '--feature', 'list']).stdout.trim().split(' ');
    expect(list).toContain('seccomp_filters');
    expect(list).not.toContain('timens');
  });

  it('prints CRIU\'s version line first, and refuses commands it does not have', () => {
    expect(runCriu(['--version']).stdout).toMatch(/^Version: 4\.2\n/);
    const r = runCriu(['pre-dump', '-t', '1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^criu: pre-dump: .*dirty-page tracking/);
  });
});

if (!IS_ROOT) console.warn(`SKIPPING criu dump/restore tests: ${SKIP_REASON}`);

describe.skipIf(!IS_ROOT)('criu dump and restore, driven as zdtm drives CRIU', () => {
  let work: string;
  let target: Target;
  let dir: string;
  let countAtDump = 0;

  beforeAll(async () => {
    work = tempDir('criu-cli');
    const exe = compile('counter', work);
    target = startTarget(exe, [path.join(work, 'file.txt'), '20000'], work);
    await target.waitFor(/count=3\n/);
    dir = path.join(work, 'dump', '1');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'dump.cropt'), 'left alone\n');
  });

  afterAll(() => cleanUp(target, work));

  it('refuses a refused option before touching the tree, with an Error ( line in the log', () => {
    const r = runCriu(['dump', '--no-default-config', '--log-file', 'dump.log', '--images-dir', dir, '--verbosity=4', '--tree', String(target.pid), '--evasive-devices']);
    expect(r.status).toBe(1);
    const log = fs.readFileSync(path.join(dir, 'dump.log'), 'utf8');
    expect(log).toMatch(/^Error \(dump\): --evasive-devices is not supported: /m);
    expect(r.stderr).toMatch(/--evasive-devices: not supported by this engine/);
    expect(alive(target.pid)).toBe(true);
    expect(fs.readFileSync(`/proc/${target.pid}/status`, 'utf8')).toMatch(/^TracerPid:\s+0$/m);
    expect(fs.existsSync(path.join(dir, 'inventory.img'))).toBe(false);
  });

  it('dumps into the existing directory, beside what was there, with stats that match the pages files', async () => {
    const r = runCriu(['dump', '--no-default-config', '--log-file', 'dump.log', '--images-dir', dir, '--verbosity=4', '--tree', String(target.pid),
      '--pidfile', path.join(work, 'counter.pid'), '--timeout', '10']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    countAtDump = lastCount(target.output());
    expect(fs.readFileSync(path.join(dir, 'dump.cropt'), 'utf8')).toBe('left alone\n');
    expect(fs.readFileSync(path.join(dir, 'dump.log'), 'utf8')).toMatch(/Dumping finished successfully/);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['1']); // no staging directory left
    const st = decode(path.join(dir, 'stats-dump'))[0].dump as Record<string, unknown>;
    const pagesBytes = fs.readdirSync(dir).filter((f) => f.startsWith('pages-')).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
    expect(Number(st.pages_written) + Number(st.shpages_written)).toBe(pagesBytes / 4096);
    await until(() => gone(target.pid), 'the dumped counter to be reaped');
  });

  it('restores detached, writes the pidfile, the stats and one NUL on the status fd', async () => {
    const pidfile = path.join(work, 'counter.pid');
    const r = runCriu(['restore', '--no-default-config', '--log-file', 'restore.log', '--images-dir', dir, '--verbosity=4', '--pidfile', pidfile,
      '--restore-detached', '--status-fd', '3'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.output[3]).toBe('\0');
    expect(fs.readFileSync(pidfile, 'utf8')).toBe(String(target.pid));
    expect(fs.readFileSync(path.join(dir, 'restore.log'), 'utf8')).toMatch(/Restore finished successfully/);
    const rs = decode(path.join(dir, 'stats-restore'))[0].restore as Record<string, unknown>;
    expect(Number(rs.pages_restored)).toBeGreaterThan(0);
    await target.waitFor(new RegExp(`count=${countAtDump + 5}\\n`));
    expect(consecutive(target.output())).toBe(true);
  });
});

describe.skipIf(!IS_ROOT)('criu dump of file locks', () => {
  let work: string;
  let target: Target;

  beforeAll(async () => {
    work = tempDir('criu-locks');
    const exe = compile('fifolock', work);
    target = startTarget(exe, [work], work);
    await target.waitFor(/count=2\n/);
  });

  afterAll(() => cleanUp(target, work));

  it('refuses a tree holding locks without --file-locks, naming task and fd, and leaves it running', () => {
    const dir = tempDir('criu-locks-img');
    const r = runCriu(['dump', '-o', 'dump.log', '-D', dir, '-t', String(target.pid), '-R']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'dump.log'), 'utf8')).toMatch(new RegExp(`^Error \\(dump\\): task ${target.pid} fd \\d+: holds a file lock .*--file-locks`, 'm'));
    expect(fs.readdirSync(dir)).toEqual(['dump.log']);
    expect(alive(target.pid)).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('dumps them with --file-locks (-W puts the log and stats in the work dir)', () => {
    const dir = tempDir('criu-locks-img');
    const wd = tempDir('criu-locks-work');
    const r = runCriu(['dump', '-o', 'dump.log', '-W', wd, '-D', dir, '-t', String(target.pid), '-R', '--file-locks']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(decode(path.join(dir, 'filelocks.img')).length).toBe(3);
    expect(fs.existsSync(path.join(wd, 'dump.log'))).toBe(true);
    expect(fs.existsSync(path.join(wd, 'stats-dump'))).toBe(true);
    expect(alive(target.pid)).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(wd, { recursive: true, force: true });
  });
});
