// Namespace files (an fd of /proc/PID/ns/net and the like): files.img NS entries, both halves,
// as CRIU 4.2 writes them (ns_id: the namespace's id among the dumped tasks' ones, ns_cflag: its
// CLONE_NEW* flag). The restore puts the tasks into the engine's own namespaces, so a namespace
// file can be made again only when it names one of those: it is opened again through
// /proc/self/ns. Any other namespace (a nested one, another container's) is refused at dump.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { UnsupportedError } from '../errors';
import { ImageError, num } from '../restore/imageset';

/** /proc/PID/ns entries by the CLONE_NEW* flag their namespace kind has */
const KINDS: [string, number][] = [
  ['mnt', 0x00020000], ['cgroup', 0x02000000], ['uts', 0x04000000], ['ipc', 0x08000000],
  ['user', 0x10000000], ['pid', 0x20000000], ['net', 0x40000000], ['time', 0x00000080],
];

export const FD_TYPE_NS = 14;

/** The kind a namespace file's /proc link names ("net:[4026531840]"), or undefined for other files. */
export function nsKindOf(link: string): string | undefined {
  const m = /^([a-z]+):\[\d+\]$/.exec(link);
  return m && KINDS.some(([k]) => k === m[1]) ? m[1] : undefined;
}

/**
 * The NS entry of a task's namespace file. `nsId` gives the id the dump gave the namespace with
 * this link (undefined: no dumped task is in it).
 */
export function nsFileEntry(id: number, flags: number, link: string, nsId: (link: string) => number | undefined, where: string): Msg {
  const kind = nsKindOf(link)!;
  const cflag = KINDS.find(([k]) => k === kind)![1];
  let own: string | undefined;
  try {
    own = fs.readlinkSync(`/proc/self/ns/${kind}`);
  } catch {
    /* kernel without it */
  }
  const known = nsId(link);
  if (link !== own || known === undefined)
    throw new UnsupportedError(`${where}: namespace file ${link} of another ${kind} namespace than the tree's (only the tree's own are restored)`);
  return { id, ns_id: known, ns_cflag: cflag, flags };
}

/** Refuses, before any process exists, an NS entry the restore cannot open. */
export function checkNsFile(id: number, f: Msg): void {
  if (!f.nsf) throw new ImageError('files.img', `id ${id}.nsf`, 'an NS file without its entry');
  if (!KINDS.some(([, c]) => c === num(f.nsf.ns_cflag))) throw new ImageError('files.img', `id ${id}.nsf.ns_cflag`, `unknown namespace flag 0x${num(f.nsf.ns_cflag).toString(16)}`);
}

/** The restore half: the engine's own namespace of that kind (the tasks are restored into it). */
export function openNsFile(f: Msg): number {
  const kind = KINDS.find(([, c]) => c === num(f.nsf.ns_cflag))![0];
  return fs.openSync(`/proc/self/ns/${kind}`, fs.constants.O_RDONLY | 0o2000000 /* O_CLOEXEC */);
}
