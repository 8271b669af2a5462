// Opening the EXT files of a restore with CRIU's retry convention, but without its hang (spec
// D8): a task whose pass made no progress waits for a wake-up, which a plugin sends whenever it
// publishes something (PluginEnv.notify); when every remaining task waits, nobody can wake them
// and the restore fails at once instead of sleeping. A wall-clock bound covers the rest.
import { EngineError } from '../errors';
import { NOT_MINE, PluginHost } from './host';

export interface ExtOpen {
  /** the task that opens it (the master of the file, in CRIU's terms) */
  pid: number;
  fd: number;
  /** files.img id */
  id: number;
}

export interface ScheduleOptions {
  /** order in which tasks take turns (default: as given); a seed shuffles turns instead */
  seed?: number;
  /** give up after this long (default 30 s) */
  deadlineMs?: number;
  /** called once per open with the fd the plugin returned (the callee owns it) */
  opened(o: ExtOpen, fd: number): void;
}

interface TaskState {
  pid: number;
  pending: ExtOpen[];
  /** position of the next open in the current pass */
  cursor: number;
  progressed: boolean;
  retried: boolean;
  waiting: boolean;
}

/** a small deterministic PRNG (mulberry32) so that a seed names a schedule */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function openExtFiles(host: PluginHost, opens: ExtOpen[], opts: ScheduleOptions): void {
  const tasks: TaskState[] = [];
  for (const o of opens) {
    let t = tasks.find((x) => x.pid === o.pid);
    if (!t) tasks.push((t = { pid: o.pid, pending: [], cursor: 0, progressed: false, retried: false, waiting: false }));
    t.pending.push(o);
  }
  // within a task, fds open low to high, as CRIU's open_fdinfos does
  for (const t of tasks) t.pending.sort((a, b) => a.fd - b.fd);
  const rand = opts.seed === undefined ? undefined : rng(opts.seed);
  const deadline = Date.now() + (opts.deadlineMs ?? 30_000);
  let turn = 0;
  for (;;) {
    const live = tasks.filter((t) => t.pending.length);
    if (!live.length) return;
    const runnable = live.filter((t) => !t.waiting);
    if (!runnable.length) {
      const what = live.flatMap((t) => t.pending.map((o) => `task ${o.pid} fd ${o.fd} (file id ${o.id})`));
      throw new EngineError(`restore cannot finish: ${what.join(', ')} wait${what.length > 1 ? '' : 's'} for a buffer no task will provide (its exporter is missing or failed)`, 'EDEADLK');
    }
    if (Date.now() > deadline) throw new EngineError(`restore of device files timed out after ${opts.deadlineMs ?? 30_000} ms`, 'ETIMEDOUT');
    const t = rand ? runnable[Math.floor(rand() * runnable.length)] : runnable[turn++ % runnable.length];
    step(host, t, opts);
  }

  function step(h: PluginHost, t: TaskState, o: ScheduleOptions): void {
    const cur = t.pending[t.cursor];
    const r = h.run('RESTORE_EXT_FILE', cur.id);
    if (r === NOT_MINE) throw new EngineError(`task ${cur.pid} fd ${cur.fd}: no plugin restores file id ${cur.id}`, 'EPLUGIN');
    if ('fd' in r) {
      t.pending.splice(t.cursor, 1);
      t.progressed = true;
      o.opened(cur, r.fd);
    } else {
      t.cursor++;
      t.retried = true;
    }
    if (t.cursor < t.pending.length) return;
    // end of a pass: no progress and a retry asked means wait for a wake-up
    if (!t.progressed && t.retried) {
      t.waiting = true;
      h.onNotify(() => { t.waiting = false; });
    }
    t.cursor = 0;
    t.progressed = false;
    t.retried = false;
  }
}
