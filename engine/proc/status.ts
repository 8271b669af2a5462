// /proc/PID/status as a key -> value map, plus typed accessors for the fields we use.
import { readProc } from './read';

export type Status = Map<string, string>;

export function parseStatus(text: string): Status {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

export function readStatus(pid: number, tid?: number): Status {
  return parseStatus(tid === undefined ? readProc(pid, 'status') : readProc(pid, 'task', String(tid), 'status'));
}

/** A hex mask field such as SigBlk or CapEff. */
export function hexField(s: Status, key: string): bigint {
  const v = s.get(key);
  return v ? BigInt('0x' + v) : 0n;
}

/** The numbers of a whitespace-separated field such as Uid or Gid. */
export function numsField(s: Status, key: string): number[] {
  const v = s.get(key);
  return v ? v.split(/\s+/).filter(Boolean).map(Number) : [];
}

export function numField(s: Status, key: string, dflt = 0): number {
  const v = s.get(key);
  return v === undefined ? dflt : Number(v.split(/\s+/)[0]);
}
