// engine dump and restore of process and thread attributes (fixtures/engine/attrs.c): scheduling
// policy, RT priority and nice per thread, oom_score_adj, loginuid, creds with ambient caps, a
// reduced bounding set and securebits, no_new_privs, dumpable 0, membarrier registrations and a
// child's parent-death signal. The program re-reads each one after the restore and compares it
// with what it had set; what has no place in the image is refused at dump, naming task and thread.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { loadMessages, writeImage } from '../../images/files';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, runEngine, alive, decode, until, gone, killPid, restoreOk, dumpAndReap, cleanUp, Target } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING engine attribute tests: ${SKIP_REASON}`);

/** What attrs.c sets, as its snapshot line prints it (membarrier: whatever the kernel offered). */
const EXPECTED: Record<string, string> = {
  'main.policy': '0x0', 'main.prio': '0', 'main.nice': '2',
  'fifo.policy': '0x40000001', 'fifo.prio': '5', 'fifo.nice': '3',
  'batch.policy': '0x3', 'batch.prio': '0', 'batch.nice': '7',
  oom_score_adj: '321', loginuid: '4242',
  uids: '4001,4002,4003,4001', gids: '5001,5002,5003,5001', groups: '6001,6002',
  // CAP_KILL, CAP_NET_BIND_SERVICE, CAP_SYS_NICE; prm adds CAP_DAC_READ_SEARCH, CAP_SETPCAP, CAP_NET_RAW
  eff: '0x800420', prm: '0x802524', inh: '0x800420', amb: '0x420',
  secbits: '0x41', no_new_privs: '1', dumpable: '0',
};

function fields(line: string): Record<string, string> {
  return Object.fromEntries(line.trim().split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

describe.skipIf(!IS_ROOT)('engine restore: process and thread attributes', () => {
  let work: string;
  let target: Target;
  let pid: number, child: number, fifo: number, batch: number;
  let before: Record<string, string>;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('attrs');
    target = startTarget(compile('attrs', work, ['-pthread']), [], work);
    const m = await target.waitFor(/ready pid=(\d+) child=(\d+) fifo=(\d+) batch=(\d+)/);
    [pid, child, fifo, batch] = m.slice(1, 5).map(Number);
    before = fields((await target.waitFor(/^before: (.*)$/m))[1]);
    dir = path.join(work, 'images');
    await dumpAndReap(pid, dir, [pid, child]);
  }, 30_000);

  afterAll(() => cleanUp(target, work, pid, child));

  it('set up what it was asked to (the fixture itself works)', () => {
    for (const [k, v] of Object.entries(EXPECTED)) expect(before[k], k).toBe(v);
    // the bounding set lost CAP_SYS_BOOT (22) and CAP_MKNOD (27)
    expect((BigInt(before.bnd) >> 22n) & 1n).toBe(0n);
    expect((BigInt(before.bnd) >> 27n) & 1n).toBe(0n);
    expect(Number(before.membarrier)).toBeGreaterThan(0);
  });

  it('keeps them in CRIU\'s fields', () => {
    const core = (tid: number) => decode(path.join(dir, `core-${tid}.img`))[0];
    const tc = core(pid).tc;
    expect(tc.oom_score_adj).toBe(321);
    expect(tc.loginuid).toBe(4242);
    expect(tc.membarrier_registration_mask).toBe(Number(before.membarrier));
    expect(core(fifo).thread_core).toMatchObject({ sched_policy: 0x40000001, sched_prio: 5, sched_nice: 3 });
    expect(core(batch).thread_core).toMatchObject({ sched_policy: 3, sched_nice: 7 });
    expect(core(batch).thread_core.sched_prio).toBeUndefined();
    expect(core(pid).thread_core).toMatchObject({ sched_policy: 0, sched_nice: 2 });
    expect(core(pid).thread_core.creds).toMatchObject({ uid: 4001, euid: 4002, suid: 4003, fsuid: 4001, cap_amb: [0x420, 0], secbits: 0x41, no_new_privs: 1 });
    expect(core(child).thread_core.pdeath_sig).toBe(12);
    expect(decode(path.join(dir, `mm-${pid}.img`))[0].dumpable).toBe(0);
  });

  it('restores them: the program finds every value it had set', async () => {
    expect(restoreOk(dir)).toBe(pid);
    expect(alive(child)).toBe(true);
    process.kill(pid, 'SIGUSR1');
    const check = (await target.waitFor(/^check (PASS|FAIL.*)$/m))[1];
    expect(check).toBe('PASS');
    const after = fields((await target.waitFor(/^after: (.*)$/m))[1]);
    expect(after).toEqual(before);
    for (const [k, v] of Object.entries(EXPECTED)) expect(after[k], k).toBe(v);
  });

  it('refuses an image with values this kernel does not take, before creating anything, naming image and field', () => {
    const edited = (name: string, file: string, magic: string, fn: (m: any) => void): string => {
      const d = path.join(work, name);
      fs.cpSync(dir, d, { recursive: true });
      const m = loadMessages(path.join(d, file));
      fn(m[0]);
      writeImage(path.join(d, file), magic, m.map((msg) => ({ msg })));
      return d;
    };
    const refusedWith = (d: string, re: RegExp) => {
      const r = runEngine(['restore', '-D', d, '-d']);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(re);
    };
    refusedWith(edited('deadline', `core-${fifo}.img`, 'CORE', (c) => { c.thread_core.sched_policy = 6; }),
      new RegExp(`^engine: core-${fifo}\\.img: thread_core\\.sched_policy: SCHED_DEADLINE is not restored\\n$`));
    refusedWith(edited('membarrier', `core-${pid}.img`, 'CORE', (c) => { c.tc.membarrier_registration_mask |= 1 << 12; }),
      new RegExp(`^engine: core-${pid}\\.img: tc\\.membarrier_registration_mask: 0x\\w+ has registrations this engine does not know \\(0x1000\\)\\n$`));
    if (fs.readFileSync('/proc/sys/fs/suid_dumpable', 'utf8').trim() !== '2') {
      refusedWith(edited('dumpable', `mm-${pid}.img`, 'MM', (m) => { m.dumpable = 2; }),
        new RegExp(`^engine: mm-${pid}\\.img: dumpable: 2 \\(SUID_DUMP_ROOT\\) needs fs\\.suid_dumpable 2, and it is \\d here\\n$`));
    }
  });

  it('gives the child its parent-death signal back, and it arrives when the parent exits', async () => {
    await target.waitFor(/^child pdeath=12 PASS$/m);
    await target.waitFor(/^child got the parent-death signal$/m);
    await until(() => gone(child) || !alive(child), 'the child to exit');
  });
});

describe.skipIf(!IS_ROOT)('engine dump: attributes the image cannot hold are refused', () => {
  let work: string;
  const started: Target[] = [];

  beforeAll(() => {
    work = tempDir('attrs-refused');
    compile('attrs', work, ['-pthread']);
  });

  afterAll(() => {
    for (const t of started) t.kill();
    cleanUp(undefined, work);
  });

  async function refused(mode: string, re: (pid: number, tid: number) => RegExp): Promise<void> {
    const t = startTarget(path.join(work, 'attrs'), [mode], work);
    started.push(t);
    const pid = Number((await t.waitFor(/ready pid=(\d+)/))[1]);
    const tid = Number(fs.readdirSync(`/proc/${pid}/task`).map(Number).find((x: number) => x !== pid));
    const r = runEngine(['dump', '-t', String(pid), '-D', path.join(work, `images-${mode}`)]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(re(pid, tid));
    // a refused dump leaves the tree running and writes nothing
    expect(alive(pid)).toBe(true);
    expect(fs.existsSync(path.join(work, `images-${mode}`))).toBe(false);
    killPid(pid);
  }

  it('a SCHED_DEADLINE thread', async () => {
    await refused('deadline', (pid, tid) => new RegExp(`^engine: task ${pid} thread ${tid}: scheduling policy SCHED_DEADLINE \\(runtime 1000000 ns, deadline 10000000 ns, period 10000000 ns\\): the image has no fields for deadline parameters\\n$`));
  });

  it('a thread with its own loginuid', async () => {
    await refused('loginuid', (pid, tid) => new RegExp(`^engine: task ${pid} thread ${tid}: loginuid 4343 differs from the leader's 4242; the image keeps one per task\\n$`));
  });
});
