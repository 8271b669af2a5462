// /proc/PID/smaps: every VMA with its VmFlags (the flags CRIU needs beyond maps' rwxp).
import { readProc } from './read';

export interface Vma {
  start: bigint;
  end: bigint;
  /** r, w, x and 's'/'p' from maps */
  read: boolean;
  write: boolean;
  exec: boolean;
  shared: boolean;
  pgoff: bigint;
  /** "major:minor" hex device as maps shows it */
  dev: string;
  inode: number;
  /** path or pseudo name ([heap], [vdso], ...); '' for anonymous */
  name: string;
  vmFlags: Set<string>;
}

export function parseSmaps(text: string): Vma[] {
  const vmas: Vma[] = [];
  const header = /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([sp]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/;
  let cur: Vma | undefined;
  for (const line of text.split('\n')) {
    const m = header.exec(line);
    if (m) {
      cur = {
        start: BigInt('0x' + m[1]),
        end: BigInt('0x' + m[2]),
        read: m[3] === 'r',
        write: m[4] === 'w',
        exec: m[5] === 'x',
        shared: m[6] === 's',
        pgoff: BigInt('0x' + m[7]),
        dev: m[8],
        inode: Number(m[9]),
        name: m[10],
        vmFlags: new Set(),
      };
      vmas.push(cur);
    } else if (cur && line.startsWith('VmFlags:')) {
      for (const f of line.slice(8).trim().split(/\s+/)) if (f) cur.vmFlags.add(f);
    }
  }
  return vmas;
}

export function readSmaps(pid: number): Vma[] {
  return parseSmaps(readProc(pid, 'smaps'));
}

/** /proc/PID/maps (no VmFlags; much cheaper than smaps when only the layout is needed). */
export function readMaps(pid: number): Vma[] {
  return parseSmaps(readProc(pid, 'maps'));
}
