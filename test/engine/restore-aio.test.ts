// Linux AIO contexts (io_setup rings, kinds/aio): dumped in CRIU 4.2's layout (VMA_AREA_AIORING,
// the whole ring in the pages, mm.img aios), made again at restore with the completed events
// still waiting, the kernel ids and the free slots as they were. Requests in flight and rings
// without a context of their own are refused at dump, and the dump leaves the rings untouched.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, Target, decode, cleanUp, dumpAndReap, dumpOk, restoreOk, runEngine, runCriu, alive, dumpedMemory } from './helpers';

if (!IS_ROOT) console.warn(`SKIPPING AIO tests: ${SKIP_REASON}`);

const AIORING = 0x2000;

const affinity = (pid: number) => /^Cpus_allowed_list:\s*(\S+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1];

/** The two rings the fixture prints: a (io_setup(64)) and b (io_setup(1)). */
function rings(out: string): { a: bigint; b: bigint } {
  const m = /^rings a=([0-9a-f]+) .* b=([0-9a-f]+) /m.exec(out)!;
  return { a: BigInt('0x' + m[1]), b: BigInt('0x' + m[2]) };
}

describe.skipIf(!IS_ROOT)('AIO contexts with completed events', () => {
  let work: string;
  let exe: string;
  let target: Target;
  let dir: string;

  beforeAll(async () => {
    work = tempDir('aioring');
    exe = compile('aioring', work);
    target = startTarget(exe, [], work);
    await target.waitFor(/count=2\n/);
    dir = path.join(work, 'images');
    await dumpAndReap(target.pid, dir);
  });

  afterAll(() => cleanUp(target, work));

  it('records each ring as CRIU does: its VMA, all its pages and an aios entry', () => {
    const { a, b } = rings(target.output());
    const mm = decode(path.join(dir, `mm-${target.pid}.img`))[0];
    const ringVmas = mm.vmas.filter((v: { status: number }) => v.status & AIORING);
    expect(ringVmas.map((v: { start: unknown; status: number; flags: number; prot: number }) => [BigInt(v.start as bigint), v.status, v.flags, v.prot]).sort()).toEqual([[a, AIORING, 1, 3], [b, AIORING, 1, 3]].sort());
    const aios = (mm.aios as { id: unknown; nr_req: number; ring_len: number }[]).map((e) => [BigInt(e.id as bigint), e.nr_req, e.ring_len]);
    expect(aios.sort()).toEqual([[a, 126, 8192], [b, 62, 4096]].sort());
    // ring a: 255 events, the tail wrapped round behind the head, 50 events waiting
    const ra = dumpedMemory(dir, target.pid, a, 8192)!;
    expect([ra.readUInt32LE(0), ra.readUInt32LE(4), ra.readUInt32LE(8), ra.readUInt32LE(12)]).toEqual([0, 255, 250, 45]);
    const rb = dumpedMemory(dir, target.pid, b, 4096)!;
    expect([rb.readUInt32LE(0), rb.readUInt32LE(4), rb.readUInt32LE(8), rb.readUInt32LE(12)]).toEqual([2, 127, 0, 3]);
  });

  it('makes the contexts again: the waiting events come out of io_getevents, new requests run', async () => {
    expect(restoreOk(dir)).toBe(target.pid);
    fs.writeFileSync(path.join(work, 'go'), '');
    await target.waitFor(/^aio (ok|fail.*)$/m);
    expect(target.output()).toMatch(/^aio ok$/m);
  });

  it('answers yes to criu check --feature aio_remap', () => {
    const r = runCriu(['check', '--feature', 'aio_remap']);
    expect(r.status).toBe(0);
    expect(r.stdout + r.stderr).toMatch(/aio_remap is supported/);
  });
});

describe.skipIf(!IS_ROOT)('the rings of a dumped task that runs on', () => {
  let work: string;
  const targets: Target[] = [];

  beforeAll(() => {
    work = tempDir('aiolive');
  });

  afterAll(() => {
    for (const t of targets) t.kill();
    cleanUp(undefined, work);
  });

  it('are left byte for byte as they were by a dump with --leave-running', async () => {
    const t = startTarget(compile('aioring', work), [], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    dumpOk(t.pid, path.join(work, 'images'), '--leave-running');
    expect(alive(t.pid)).toBe(true);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^aio (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^aio ok$/m);
    fs.rmSync(path.join(work, 'go'));
  });

  it.skipIf(os.cpus().length < 2)('finds the free slots other CPUs hold: the thread visits each CPU, and gets its affinity back', async () => {
    const t = startTarget(compile('aioring', work), ['spread'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const pinned = (await t.waitFor(/^pinned=(\d+)$/m))[1];
    expect(affinity(t.pid)).toBe(pinned);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'spread'), '--leave-running', '-v']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/255 events, 50 waiting, 198 slots taken by the engine \(the thread moved to each CPU\), 6 out of reach, 0 missing/);
    expect(affinity(t.pid)).toBe(pinned);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^aio (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^aio ok$/m);
    fs.rmSync(path.join(work, 'go'));
  });

  it('refuses a request in flight, naming task and context; the task runs on and its poll completes', async () => {
    const t = startTarget(compile('aioring', work), ['inflight'], work);
    targets.push(t);
    await t.waitFor(/count=2\n/);
    const { b } = rings(t.output());
    const before = affinity(t.pid);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'inflight')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${t.pid}: AIO context 0x${b.toString(16)}: 1 request\\(s\\) submitted and not completed: in flight; requests in flight cannot be restored`, 'm'));
    expect(fs.existsSync(path.join(work, 'inflight'))).toBe(false);
    expect(alive(t.pid)).toBe(true);
    // the count moved the thread to each CPU (slots were missing); its affinity is back
    expect(affinity(t.pid)).toBe(before);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^aio (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^aio ok$/m);
    fs.rmSync(path.join(work, 'go'));
  });

  it('refuses a ring mapped without a context of its own (inherited through fork)', async () => {
    const t = startTarget(compile('aioring', work), ['fork'], work);
    targets.push(t);
    const child = Number((await t.waitFor(/^child=(\d+)$/m))[1]);
    await t.waitFor(/count=2\n/);
    const r = runEngine(['dump', '-t', String(t.pid), '-D', path.join(work, 'forked')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^engine: task ${child}: AIO context 0x[0-9a-f]+: the ring is mapped but the context is not this process's \\(a mapping inherited through fork\\)`, 'm'));
    expect(alive(t.pid) && alive(child)).toBe(true);
    fs.writeFileSync(path.join(work, 'go'), '');
    await t.waitFor(/^aio (ok|fail.*)$/m);
    expect(t.output()).toMatch(/^aio ok$/m);
  });
});
