// inotify watches from fdinfo ("inotify wd:.. ino:.. sdev:.. mask:.. ignored_mask:.. fhandle-bytes:..
// fhandle-type:.. f_handle:.."), each with its file handle and, as CRIU records it, the watched
// path (resolved with open_by_handle_at on the watched filesystem).
import * as fs from 'fs';
import { readMountinfo } from '../proc/mountinfo';
import type { Msg } from '../../images/codec';
import { native } from '../../native';
import { UnsupportedError } from '../errors';

const O_PATH = 0o10000000;
/** fh_entry.handle always has at least this many u64 words */
const FH_MIN_WORDS = 16;

export interface InotifyWatch {
  wd: number;
  ino: bigint;
  sdev: number;
  mask: number;
  ignoredMask: number;
  handleBytes: number;
  handleType: number;
  handle: Buffer;
}

export function parseInotify(lines: string[]): InotifyWatch[] {
  const out: InotifyWatch[] = [];
  for (const line of lines) {
    if (!line.startsWith('inotify ')) continue;
    const f = new Map<string, string>();
    for (const m of line.slice(8).matchAll(/(\S+?):(\S+)/g)) f.set(m[1], m[2]);
    out.push({
      wd: Number(f.get('wd')), ino: BigInt('0x' + f.get('ino')), sdev: parseInt(f.get('sdev') ?? '0', 16),
      mask: parseInt(f.get('mask') ?? '0', 16), ignoredMask: parseInt(f.get('ignored_mask') ?? '0', 16),
      handleBytes: parseInt(f.get('fhandle-bytes') ?? '0', 16), handleType: parseInt(f.get('fhandle-type') ?? '0', 16),
      handle: Buffer.from(f.get('f_handle') ?? '', 'hex'),
    });
  }
  return out;
}

/** The kernel's s_dev (major << 20 | minor) -> "major:minor" as mountinfo prints it. */
export function devString(sdev: number): string {
  return `${Math.floor(sdev / 2 ** 20)}:${sdev % 2 ** 20}`;
}

/** A mount point of the filesystem with this s_dev, from the engine's mountinfo. */
function mountPointOf(sdev: number): string | undefined {
  const want = devString(sdev);
  return readMountinfo().find((m) => m.dev === want)?.point;
}

/** A file handle as fdinfo shows it for a mark or watch, with the s_dev of its filesystem. */
export interface MarkHandle {
  sdev: number;
  handleBytes: number;
  handleType: number;
  handle: Buffer;
}

/**
 * The path of the marked or watched file (`what`: "inotify watch 3", ...), opened by its handle
 * (O_PATH: no open event is generated) on a mount of its filesystem; refused when the file is
 * gone or unlinked (the restore adds the mark again by path).
 */
export function handlePath(w: MarkHandle, what: string, where: string): string {
  const mnt = mountPointOf(w.sdev);
  if (!mnt) throw new UnsupportedError(`${where}: ${what} on a filesystem (${devString(w.sdev)}) not mounted here`);
  const n = native();
  const mfd = fs.openSync(mnt, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY); // an O_PATH fd is refused here
  try {
    let fd: number;
    try {
      fd = n.openByHandleAt(mfd, w.handleType, w.handle.subarray(0, w.handleBytes), O_PATH);
    } catch (e) {
      throw new UnsupportedError(`${where}: ${what}: the watched file is gone (${(e as Error).message})`);
    }
    try {
      const p = fs.readlinkSync(`/proc/self/fd/${fd}`);
      // a file with no name left may come back as a disconnected dentry ("/")
      if (fs.fstatSync(fd).nlink === 0 && !p.endsWith(' (deleted)')) throw new UnsupportedError(`${where}: ${what} on an unlinked file (not supported)`);
      if (p.endsWith(' (deleted)')) throw new UnsupportedError(`${where}: ${what} on the unlinked ${p.slice(0, -10)} (not supported)`);
      return p;
    } finally {
      n.close(fd);
    }
  } finally {
    fs.closeSync(mfd);
  }
}

/** fh_entry.handle: the handle bytes as little-endian u64 words, at least FH_MIN_WORDS of them. */
export function handleWords(w: MarkHandle): bigint[] {
  const words: bigint[] = [];
  const padded = Buffer.alloc(Math.max(FH_MIN_WORDS * 8, Math.ceil(w.handleBytes / 8) * 8));
  w.handle.copy(padded);
  for (let o = 0; o < padded.length; o += 8) words.push(padded.readBigUInt64LE(o));
  return words;
}

export function inotifyWdEntries(lines: string[], where: string): Msg[] {
  return parseInotify(lines).map((w) => ({
    id: 0, i_ino: w.ino, mask: w.mask, ignored_mask: w.ignoredMask, s_dev: w.sdev, wd: w.wd,
    f_handle: { bytes: w.handleBytes, type: w.handleType, handle: handleWords(w), path: handlePath(w, `inotify watch ${w.wd}`, where) },
  }));
}
