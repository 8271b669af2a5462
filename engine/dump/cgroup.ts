// cgroup sets: tasks in the engine's own cgroups share set 1 and, as with CRIU, no cgroup.img
// is written. Tasks elsewhere get a set of their own, and cgroup.img records every set and, per
// controller hierarchy, the directories they use (without controller properties: not dumped yet).
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { readProc } from '../proc/read';

interface Member {
  name: string;
  path: string;
}

function parseCgroups(text: string): Member[] {
  const out: Member[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    // the v2 hierarchy has no controller list; CRIU names it "unified"
    out.push({ name: m[2] === '' ? 'unified' : m[2], path: m[3] });
  }
  return out;
}

export class CgroupSets {
  private sets: { id: number; key: string; members: Member[] }[] = [];

  constructor() {
    const own = parseCgroups(fs.readFileSync('/proc/self/cgroup', 'utf8'));
    this.sets.push({ id: 1, key: JSON.stringify(own), members: own });
  }

  /** cg_set id of pid's cgroups */
  setOf(pid: number): number {
    const members = parseCgroups(readProc(pid, 'cgroup'));
    const key = JSON.stringify(members);
    let s = this.sets.find((x) => x.key === key);
    if (!s) {
      s = { id: this.sets.length + 1, key, members };
      this.sets.push(s);
    }
    return s.id;
  }

  /** cgroup_entry, or undefined when every task is in the engine's cgroups. */
  entry(): Msg | undefined {
    if (this.sets.length === 1) return undefined;
    const dirs = new Map<string, Set<string>>();
    for (const s of this.sets) for (const m of s.members) {
      let d = dirs.get(m.name);
      if (!d) dirs.set(m.name, (d = new Set()));
      d.add(m.path);
    }
    return {
      sets: this.sets.map((s) => ({ id: s.id, ctls: s.members.map((m) => ({ name: m.name, path: m.path })) })),
      controllers: [...dirs].map(([name, paths]) => ({
        cnames: name.split(','),
        dirs: [...paths].filter((p) => p !== '/').sort().map((p) => ({ dir_name: p.replace(/^\//, '') })),
      })),
    };
  }
}
