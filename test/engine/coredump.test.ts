// crit coredump on a real multi-threaded C program dumped by our engine: gdb loads the core with
// the executable, sees every thread, unwinds the main thread through main and reads a global;
// every thread's registers in the core are those of its core-<tid>.img.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { IS_ROOT, SKIP_REASON, tempDir, compile, startTarget, dumpOk, decode, Target } from './helpers';
import { crit } from '../helpers/cli';
import { parseCore, prstatusByTid } from '../helpers/elfcore';

const GDB = '/usr/bin/gdb';
const haveGdb = fs.existsSync(GDB);
if (!IS_ROOT) console.warn(`SKIPPING crit coredump engine tests: ${SKIP_REASON}`);
else if (!haveGdb) console.warn(`SKIPPING crit coredump gdb checks: ${GDB} is not installed`);

// user_regs_struct order (the kernel's elf_gregset_t on x86-64)
const X86_GREGS = ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];

const u64 = (v: unknown) => BigInt.asUintN(64, BigInt(v as number | bigint));

function gdb(args: string[]): string {
  const r = spawnSync(GDB, ['-nx', '-batch', ...args], { encoding: 'utf8', timeout: 30_000 });
  return r.stdout + r.stderr;
}

describe.skipIf(!IS_ROOT)('crit coredump of an engine dump', () => {
  let work: string;
  let exe: string;
  let target: Target;
  let dir: string;
  let magic: number;
  let tids: number[];
  let core: string;
  let run: ReturnType<typeof crit>;

  beforeAll(async () => {
    work = tempDir('coredump');
    exe = compile('corethreads', work);
    target = startTarget(exe, [], work);
    const m = await target.waitFor(/ready magic=(\d+) ticks=(\d+)/);
    magic = Number(m[1]);
    dir = path.join(work, 'images');
    dumpOk(target.pid, dir, '--leave-running');
    target.kill();
    tids = decode(path.join(dir, 'pstree.img'))[0].threads.map(Number);
    run = crit(['coredump', dir, '-o', path.join(work, 'cores')]);
    core = path.join(work, 'cores', `core.${target.pid}`);
  });

  afterAll(() => {
    target?.kill();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('writes core.PID and nothing else, without warnings (every mapped file is on this host)', () => {
    expect(run.status, run.stderr.toString()).toBe(0);
    expect(run.stderr.toString()).toBe('');
    expect(run.stdout.toString()).toContain(`core.${target.pid}: x86_64, 4 threads`);
    expect(fs.readdirSync(path.join(work, 'cores'))).toEqual([`core.${target.pid}`]);
    expect(tids).toHaveLength(4);
  });

  it.skipIf(!haveGdb)('gdb: every thread, a backtrace through main, the global as it was', () => {
    const out = gdb(['-ex', 'info threads', '-ex', 'bt', '-ex', 'print global_magic', '-ex', 'print ticks', exe, core]);
    for (const tid of tids) expect(out, out).toMatch(new RegExp(`\\(LWP ${tid}\\)`));
    const bt = out.split('\n').filter((l) => /^#\d+ /.test(l));
    expect(bt.some((l) => / in park_main \(/.test(l)), out).toBe(true);
    expect(bt.some((l) => / in main \(/.test(l)), out).toBe(true);
    expect(out).toContain(`$1 = ${magic}\n`);
    expect(out).toContain('$2 = 1000\n');
    expect(out).not.toMatch(/Cannot access memory|is truncated|not a core dump/);
  });

  it.skipIf(!haveGdb)('gdb reads each thread\'s rip and rsp as core-<tid>.img has them', () => {
    const out = gdb(['-ex', 'thread apply all info registers rip rsp', exe, core]);
    const seen = new Map<number, { rip: bigint; rsp: bigint }>();
    let cur = 0;
    for (const l of out.split('\n')) {
      const t = /^Thread \d+ .*\(LWP (\d+)\)\)?:/.exec(l);
      if (t) cur = Number(t[1]);
      const r = /^(rip|rsp)\s+(0x[0-9a-f]+)/.exec(l);
      if (r && cur) seen.set(cur, { ...(seen.get(cur) ?? { rip: 0n, rsp: 0n }), [r[1]]: BigInt(r[2]) });
    }
    expect([...seen.keys()].sort()).toEqual([...tids].sort());
    for (const tid of tids) {
      const g = decode(path.join(dir, `core-${tid}.img`))[0].thread_info.gpregs;
      expect(seen.get(tid), `thread ${tid}`).toEqual({ rip: u64(g.ip), rsp: u64(g.sp) });
    }
  });

  it('every thread\'s registers in the notes equal core-<tid>.img (general, x87/SSE, AVX)', () => {
    const c = parseCore(core);
    try {
      expect(c.machine).toBe(62);
      expect(c.type).toBe(4);
      const regs = prstatusByTid(c, 27);
      expect([...regs.keys()]).toEqual(tids); // main thread first, as the kernel writes the dumping thread first
      const fp = c.notes.filter((n) => n.type === 2);
      const xs = c.notes.filter((n) => n.type === 0x202);
      expect(fp).toHaveLength(tids.length);
      expect(xs).toHaveLength(tids.length);
      tids.forEach((tid, i) => {
        const ti = decode(path.join(dir, `core-${tid}.img`))[0].thread_info;
        expect(regs.get(tid), `thread ${tid}`).toEqual(X86_GREGS.map((n) => u64(ti.gpregs[n])));
        const f = fp[i].desc;
        expect(f.length).toBe(512);
        expect([f.readUInt16LE(0), f.readUInt16LE(2), f.readUInt32LE(24), f.readUInt32LE(28)]).toEqual([ti.fpregs.cwd, ti.fpregs.swd, ti.fpregs.mxcsr, ti.fpregs.mxcsr_mask]);
        for (let w = 0; w < 64; w++) expect(f.readUInt32LE(160 + w * 4)).toBe(Number(ti.fpregs.xmm_space[w]));
        for (let w = 0; w < 32; w++) expect(f.readUInt32LE(32 + w * 4)).toBe(Number(ti.fpregs.st_space[w]));
        const x = xs[i].desc;
        expect(x.subarray(0, 416).equals(f.subarray(0, 416))).toBe(true);
        const ymmh = ti.fpregs.xsave?.ymmh_space ?? [];
        for (let w = 0; w < ymmh.length; w++) expect(x.readUInt32LE(576 + w * 4)).toBe(Number(ymmh[w]));
        expect(x.readBigUInt64LE(464) & 7n).toBe(ymmh.length ? 7n : 3n); // XCR0: x87, SSE (and AVX)
      });
    } finally {
      c.close();
    }
  });

  it('a mapped file missing on this host is a warning, and its clean pages are zeros', () => {
    const c = parseCore(core);
    const first = c.segments.find((s) => s.type === 1)!;
    expect(c.read(first.vaddr, 4)!.toString('latin1')).toBe('\x7fELF'); // the executable's header, read from the file
    c.close();
    fs.renameSync(exe, exe + '.gone');
    try {
      const out = path.join(work, 'cores-noexe');
      const r = crit(['coredump', dir, '-p', String(target.pid), '-o', out]);
      expect(r.status, r.stderr.toString()).toBe(0);
      const err = r.stderr.toString();
      expect(err).toMatch(new RegExp(`^crit: warning: core\\.${target.pid}: ${exe.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not on this host: \\d+ bytes from 0x[0-9a-f]+ on are zeros in the core\\n$`));
      const c2 = parseCore(path.join(out, `core.${target.pid}`));
      expect(c2.read(first.vaddr, 4096)!.every((b) => b === 0)).toBe(true);
      // the same notes: only page contents depend on the host
      expect(c2.notes.map((n) => n.desc.toString('hex'))).toEqual(parseCore(core).notes.map((n) => n.desc.toString('hex')));
      c2.close();
    } finally {
      fs.renameSync(exe + '.gone', exe);
    }
  });
});
