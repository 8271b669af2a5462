// crit coredump without a live process: real CRIU sets of the corpus (registers, notes and
// memory read back against the images; gdb lists the threads), synthetic aarch64 and x86-64
// sets (every note field, file-backed pages from this host, missing and changed files, sparse
// holes, extended segment numbering), and one-line errors on bad input.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { crit } from '../helpers/cli';
import { CORPUS, haveCorpus } from '../helpers/corpus';
import { scratchDir, cleanScratch, copySet } from '../helpers/scratch';
import { parseCore, prstatusByTid, ParsedCore } from '../helpers/elfcore';
import { loadMessages, writeImage } from '../../images/files';
import { dumpedMemory } from '../engine/helpers';

const X86_GREGS = ['r15', 'r14', 'r13', 'r12', 'bp', 'bx', 'r11', 'r10', 'r9', 'r8', 'ax', 'cx', 'dx', 'si', 'di',
  'orig_ax', 'ip', 'cs', 'flags', 'sp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'];
const NT = { PRSTATUS: 1, FPREGSET: 2, PRPSINFO: 3, AUXV: 6, XSTATE: 0x202, ARM_TLS: 0x401, SIGINFO: 0x53494749, FILE: 0x46494c45 };
const PAGE = 4096;
const u64 = (v: unknown) => BigInt.asUintN(64, BigInt(v as number | bigint));
const haveGdb = fs.existsSync('/usr/bin/gdb');

afterAll(cleanScratch);

function expectOneLine(err: string): void {
  expect(err.trim().split('\n'), err).toHaveLength(1);
  expect(err).not.toMatch(/^\s+at /m);
}

/** NT_FILE back as (start, end, pgoff in pages, name). */
function fileNote(c: ParsedCore): { pageSize: number; files: { start: bigint; end: bigint; pgoff: bigint; name: string }[] } {
  const d = c.notes.find((n) => n.type === NT.FILE)!.desc;
  const count = Number(d.readBigUInt64LE(0));
  const names = d.toString('utf8', 16 + count * 24).split('\0').slice(0, count);
  return {
    pageSize: Number(d.readBigUInt64LE(8)),
    files: names.map((name, i) => ({ start: d.readBigUInt64LE(16 + i * 24), end: d.readBigUInt64LE(24 + i * 24), pgoff: d.readBigUInt64LE(32 + i * 24), name })),
  };
}

function auxvPairs(c: ParsedCore): bigint[] {
  const d = c.notes.find((n) => n.type === NT.AUXV)!.desc;
  const out: bigint[] = [];
  for (let i = 0; i < d.length; i += 8) out.push(d.readBigUInt64LE(i));
  return out;
}

// ---- the corpus: sets real CRIU wrote ----

const C42 = path.join(CORPUS, 'criu-4.2-22-g2cf8f13ca');
if (!haveCorpus) console.warn(`\n*** corpus not found at ${CORPUS}: crit coredump corpus tests SKIPPED ***\n`);

describe.skipIf(!haveCorpus)('crit coredump on corpus sets', () => {
  it('the corpus holds no aarch64 set (else it is checked here); the synthetic aarch64 set below stands in', () => {
    const arches = new Map<string, number>();
    for (const v of fs.readdirSync(CORPUS).filter((d) => fs.statSync(path.join(CORPUS, d)).isDirectory()))
      for (const s of fs.readdirSync(path.join(CORPUS, v))) {
        const dir = path.join(CORPUS, v, s);
        const core = fs.readdirSync(dir).find((f) => /^core-\d+\.img$/.test(f));
        if (!core) continue;
        const m = Number(loadMessages(path.join(dir, core))[0].mtype);
        arches.set(`${v}/${s}`, m);
        if (m === 3) {
          const out = scratchDir('cd-a64');
          const r = crit(['coredump', dir, '-o', out]);
          expect(r.status, r.stderr.toString()).toBe(0);
          for (const f of fs.readdirSync(out)) expect(parseCore(path.join(out, f)).machine).toBe(183);
        }
      }
    if (![...arches.values()].includes(3)) console.warn('*** the corpus has no aarch64 set: aarch64 cores are checked on a synthetic set only ***');
    expect([...arches.values()].every((m) => m === 1 || m === 3)).toBe(true);
  });

  it('threads: 5 threads with their registers, auxv, files, psinfo, and the dumped pages', () => {
    const dir = path.join(C42, 'threads');
    const out = scratchDir('cd-threads');
    const r = crit(['coredump', dir, '-o', out]);
    expect(r.status, r.stderr.toString()).toBe(0);
    // the program ran from a path this host does not have: a warning, not a failure
    expect(r.stderr.toString()).toMatch(/^crit: warning: core\.32446: \/tmp\/criu-tests\/src\/threads is not on this host: \d+ bytes from 0x55700106c000 on are zeros in the core\n$/);
    const tree = loadMessages(path.join(dir, 'pstree.img'))[0];
    const tids = tree.threads.map(Number);
    const c = parseCore(path.join(out, 'core.32446'));
    try {
      const regs = prstatusByTid(c, 27);
      expect([...regs.keys()]).toEqual(tids);
      for (const tid of tids) {
        const core = loadMessages(path.join(dir, `core-${tid}.img`))[0];
        expect(regs.get(tid), `thread ${tid}`).toEqual(X86_GREGS.map((n) => u64(core.thread_info.gpregs[n])));
      }
      // kernel order: first thread's status, the process notes, its FP state, then the others
      expect(c.notes.slice(0, 7).map((n) => n.type)).toEqual([NT.PRSTATUS, NT.PRPSINFO, NT.SIGINFO, NT.AUXV, NT.FILE, NT.FPREGSET, NT.XSTATE]);
      expect(c.notes.filter((n) => n.type === NT.SIGINFO)).toHaveLength(1);
      const mm = loadMessages(path.join(dir, 'mm-32446.img'))[0];
      const saved = mm.mm_saved_auxv.map(u64);
      const aux = auxvPairs(c);
      expect(aux.slice(-2)).toEqual([0n, 0n]);
      expect(aux.slice(0, -2)).toEqual(saved.slice(0, aux.length - 2));
      const files = loadMessages(path.join(dir, 'files.img'));
      const fileVmas = mm.vmas.filter((v: { status: number }) => v.status & 0xc0);
      const nf = fileNote(c);
      expect(nf.pageSize).toBe(PAGE);
      expect(nf.files).toEqual(fileVmas.map((v: { start: number; end: number; pgoff: number; shmid: number }) => ({
        start: u64(v.start), end: u64(v.end), pgoff: u64(v.pgoff) / 4096n, name: files.find((f) => f.id === v.shmid).reg.name })));
      const ps = c.notes.find((n) => n.type === NT.PRPSINFO)!.desc;
      expect(ps.length).toBe(136);
      expect(ps.toString('latin1', 40, 56).replace(/\0+$/, '')).toBe(loadMessages(path.join(dir, 'core-32446.img'))[0].tc.comm);
      expect([ps.readInt32LE(24), ps.readInt32LE(28), ps.readInt32LE(32), ps.readInt32LE(36)]).toEqual([tree.pid, tree.ppid, tree.pgid, tree.sid]);
      expect(ps.toString('latin1', 56, 136).replace(/\0+$/, '')).toMatch(/^\S*threads/);
      // one PT_LOAD per VMA, and every page CRIU stored is in it (read with the engine tests' own pagemap walk)
      const loads = c.segments.filter((s) => s.type === 1);
      expect(loads.map((s) => [s.vaddr, s.memsz])).toEqual(mm.vmas.map((v: { start: number; end: number }) => [u64(v.start), u64(v.end) - u64(v.start)]));
      for (const e of loadMessages(path.join(dir, 'pagemap-32446.img')).slice(1)) {
        for (let p = 0; p < Number(e.nr_pages); p++) { // page by page: an entry may span two VMAs
          const a = u64(e.vaddr) + BigInt(p * PAGE);
          expect(c.read(a, PAGE)?.equals(dumpedMemory(dir, 32446, a, PAGE)!), `page at 0x${a.toString(16)}`).toBe(true);
        }
      }
    } finally {
      c.close();
    }
  });

  it.skipIf(!haveGdb)('threads: gdb opens the core and lists every thread', () => {
    const out = scratchDir('cd-gdb');
    expect(crit(['coredump', path.join(C42, 'threads'), '-o', out]).status).toBe(0);
    const r = spawnSync('/usr/bin/gdb', ['-nx', '-batch', '-ex', 'info threads', '-c', path.join(out, 'core.32446')], { encoding: 'utf8', timeout: 30_000 });
    const tids = loadMessages(path.join(C42, 'threads', 'pstree.img'))[0].threads.map(Number);
    for (const tid of tids) expect(r.stdout, r.stdout + r.stderr).toMatch(new RegExp(`LWP ${tid}\\b`));
  });

  it('every set: cores for every task with memory, zombies skipped, absent page files named', () => {
    const t0 = Date.now();
    for (const s of ['counter', 'tree', 'shmem', 'fds', 'bigmem', 'manyvmas']) {
      const dir = path.join(C42, s);
      const out = scratchDir(`cd-${s}`);
      const r = crit(['coredump', dir, '-o', out]);
      const err = r.stderr.toString();
      expect(r.status, `${s}: ${err}`).toBe(0);
      const withMm = fs.readdirSync(dir).filter((f) => /^mm-\d+\.img$/.test(f)).map((f) => `core.${f.slice(3, -4)}`).sort();
      expect(fs.readdirSync(out).sort(), s).toEqual(withMm);
      if (s === 'tree') expect(err).toMatch(/^crit: note: task \d+ is a zombie: no memory, no core$/m);
      if (s === 'bigmem' || s === 'manyvmas') expect(err, s).toMatch(/: pages-1\.img is missing: \d+ bytes from 0x[0-9a-f]+ on are zeros in the core$/m);
      for (const f of fs.readdirSync(out)) {
        const c = parseCore(path.join(out, f));
        const mm = loadMessages(path.join(dir, `mm-${f.slice(5)}.img`))[0];
        expect(c.segments.filter((x) => x.type === 1)).toHaveLength(mm.vmas.length);
        c.close();
      }
    }
    expect(Date.now() - t0).toBeLessThan(15_000);
  });
});

// ---- synthetic sets ----

interface SynthVma { start: bigint; end: bigint; prot: number; status: number; flags?: number; shmid?: number; pgoff?: bigint; madv?: bigint }

function fown() {
  return { uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 };
}

function mmEntry(vmas: SynthVma[], extra: Record<string, unknown> = {}) {
  return {
    mm_start_code: 0, mm_end_code: 0, mm_start_data: 0, mm_end_data: 0, mm_start_stack: 0, mm_start_brk: 0, mm_brk: 0,
    mm_arg_start: 0, mm_arg_end: 0, mm_env_start: 0, mm_env_end: 0, exe_file_id: 1,
    vmas: vmas.map((v) => ({ start: v.start, end: v.end, pgoff: v.pgoff ?? 0n, shmid: v.shmid ?? 0, prot: v.prot, flags: v.flags ?? 0x22, status: v.status, fd: -1, ...(v.madv !== undefined ? { madv: v.madv } : {}) })),
    ...extra,
  };
}

function writePages(dir: string, pid: number, pages: [bigint, Buffer][]): void {
  writeImage(path.join(dir, `pagemap-${pid}.img`), 'PAGEMAP', [{ msg: { pages_id: 1 } }, ...pages.map(([a]) => ({ msg: { vaddr: a, compat_nr_pages: 0, flags: 4, nr_pages: 1 } as never }))]);
  fs.writeFileSync(path.join(dir, 'pages-1.img'), Buffer.concat(pages.map(([, b]) => b)));
}

const fill = (byte: number) => Buffer.alloc(PAGE, byte);
const patterned = (seed: number) => { const b = Buffer.alloc(PAGE); for (let i = 0; i < PAGE; i++) b[i] = (i * 7 + seed) & 0xff; return b; };

function a64Core(tid: number, main: boolean) {
  const regs = Array.from({ length: 31 }, (_, i) => (i === 0 ? 0xfedcba9876543210n + BigInt(tid) : BigInt(0x1000 + tid * 0x100 + i)));
  const vregs = Array.from({ length: 64 }, (_, i) => 0x0102030405060708n * BigInt(i + 1) + BigInt(tid));
  return {
    mtype: 3,
    ti_aarch64: { clear_tid_addr: 0, tls: 0x7f0000001000n + BigInt(tid), gpregs: { regs, sp: 0xfffffffff000n - BigInt(tid * 16), pc: 0x400010n + BigInt(tid), pstate: 0x60000000 }, fpsimd: { vregs, fpsr: 0x10 + tid, fpcr: 0x3000000 } },
    ...(main ? { tc: { task_state: 1, exit_code: 0, personality: 0, flags: 0x400100, blk_sigset: 0x4002n, comm: 'synth-a64' } } : {}),
    thread_core: {
      futex_rla: 0, futex_rla_len: 24, sched_nice: -5, blk_sigset: main ? undefined : 0x8000n + BigInt(tid),
      creds: { uid: 1000, gid: 1001, euid: 1000, egid: 1001, suid: 1000, sgid: 1001, fsuid: 1000, fsgid: 1001, cap_inh: [0, 0], cap_prm: [0, 0], cap_eff: [0, 0], cap_bnd: [0, 0], secbits: 0 },
    },
  };
}

const A64 = { pid: 100, tids: [100, 101] };

/** An aarch64 task: a text mapping of a file on this host, a missing file, a changed file, anon and stack memory, a guard page, a 1 GiB sparse area. */
function makeA64Set(): { dir: string; lib: string; changed: string } {
  const dir = scratchDir('cd-a64set');
  const lib = path.join(dir, 'host-lib.so');
  fs.writeFileSync(lib, Buffer.concat([0x10, 0x11, 0x12, 0x13].map(fill)));
  const changed = path.join(dir, 'changed.bin');
  fs.writeFileSync(changed, fill(0x77));
  writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid: A64.pid, ppid: 1, pgid: A64.pid, sid: 7, threads: A64.tids } }]);
  A64.tids.forEach((t, i) => writeImage(path.join(dir, `core-${t}.img`), 'CORE', [{ msg: a64Core(t, i === 0) }]));
  const reg = (id: number, name: string, size?: number) => ({ msg: { type: 1, id, reg: { id, flags: 0, pos: 0, fown: fown(), name, ...(size !== undefined ? { size } : {}) } } });
  writeImage(path.join(dir, 'files.img'), 'FILES', [reg(1, lib, 4 * PAGE), reg(2, '/nonexistent/crit-coredump/libgone.so', 8192), reg(3, changed, 12345)]);
  const stack = 0x7ffff0000000n;
  const vmas: SynthVma[] = [
    { start: 0x400000n, end: 0x403000n, prot: 5, status: 0x41, flags: 2, shmid: 1, pgoff: 0x1000n },
    { start: 0x403000n, end: 0x405000n, prot: 1, status: 0x41, flags: 2, shmid: 2 },
    { start: 0x405000n, end: 0x406000n, prot: 1, status: 0x41, flags: 2, shmid: 3 },
    { start: 0x10000000n, end: 0x10004000n, prot: 3, status: 0x201 },
    { start: 0x10004000n, end: 0x10005000n, prot: 0, status: 0x201 },
    { start: 0x10005000n, end: 0x10006000n, prot: 3, status: 0x201, madv: 1n << 16n }, // MADV_DONTDUMP
    { start: 0x200000000n, end: 0x240000000n, prot: 3, status: 0x201 },
    { start: stack, end: stack + 0x2000n, prot: 3, status: 0x203, flags: 0x122 },
  ];
  const args = Buffer.from('prog\0--flag\0');
  const stackPage = fill(0);
  args.copy(stackPage, 0x100);
  writeImage(path.join(dir, `mm-${A64.pid}.img`), 'MM', [{ msg: mmEntry(vmas, { mm_arg_start: stack + 0x100n, mm_arg_end: stack + 0x100n + BigInt(args.length), mm_saved_auxv: [6, 4096, 16, 0x1234, 0, 0, 0, 0] }) }]);
  writePages(dir, A64.pid, [[0x401000n, fill(0xee)], [0x10000000n, patterned(1)], [0x10002000n, patterned(3)], [0x23ffff000n, patterned(9)], [stack, stackPage]]);
  return { dir, lib, changed };
}

describe('crit coredump of an aarch64 set (architecture from the image, not the host)', () => {
  let set: ReturnType<typeof makeA64Set>;
  let run: ReturnType<typeof crit>;
  let c: ParsedCore;
  let file: string;
  beforeAll(() => {
    set = makeA64Set();
    const out = scratchDir('cd-a64out');
    run = crit(['coredump', set.dir, '-o', out]);
    file = path.join(out, `core.${A64.pid}`);
    if (run.status === 0) c = parseCore(file);
  });
  afterAll(() => c?.close());

  it('writes the core; the missing and the changed mapped file are warnings', () => {
    expect(run.status, run.stderr.toString()).toBe(0);
    expect(run.stdout.toString()).toMatch(/core\.100: aarch64, 2 threads, 8 segments/);
    const w = run.stderr.toString().trim().split('\n');
    expect(w).toEqual([
      'crit: warning: core.100: /nonexistent/crit-coredump/libgone.so is not on this host: 8192 bytes from 0x403000 on are zeros in the core',
      `crit: warning: core.100: ${set.changed} differs on this host (4096 bytes, 12345 when dumped): 4096 bytes from 0x405000 on are zeros in the core`,
    ]);
    expect(c.machine).toBe(183);
  });

  it('per-thread NT_PRSTATUS (user_pt_regs), NT_FPREGSET (fpsimd) and NT_ARM_TLS, in kernel order', () => {
    expect(c.notes.map((n) => `${n.name}:${n.type}`)).toEqual([
      `CORE:${NT.PRSTATUS}`, `CORE:${NT.PRPSINFO}`, `CORE:${NT.SIGINFO}`, `CORE:${NT.AUXV}`, `CORE:${NT.FILE}`, `CORE:${NT.FPREGSET}`, `LINUX:${NT.ARM_TLS}`,
      `CORE:${NT.PRSTATUS}`, `CORE:${NT.FPREGSET}`, `LINUX:${NT.ARM_TLS}`]);
    const st = c.notes.filter((n) => n.type === NT.PRSTATUS);
    const fp = c.notes.filter((n) => n.type === NT.FPREGSET);
    const tls = c.notes.filter((n) => n.type === NT.ARM_TLS);
    A64.tids.forEach((tid, i) => {
      const want = a64Core(tid, i === 0);
      const d = st[i].desc;
      expect(d.length).toBe(392);
      expect([d.readInt32LE(32), d.readInt32LE(36), d.readInt32LE(40), d.readInt32LE(44)]).toEqual([tid, 1, A64.pid, 7]);
      const regs = Array.from({ length: 34 }, (_, k) => d.readBigUInt64LE(112 + k * 8));
      const g = want.ti_aarch64.gpregs;
      expect(regs).toEqual([...g.regs, g.sp, g.pc, BigInt(g.pstate)]);
      expect(d.readInt32LE(384)).toBe(1); // pr_fpvalid
      expect(d.readBigUInt64LE(24)).toBe(i === 0 ? 0x4002n : 0x8000n + BigInt(tid)); // pr_sighold
      const f = fp[i].desc;
      expect(f.length).toBe(528);
      expect(Array.from({ length: 64 }, (_, k) => f.readBigUInt64LE(k * 8))).toEqual(want.ti_aarch64.fpsimd.vregs);
      expect([f.readUInt32LE(512), f.readUInt32LE(516)]).toEqual([0x10 + tid, 0x3000000]);
      expect(tls[i].desc.readBigUInt64LE(0)).toBe(want.ti_aarch64.tls);
    });
  });

  it('NT_PRPSINFO, NT_AUXV and NT_FILE', () => {
    const ps = c.notes.find((n) => n.type === NT.PRPSINFO)!.desc;
    expect(String.fromCharCode(ps[1])).toBe('R');
    expect(ps.readInt8(3)).toBe(-5);
    expect(ps.readBigUInt64LE(8)).toBe(0x400100n);
    expect([ps.readUInt32LE(16), ps.readUInt32LE(20)]).toEqual([1000, 1001]);
    expect(ps.toString('latin1', 40, 56)).toBe('synth-a64'.padEnd(16, '\0'));
    expect(ps.toString('latin1', 56, 136).replace(/\0+$/, '')).toBe('prog --flag '); // NULs become spaces
    expect(auxvPairs(c)).toEqual([6n, 4096n, 16n, 0x1234n, 0n, 0n]);
    expect(fileNote(c)).toEqual({ pageSize: PAGE, files: [
      { start: 0x400000n, end: 0x403000n, pgoff: 1n, name: set.lib },
      { start: 0x403000n, end: 0x405000n, pgoff: 0n, name: '/nonexistent/crit-coredump/libgone.so' },
      { start: 0x405000n, end: 0x406000n, pgoff: 0n, name: set.changed },
    ] });
  });

  it('PT_LOADs: image pages win, clean file pages come from the file, zeros elsewhere; nothing for guard and DONTDUMP', () => {
    const loads = c.segments.filter((s) => s.type === 1);
    expect(loads.map((s) => [s.vaddr, s.filesz, s.flags])).toEqual([
      [0x400000n, 3 * PAGE, 5], [0x403000n, 2 * PAGE, 4], [0x405000n, PAGE, 4], [0x10000000n, 4 * PAGE, 6], [0x10004000n, 0, 0],
      [0x10005000n, 0, 6], [0x200000000n, 0x40000000, 6], [0x7ffff0000000n, 2 * PAGE, 6]]);
    expect(loads.every((s) => s.offset % PAGE === 0 && s.align === PAGE)).toBe(true);
    expect(c.read(0x400000n, 3 * PAGE)!.equals(Buffer.concat([fill(0x11), fill(0xee), fill(0x13)]))).toBe(true);
    expect(c.read(0x403000n, 2 * PAGE)!.every((b) => b === 0)).toBe(true);
    expect(c.read(0x405000n, PAGE)!.every((b) => b === 0)).toBe(true);
    expect(c.read(0x10000000n, 4 * PAGE)!.equals(Buffer.concat([patterned(1), fill(0), patterned(3), fill(0)]))).toBe(true);
    expect(c.read(0x23ffff000n, PAGE)!.equals(patterned(9))).toBe(true);
    expect(c.read(0x200000000n, PAGE)!.every((b) => b === 0)).toBe(true);
  });

  it('zeros are holes: the 1 GiB area costs no disk blocks', () => {
    const st = fs.statSync(file);
    expect(st.size).toBeGreaterThan(0x40000000);
    expect(st.blocks * 512).toBeLessThan(4 << 20);
  });

  it('readelf reads the notes', () => {
    const r = spawnSync('readelf', ['-n', '-l', file], { encoding: 'utf8' });
    if (r.error) return void console.warn('readelf not installed: skipped');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.match(/NT_PRSTATUS/g)).toHaveLength(2);
    expect(r.stdout).toMatch(/NT_ARM_TLS/);
    expect(r.stdout).toMatch(/There are 9 program headers/);
  });
});

// ---- x86-64: the XSAVE area, extended numbering, errors ----

function x86Core(opts: { xsave?: Record<string, unknown>; mode?: number } = {}) {
  const gpregs: Record<string, unknown> = {};
  X86_GREGS.forEach((n, i) => { gpregs[n] = 0x100n * BigInt(i + 1); });
  gpregs.ax = 0xfffffffffffffffcn;
  if (opts.mode) gpregs.mode = opts.mode;
  return {
    mtype: 1,
    thread_info: { clear_tid_addr: 0, gpregs, fpregs: { cwd: 0x37f, swd: 0, twd: 0, fop: 0, rip: 0, rdp: 0, mxcsr: 0x1f80, mxcsr_mask: 0xffff, st_space: Array(32).fill(0), xmm_space: Array.from({ length: 64 }, (_, i) => i + 1), ...(opts.xsave ? { xsave: opts.xsave } : {}) } },
    tc: { task_state: 1, exit_code: 0, personality: 0, flags: 0, blk_sigset: 0, comm: 'synth-x86' },
    thread_core: { futex_rla: 0, futex_rla_len: 24 },
  };
}

function makeX86Set(nvmas: number, core = x86Core()): string {
  const dir = scratchDir('cd-x86set');
  writeImage(path.join(dir, 'pstree.img'), 'PSTREE', [{ msg: { pid: 200, ppid: 1, pgid: 200, sid: 200, threads: [200] } }]);
  writeImage(path.join(dir, 'core-200.img'), 'CORE', [{ msg: core }]);
  const vmas: SynthVma[] = [];
  for (let i = 0; i < nvmas; i++) vmas.push({ start: 0x10000000n + BigInt(i * 2 * PAGE), end: 0x10000000n + BigInt(i * 2 * PAGE + PAGE), prot: 3, status: 0x201 });
  writeImage(path.join(dir, 'mm-200.img'), 'MM', [{ msg: mmEntry(vmas) }]);
  writePages(dir, 200, [[0x10000000n, patterned(5)]]);
  return dir;
}

describe('crit coredump of x86-64 sets', () => {
  it('NT_X86_XSTATE: every component at its standard offset, XCR0 naming them, the size gdb expects', () => {
    const xsave = {
      xstate_bv: 0x2e7n | (1n << 11n), // a bit the image carries no data for is dropped
      ymmh_space: Array.from({ length: 64 }, (_, i) => 0x1000 + i), opmask_reg: Array.from({ length: 8 }, (_, i) => 0xa0n + BigInt(i)),
      zmm_upper: Array.from({ length: 64 }, (_, i) => 0xb00n + BigInt(i)), hi16_zmm: Array.from({ length: 128 }, (_, i) => 0xc00n + BigInt(i)), pkru: [0x55555554, 0],
    };
    const dir = makeX86Set(1, x86Core({ xsave }));
    const out = scratchDir('cd-xs');
    const r = crit(['coredump', dir, '-o', out]);
    expect(r.status, r.stderr.toString()).toBe(0);
    const c = parseCore(path.join(out, 'core.200'));
    const x = c.notes.find((n) => n.type === NT.XSTATE)!.desc;
    expect(x.length).toBe(2696);
    expect(x.readBigUInt64LE(464)).toBe(0x2e7n); // XCR0
    expect(x.readBigUInt64LE(512)).toBe(0x2e7n); // xstate_bv
    expect(x.readUInt32LE(576)).toBe(0x1000);
    expect(x.readUInt32LE(576 + 63 * 4)).toBe(0x1000 + 63);
    expect(x.readBigUInt64LE(1088 + 7 * 8)).toBe(0xa7n);
    expect(x.readBigUInt64LE(1152)).toBe(0xb00n);
    expect(x.readBigUInt64LE(1664 + 127 * 8)).toBe(0xc00n + 127n);
    expect(x.readUInt32LE(2688)).toBe(0x55555554);
    expect(x.readUInt32LE(160)).toBe(1); // xmm0's first word, as in NT_FPREGSET
    expect(prstatusByTid(c, 27).get(200)![10]).toBe(0xfffffffffffffffcn); // rax, all 64 bits
    c.close();
    const avxOnly = makeX86Set(1, x86Core({ xsave: { xstate_bv: 7, ymmh_space: Array(64).fill(1) } }));
    expect(crit(['coredump', avxOnly, '-o', out]).status).toBe(0);
    const c2 = parseCore(path.join(out, 'core.200'));
    const x2 = c2.notes.find((n) => n.type === NT.XSTATE)!.desc;
    expect([x2.length, x2.readBigUInt64LE(464)]).toEqual([832, 7n]);
    c2.close();
  });

  it('more than 65534 segments: e_phnum PN_XNUM and the count in section header 0', () => {
    const dir = makeX86Set(70_000);
    const out = scratchDir('cd-xnum');
    const t0 = Date.now();
    const r = crit(['coredump', dir, '-o', out]);
    expect(r.status, r.stderr.toString()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const f = path.join(out, 'core.200');
    const head = Buffer.alloc(64);
    const fd = fs.openSync(f, 'r');
    fs.readSync(fd, head, 0, 64, 0);
    fs.closeSync(fd);
    expect(head.readUInt16LE(56)).toBe(0xffff);
    expect(head.readUInt16LE(60)).toBe(1); // e_shnum
    expect(Number(head.readBigUInt64LE(40)) + 64).toBe(fs.statSync(f).size); // the section header is last
    const c = parseCore(f);
    expect(c.phnum).toBe(70_001);
    expect(c.read(0x10000000n, PAGE)!.equals(patterned(5))).toBe(true);
    c.close();
    const re = spawnSync('readelf', ['-h', f], { encoding: 'utf8' });
    if (!re.error) expect(re.stdout).toMatch(/Number of program headers:\s+65535 \(70001\)/);
  });

  it('bad input: one line, exit 1 (2 for usage), and an existing core is left as it was', () => {
    const dir = makeX86Set(2);
    const out = scratchDir('cd-err');
    let r = crit(['coredump', path.join(dir, 'nope'), '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/^crit: .*nope: not an images directory\n$/);
    r = crit(['coredump', dir]);
    expect(r.status).toBe(2);
    expect(r.stderr.toString()).toMatch(/required: -o\/--out OUTDIR/);
    r = crit(['coredump', dir, '-p', '999', '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/pstree\.img: no task 999 \(tasks: 200\)\n$/);
    expectOneLine(r.stderr.toString());

    const ppc = makeX86Set(1, { ...x86Core(), mtype: 4 } as never);
    r = crit(['coredump', ppc, '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/core-200\.img: entry 0 mtype PPC64: crit coredump writes x86_64 and aarch64 cores only\n$/);
    const compat = makeX86Set(1, x86Core({ mode: 2 }));
    r = crit(['coredump', compat, '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/core-200\.img: a 32-bit \(compat mode\) task/);

    // a zombie has no memory: refused by pid, skipped in a whole-set run
    const z = copySet(dir, 'cd-zombie');
    writeImage(path.join(z, 'pstree.img'), 'PSTREE', [{ msg: { pid: 200, ppid: 1, pgid: 200, sid: 200, threads: [200] } }, { msg: { pid: 201, ppid: 200, pgid: 200, sid: 200, threads: [201] } }]);
    writeImage(path.join(z, 'core-201.img'), 'CORE', [{ msg: { ...x86Core(), tc: { ...x86Core().tc, task_state: 6 } } }]);
    r = crit(['coredump', z, '-p', '201', '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/task 201 has no .*mm-201\.img \(a zombie has no memory\): no core can be written\n$/);
    r = crit(['coredump', z, '-o', out]);
    expect(r.status).toBe(0);
    expect(r.stderr.toString()).toBe('crit: note: task 201 is a zombie: no memory, no core\n');

    // damage: a truncated core image, then a pages file that cannot be read mid-stream
    fs.writeFileSync(path.join(out, 'core.200'), 'previous core');
    const cut = copySet(dir, 'cd-cut');
    const coreBytes = fs.readFileSync(path.join(cut, 'core-200.img'));
    fs.writeFileSync(path.join(cut, 'core-200.img'), coreBytes.subarray(0, coreBytes.length - 5));
    r = crit(['coredump', cut, '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/core-200\.img: at byte \d+, entry 0: /);
    expectOneLine(r.stderr.toString());
    const unreadable = copySet(dir, 'cd-unreadable');
    fs.rmSync(path.join(unreadable, 'pages-1.img'));
    fs.mkdirSync(path.join(unreadable, 'pages-1.img'));
    r = crit(['coredump', unreadable, '-o', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.toString()).toMatch(/^crit: task 200 0x10000000 \(pages-1\.img\+0x0\): /);
    expectOneLine(r.stderr.toString());
    expect(fs.readFileSync(path.join(out, 'core.200'), 'utf8')).toBe('previous core');
    expect(fs.readdirSync(out)).toEqual(['core.200']); // no temporary left behind
  });
});
