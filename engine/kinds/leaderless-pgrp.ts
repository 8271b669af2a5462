// Process groups whose leader is dead and reaped (zdtm zombie01): the members keep the group's
// id, and the id stays allocated while any of them exists. pstree.img records only the members'
// pgid (CRIU writes no entry for the dead leader either). The restore makes such a group with a
// short-lived helper: a child of the group's first member, cloned with the leader's PID
// (exit signal 0, so no SIGCHLD reaches the member), which makes itself a group leader, waits
// until every member has joined, exits, and is reaped by that member. CRIU does the same with
// its TASK_HELPER items, which exist only at restore.
// Refused at dump (without --shell-job): a group led by a process outside the tree (alive or
// a zombie: its PID is taken) and a group that also holds processes outside the tree (a new
// group would not hold them). Sessions whose leader is gone stay refused: a session is joined
// only by being forked inside it.
import * as fs from 'fs';
import { EngineError, UnsupportedError } from '../errors';
import type { Ctx, Proc } from '../restore/context';
import type { ImageSet, TaskImage } from '../restore/imageset';
import { ImageError } from '../restore/imageset';
import { Remote } from '../restore/remote';
import { NR } from '../restore/sys';
import { isNativeError } from '../../native';

const NR_WAIT4 = 61, WALL = 0x40000000;

/** pgid (pid numbering of /proc) of each process there; tasks that went away are skipped. */
function pgidOf(pid: number): number | undefined {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

/**
 * Dump half (tree frozen): each group a task of the tree is in but whose leader is not in the
 * tree. Its leader must be gone (then its PID stays free: the members hold it) and it must
 * have no member outside the tree.
 */
export function checkLeaderlessGroups(tasks: { pid: number; pgid: number }[], inTree: Set<number>): void {
  const groups = new Map<number, number>(); // pgid -> a member
  for (const t of tasks) if (!inTree.has(t.pgid) && !groups.has(t.pgid)) groups.set(t.pgid, t.pid);
  if (!groups.size) return;
  for (const [g, member] of groups)
    if (fs.existsSync(`/proc/${g}`)) throw new EngineError(`task ${member} is in process group ${g}, which is outside the dumped tree (use --shell-job)`);
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0 || inTree.has(pid)) continue;
    const g = pgidOf(pid);
    if (g !== undefined && groups.has(g))
      throw new UnsupportedError(`task ${groups.get(g)}: its process group ${g} (whose leader is gone) also holds process ${pid}, outside the dumped tree (not supported)`);
  }
}

/**
 * Restore half, before any process exists: the groups made by a helper, with their members in
 * pstree order. The root's group, when it is not a task of the set, is the one the restore is
 * run in (--shell-job) and gets none.
 */
export function leaderlessGroups(set: ImageSet): Map<number, TaskImage[]> {
  const root = set.tasks[0];
  const tids = new Map<number, number>();
  for (const t of set.tasks) for (const tid of t.threads) tids.set(tid, t.pid);
  const out = new Map<number, TaskImage[]>();
  for (const t of set.tasks) {
    const g = t.pgid;
    if (g === t.pid || set.byPid.has(g) || g === root.pgid || g <= 0) continue;
    if (tids.has(g)) throw new ImageError('pstree.img', `task ${t.pid}.pgid`, `process group ${g} is thread ${g} of task ${tids.get(g)}, not a process`);
    if (!out.has(g)) out.set(g, []);
    const members = out.get(g)!;
    if (members.length && members[0].sid !== t.sid)
      throw new ImageError('pstree.img', `task ${t.pid}.sid`, `process group ${g} has members in sessions ${members[0].sid} and ${t.sid}`);
    members.push(t);
  }
  return out;
}

export interface GroupHelper {
  pgid: number;
  host: number;
  parent: Proc;
}

/**
 * Each helper, forked from the group's first member (fork: an injected clone3 with set_tid =
 * the group's id and exit signal 0) and made leader of its own group. The members join next.
 */
export function makeGroupHelpers(ctx: Ctx, fork: (parent: Proc, pid: number, exitSignal: number) => number): Map<number, GroupHelper> {
  const out = new Map<number, GroupHelper>();
  for (const [g, members] of leaderlessGroups(ctx.set)) {
    const parent = ctx.procs.get(members[0].pid);
    if (!parent) throw new EngineError(`process group ${g}: its member ${members[0].pid} was not created`);
    const host = fork(parent, g, 0);
    out.set(g, { pgid: g, host, parent });
    const r = new Remote(ctx.tracer, host, g);
    r.gadget = parent.remote.gadget;
    r.one(host, `setpgid(0, 0) of the helper for process group ${g}`, NR.setpgid, 0, 0);
    ctx.log.debug(`process group ${g}: helper ${host} (child of task ${parent.img.pid}) made it`);
  }
  return out;
}

/** Once the members are in: each helper exits and is reaped by its parent; the group lives on. */
export function endGroupHelpers(ctx: Ctx, helpers: Map<number, GroupHelper>): void {
  for (const h of helpers.values()) endHelper(ctx, h.host, h.parent, h.pgid, `the helper of process group ${h.pgid}`);
}

/** A helper (a child of `parent` with PID `pid`, exit signal 0) exits and is reaped by its parent. */
export function endHelper(ctx: Ctx, host: number, parent: Proc, pid: number, what: string): void {
  try {
    ctx.tracer.inject(host, parent.remote.gadget, [{ nr: NR.exit_group, args: [0] }]);
  } catch (e) {
    if (!(isNativeError(e) && e.code === 'ESRCH')) throw e;
  }
  for (;;) {
    let st;
    try {
      st = ctx.tracer.wait(host, 5000);
    } catch (e) {
      if (isNativeError(e) && e.code === 'ECHILD') break;
      throw e;
    }
    if (st.exited || st.signaled) break;
    if (st.stopped) ctx.tracer.cont(host, 0);
  }
  // no longer traced: a zombie of its parent, which reaps it (a clone child: __WALL)
  const got = parent.remote.one(parent.host, `wait4 for ${what}`, NR_WAIT4, pid, 0, WALL, 0);
  if (Number(got) !== pid) throw new EngineError(`${what}: task ${parent.img.pid} reaped ${got}, not its helper`);
  const i = ctx.created.indexOf(host);
  if (i >= 0) ctx.created.splice(i, 1);
}
