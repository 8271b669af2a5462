// /proc/PID/stat: the fields the dumper needs (see proc(5); numbering is 1-based there).
import { readProc } from './read';

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  pgid: number;
  sid: number;
  ttyNr: number;
  /** foreground process group of the controlling terminal (-1 without one) */
  tpgid: number;
  /** PF_* task flags */
  flags: number;
  numThreads: number;
  exitSignal: number;
  startCode: bigint;
  endCode: bigint;
  startStack: bigint;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  exitCode: number;
}

export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const comm = text.slice(open + 1, close);
  // f[0] is field 3 (state)
  const f = text.slice(close + 2).trim().split(/\s+/);
  const n = (i: number) => Number(f[i - 3]);
  const b = (i: number) => BigInt(f[i - 3] ?? '0');
  return {
    pid: Number(text.slice(0, open).trim()),
    comm,
    state: f[0],
    ppid: n(4),
    pgid: n(5),
    sid: n(6),
    ttyNr: n(7),
    tpgid: n(8),
    flags: n(9),
    numThreads: n(20),
    exitSignal: n(38),
    startCode: b(26),
    endCode: b(27),
    startStack: b(28),
    startData: b(45),
    endData: b(46),
    startBrk: b(47),
    argStart: b(48),
    argEnd: b(49),
    envStart: b(50),
    envEnd: b(51),
    exitCode: n(52),
  };
}

export function readStat(pid: number, tid?: number): ProcStat {
  return parseStat(tid === undefined ? readProc(pid, 'stat') : readProc(pid, 'task', String(tid), 'stat'));
}
