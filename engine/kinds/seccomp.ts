// seccomp filters. seccomp.img: every thread's filter chain (PTRACE_SECCOMP_GET_FILTER: index 0
// is the oldest, the first one installed, as seen on this kernel), stored once per distinct
// chain prefix, each filter naming its predecessor with `prev`; thread_core.seccomp_filter is the
// position of the thread's newest filter. Filters the threads of a process have in common are
// one object in the kernel, which SECCOMP_FILTER_FLAG_TSYNC relies on; at restore they are made
// one object again by installing them once with TSYNC (see sharingPlan).
import type { Msg } from '../../images/codec';
import type { Tracer } from '../../native';
import { EngineError, UnsupportedError } from '../errors';

const MAX_FILTERS = 512;

export class SeccompTable {
  readonly filters: Msg[] = [];
  private byKey = new Map<string, number>();

  /** Records tid's chain; returns the position of its newest filter, or undefined without filters. */
  thread(tracer: Tracer, tid: number): number | undefined {
    const oldestFirst: Buffer[] = [];
    for (let i = 0; ; i++) {
      if (i > MAX_FILTERS) throw new EngineError(`thread ${tid}: more than ${MAX_FILTERS} seccomp filters`);
      const f = tracer.getSeccompFilter(tid, i);
      if (!f) break;
      oldestFirst.push(f);
    }
    let prev: number | undefined;
    for (const f of oldestFirst) {
      const key = `${prev ?? '-'}:${f.toString('hex')}`;
      let pos = this.byKey.get(key);
      if (pos === undefined) {
        pos = this.filters.length;
        const e: Msg = { filter: new Uint8Array(f) };
        if (prev !== undefined) e.prev = prev;
        this.filters.push(e);
        this.byKey.set(key, pos);
      }
      prev = pos;
    }
    return prev;
  }

  entry(): Msg {
    return this.filters.length ? { seccomp_filters: this.filters } : {};
  }
}

/** Positions of a chain, oldest first, from its newest filter's position (undefined: none). */
export function chainOf(filters: Msg[], newest: number | undefined): number[] {
  const out: number[] = [];
  for (let at = newest; at !== undefined; at = filters[at]?.prev === undefined || filters[at]?.prev === null ? undefined : Number(filters[at].prev)) {
    if (out.includes(at) || !filters[at]) break; // a loop or a hole: the image checks name it
    out.unshift(at);
  }
  return out;
}

export interface SharingPlan {
  /** filters every thread of the process has: installed once, with TSYNC */
  common: number[];
  /** each thread's own filters after those */
  own: Map<number, number[]>;
}

/**
 * How a process's filters come back shared as they were: the prefix all its threads have is
 * installed once with TSYNC, the rest by each thread. A filter shared by some threads but not
 * all cannot be made (TSYNC reaches every thread), nor can no_new_privs differ where TSYNC
 * would set it on all: `refuse` names why.
 */
export function sharingPlan(filters: Msg[], threads: { tid: number; newest: number | undefined; nnp: boolean }[], refuse: (why: string) => never): SharingPlan {
  const chains = threads.map((t) => chainOf(filters, t.newest));
  let n = 0;
  while (chains.every((c) => n < c.length && c[n] === chains[0][n])) n++;
  const common = chains[0]?.slice(0, n) ?? [];
  const own = new Map<number, number[]>();
  const holder = new Map<number, number>();
  threads.forEach((t, i) => {
    const rest = chains[i].slice(n);
    for (const f of rest) {
      const other = holder.get(f);
      if (other !== undefined) refuse(`threads ${other} and ${t.tid} share seccomp filter ${f}, which not every thread of the process has (only a filter all threads have can be shared again)`);
      holder.set(f, t.tid);
    }
    own.set(t.tid, rest);
  });
  if (common.length && threads.some((t) => t.nnp !== threads[0].nnp))
    refuse(`threads ${threads.map((t) => t.tid).join(', ')} share seccomp filters but not no_new_privs (installing shared filters sets it on all)`);
  return { common, own };
}

/** The dump half of the check: refuses at dump what sharingPlan cannot make again. */
export function checkSharing(filters: Msg[], pid: number, threads: { tid: number; newest: number | undefined; nnp: boolean }[]): void {
  sharingPlan(filters, threads, (why) => {
    throw new UnsupportedError(`task ${pid}: ${why}`);
  });
}
