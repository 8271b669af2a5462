// /proc/PID/mountinfo, parsed once per call into its fields (proc(5)); octal escapes in paths
// (\040 for a space, ...) are decoded.
import { readProc } from './read';

export interface Mount {
  id: number;
  parent: number;
  /** "major:minor" of the mounted filesystem */
  dev: string;
  /** the root of the mount within its filesystem */
  root: string;
  /** the mount point */
  point: string;
  /** per-mount options (rw, nosuid, ...) */
  options: string[];
  fstype: string;
  source: string;
  /** per-superblock options */
  superOptions: string[];
}

const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));

/** The mounts a task sees (the engine's own by default). */
export function readMountinfo(pid = process.pid): Mount[] {
  const out: Mount[] = [];
  for (const line of readProc(pid, 'mountinfo').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const f = line.slice(0, sep).split(' ');
    const [fstype = '', source = '', superOpts = ''] = line.slice(sep + 3).split(' ');
    out.push({
      id: Number(f[0]), parent: Number(f[1]), dev: f[2], root: unescape(f[3]), point: unescape(f[4]),
      options: (f[5] ?? '').split(','), fstype, source: unescape(source), superOptions: superOpts.split(','),
    });
  }
  return out;
}
