// pidfds, both halves, in CRIU 4.2's layout (files.img PIDFD entries: pidfd_entry with the
// process's inode, the fd's flags and its pid, -1 once that process is gone). At restore a pidfd
// of a live task is pidfd_open()ed on the restored task; a pidfd of a process that had already
// died is opened on a short-lived process of ours that is then killed and reaped, before the tree
// is built (so its PID is free again for the tree), one per dead process the pidfds shared.
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { native, Tracer } from '../../native';
import { UnsupportedError, EngineError } from '../errors';
import type { FdInfo } from '../dump/files';
import { num } from '../restore/imageset';
import { O_RDWR, O_NONBLOCK } from '../restore/sys';
import { reapKilled } from '../restore/context';

export const FD_TYPE_PIDFD = 20;
const PIDFD_THREAD = 0o200; // O_EXCL

/** "anon_inode:[pidfd]" before pidfs (6.9), "pidfd:[ino]" since. */
export function isPidfdLink(link: string): boolean {
  return link === 'anon_inode:[pidfd]' || link.startsWith('pidfd:');
}

/** The dump half: the pidfd_entry of task `pid`'s fd, refused when it cannot come back. */
export function pidfdEntry(id: number, flags: number, info: FdInfo, via: string, fown: Msg, inTree: (pid: number) => boolean, who: string): Msg {
  const nspid = Number((info.fields.get('NSpid') ?? info.fields.get('Pid') ?? '-1').split(/\s+/).pop());
  if (flags & PIDFD_THREAD) throw new UnsupportedError(`${who}: pidfd of thread ${nspid} (PIDFD_THREAD) is not supported`);
  if (nspid !== -1 && !inTree(nspid)) throw new UnsupportedError(`${who}: pidfd of process ${nspid}, which is outside the dumped tree`);
  return { id, ino: fs.statSync(via).ino, flags: flags & ~O_RDWR, nspid, fown };
}

/** The restore half. */
export class PidfdRestorer {
  /** files.img id of a pidfd of a process dead at dump -> our own description of such a pidfd */
  private dead = new Map<number, number>();

  constructor(private files: Map<number, Msg>) {}

  /**
   * Before the tree exists: per dead process the pidfds named (by inode), a process of ours with
   * one pidfd per dumped description (each with its flags), then killed and reaped.
   */
  prepare(tracer: Tracer): void {
    const n = native();
    const byIno = new Map<number, [number, Msg][]>();
    for (const [id, f] of this.files) {
      if (num(f.type) !== FD_TYPE_PIDFD || num(f.pidfd.nspid) !== -1) continue;
      const l = byIno.get(num(f.pidfd.ino)) ?? [];
      l.push([id, f.pidfd]);
      byIno.set(num(f.pidfd.ino), l);
    }
    for (const ids of byIno.values()) {
      const pid = tracer.spawnStub({});
      try {
        for (const [id, e] of ids) this.dead.set(id, n.pidfdOpen(pid, num(e.flags) & O_NONBLOCK));
      } finally {
        process.kill(pid, 'SIGKILL');
        reapKilled(tracer, pid);
      }
    }
  }

  /** An engine fd for PIDFD entry `id` (the caller owns it); `host` maps an image PID to the restored task's. */
  open(id: number, e: Msg, host: (pid: number) => number | undefined): number {
    if (num(e.nspid) === -1) {
      const fd = this.dead.get(id);
      if (fd === undefined) throw new EngineError(`files.img: id ${id}: no dead process was prepared for pidfd inode ${e.ino}`);
      this.dead.delete(id);
      return fd;
    }
    const pid = host(num(e.nspid));
    if (pid === undefined) throw new EngineError(`files.img: id ${id}: pidfd of process ${e.nspid}, which is not in the image set`, 'EIMAGE');
    return native().pidfdOpen(pid, num(e.flags) & O_NONBLOCK);
  }

  close(): void {
    for (const fd of this.dead.values()) try { fs.closeSync(fd); } catch { /* closed */ }
    this.dead.clear();
  }
}
