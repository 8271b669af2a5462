// /proc/PID directories of processes that are gone (zdtm unhashed_proc): a task whose cwd (or
// root) is the /proc directory of a process that has died since keeps an unhashed directory
// there, getcwd() says ENOENT. CRIU records it as a PROCFS remap (remap-fpath.img, remap_id =
// the dead PID). The restore makes the same directory again: a helper with that PID (a child of
// the task, exit signal 0), the task changes into /proc/PID, the helper exits and is reaped, and
// the directory is gone again under the task. Only directories are remapped so; files under a
// dead process's /proc directory stay refused (ghost files).
import * as fs from 'fs';
import * as path from 'path';
import { loadImage } from '../../images/files';
import { EngineError } from '../errors';
import type { Ctx, Proc } from '../restore/context';
import type { ImageSet } from '../restore/imageset';
import { num } from '../restore/imageset';
import { endHelper } from './leaderless-pgrp';

const PROC_SUPER_MAGIC = 0x9fa0;
export const REMAP_PROCFS = 2;

/**
 * Dump half: the PID of the dead process whose /proc directory `via` (a /proc link of the task,
 * named `link`) is, or undefined when it is not one.
 */
export function deadProcDir(link: string, via: string): number | undefined {
  const m = /^\/proc\/(\d+) \(deleted\)$/.exec(link);
  if (!m) return undefined;
  try {
    if (!fs.statSync(via).isDirectory() || fs.statfsSync(via).type !== PROC_SUPER_MAGIC) return undefined;
  } catch {
    return undefined;
  }
  return Number(m[1]);
}

/** Restore half: files.img ids remapped to a dead process's /proc directory, with its PID. */
export function deadProcDirs(set: ImageSet): Map<number, number> {
  const out = new Map<number, number>();
  const file = path.join(set.dir, 'remap-fpath.img');
  if (!fs.existsSync(file)) return out;
  for (const e of loadImage(file).entries) {
    if (e.msg.remap_type === undefined || num(e.msg.remap_type) !== REMAP_PROCFS) continue;
    const id = num(e.msg.orig_id), pid = num(e.msg.remap_id);
    const name = set.files.get(id)?.reg?.name;
    if (name !== `/proc/${pid}`) throw new EngineError(`remap-fpath.img: file id ${id}: a /proc remap of PID ${pid} for ${name ?? 'no regular file'}`, 'EIMAGE');
    if (set.byPid.has(pid)) throw new EngineError(`remap-fpath.img: file id ${id}: /proc/${pid} is remapped as a dead process's, but ${pid} is a task of the set`, 'EIMAGE');
    out.set(id, pid);
  }
  return out;
}

/**
 * Runs `enter` (the task's chdir or chroot into /proc/PID) while a helper holds PID, then lets
 * the helper go, so that the task is left in the dead process's directory.
 */
export function inDeadProcDir(ctx: Ctx, p: Proc, pid: number, fork: (parent: Proc, pid: number, exitSignal: number) => number, enter: () => void): void {
  const host = fork(p, pid, 0);
  try {
    enter();
  } finally {
    endHelper(ctx, host, p, pid, `the helper for /proc/${pid}`);
  }
  ctx.log.debug(`task ${p.img.pid}: in /proc/${pid} of a process gone again (helper ${host})`);
}
