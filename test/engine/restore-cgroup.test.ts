// Cgroups through the criu command line: a process in a v1 cpu cgroup (and a v2 one when the
// unified hierarchy is there) with its thread in a child cgroup, properties set on both; dumped
// with --manage-cgroups, the cgroups removed, restored: the cgroups are made again with their
// properties and the process and its thread are back in them (the target checks its own
// /proc/self/task/*/cgroup). Then the modes: none refuses missing cgroups and makes nothing,
// --cgroup-root moves the tree, ignore leaves the task where the restorer is. Refused at dump:
// a task in another cgroup namespace, a thread elsewhere than its process when cgroups are ignored.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runCriu, Target, decode, until, gone, killPid, sleep, CG2 } from './helpers';
import { cgroupProps, cgroupMode, parseCgroupRoot } from '../../engine/kinds/cgroup';

const CPU = '/sys/fs/cgroup/cpu';
const V1 = IS_ROOT && fs.existsSync(path.join(CPU, 'cpu.shares')) && fs.existsSync(path.join(CPU, 'tasks'));
const V2 = V1 && CG2 !== undefined && fs.existsSync(path.join(CG2, 'cgroup.procs')) && fs.existsSync(path.join(CG2, 'cgroup.threads'));
if (!V1) console.warn(`SKIPPING cgroup tests: ${IS_ROOT ? `no v1 cpu hierarchy at ${CPU}` : SKIP_REASON}`);

const NAME = `engine-cgtest-${process.pid}`;

describe('cgroup options as CRIU takes them', () => {
  it('--cgroup-props merges into or replaces CRIU\'s property lists, and adds controllers', () => {
    const p = cgroupProps('"cpu":\n - "strategy": "merge"\n - "properties": ["cpu.idle"]\n"pids":\n - "strategy": "replace"\n - "properties": []\n"hugetlb":\n - "strategy": "merge"\n - "properties": ["hugetlb.2MB.limit_in_bytes", "x"]\n');
    expect(p.get('cpu')).toEqual(['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.rt_period_us', 'cpu.rt_runtime_us', 'cpu.idle']);
    expect(p.get('pids')).toEqual([]);
    expect(p.get('hugetlb')).toEqual(['hugetlb.2MB.limit_in_bytes', 'x']);
    expect(p.get('memory')![0]).toBe('memory.limit_in_bytes');
    expect(() => cgroupProps('"cpu":\n - "strategy": "sometimes"\n - "properties": []')).toThrow(/"merge" or "replace"/);
    expect(() => cgroupProps('cpu: []')).toThrow(/a controller name/);
  });

  it('--manage-cgroups modes (soft without one) and --cgroup-root [controller:]/root', () => {
    expect(cgroupMode(true)).toBe('soft');
    expect(cgroupMode('strict')).toBe('strict');
    expect(() => cgroupMode('hard')).toThrow(/unknown cgroups mode/);
    expect(parseCgroupRoot('name=zdtmtst:/prefix')).toEqual({ controller: 'name=zdtmtst', root: '/prefix' });
    expect(parseCgroupRoot('/newroot')).toEqual({ root: '/newroot' });
    expect(() => parseCgroupRoot('cpu:rel')).toThrow(/absolute/);
  });
});

/** Removes cgroups, children first, waiting for killed members to be gone. */
async function removeCgroups(dirs: string[]): Promise<void> {
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    for (let i = 0; i < 300 && fs.existsSync(d); i++) {
      try {
        fs.rmdirSync(d);
      } catch {
        await sleep(10);
      }
    }
  }
}

const cgroupLine = (pid: number, tid: number, name: string) =>
  fs.readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8').split('\n').find((l) => l.split(':')[1] === name)?.split(':').slice(2).join(':');

describe.skipIf(!V1)('cgroups: dump and restore with --manage-cgroups', () => {
  let work: string;
  let exe: string;
  let target: Target;
  let tid: number;
  let dir: string;
  const pids: number[] = [];
  // every cgroup this suite may make (and the restores make again)
  const cgroups = [
    path.join(CPU, NAME), path.join(CPU, NAME, 'thr'), path.join(CPU, `${NAME}-moved`), path.join(CPU, `${NAME}-moved`, 'thr'),
    ...(V2 ? [path.join(CG2!, NAME), path.join(CG2!, NAME, 'thr'), path.join(CG2!, `${NAME}-moved`), path.join(CG2!, `${NAME}-moved`, 'thr')] : []),
  ];

  beforeAll(async () => {
    work = tempDir('cgroup');
    exe = compile('cgroupmove', work, ['-pthread']);
    target = startTarget(exe, [], work);
    pids.push(target.pid);
    tid = Number((await target.waitFor(/ready tid=(\d+)\n/))[1]);
    dir = path.join(work, 'images');
    fs.mkdirSync(dir);
    // the process in NAME, its thread in NAME/thr, a property on each
    const cpu = path.join(CPU, NAME);
    fs.mkdirSync(path.join(cpu, 'thr'), { recursive: true });
    fs.writeFileSync(path.join(cpu, 'cpu.shares'), '512');
    fs.writeFileSync(path.join(cpu, 'thr', 'cpu.cfs_quota_us'), '50000');
    fs.writeFileSync(path.join(cpu, 'cgroup.procs'), String(target.pid));
    fs.writeFileSync(path.join(cpu, 'thr', 'tasks'), String(tid));
    if (V2) {
      const v2 = path.join(CG2!, NAME);
      fs.mkdirSync(path.join(v2, 'thr'), { recursive: true });
      fs.writeFileSync(path.join(v2, 'thr', 'cgroup.type'), 'threaded');
      fs.writeFileSync(path.join(v2, 'cgroup.max.depth'), '3');
      fs.writeFileSync(path.join(v2, 'cgroup.procs'), String(target.pid));
      fs.writeFileSync(path.join(v2, 'thr', 'cgroup.threads'), String(tid));
    }
    process.kill(target.pid, 'SIGUSR2');
    await target.waitFor(/noted\n/);
  });

  afterAll(async () => {
    target?.kill();
    killPid(...pids);
    await removeCgroups(cgroups);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('dumps the cgroups of the task and of its thread, with their properties', async () => {
    const r = runCriu(['dump', '-t', String(target.pid), '-D', dir, '-o', 'dump.log', '--manage-cgroups']);
    expect(r.status, fs.readFileSync(path.join(dir, 'dump.log'), 'utf8')).toBe(0);
    await until(() => gone(target.pid), 'the dumped task to be reaped');
    const cg = decode(path.join(dir, 'cgroup.img'))[0];
    const setOf = (t: number) => Number(decode(path.join(dir, `core-${t}.img`))[0].thread_core.cg_set);
    const members = (id: number) => new Map(cg.sets.find((s: { id: number }) => Number(s.id) === id).ctls.map((m: { name: string; path: string }) => [m.name, m.path]));
    expect(members(setOf(target.pid)).get('cpu')).toBe(`/${NAME}`);
    expect(members(setOf(tid)).get('cpu')).toBe(`/${NAME}/thr`);
    const cpu = cg.controllers.find((c: { cnames: string[] }) => c.cnames.join(',') === 'cpu');
    expect(cpu.is_threaded).toBe(true);
    const head = cpu.dirs.find((d: { dir_name: string }) => d.dir_name === NAME);
    expect(head.properties.find((p: { name: string }) => p.name === 'cpu.shares').value).toBe('512');
    expect(head.children[0].dir_name).toBe('thr');
    expect(head.children[0].properties.find((p: { name: string }) => p.name === 'cpu.cfs_quota_us').value).toBe('50000');
    if (V2) {
      expect(members(setOf(tid)).get('')).toBe(`/${NAME}/thr`);
      const v2 = cg.controllers.find((c: { cnames: string[] }) => c.cnames.join(',') === '');
      expect(v2.is_threaded).toBe(true);
    }
    await removeCgroups(cgroups);
    expect(fs.existsSync(path.join(CPU, NAME))).toBe(false);
  });

  it('--manage-cgroups=none refuses cgroups that are gone, and makes nothing', () => {
    const r = runCriu(['restore', '-D', dir, '-d', '-o', 'restore-none.log', '--manage-cgroups=none']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'restore-none.log'), 'utf8')).toMatch(new RegExp(`^Error \\(restore\\): cgroup cpu ${CPU}/${NAME} does not exist \\(--manage-cgroups=none creates none\\)`, 'm'));
    expect(fs.existsSync(path.join(CPU, NAME))).toBe(false);
    expect(gone(target.pid)).toBe(true);
  });

  it('--cgroup-root puts the dumped cgroups under another root', async () => {
    const r = runCriu(['restore', '-D', dir, '-d', '-o', 'restore-root.log', '--cgroup-root', `cpu:/${NAME}-moved`, ...(V2 ? ['--cgroup-root', `:/${NAME}-moved`] : [])]);
    expect(r.status, fs.readFileSync(path.join(dir, 'restore-root.log'), 'utf8')).toBe(0);
    expect(cgroupLine(target.pid, target.pid, 'cpu')).toBe(`/${NAME}-moved`);
    expect(cgroupLine(target.pid, tid, 'cpu')).toBe(`/${NAME}-moved/thr`);
    expect(fs.readFileSync(path.join(CPU, `${NAME}-moved`, 'cpu.shares'), 'utf8')).toBe('512\n');
    if (V2) expect(cgroupLine(target.pid, tid, '')).toBe(`/${NAME}-moved/thr`);
    killPid(target.pid);
    await until(() => gone(target.pid), 'the restored task to be killed');
  });

  it('--manage-cgroups=ignore leaves the task in the restorer\'s cgroups', async () => {
    const r = runCriu(['restore', '-D', dir, '-d', '-o', 'restore-ignore.log', '--manage-cgroups=ignore']);
    expect(r.status, fs.readFileSync(path.join(dir, 'restore-ignore.log'), 'utf8')).toBe(0);
    const mine = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n').find((l) => l.split(':')[1] === 'cpu')!.split(':')[2];
    expect(cgroupLine(target.pid, target.pid, 'cpu')).toBe(mine);
    expect(cgroupLine(target.pid, tid, 'cpu')).toBe(mine);
    killPid(target.pid);
    await until(() => gone(target.pid), 'the restored task to be killed');
  });

  it('restores them (soft): made again with their properties, the task and its thread back inside', async () => {
    const r = runCriu(['restore', '-D', dir, '-d', '-o', 'restore.log', '--manage-cgroups']);
    expect(r.status, fs.readFileSync(path.join(dir, 'restore.log'), 'utf8')).toBe(0);
    expect(cgroupLine(target.pid, target.pid, 'cpu')).toBe(`/${NAME}`);
    expect(cgroupLine(target.pid, tid, 'cpu')).toBe(`/${NAME}/thr`);
    expect(fs.readFileSync(path.join(CPU, NAME, 'cpu.shares'), 'utf8')).toBe('512\n');
    expect(fs.readFileSync(path.join(CPU, NAME, 'thr', 'cpu.cfs_quota_us'), 'utf8')).toBe('50000\n');
    if (V2) {
      expect(cgroupLine(target.pid, target.pid, '')).toBe(`/${NAME}`);
      expect(cgroupLine(target.pid, tid, '')).toBe(`/${NAME}/thr`);
      expect(fs.readFileSync(path.join(CG2!, NAME, 'cgroup.max.depth'), 'utf8')).toBe('3\n');
      expect(fs.readFileSync(path.join(CG2!, NAME, 'thr', 'cgroup.type'), 'utf8')).toBe('threaded\n');
    }
    process.kill(target.pid, 'SIGUSR1');
    await target.waitFor(/(PASS|FAIL)\n/);
    expect(target.output()).toMatch(/noted\nPASS\n$/);
    await until(() => gone(target.pid), 'the restored task to end');
  });

  it('refuses at dump a thread in other cgroups than its process when cgroups are ignored', async () => {
    const t = startTarget(exe, [], work);
    pids.push(t.pid);
    const other = Number((await t.waitFor(/ready tid=(\d+)\n/))[1]);
    fs.mkdirSync(path.join(CPU, NAME, 'thr'), { recursive: true });
    fs.writeFileSync(path.join(CPU, NAME, 'thr', 'tasks'), String(other));
    const d = path.join(work, 'refused');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-t', String(t.pid), '-D', d, '-o', 'dump.log', '--manage-cgroups=ignore']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(new RegExp(`^Error \\(dump\\): task ${t.pid} thread ${other}: in cgroup cpu:/${NAME}/thr, its process in /.*the restore could not put the thread back`, 'm'));
    expect(fs.readFileSync(`/proc/${t.pid}/status`, 'utf8')).toMatch(/TracerPid:\s+0\n/);
    t.kill();
  });

  it('refuses at dump a task in another cgroup namespace', async () => {
    const t = startTarget('/usr/bin/unshare', ['-C', exe], work);
    pids.push(t.pid);
    await t.waitFor(/ready tid=\d+\n/);
    const d = path.join(work, 'cgns');
    fs.mkdirSync(d);
    const r = runCriu(['dump', '-t', String(t.pid), '-D', d, '-o', 'dump.log']);
    expect(r.status).toBe(1);
    expect(fs.readFileSync(path.join(d, 'dump.log'), 'utf8')).toMatch(new RegExp(`^Error \\(dump\\): task ${t.pid}: in cgroup namespace cgroup:\\[\\d+\\], not the engine's .*cgroup namespaces are not dumped`, 'm'));
    t.kill();
  });
});
