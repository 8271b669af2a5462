// Cgroups (cgroup.img, cgroup_entry), both halves, with CRIU 4.2's semantics.
//
// Dump: every task and thread gets a cg_set (the cgroup of each hierarchy it is in, from
// /proc/PID/task/TID/cgroup); set 1 is the dumper's own and, as in CRIU, is not written (nor is
// the image when every task is in it). Each new set is "collected" unless --manage-cgroups=ignore:
// for each of its hierarchies the cgroup directory tree below the task's cgroup (or the
// --cgroup-root given for it) is walked in a mount of that hierarchy (an existing one, the
// --cgroup-yard, or a temporary one), each directory with its mode and owner and the properties
// CRIU lists for its controllers (cpu.shares, memory.limit_in_bytes, devices.list, ... plus
// --cgroup-props), each with the mode and owner of its file.
//
// Restore (--manage-cgroups, soft by default as in CRIU): before any task exists the dumped
// directories are looked up in each hierarchy: a missing one is created (soft, full, strict; none
// and props refuse) and gets the properties that must be set before a task enters (cpuset.cpus,
// devices.list, ...); an existing one keeps its properties (soft, none), gets them again (props,
// full) or aborts the restore (strict). Every task is moved into its set right after it is
// created, before its memory is rebuilt (memory is charged where it is allocated), unless it is
// already there by inheritance; threads in another set are moved per thread in the threaded
// controllers. The other properties are written once every task is in place, before the tree
// runs. --cgroup-root moves the dumped trees under new roots. ignore leaves the cgroups alone.
//
// Refused at dump: a task in another cgroup namespace (cgns prefixes are not handled), a thread
// whose cgroup differs from its process's in a hierarchy whose cgroups cannot be entered per
// thread, a cgroup property that cannot be read. Zombies have no cgroups of their own (as in
// CRIU they are made again by their parent, in its cgroups; the kernel shows an exited task's
// memory cgroup as the root, so there is nothing to compare).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../../native';
import { readMountinfo } from '../proc/mountinfo';
import type { Msg } from '../../images/codec';
import { loadMessages } from '../../images/files';
import { EngineError, UnsupportedError } from '../errors';
import type { Log } from '../log';
import type { Ctx, Proc } from '../restore/context';
import { ImageError, ImageSet, TaskImage, num, TASK_DEAD, TASK_ZOMBIE } from '../restore/imageset';

// ---------------------------------------------------------------- options

export type CgroupMode = 'ignore' | 'none' | 'props' | 'soft' | 'full' | 'strict';
const MODES: CgroupMode[] = ['ignore', 'none', 'props', 'soft', 'full', 'strict'];

export interface CgroupRoot {
  /** the hierarchy as /proc/PID/cgroup names it ("cpu", "name=systemd"); absent: every other one */
  controller?: string;
  root: string;
}

export interface CgroupOptions {
  mode: CgroupMode;
  /** --cgroup-root, in command-line order */
  roots: CgroupRoot[];
  /** --cgroup-yard: a directory with a mount of each hierarchy, named as CRIU names them */
  yard?: string;
  /** the properties dumped per controller: CRIU's lists with --cgroup-props(-file) applied */
  props: Map<string, string[]>;
  /** --cgroup-dump-controller: only these hierarchies (as /proc/PID/cgroup names them) */
  dumpControllers: string[];
}

/** --manage-cgroups[=MODE]: without a value, soft. */
export function cgroupMode(v: string | boolean | undefined): CgroupMode {
  if (v === undefined || v === true) return 'soft';
  if (typeof v === 'string' && (MODES as string[]).includes(v)) return v as CgroupMode;
  throw new EngineError(`--manage-cgroups: unknown cgroups mode \`${String(v)}' (none, props, soft, full, strict or ignore)`, 'EUSAGE');
}

/** --cgroup-root [controller:]/newroot */
export function parseCgroupRoot(v: string): CgroupRoot {
  const colon = v.indexOf(':');
  const root = colon < 0 ? v : v.slice(colon + 1);
  if (!root.startsWith('/')) throw new EngineError(`--cgroup-root ${v}: the root must be an absolute cgroup path`, 'EUSAGE');
  return colon < 0 ? { root } : { controller: v.slice(0, colon), root };
}

/** The properties CRIU 4.2 dumps for each v1 controller, in the order they are set again. */
const BUILTIN_PROPS: [string, string[]][] = [
  ['cpu', ['cpu.shares', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.rt_period_us', 'cpu.rt_runtime_us']],
  // limit_in_bytes before memsw.limit_in_bytes: the second may not be below the first
  ['memory', [
    'memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'memory.swappiness', 'memory.soft_limit_in_bytes',
    'memory.move_charge_at_immigrate', 'memory.oom_control', 'memory.use_hierarchy', 'memory.kmem.limit_in_bytes',
    'memory.kmem.tcp.limit_in_bytes',
  ]],
  ['cpuset', [
    'cpuset.cpus', 'cpuset.mems', 'cpuset.memory_migrate', 'cpuset.cpu_exclusive', 'cpuset.mem_exclusive',
    'cpuset.mem_hardwall', 'cpuset.memory_spread_page', 'cpuset.memory_spread_slab', 'cpuset.sched_load_balance',
    'cpuset.sched_relax_domain_level',
  ]],
  ['blkio', ['blkio.weight']],
  ['freezer', []],
  ['perf_event', []],
  ['net_cls', ['net_cls.classid']],
  ['net_prio', ['net_prio.ifpriomap']],
  ['pids', ['pids.max']],
  ['devices', ['devices.list']],
];
/** every v1 cgroup: cgroup.procs and tasks only for their mode and owner */
const V1_COMMON = ['cgroup.clone_children', 'notify_on_release', 'cgroup.procs', 'tasks'];
const V2_COMMON = ['cgroup.subtree_control', 'cgroup.max.descendants', 'cgroup.max.depth', 'cgroup.freeze', 'cgroup.type'];
/** set right after the directory is made, before any task or child: they refuse it later */
const BEFORE_TASKS = new Set([
  'cpuset.cpus', 'cpuset.mems', 'devices.list', 'memory.kmem.limit_in_bytes', 'memory.swappiness', 'memory.oom_control',
  'memory.use_hierarchy', 'cgroup.type',
]);

/**
 * CRIU's property lists with the --cgroup-props text and file applied. Their format, per controller:
 *   "cpu":
 *    - "strategy": "replace"          (or "merge": appended to the list)
 *    - "properties": ["cpu.shares", "cpu.cfs_period_us"]
 */
export function cgroupProps(text?: string, file?: string): Map<string, string[]> {
  const props = new Map(BUILTIN_PROPS.map(([c, l]) => [c, [...l]]));
  if (text) applyPropsText(props, text, '--cgroup-props');
  if (file !== undefined) {
    let t: string;
    try {
      t = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new EngineError(`--cgroup-props-file ${file}: ${(e as Error).message}`, 'EUSAGE');
    }
    applyPropsText(props, t, `--cgroup-props-file ${file}`);
  }
  return props;
}

function applyPropsText(props: Map<string, string[]>, text: string, where: string): void {
  let at = 0;
  const fail = (what: string): never => {
    throw new EngineError(`${where}: expected ${what} at offset ${at} (${JSON.stringify(text.slice(at, at + 20))})`, 'EUSAGE');
  };
  const spaces = () => {
    while (text[at] === ' ' || text[at] === '\t') at++;
  };
  const sym = (s: string, what = JSON.stringify(s)) => {
    spaces();
    if (!text.startsWith(s, at)) fail(what);
    at += s.length;
  };
  const quoted = (what: string): string => {
    spaces();
    const m = /^"([^"\n]+)"/.exec(text.slice(at));
    if (!m) fail(what);
    at += m![0].length;
    return m![1];
  };
  for (;;) {
    while (/\s/.test(text[at] ?? '')) at++;
    if (at >= text.length) break;
    const controller = quoted('a controller name');
    sym(':');
    sym('\n', 'a new line');
    sym('-');
    sym('"strategy"');
    sym(':');
    const strategy = quoted('a strategy');
    if (strategy !== 'merge' && strategy !== 'replace') fail('"merge" or "replace"');
    sym('\n', 'a new line');
    sym('-');
    sym('"properties"');
    sym(':');
    sym('[');
    const list: string[] = [];
    spaces();
    if (text[at] !== ']') {
      for (;;) {
        list.push(quoted('a property name'));
        spaces();
        if (text[at] === ',') {
          at++;
          continue;
        }
        break;
      }
    }
    sym(']');
    spaces();
    if (at < text.length) sym('\n', 'a new line');
    const old = props.get(controller);
    props.set(controller, strategy === 'merge' && old ? [...old, ...list] : list);
  }
}

export function defaultCgroupOptions(): CgroupOptions {
  return { mode: 'soft', roots: [], props: cgroupProps(), dumpControllers: [] };
}

// ---------------------------------------------------------------- shared

/** One line of /proc/PID/cgroup: the hierarchy's name ("" for v2) and the cgroup path in it. */
interface Member {
  name: string;
  path: string;
}

const byteOrder = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The members of a cgroup file, ordered by hierarchy name as CRIU orders a set. */
function parseMembers(text: string, keep: (name: string) => boolean): Member[] {
  const out: Member[] = [];
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m && keep(m[1])) out.push({ name: m[1], path: m[2] });
  }
  return out.sort((a, b) => byteOrder(a.name, b.name));
}

/** A hierarchy named by its controllers is the one a member name lists all of. */
function holds(cnames: string[], name: string): boolean {
  if (cnames.length === 1 && cnames[0] === '') return name === '';
  const listed = name.split(',');
  return cnames.length > 0 && cnames.every((c) => listed.includes(c));
}

/** "/a/b" lies in "/a" (and everything in "/"). */
function isSubpath(p: string, sub: string): boolean {
  return p.startsWith(sub) && (sub.endsWith('/') || p.length === sub.length || p[sub.length] === '/');
}

/**
 * Access to the root of each cgroup hierarchy: a mount of it already in this mount namespace
 * (read-write, at the hierarchy's root, without noprefix), the yard's, or a temporary one.
 */
class HierarchyMounts {
  private found = new Map<string, string>();
  private temporary: string[] = [];

  constructor(private yard: string | undefined, private log: Log, private restoring: boolean) {}

  /** mountName: the hierarchy's controllers joined by ',' ("" for v2); yardName: its directory in a yard. */
  dir(mountName: string, yardName: string): string {
    const key = `${mountName}\0${yardName}`;
    let d = this.found.get(key);
    if (d !== undefined) return d;
    if (this.yard !== undefined) {
      d = path.join(this.yard, yardName);
      if (!fs.existsSync(d)) {
        if (!this.restoring) throw new EngineError(`cgroup yard ${this.yard}: no ${yardName} in it for the ${mountName || 'cgroup2'} hierarchy`);
        // as CRIU: a hierarchy the yard lacks is mounted into it
        fs.mkdirSync(d, { mode: 0o700 });
        mountHierarchy(mountName, d);
      }
    } else {
      d = existingMount(mountName);
      if (d === undefined) {
        d = fs.mkdtempSync(path.join(os.tmpdir(), '.engine-cgroup-'));
        try {
          mountHierarchy(mountName, d);
        } catch (e) {
          fs.rmdirSync(d);
          throw e;
        }
        this.temporary.push(d);
        this.log.debug(`cgroup hierarchy ${mountName || 'cgroup2'} mounted at ${d}`);
      }
    }
    this.found.set(key, d);
    return d;
  }

  close(): void {
    for (const d of this.temporary.splice(0)) {
      try {
        native().umount2(d, MNT_DETACH);
      } catch {
        /* already gone */
      }
      try {
        fs.rmdirSync(d);
      } catch {
        /* still busy: left behind, empty */
      }
    }
    this.found.clear();
  }
}

const MNT_DETACH = 2;

function knownSubsystems(): Set<string> {
  const out = new Set<string>();
  try {
    for (const l of fs.readFileSync('/proc/cgroups', 'utf8').split('\n')) if (l && !l.startsWith('#')) out.add(l.split('\t')[0]);
  } catch {
    /* no v1 */
  }
  return out;
}

function existingMount(mountName: string): string | undefined {
  const subsystems = knownSubsystems();
  const want = mountName.split(',').sort().join(',');
  for (const m of readMountinfo()) {
    if (m.root !== '/' || !m.options.includes('rw')) continue;
    if (m.fstype === 'cgroup2') {
      if (mountName === '') return m.point;
      continue;
    }
    if (m.fstype !== 'cgroup' || mountName === '' || m.superOptions.includes('noprefix')) continue;
    const have = m.superOptions.filter((o) => o.startsWith('name=') || subsystems.has(o)).sort().join(',');
    if (have === want) return m.point;
  }
  return undefined;
}

function mountHierarchy(mountName: string, at: string): void {
  // a hierarchy of named groups only has no controller: "none" says so
  const data = mountName === '' ? '' : mountName.split(',').every((n) => n.startsWith('name=')) ? `none,${mountName}` : mountName;
  try {
    native().mount('none', at, mountName === '' ? 'cgroup2' : 'cgroup', 0, data);
  } catch (e) {
    throw new EngineError(`cannot mount the ${mountName || 'cgroup2'} cgroup hierarchy at ${at}: ${(e as Error).message}`);
  }
}

/** The directory CRIU gives a hierarchy in a yard. */
function yardNameOfMember(name: string): string {
  if (name === '') return 'unified';
  return name.startsWith('name=') ? name.slice(5) : name;
}

function yardNameOfCnames(cnames: string[]): string {
  return cnames.map((c) => (c === '' ? 'unified' : c.startsWith('name=') ? c.slice(5) : c)).join(',');
}

function errnoOf(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e as Error).message;
}

// ---------------------------------------------------------------- dump

interface DirNode {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  props: Msg[];
  children: DirNode[];
}

interface Hierarchy {
  cnames: string[];
  heads: DirNode[];
  threaded: boolean;
}

interface CgSet {
  id: number;
  key: string;
  members: Member[];
  collected: boolean;
}

const LLONG_MAX = (1n << 63n) - 1n;

/** The dump half: cg_set ids of the tasks and threads, and cgroup.img. */
export class CgroupDump {
  private sets: CgSet[] = [];
  private hierarchies: Hierarchy[] = [];
  private mounts: HierarchyMounts;
  private ownNs: string;
  /** task -> the set of its leader */
  private taskSet = new Map<number, number>();
  /** set 1 is written only when a task or thread in it would not inherit it at restore */
  private ownNeeded = false;
  private keep: (name: string) => boolean;

  constructor(private opts: CgroupOptions, log: Log) {
    this.keep = (name) => !opts.dumpControllers.length || opts.dumpControllers.includes(name);
    const self = fs.readFileSync('/proc/self/cgroup', 'utf8');
    // the hierarchies the dumper is in, in its cgroup file's order; named ones come with the sets
    for (const line of self.split('\n')) {
      const m = /^\d+:([^:]*):/.exec(line);
      if (!m || !this.keep(m[1])) continue;
      const cnames = m[1] === '' ? [''] : m[1].split(',').filter((n) => !n.startsWith('name='));
      if (cnames.length) this.hierarchies.push({ cnames, heads: [], threaded: false });
    }
    const own = parseMembers(self, this.keep);
    this.sets.push({ id: 1, key: JSON.stringify(own), members: own, collected: false });
    this.ownNs = fs.readlinkSync('/proc/self/ns/cgroup');
    this.mounts = new HierarchyMounts(opts.yard, log, false);
  }

  /** The cg_set of a task's leader; ppid 0 for the root of the tree. */
  setOf(pid: number, ppid: number): number {
    let ns: string;
    try {
      ns = fs.readlinkSync(`/proc/${pid}/ns/cgroup`);
    } catch (e) {
      throw new EngineError(`task ${pid}: cannot read its cgroup namespace: ${errnoOf(e)}`);
    }
    if (ns !== this.ownNs) throw new UnsupportedError(`task ${pid}: in cgroup namespace ${ns}, not the engine's ${this.ownNs}; cgroup namespaces are not dumped by this engine`);
    const id = this.setFor(`task ${pid}`, this.read(pid, pid));
    this.taskSet.set(pid, id);
    // a child in the dumper's set whose parent is elsewhere is moved back into it at restore
    if (id === 1 && ppid !== 0 && this.taskSet.get(ppid) !== 1) this.needOwn(`task ${pid}`);
    return id;
  }

  /** The cg_set of a thread other than the leader (after setOf of its task). */
  threadSetOf(pid: number, tid: number): number {
    const id = this.setFor(`task ${pid} thread ${tid}`, this.read(pid, tid));
    const leader = this.taskSet.get(pid)!;
    if (id === leader) return id;
    if (id === 1) this.needOwn(`task ${pid} thread ${tid}`);
    const mine = this.sets[id - 1].members;
    const its = this.sets[leader - 1].members;
    for (const m of mine) {
      const l = its.find((x) => x.name === m.name);
      if (l && l.path === m.path) continue;
      const h = this.hierarchies.find((x) => holds(x.cnames, m.name));
      if (!h?.threaded) {
        const why = this.opts.mode === 'ignore' ? 'cgroups are not collected with --manage-cgroups=ignore' : 'its cgroups take no single threads';
        throw new UnsupportedError(`task ${pid} thread ${tid}: in cgroup ${m.name || 'cgroup2'}:${m.path}, its process in ${l ? l.path : 'none'}; the hierarchy is not threaded here (${why}), so the restore could not put the thread back`);
      }
    }
    return id;
  }

  /** cgroup_entry, or undefined when every task and thread is in the dumper's cgroups. */
  entry(): Msg | undefined {
    if (this.sets.length === 1) return undefined;
    const written = this.sets.filter((s) => s.id !== 1 || this.ownNeeded);
    return {
      sets: written.map((s) => ({ id: s.id, ctls: s.members.map((m) => ({ name: m.name, path: m.path })) })),
      controllers: this.hierarchies.map((h) => {
        const c: Msg = { cnames: h.cnames };
        if (h.heads.length) c.dirs = h.heads.map((d) => dirEntry(d, 0));
        c.is_threaded = h.threaded;
        return c;
      }),
    };
  }

  close(): void {
    this.mounts.close();
  }

  private read(pid: number, tid: number): Member[] {
    try {
      return parseMembers(fs.readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8'), this.keep);
    } catch (e) {
      throw new EngineError(`task ${pid} thread ${tid}: cannot read its cgroups: ${errnoOf(e)}`);
    }
  }

  private setFor(who: string, members: Member[]): number {
    const key = JSON.stringify(members);
    let s = this.sets.find((x) => x.key === key);
    if (!s) {
      s = { id: this.sets.length + 1, key, members, collected: false };
      this.sets.push(s);
      this.collect(who, s);
    }
    return s.id;
  }

  private needOwn(who: string): void {
    this.ownNeeded = true;
    this.collect(who, this.sets[0]);
  }

  /** The hierarchies of a new set, and (unless ignored) the cgroup trees it is in. */
  private collect(who: string, s: CgSet): void {
    if (s.collected) return;
    s.collected = true;
    for (const m of s.members) {
      let h = this.hierarchies.find((x) => holds(x.cnames, m.name));
      if (!h) {
        if (!m.name.startsWith('name=')) throw new UnsupportedError(`${who}: cgroup ${m.name}:${m.path}: the engine is in no hierarchy of controller ${m.name}`);
        h = { cnames: [m.name], heads: [], threaded: false };
        this.hierarchies.push(h);
      }
      if (this.opts.mode === 'ignore') continue;
      const root = this.walkRoot(m);
      const top = path.join(this.mounts.dir(m.name, yardNameOfMember(m.name)), root);
      if (!fs.existsSync(top)) throw new EngineError(`${who}: cgroup ${m.name || 'cgroup2'}:${root} to dump does not exist`);
      this.walk(who, h, m.name, top, root);
    }
  }

  /** Where the walk starts: the task's cgroup, or --cgroup-root (the first given for it, else the global one). */
  private walkRoot(m: Member): string {
    const own = this.opts.roots.find((r) => r.controller === m.name);
    let root = own?.root;
    if (root === undefined) {
      const globals = this.opts.roots.filter((r) => r.controller === undefined);
      root = globals.length ? globals[globals.length - 1].root : m.path;
    }
    root = root.replace(/\/+$/, '');
    return root === '' ? '/' : root;
  }

  /** Each directory of the tree, parents first, in the directory's own order. */
  private walk(who: string, h: Hierarchy, name: string, abs: string, rel: string): void {
    const st = fs.statSync(abs);
    if (!st.isDirectory()) return;
    const node: DirNode = { path: rel, mode: st.mode, uid: st.uid, gid: st.gid, props: [], children: [] };
    if (place(h, node)) node.props = this.properties(who, h, name, abs, rel);
    let entries: fs.Dirent[];
    const d = fs.opendirSync(abs);
    try {
      entries = [];
      for (let e = d.readSync(); e; e = d.readSync()) entries.push(e);
    } finally {
      d.closeSync();
    }
    for (const e of entries) if (e.isDirectory()) this.walk(who, h, name, path.join(abs, e.name), rel === '/' ? `/${e.name}` : `${rel}/${e.name}`);
  }

  private properties(who: string, h: Hierarchy, name: string, abs: string, rel: string): Msg[] {
    const names: string[] = [];
    for (const c of h.cnames) names.push(...(this.opts.props.get(c) ?? []));
    names.push(...(h.cnames[0] === '' ? V2_COMMON : V1_COMMON));
    const out: Msg[] = [];
    for (const prop of names) {
      const file = path.join(abs, prop);
      if (!fs.existsSync(file)) continue; // not on this kernel, or not in this cgroup (v2 root)
      let value: string;
      let st: fs.Stats;
      try {
        const fd = fs.openSync(file, fs.constants.O_RDONLY);
        try {
          st = fs.fstatSync(fd);
          value = prop === 'cgroup.procs' || prop === 'tasks' ? '' : fs.readFileSync(fd, 'utf8');
        } finally {
          fs.closeSync(fd);
        }
      } catch (e) {
        throw new UnsupportedError(`${who}: cgroup ${name || 'cgroup2'}:${rel}: cannot read property ${prop}: ${errnoOf(e)}`);
      }
      value = propValue(prop, value, () => new UnsupportedError(`${who}: cgroup ${name}:${rel}: unexpected ${prop} ${JSON.stringify(value)}`));
      if ((prop === 'cgroup.type' && value === 'threaded') || prop === 'tasks') h.threaded = true;
      out.push({ name: prop, value, perms: { mode: st.mode, uid: st.uid, gid: st.gid } });
    }
    return out;
  }
}

/** A property's value as CRIU records it: no final newline, "-1" for unlimited, oom_kill_disable alone. */
function propValue(prop: string, raw: string, bad: () => Error): string {
  let v = raw.endsWith('\n') ? raw.slice(0, -1) : raw;
  const n = /^[ \t\n\v\f\r]*\+?(\d+)/.exec(v);
  if (n && BigInt(n[1]) >= LLONG_MAX) v = '-1';
  if (prop === 'memory.oom_control') {
    const m = /^oom_kill_disable (-?\d+)/.exec(v);
    if (!m) throw bad();
    v = String(Number(m[1]));
  }
  return v;
}

/** Puts a directory in its hierarchy's tree; false when it is there already (another set's walk). */
function place(h: Hierarchy, node: DirNode): boolean {
  let list = h.heads;
  for (;;) {
    const d = list.find((x) => x.path === node.path || isSubpath(node.path, x.path));
    if (!d) break;
    if (d.path === node.path) return false;
    list = d.children;
  }
  list.push(node);
  return true;
}

/** cgroup_dir_entry: named relative to its parent (a head: to the hierarchy's root). */
function dirEntry(d: DirNode, parentLen: number): Msg {
  // a head is named from the hierarchy's root, a child from its parent (the root's children too)
  const name = d.path.slice(parentLen <= 1 ? 1 : parentLen + 1);
  const e: Msg = { dir_name: name };
  if (d.children.length) e.children = d.children.map((c) => dirEntry(c, d.path.length));
  if (d.props.length) e.properties = d.props;
  e.dir_perms = { mode: d.mode, uid: d.uid, gid: d.gid };
  return e;
}

// ---------------------------------------------------------------- restore

/** The restore half: directories, properties and moves of cgroup.img. */
export class CgroupRestore {
  private mounts: HierarchyMounts;
  private sets = new Map<number, Msg>();
  private controllers: Msg[];
  private dirOf = new Map<Msg, string>();
  private made: string[] = [];
  private freezer?: { prop: Msg; dir: string };
  private rootSet: number;

  private constructor(private set: ImageSet, entry: Msg, private opts: CgroupOptions, private log: Log) {
    for (const s of (entry.sets ?? []) as Msg[]) this.sets.set(num(s.id), s);
    this.controllers = (entry.controllers ?? []) as Msg[];
    this.rootSet = num(set.inventory.root_cg_set ?? 0);
    this.mounts = new HierarchyMounts(opts.yard, log, true);
  }

  /** cgroup.img of the set, or undefined when it has no cgroup sets. */
  static load(set: ImageSet, opts: CgroupOptions | undefined, log: Log): CgroupRestore | undefined {
    const file = path.join(set.dir, 'cgroup.img');
    if (!fs.existsSync(file)) return undefined;
    let msgs: Msg[];
    try {
      msgs = loadMessages(file);
    } catch (e) {
      throw new EngineError(`cgroup.img: unreadable: ${(e as Error).message}`, 'EIMAGE');
    }
    if (!msgs.length || !((msgs[0].sets ?? []) as Msg[]).length) return undefined;
    const o = opts ?? defaultCgroupOptions();
    const entry = JSON.parse(JSON.stringify(msgs[0], (_, v) => (typeof v === 'bigint' ? Number(v) : v))) as Msg;
    const r = new CgroupRestore(set, entry, o, log);
    if (o.mode !== 'ignore') r.check();
    return r;
  }

  private check(): void {
    for (const s of this.sets.values()) for (const m of (s.ctls ?? []) as Msg[]) {
      if (num(m.cgns_prefix ?? 0)) throw new ImageError('cgroup.img', `set ${s.id}`, `${m.name}:${m.path} is in a cgroup namespace (cgns_prefix ${m.cgns_prefix}); cgroup namespaces are not restored by this engine`);
      if (!this.controllerOf(m.name as string)) throw new ImageError('cgroup.img', `set ${s.id}`, `no controller entry for ${m.name}:${m.path}`);
    }
    for (const c of this.controllers) if (!((c.cnames ?? []) as string[]).length) throw new ImageError('cgroup.img', 'controllers', 'a controller entry without names');
    for (const t of this.set.tasks) {
      const id = taskSet(t);
      if (id && id !== this.rootSet && !this.sets.has(id)) throw new ImageError(`core-${t.pid}.img`, 'cg_set', `set ${id} is not in cgroup.img`);
    }
  }

  /** Before any task: the yard, --cgroup-root, the directories (by mode) and their first properties. */
  prepare(): void {
    if (this.opts.mode === 'ignore') {
      this.log.debug('cgroups ignored (--manage-cgroups=ignore)');
      return;
    }
    this.rewriteRoots();
    for (const c of this.controllers) {
      const cnames = c.cnames as string[];
      const base = this.mounts.dir(cnames.join(','), yardNameOfCnames(cnames));
      this.dirOf.set(c, base);
      this.prepareDirs(cnames, base, (c.dirs ?? []) as Msg[]);
    }
  }

  /** Moves a task just created into its set, unless it inherited it (as CRIU, before its memory exists). */
  enter(ctx: Ctx, p: Proc): void {
    if (this.opts.mode === 'ignore') return;
    const mine = taskSet(p.img);
    if (!mine) return;
    let parent = ctx.set.byPid.get(p.img.ppid);
    while (parent && !taskSet(parent)) parent = ctx.set.byPid.get(parent.ppid);
    const inherited = parent ? taskSet(parent) : this.rootSet;
    if (mine === inherited) return;
    for (const m of this.members(mine, `task ${p.img.pid}`)) this.write(m.ctrl, m.path, 'cgroup.procs', String(p.host), `task ${p.img.pid}`);
    this.log.debug(`task ${p.img.pid}: moved into cgroup set ${mine}`);
  }

  /** Threads in another set than their leader, into their cgroups of the threaded hierarchies. */
  enterThreads(p: Proc): void {
    if (this.opts.mode === 'ignore') return;
    const leader = taskSet(p.img);
    for (const [vtid, host] of p.tids) {
      if (vtid === p.img.pid) continue;
      const id = num(p.img.cores.get(vtid)?.thread_core?.cg_set ?? 0);
      if (!id || id === leader) continue;
      for (const m of this.members(id, `task ${p.img.pid} thread ${vtid}`)) {
        if (!m.ctrl.is_threaded) continue;
        this.write(m.ctrl, m.path, (m.ctrl.cnames as string[])[0] === '' ? 'cgroup.threads' : 'tasks', String(host), `task ${p.img.pid} thread ${vtid}`);
      }
    }
  }

  /** Every task in place: the other properties, then a recorded freezer state, before the tree runs. */
  finish(): void {
    if (this.opts.mode === 'ignore') return;
    for (const c of this.controllers) this.lateProps(this.dirOf.get(c)!, (c.dirs ?? []) as Msg[]);
    if (this.freezer) this.writeProp(this.freezer.dir, this.freezer.prop, false, false);
  }

  /** A failed restore: the directories it made go again (empty once its tasks are gone). */
  abort(): void {
    for (const d of this.made.splice(0).reverse()) {
      try {
        fs.rmdirSync(d);
      } catch {
        /* not empty, or in use */
      }
    }
    this.close();
  }

  close(): void {
    this.mounts.close();
  }

  private controllerOf(name: string): Msg | undefined {
    return this.controllers.find((c) => holds(c.cnames as string[], name));
  }

  private members(id: number, who: string): { ctrl: Msg; path: string }[] {
    const s = this.sets.get(id);
    if (!s) throw new EngineError(`${who}: cgroup set ${id} is not in cgroup.img`);
    return ((s.ctls ?? []) as Msg[]).map((m) => {
      const ctrl = this.controllerOf(m.name as string);
      if (!ctrl) throw new EngineError(`${who}: no controller entry for ${m.name}:${m.path} in cgroup.img`);
      return { ctrl, path: m.path as string };
    });
  }

  private write(ctrl: Msg, cgPath: string, file: string, value: string, who: string): void {
    const at = path.join(this.dirOf.get(ctrl)!, cgPath, file);
    try {
      const fd = fs.openSync(at, fs.constants.O_WRONLY);
      try {
        fs.writeSync(fd, value);
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      throw new EngineError(`${who}: cannot move into cgroup ${(ctrl.cnames as string[]).join(',') || 'cgroup2'}:${cgPath} (${at}): ${errnoOf(e)}`);
    }
  }

  /** --cgroup-root: each hierarchy's dumped heads become the new root, and the sets' paths with them. */
  private rewriteRoots(): void {
    const perController = this.opts.roots.filter((r) => r.controller !== undefined).reverse();
    const globals = this.opts.roots.filter((r) => r.controller === undefined);
    const global = globals.length ? globals[globals.length - 1].root : undefined;
    for (const c of this.controllers) {
      const cnames = c.cnames as string[];
      const left = new Set(cnames.map((_, i) => i));
      let newRoot: string | undefined;
      for (const o of perController) {
        let hit = false;
        for (const i of [...left]) {
          const match = cnames[i] === '' ? o.controller === '' : o.controller!.split(',').includes(cnames[i]);
          if (match) {
            left.delete(i);
            hit = true;
          }
        }
        if (hit) {
          if (newRoot !== undefined && newRoot !== o.root) throw new EngineError(`--cgroup-root: ${newRoot} and ${o.root} both given for the ${cnames.join(',')} hierarchy`, 'EUSAGE');
          newRoot = o.root;
        }
        if (!left.size) break;
      }
      newRoot ??= global;
      if (newRoot === undefined) continue;
      for (const d of (c.dirs ?? []) as Msg[]) {
        const dir = d.dir_name as string;
        let renamed = false;
        for (const s of this.sets.values()) for (const m of (s.ctls ?? []) as Msg[]) {
          if (!holds(cnames, m.name as string) || !(m.path as string).slice(1).startsWith(dir)) continue;
          m.path = newRoot + (m.path as string).slice(dir.length + 1);
          renamed = true;
        }
        if (renamed) {
          this.log.debug(`cgroup ${cnames.join(',') || 'cgroup2'}: ${dir || '/'} restored as ${newRoot}`);
          d.dir_name = newRoot;
        }
      }
    }
  }

  private prepareDirs(cnames: string[], parentAbs: string, dirs: Msg[]): void {
    const mode = this.opts.mode;
    const label = cnames.join(',') || 'cgroup2';
    for (const e of dirs) {
      const abs = path.join(parentAbs, e.dir_name as string);
      if (fs.existsSync(abs)) {
        if (mode === 'strict') throw new EngineError(`cgroup ${label} ${abs} exists already (--manage-cgroups=strict)`);
        if (mode === 'soft' || mode === 'none') {
          if (((e.properties ?? []) as Msg[]).length) this.log.debug(`cgroup ${abs} exists: its properties are kept (--manage-cgroups=${mode})`);
          e.properties = [];
        }
        if (mode !== 'none') chperm(abs, e.dir_perms as Msg | undefined);
      } else {
        if (mode === 'none' || mode === 'props') throw new EngineError(`cgroup ${label} ${abs} does not exist (--manage-cgroups=${mode} creates none)`);
        this.mkdirs(abs);
        this.log.debug(`cgroup ${abs} created`);
        chperm(abs, e.dir_perms as Msg | undefined);
        for (const p of (e.properties ?? []) as Msg[]) if (BEFORE_TASKS.has(p.name as string)) this.firstProp(abs, p);
      }
      this.prepareDirs(cnames, abs, (e.children ?? []) as Msg[]);
    }
  }

  private mkdirs(abs: string): void {
    const missing: string[] = [];
    for (let d = abs; !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
    for (const d of missing) {
      try {
        fs.mkdirSync(d, 0o755);
        this.made.push(d);
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw new EngineError(`cannot make cgroup ${d}: ${errnoOf(e)}`);
      }
    }
  }

  /** The properties set as the directory is made. */
  private firstProp(dir: string, p: Msg): void {
    if (p.name === 'memory.swappiness' && p.value === '60') return;
    if (p.name === 'memory.oom_control' && p.value === '0') return;
    if (p.name === 'devices.list') {
      // the allow list is rebuilt from nothing: deny all, then allow each line (one per write)
      const perms = p.perms ? { ...(p.perms as Msg), mode: 0o200 } : undefined;
      this.writeProp(dir, { name: 'devices.deny', value: 'a', perms }, false, false);
      if (p.value === '') return;
      this.writeProp(dir, { name: 'devices.allow', value: p.value, perms }, true, false);
      return;
    }
    this.writeProp(dir, p, false, false);
  }

  private lateProps(parentAbs: string, dirs: Msg[]): void {
    for (const e of dirs) {
      const abs = path.join(parentAbs, e.dir_name as string);
      // a hierarchy's root cgroup keeps its properties
      if (e.dir_name !== '') for (const p of (e.properties ?? []) as Msg[]) {
        const name = p.name as string;
        if (name === 'freezer.state') {
          this.freezer = { prop: p, dir: this.freezer ? commonDir(this.freezer.dir, abs) : abs };
          continue;
        }
        if (BEFORE_TASKS.has(name)) continue;
        if (name === 'net_prio.ifpriomap') {
          const lines = ifpriomapLines(p.value as string, abs);
          if (lines.length) this.writeProp(abs, { ...p, value: lines.join('\n') }, true, true);
          continue;
        }
        this.writeProp(abs, p, false, false);
      }
      this.lateProps(abs, (e.children ?? []) as Msg[]);
    }
  }

  private writeProp(dir: string, p: Msg, splitLines: boolean, skipFails: boolean): void {
    const name = p.name as string;
    const value = p.value as string | undefined;
    const file = path.join(dir, name);
    if (value === undefined) throw new ImageError('cgroup.img', `${dir} ${name}`, 'a property without a value');
    const subtree = name === 'cgroup.subtree_control';
    let fd: number;
    try {
      fd = fs.openSync(file, subtree ? fs.constants.O_RDWR : fs.constants.O_WRONLY);
    } catch (e) {
      throw new EngineError(`cgroup property ${file}: ${errnoOf(e)}`);
    }
    try {
      chpermFd(fd, file, p.perms as Msg | undefined);
      if (name === 'cgroup.procs' || name === 'tasks') return;
      if (name === 'cgroup.type' && value !== 'threaded') return;
      if (subtree) {
        const buf = Buffer.alloc(1024);
        const now = buf.toString('utf8', 0, fs.readSync(fd, buf, 0, 1023, null)).replace(/\n$/, '');
        const words = [...(now ? now.split(' ').map((w) => `-${w}`) : []), ...(value ? value.split(' ').map((w) => `+${w}`) : [])];
        this.put(fd, file, words.join(' '), false);
        return;
      }
      if (splitLines) {
        for (const line of value.split('\n')) this.put(fd, file, line, skipFails);
        this.log.debug(`cgroup property ${file} = ${JSON.stringify(value)} (line by line)`);
        return;
      }
      try {
        fs.writeSync(fd, value);
      } catch (e) {
        // deprecated by the kernel (58056f77502f3): its value cannot be set at all any more
        if (!(errnoOf(e) === 'EOPNOTSUPP' && name === 'memory.kmem.limit_in_bytes')) throw new EngineError(`cannot write ${JSON.stringify(value)} to ${file}: ${errnoOf(e)}`);
      }
      this.log.debug(`cgroup property ${file} = ${JSON.stringify(value)}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  private put(fd: number, file: string, text: string, skipFails: boolean): void {
    try {
      fs.writeSync(fd, text);
    } catch (e) {
      if (!skipFails) throw new EngineError(`cannot write ${JSON.stringify(text)} to ${file}: ${errnoOf(e)}`);
      this.log.warn(`cgroup property ${file}: ${JSON.stringify(text)} not taken: ${errnoOf(e)}`);
    }
  }
}

/** The set a task is restored into (0: none, e.g. a zombie, which stays with its parent). */
function taskSet(t: TaskImage): number {
  if (t.state === TASK_DEAD || t.state === TASK_ZOMBIE) return 0;
  const tc = t.leader.thread_core;
  return num(tc?.cg_set ?? t.leader.tc?.cg_set ?? 0);
}

/** ifpriomap lines with a priority: a new cgroup has 0 for every interface. */
function ifpriomapLines(value: string, dir: string): string[] {
  if (value === '') return [];
  return value.split('\n').filter((l) => {
    const sp = l.indexOf(' ');
    if (sp < 0) throw new ImageError('cgroup.img', `${dir} net_prio.ifpriomap`, `invalid line ${JSON.stringify(l)}`);
    return (parseInt(l.slice(sp + 1), 10) || 0) !== 0;
  });
}

function commonDir(a: string, b: string): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

function chperm(abs: string, perms: Msg | undefined): void {
  if (!perms) return;
  const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    chpermFd(fd, abs, perms);
  } finally {
    fs.closeSync(fd);
  }
}

/** Owner, then mode, as dumped; an owner that cannot be given is an error. */
function chpermFd(fd: number, file: string, perms: Msg | undefined): void {
  if (!perms) return;
  const uid = num(perms.uid), gid = num(perms.gid), mode = num(perms.mode);
  try {
    fs.fchownSync(fd, uid, gid);
  } catch (e) {
    if (errnoOf(e) !== 'EPERM') throw new EngineError(`cannot give ${file} to ${uid}:${gid}: ${errnoOf(e)}`);
  }
  const st = fs.fstatSync(fd);
  if (st.uid !== uid || st.gid !== gid) throw new EngineError(`cannot give ${file} to ${uid}:${gid} (it stays ${st.uid}:${st.gid})`);
  if (st.mode !== mode) fs.fchmodSync(fd, mode & 0o7777);
}
