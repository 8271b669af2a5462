// The engine core's calls into the plugin host, kept here so that dump and restore need only a
// line each: fds and mappings the core cannot handle go to the plugins before it gives up.
import { VMA } from '../../images/flags';
import * as fs from 'fs';
import { native } from '../../native';
import type { Msg } from '../../images/codec';
import { EngineError } from '../errors';
import { NOT_MINE, PluginHost } from './host';
import { engineHost } from './index';
import { openExtFiles, ExtOpen } from './schedule';

export const FD_TYPE_EXT = 16;
/** vma_entry.status bit: the mapping belongs to a plugin (contents not dumped) */
/** CRIU's VMA_EXT_PLUGIN status bit (images/flags.ts) */
export const VMA_EXT_PLUGIN = VMA.EXT_PLUGIN;

/** DUMP_EXT_FILE on a duplicate of the task's fd; true when a plugin took it */
export function dumpExtFile(host: PluginHost | undefined, pidfd: number, pid: number, fd: number, id: number, link: string): boolean {
  if (!host || !host.names.length) return false;
  const dup = native().pidfdGetfd(pidfd, fd);
  try {
    return host.run('DUMP_EXT_FILE', { fd: dup, id, pid, fdNum: fd, link }) !== NOT_MINE;
  } finally {
    native().close(dup);
  }
}

/** HANDLE_DEVICE_VMA for a mapping of a character device; true when a plugin took it */
export function deviceVma(host: PluginHost | undefined, pid: number, path: string, start: bigint, end: bigint, pgoff: bigint): boolean {
  if (!host || !host.names.length || !path.startsWith('/dev/')) return false;
  let rdev: number;
  try {
    const st = fs.statSync(`/proc/${pid}/map_files/${start.toString(16)}-${end.toString(16)}`);
    if (!st.isCharacterDevice()) return false;
    rdev = st.rdev;
  } catch {
    return false;
  }
  return host.run('HANDLE_DEVICE_VMA', { pid, path, start, end, pgoff, rdev }) !== NOT_MINE;
}

/**
 * Restore, before any task exists: the inventory decides which plugins run (a listed one that
 * cannot load refuses the restore), then RESTORE_INIT. The caller ends it with exit().
 */
export function restorePlugins(inventory: Msg, imagesDir: string, log: (msg: string) => void): PluginHost {
  const host = engineHost('restore', imagesDir, log);
  host.applyInventory(inventory);
  host.init();
  try {
    host.call('RESTORE_INIT');
  } catch (e) {
    host.exit(true);
    throw e;
  }
  return host;
}

/** what restoreDevices needs of the image set (engine/restore's ImageSet has it) */
export interface DeviceImages {
  tasks: { pid: number; fdinfo?: Msg[]; mm?: Msg }[];
  files: Map<number, Msg>;
}

export interface DeviceMapping {
  /** an engine fd to map through (DeviceFiles owns it) */
  fd: number;
  /** the offset to map it at, in bytes */
  pgoff: bigint;
}

/** The EXT files and device mappings of a restore, made by the plugins in the engine's process. */
export class DeviceFiles {
  /** files.img id -> engine fd on the restored file */
  readonly files = new Map<number, number>();
  /** pid -> index in mm-<pid>.img vmas -> how to map it */
  readonly vmas = new Map<number, Map<number, DeviceMapping>>();

  fileFd(id: number): number | undefined {
    return this.files.get(id);
  }

  vmasOf(pid: number): Map<number, DeviceMapping> {
    return this.vmas.get(pid) ?? new Map();
  }

  close(): void {
    const fds = [...this.files.values(), ...[...this.vmas.values()].flatMap((m) => [...m.values()].map((v) => v.fd))];
    this.files.clear();
    this.vmas.clear();
    for (const fd of fds) try { native().close(fd); } catch { /* closed */ }
  }
}

const num = (v: unknown): number => (v === undefined || v === null ? 0 : Number(v));
const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));

/**
 * Restore, after RESTORE_INIT and before any task exists: every EXT file is opened by its plugin
 * (with the retry schedule: an importer waits for its exporter), then every VMA_EXT_PLUGIN
 * mapping is asked of UPDATE_VMA_MAP. Whatever no plugin takes is refused here, so a refusal
 * creates no process; a device mapping is never reopened by its path (a new open of a render
 * node is a new drm file that may not map the buffer).
 */
export function restoreDevices(host: PluginHost, set: DeviceImages, deadlineMs?: number): DeviceFiles {
  const out = new DeviceFiles();
  try {
    const opens: ExtOpen[] = [];
    const seen = new Set<number>();
    for (const t of set.tasks) for (const e of t.fdinfo ?? []) {
      const id = num(e.id);
      if (num(set.files.get(id)?.type) !== FD_TYPE_EXT || seen.has(id)) continue;
      seen.add(id);
      if (!host.names.length) throw new EngineError(`files.img: id ${id}: fd ${e.fd} of task ${t.pid} is a device plugin's file (EXT) and no plugin is loaded (no amdgpu render node here?)`, 'EPLUGIN');
      opens.push({ pid: t.pid, fd: num(e.fd), id });
    }
    if (opens.length) openExtFiles(host, opens, { deadlineMs, opened: (o, fd) => out.files.set(o.id, fd) });
    for (const t of set.tasks) {
      ((t.mm?.vmas ?? []) as Msg[]).forEach((v, i) => {
        if (!(num(v.status) & VMA_EXT_PLUGIN)) return;
        const start = big(v.start), end = big(v.end);
        const name = (set.files.get(num(v.shmid))?.reg?.name as string | undefined) ?? `file id ${v.shmid}`;
        const where = `mm-${t.pid}.img: vmas[${i}]`;
        const r = host.names.length ? host.run('UPDATE_VMA_MAP', { pid: t.pid, path: name, start, end, pgoff: big(v.pgoff) }) : NOT_MINE;
        if (r === NOT_MINE) throw new EngineError(`${where}: the mapping of ${name} at 0x${start.toString(16)} belongs to a device plugin (VMA_EXT_PLUGIN) and no loaded plugin restores it`, 'EPLUGIN');
        if (r.fd === undefined) throw new EngineError(`${where}: the plugin gave no file to map ${name} at 0x${start.toString(16)} through`, 'EPLUGIN');
        if (!out.vmas.has(t.pid)) out.vmas.set(t.pid, new Map());
        out.vmas.get(t.pid)!.set(i, { fd: r.fd, pgoff: r.pgoff });
      });
    }
  } catch (e) {
    out.close();
    throw e;
  }
  return out;
}
