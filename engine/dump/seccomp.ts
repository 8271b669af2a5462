// seccomp.img: every thread's filter chain (PTRACE_SECCOMP_GET_FILTER: index 0 is the oldest, the
// first one installed, as seen on this kernel),
// stored once per distinct chain prefix, each filter naming its predecessor with `prev`;
// thread_core.seccomp_filter is the position of the thread's newest filter.
import type { Msg } from '../../images/codec';
import type { Tracer } from '../../native';
import { EngineError } from '../errors';

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
