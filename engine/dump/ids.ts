// Object ids as CRIU hands them out: one counter per kind, id 1 taken by the dumper itself
// (CRIU records its own ids in inventory.root_ids), shared objects found with kcmp.
import * as fs from 'fs';
import { native, KCMP_VM, KCMP_FILES, KCMP_FS, KCMP_SIGHAND } from '../../native';

/** namespace kinds in the order CRIU numbers them */
export const NS_KINDS = [
  ['pid', 'pid_ns_id'], ['net', 'net_ns_id'], ['ipc', 'ipc_ns_id'], ['uts', 'uts_ns_id'],
  ['time', 'time_ns_id'], ['mnt', 'mnt_ns_id'], ['user', 'user_ns_id'], ['cgroup', 'cgroup_ns_id'],
] as const;

const KOBJ_KINDS = [
  ['vm_id', KCMP_VM], ['files_id', KCMP_FILES], ['fs_id', KCMP_FS], ['sighand_id', KCMP_SIGHAND],
] as const;

export class TaskIds {
  private nsIds = new Map<string, number>();
  private nextNs = 1;
  /** per kobj kind: [pid, id] of every distinct object seen */
  private kobjs = new Map<string, [number, number][]>();

  private nsId(pid: number, kind: string): number | undefined {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/${pid}/ns/${kind}`);
    } catch {
      return undefined;
    }
    let id = this.nsIds.get(link);
    if (id === undefined) {
      id = this.nextNs++;
      this.nsIds.set(link, id);
    }
    return id;
  }

  private kobjId(pid: number, kind: string, kcmpType: number): number {
    let seen = this.kobjs.get(kind);
    if (!seen) this.kobjs.set(kind, (seen = []));
    for (const [other, id] of seen) {
      try {
        if (native().kcmp(pid, other, kcmpType, 0, 0) === 0) return id;
      } catch {
        /* the other task is gone: not shared */
      }
    }
    const id = seen.length + 1;
    seen.push([pid, id]);
    return id;
  }

  /** task_kobj_ids_entry for pid (the dumper's own first, so that it gets id 1). */
  idsOf(pid: number): Record<string, number> {
    const ids: Record<string, number> = {};
    for (const [field, type] of KOBJ_KINDS) ids[field] = this.kobjId(pid, field, type);
    for (const [kind, field] of NS_KINDS) {
      const id = this.nsId(pid, kind);
      if (id !== undefined) ids[field] = id;
    }
    return ids;
  }

  /** The id given to the namespace with this /proc link (undefined: no task seen is in it). */
  idOfLink(link: string): number | undefined {
    return this.nsIds.get(link);
  }

  /** The namespaces the dumper sees: a task outside them would need namespace images. */
  nsLinks(pid: number): Map<string, string> {
    const m = new Map<string, string>();
    for (const [kind] of NS_KINDS) {
      try {
        m.set(kind, fs.readlinkSync(`/proc/${pid}/ns/${kind}`));
      } catch {
        /* kernel without it */
      }
    }
    return m;
  }
}
