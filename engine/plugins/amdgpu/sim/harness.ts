// The engine core's part of a dump and a restore, played on the simulator: tasks' fds go to
// DUMP_EXT_FILE (drained into the engine's process), device mappings to HANDLE_DEVICE_VMA, and
// CRIU images (inventory, pstree, files, fdinfo, mm) are written as the engine writes them; the
// restore reads them back, calls RESTORE_INIT before any task exists, opens EXT files with the
// retry schedule, hands fds to tasks and maps device VMAs through UPDATE_VMA_MAP.
import { VMA } from '../../../../images/flags';
import * as fs from 'fs';
import * as path from 'path';
import { writeImage, loadMessages } from '../../../../images/files';
import type { Msg } from '../../../../images/codec';
import { EngineError } from '../../../errors';
import { PluginHost, Plugin, NOT_MINE } from '../../host';
import { openExtFiles, ExtOpen } from '../../schedule';
import { amdgpuPlugin, AmdgpuOptions } from '../plugin';
import type { SimKernel } from './kernel';
import type { SimOpenFile } from './model';

/** the engine's own process in the simulated machine */
export const ENGINE_PID = 1;
export const FD_EXT = 16, FD_REG = 1;
export const VMA_EXT_PLUGIN = VMA.EXT_PLUGIN;
const VMA_REGULAR = VMA.REGULAR, VMA_FILE_SHARED = VMA.FILE_SHARED, MAP_SHARED = 1;

export type SimPluginOptions = Omit<AmdgpuOptions, 'sys'>;

const zeroFown = () => ({ uid: 0, euid: 0, signum: 0, pid_type: 0, pid: 0 });

function ensureEngine(k: SimKernel): void {
  if (!k.procs.has(ENGINE_PID)) k.spawn(ENGINE_PID);
}

export interface SimDumpOptions {
  plugin?: SimPluginOptions;
  /** plugins loaded before amdgpu (for dispatch tests) */
  before?: Plugin[];
}

export function simDump(k: SimKernel, pids: number[], dir: string, o: SimDumpOptions = {}): PluginHost {
  ensureEngine(k);
  fs.mkdirSync(dir, { recursive: true });
  const host = new PluginHost('dump', dir);
  for (const p of o.before ?? []) host.register(p);
  host.register(amdgpuPlugin({ sys: k.sys(ENGINE_PID), vmFlags: k.switches.vmFlags, ...o.plugin }));
  host.init();
  try {
    const files: Msg[] = [];
    const ids = new Map<SimOpenFile, number>();
    const regIds = new Map<string, number>();
    let nextId = 1;
    const images: [string, string, Msg][] = [];
    for (const pid of pids) {
      const p = k.proc(pid);
      const fdinfo: Msg[] = [];
      for (const fd of [...p.fds.keys()].sort((a, b) => a - b)) {
        const e = p.fds.get(fd)!;
        let id = ids.get(e.file);
        if (id === undefined) {
          id = nextId++;
          ids.set(e.file, id);
          const drained = k.getfd(pid, fd, ENGINE_PID);
          try {
            const r = host.run('DUMP_EXT_FILE', { fd: drained, id, pid, fdNum: fd, link: e.file.path });
            if (r === NOT_MINE) throw new EngineError(`task ${pid} fd ${fd}: can't dump file ${e.file.path} of that type`, 'EUNSUPPORTED');
          } finally {
            k.close(ENGINE_PID, drained);
          }
          files.push({ type: FD_EXT, id, ext: { id, fown: zeroFown() } });
        }
        fdinfo.push({ id, flags: e.cloexec ? 1 : 0, type: FD_EXT, fd });
      }
      const vmas: Msg[] = [];
      for (const v of p.vmas) {
        const st = k.fstat(v.file);
        const r = host.run('HANDLE_DEVICE_VMA', { pid, path: v.file.path, start: v.start, end: v.end, pgoff: v.pgoff, rdev: st.rdev });
        if (r === NOT_MINE) throw new EngineError(`task ${pid}: mapping of ${v.file.path} at 0x${v.start.toString(16)} is not supported`, 'EUNSUPPORTED');
        let shmid = regIds.get(v.file.path);
        if (shmid === undefined) {
          shmid = nextId++;
          regIds.set(v.file.path, shmid);
          files.push({ type: FD_REG, id: shmid, reg: { id: shmid, flags: 2, pos: 0n, fown: zeroFown(), name: v.file.path } });
        }
        vmas.push({ start: v.start, end: v.end, pgoff: v.pgoff, shmid, prot: 3, flags: MAP_SHARED, status: VMA_REGULAR | VMA_FILE_SHARED | VMA_EXT_PLUGIN, fd: -1 });
      }
      images.push([`fdinfo-${pid}.img`, 'FDINFO', fdinfo as unknown as Msg]);
      images.push([`mm-${pid}.img`, 'MM', {
        mm_start_code: 0n, mm_end_code: 0n, mm_start_data: 0n, mm_end_data: 0n, mm_start_stack: 0n, mm_start_brk: 0n, mm_brk: 0n,
        mm_arg_start: 0n, mm_arg_end: 0n, mm_env_start: 0n, mm_env_end: 0n, exe_file_id: 0, vmas,
      }]);
    }
    host.call('DUMP_DEVICES_LATE', pids[0]);
    for (const [name, magic, msg] of images) writeImage(path.join(dir, name), magic, Array.isArray(msg) ? (msg as Msg[]).map((m) => ({ msg: m })) : [{ msg }]);
    writeImage(path.join(dir, 'pstree.img'), 'PSTREE', pids.map((pid) => ({ msg: { pid, ppid: pid === pids[0] ? 0 : pids[0], pgid: pids[0], sid: pids[0], threads: [pid] } })));
    writeImage(path.join(dir, 'files.img'), 'FILES', files.map((msg) => ({ msg })));
    writeImage(path.join(dir, 'inventory.img'), 'INVENTORY', [{ msg: { img_version: 2, fdinfo_per_id: true, ns_per_id: true, plugins_entry: host.inventoryEntry() } }]);
  } catch (e) {
    host.exit(true);
    throw e;
  }
  host.exit(false);
  return host;
}

export interface SimRestoreOptions {
  plugin?: SimPluginOptions;
  before?: Plugin[];
  /** seeded interleaving of the tasks' EXT opens (default: pstree order, round robin) */
  seed?: number;
  /** tasks take turns in this order (default: pstree order) */
  order?: number[];
  deadlineMs?: number;
}

export function simRestore(k: SimKernel, dir: string, o: SimRestoreOptions = {}): PluginHost {
  ensureEngine(k);
  const inventory = loadMessages(path.join(dir, 'inventory.img'))[0];
  const pstree = loadMessages(path.join(dir, 'pstree.img'));
  const files = new Map<number, Msg>(loadMessages(path.join(dir, 'files.img')).map((f) => [Number(f.id), f]));
  const host = new PluginHost('restore', dir);
  for (const p of o.before ?? []) host.register(p);
  host.register(amdgpuPlugin({ sys: k.sys(ENGINE_PID), vmFlags: k.switches.vmFlags, ...o.plugin }));
  host.applyInventory(inventory);
  host.init();
  const created: number[] = [];
  const held = new Map<number, number>();
  try {
    host.call('RESTORE_INIT');
    const tasks = pstree.map((p) => Number(p.pid));
    for (const pid of tasks) { k.spawn(pid); created.push(pid); }
    host.call('POST_FORKING');
    const fdinfo = new Map(tasks.map((pid) => [pid, loadMessages(path.join(dir, `fdinfo-${pid}.img`))]));
    const opens: ExtOpen[] = [];
    const seen = new Set<number>();
    for (const pid of o.order ?? tasks) for (const e of fdinfo.get(pid)!) {
      if (Number(files.get(Number(e.id))?.type) !== FD_EXT) throw new EngineError(`fdinfo-${pid}.img: fd ${e.fd}: only EXT files are simulated`);
      if (seen.has(Number(e.id))) continue;
      seen.add(Number(e.id));
      opens.push({ pid, fd: Number(e.fd), id: Number(e.id) });
    }
    openExtFiles(host, opens, { seed: o.seed, deadlineMs: o.deadlineMs, opened: (x, fd) => held.set(x.id, fd) });
    for (const pid of tasks) for (const e of fdinfo.get(pid)!) k.give(ENGINE_PID, held.get(Number(e.id))!, pid, Number(e.fd), (Number(e.flags) & 1) !== 0);
    for (const fd of held.values()) k.close(ENGINE_PID, fd);
    held.clear();
    for (const pid of tasks) {
      const mm = loadMessages(path.join(dir, `mm-${pid}.img`))[0];
      for (const v of (mm.vmas ?? []) as Msg[]) {
        if (!(Number(v.status) & VMA_EXT_PLUGIN)) continue;
        const name = files.get(Number(v.shmid))?.reg?.name as string;
        const start = BigInt(v.start), end = BigInt(v.end);
        const r = host.run('UPDATE_VMA_MAP', { pid, path: name, start, end, pgoff: BigInt(v.pgoff) });
        if (r === NOT_MINE || r.fd === undefined) throw new EngineError(`task ${pid}: no plugin maps ${name} at 0x${start.toString(16)}`);
        try {
          k.mmapFile(pid, k.file(ENGINE_PID, r.fd), start, end - start, r.pgoff);
        } finally {
          k.close(ENGINE_PID, r.fd);
        }
      }
    }
    for (const pid of tasks) host.call('RESUME_DEVICES_LATE', pid);
  } catch (e) {
    for (const fd of held.values()) k.close(ENGINE_PID, fd);
    for (const pid of created) k.exit(pid);
    host.exit(true);
    throw e;
  }
  host.exit(false);
  return host;
}
