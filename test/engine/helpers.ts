// Shared helpers of the engine tests: compile C targets, start them detached (own session),
// run the engine CLI in a separate process (so that libuv never reaps our ptrace stops).
import { execFileSync, spawn, spawnSync, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadImage, loadMessages } from '../../images/files';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { readMountinfo } from '../../engine/proc/mountinfo';

export const ROOT = path.resolve(__dirname, '..', '..');
export const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
export const SKIP_REASON = 'engine tests need root (ptrace, process_vm_readv and kcmp of other users\' tasks)';

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `engine-${prefix}-`));
}

export function compile(name: string, outDir: string, extra: string[] = []): string {
  const out = path.join(outDir, name);
  execFileSync('gcc', ['-O1', '-g', '-o', out, path.join(ROOT, 'fixtures', 'engine', `${name}.c`), ...extra]);
  return out;
}

export interface Target {
  child: ChildProcess;
  pid: number;
  outFile: string;
  output(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(): void;
}

export function startTarget(exe: string, args: string[], dir: string): Target {
  const outFile = path.join(dir, `${path.basename(exe)}-${Date.now()}.out`);
  const out = fs.openSync(outFile, 'w');
  const child = spawn(exe, args, { detached: true, stdio: ['ignore', out, out], cwd: dir });
  fs.closeSync(out);
  const t: Target = {
    child,
    pid: child.pid!,
    outFile,
    output: () => fs.readFileSync(outFile, 'utf8'),
    async waitFor(re, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const m = t.output().match(re);
        if (m) return m;
        if (Date.now() > until) throw new Error(`target ${exe} did not print ${re} (output: ${t.output().slice(-200)})`);
        await sleep(10);
      }
    },
    kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    },
  };
  return t;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface EngineRun {
  status: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `engine <args>` from the TypeScript sources in a child node process. */
export function runEngine(args: string[]): EngineRun {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))", ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

/** Decodes with our crit (built CLI is not required: the library is used directly). */
export function decode(file: string): Msg[] {
  return loadMessages(file);
}

export function magicOf(file: string): string {
  return loadImage(file).magic;
}

/** Debian's Python crit, if installed; returns undefined when it is missing. */
export function pyCritDecode(file: string): { ok: boolean; err: string } | undefined {
  if (!fs.existsSync('/usr/bin/crit')) return undefined;
  const r = spawnSync('/usr/bin/crit', ['decode', '-i', file], { encoding: 'utf8' });
  return { ok: r.status === 0, err: r.stderr };
}

export interface MapsLine {
  start: bigint;
  end: bigint;
  perms: string;
  name: string;
}

export function readMaps(pid: number): MapsLine[] {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(l)!;
      return { start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), perms: m[3], name: m[4] };
    });
}

/** Reads dumped memory at addr..addr+len from pagemap + pages (undefined if not dumped). */
export function dumpedMemory(dir: string, pid: number, addr: bigint, len: number): Buffer | undefined {
  const pm = decode(path.join(dir, `pagemap-${pid}.img`));
  const pagesId = pm[0].pages_id as number;
  const pages = fs.readFileSync(path.join(dir, `pages-${pagesId}.img`));
  const out = Buffer.alloc(len);
  let off = 0;
  let covered = 0;
  for (const e of pm.slice(1)) {
    const vaddr = BigInt(e.vaddr);
    const n = Number(e.nr_pages ?? e.compat_nr_pages);
    const bytes = n * 4096;
    const lo = vaddr > addr ? vaddr : addr;
    const hi = vaddr + BigInt(bytes) < addr + BigInt(len) ? vaddr + BigInt(bytes) : addr + BigInt(len);
    if (lo < hi) {
      pages.copy(out, Number(lo - addr), off + Number(lo - vaddr), off + Number(hi - vaddr));
      covered += Number(hi - lo);
    }
    if ((Number(e.flags ?? 4) & 4) !== 0) off += bytes;
  }
  return covered === len ? out : undefined;
}

export function alive(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(st);
  } catch {
    return false;
  }
}

export function lastCount(text: string, key = 'count'): number {
  const all = [...text.matchAll(new RegExp(`^${key}=(\\d+)$`, 'gm'))].map((m) => Number(m[1]));
  return all.length ? all[all.length - 1] : -1;
}

/** The printed sequence key=0,1,2,... has no gap and no repeat. */
export function consecutive(text: string, key = 'count'): boolean {
  const all = [...text.matchAll(new RegExp(`^${key}=(\\d+)$`, 'gm'))].map((m) => Number(m[1]));
  return all.every((v, i) => v === i);
}

/** `engine dump` of pid into dir (extra args appended); asserts a clean run. */
export function dumpOk(pid: number, dir: string, ...extra: (string | string[])[]): EngineRun {
  const r = runEngine(['dump', '-t', String(pid), '-D', dir, ...extra.flat()]);
  if (r.stderr !== '' || r.status !== 0) throw new Error(`engine dump failed (status ${r.status}): ${r.stderr}`);
  return r;
}

/** `engine restore -d` (with ENGINE_RESTORE_STATS set); asserts a clean run, returns the root's pid. */
export function restoreOk(dir: string, extra: string[] = []): number {
  const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', "process.exitCode = require('./engine/cli.ts').main(process.argv.slice(1))", 'restore', '-D', dir, '-d', ...extra], {
    cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, ENGINE_RESTORE_STATS: '1' },
  });
  if (r.stderr !== '' || r.status !== 0) throw new Error(`engine restore failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!).pid;
}

/** SIGKILL pids we started, if they are still there. */
export function killPid(...pids: (number | undefined)[]): void {
  for (const pid of pids) {
    if (!pid) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Dead and reaped: the PID is free again (a zombie still holds it). */
export const gone = (pid: number): boolean => !fs.existsSync(`/proc/${pid}`);

/** Polls cond every 10 ms; throws naming `what` after ms. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** After a suite: kill the target (its whole group), extra pids, and remove the work directory. */
export function cleanUp(target: Target | undefined, work: string | undefined, ...pids: (number | undefined)[]): void {
  target?.kill();
  killPid(...pids);
  if (work) fs.rmSync(work, { recursive: true, force: true });
}

/** Bytes of a live process's memory, through /proc/PID/mem (user addresses fit a number). */
export function readMem(pid: number, addr: bigint, len: number): Buffer {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(len);
    fs.readSync(fd, b, 0, len, Number(addr));
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** Dumps pid (the tree is killed) and waits until it and `others` are reaped, so their PIDs are free. */
export async function dumpAndReap(pid: number, dir: string, others: number[] = [pid]): Promise<void> {
  dumpOk(pid, dir);
  await until(() => others.every(gone), 'the dumped tree to be reaped');
}

/** Runs `criu <args>` (our CRIU command line) from the TypeScript sources in a child node process. */
export function runCriu(args: string[], opts: { cwd?: string; stdio?: ('pipe' | 'ignore')[]; env?: NodeJS.ProcessEnv } = {}): EngineRun & { output: (string | null)[] } {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-r', require.resolve('tsx/cjs'), '-e', `process.exitCode = require(${JSON.stringify(path.join(ROOT, 'engine', 'criu', 'cli.ts'))}).main(process.argv.slice(1))`, '--', ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    timeout: 60_000,
    stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '', ms: Date.now() - t0, output: r.output as (string | null)[] };
}

/** A duplicate of a task's fd in this process (pidfd_getfd); the caller closes it. */
export function grab(pid: number, fd: number): number {
  const n = native();
  const pf = n.pidfdOpen(pid);
  try {
    return n.pidfdGetfd(pf, fd);
  } finally {
    n.close(pf);
  }
}

/** Where cgroup v2 is mounted here, if it is. */
export const CG2 = readMountinfo().find((m) => m.fstype === 'cgroup2')?.point;
