// fd tables and fs structs (cwd, root, umask) shared between processes: clone(CLONE_FILES) and
// clone(CLONE_FS). The dump records the sharing as equal files_id / fs_id in ids-<pid>.img (kcmp);
// the restore makes each shared object once, in the group's first process, and creates every
// other member by a clone with CLONE_FILES / CLONE_FS from its parent, the way it was made.
// That reproduces a group only when it hangs together in the tree: one member whose parent is
// outside the group, every other member a child of a member. Anything else (siblings sharing what
// their parent no longer has, a thread with a table of its own, an address space or signal
// handler table shared between processes, an object shared with a task outside the tree) has
// no fork order that makes it again, and is refused at dump and at restore.
import { native, KCMP_FILES, KCMP_FS, KCMP_VM, KCMP_SIGHAND } from '../../native';
import { UnsupportedError } from '../errors';
import type { ImageSet, TaskImage } from '../restore/imageset';
import { ImageError, num } from '../restore/imageset';
import { CLONE_FILES, CLONE_FS } from '../restore/sys';

type IdField = 'files_id' | 'fs_id' | 'vm_id' | 'sighand_id';

/** what each shared object is, for messages */
const KIND: Record<IdField, string> = {
  files_id: 'fd table (CLONE_FILES)',
  fs_id: 'fs struct: cwd, root and umask (CLONE_FS)',
  vm_id: 'address space (CLONE_VM without CLONE_THREAD)',
  sighand_id: 'signal handler table (CLONE_SIGHAND without CLONE_THREAD)',
};
/** made again by a clone flag from the parent */
const BY_CLONE: [IdField, number][] = [['files_id', CLONE_FILES], ['fs_id', CLONE_FS]];
/** never shared between processes here */
const NOT_SHARED: IdField[] = ['vm_id', 'sighand_id'];

interface Member {
  pid: number;
  ppid: number;
  ids: Record<string, unknown>;
}

/** The first problem with the sharing of tasks, or undefined: the task, the id and what is wrong. */
function sharingProblem(tasks: Member[]): { pid: number; field: IdField; text: string } | undefined {
  const byPid = new Map(tasks.map((t) => [t.pid, t]));
  for (const field of [...NOT_SHARED, ...BY_CLONE.map(([f]) => f)]) {
    const groups = new Map<number, Member[]>();
    for (const t of tasks) {
      if (t.ids[field] === undefined) continue;
      const id = num(t.ids[field]);
      if (!groups.has(id)) groups.set(id, []);
      groups.get(id)!.push(t);
    }
    for (const [id, members] of groups) {
      if (members.length < 2) continue;
      const pids = members.map((m) => m.pid).join(', ');
      if (NOT_SHARED.includes(field)) return { pid: members[1].pid, field, text: `tasks ${pids} share one ${KIND[field]} (${field} ${id}), which is not restored` };
      // the members that did not get it from their parent: each would need a clone that shares it
      const tops = members.filter((m) => {
        const parent = byPid.get(m.ppid);
        return !parent || parent.ids[field] === undefined || num(parent.ids[field]) !== id;
      });
      if (tops.length > 1)
        return { pid: tops[1].pid, field, text: `tasks ${tops.map((m) => m.pid).join(', ')} share one ${KIND[field]} (${field} ${id}) that none of them got from its parent; no clone order makes it again` };
    }
  }
  return undefined;
}

/**
 * Dump side: refuses sharing that no fork order restores. tasks: the live processes with their
 * ids; threads: pid -> its thread ids; root and rootParent: the tree's root and its parent.
 */
export function checkDumpSharing(tasks: Member[], threads: Map<number, number[]>, root: number, rootParent: number): void {
  const n = native();
  for (const [pid, tids] of threads) {
    for (const tid of tids) {
      if (tid === pid) continue;
      for (const [type, what] of [[KCMP_FILES, 'fd table'], [KCMP_FS, 'fs struct (cwd, root, umask)']] as const) {
        let same: boolean;
        try {
          same = n.kcmp(pid, tid, type, 0, 0) === 0;
        } catch {
          continue; // the thread is gone: the dump notices it elsewhere
        }
        if (!same) throw new UnsupportedError(`task ${pid} thread ${tid}: has an ${what} of its own (unshared from its process), which is not restored`);
      }
    }
  }
  const problem = sharingProblem(tasks);
  if (problem) throw new UnsupportedError(problem.text);
  if (rootParent > 0) {
    for (const [type, what] of [[KCMP_FILES, KIND.files_id], [KCMP_FS, KIND.fs_id], [KCMP_VM, KIND.vm_id], [KCMP_SIGHAND, KIND.sighand_id]] as const) {
      let same = false;
      try {
        same = n.kcmp(root, rootParent, type, 0, 0) === 0;
      } catch {
        /* parent not comparable (gone, or another namespace): nothing shared with it that we see */
      }
      if (same) throw new UnsupportedError(`task ${root} shares its ${what} with its parent ${rootParent}, which is outside the dumped tree`);
    }
  }
}

/** Dump side: whether pid's fd table was already dumped with an earlier task (same files_id). */
export class DumpedTables {
  private seen = new Set<number>();
  /** true the first time a files_id is seen: that task's fds are dumped, the sharers' are not */
  first(filesId: number): boolean {
    if (this.seen.has(filesId)) return false;
    this.seen.add(filesId);
    return true;
  }
}

/** Restore side: the same rules on the images (a CRIU-made set may hold any shape). */
export function checkImageSharing(set: ImageSet): void {
  const live = set.tasks.filter((t) => t.ids);
  const problem = sharingProblem(live.map((t) => ({ pid: t.pid, ppid: t.ppid, ids: t.ids! })));
  if (problem) throw new ImageError(`ids-${problem.pid}.img`, problem.field, problem.text);
}

/** clone flags that give child its parent's shared objects. */
export function cloneFlagsFor(child: TaskImage, parent: TaskImage): number {
  let flags = 0;
  if (!child.ids || !parent.ids) return 0;
  for (const [field, flag] of BY_CLONE)
    if (child.ids[field] !== undefined && parent.ids[field] !== undefined && num(child.ids[field]) === num(parent.ids[field])) flags |= flag;
  return flags;
}

/** Whether t restores the object itself (false: it has it from its parent, already restored there). */
export function restoresOwn(set: ImageSet, t: TaskImage, field: 'files_id' | 'fs_id'): boolean {
  const parent = t === set.tasks[0] ? undefined : set.byPid.get(t.ppid);
  if (!parent || !parent.ids || !t.ids) return true;
  return num(parent.ids[field]) !== num(t.ids[field]);
}
