// The restore's device step (engine/plugins/glue restoreDevices): EXT files opened by their
// plugin with the retry schedule and VMA_EXT_PLUGIN mappings resolved through UPDATE_VMA_MAP,
// in the engine before any task exists; what no plugin takes is refused by name, and a refusal
// leaves no fd behind.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import type { Msg } from '../../images/codec';
import { PluginHost, NOT_MINE, Plugin } from '../../engine/plugins/host';
import { restoreDevices, FD_TYPE_EXT, VMA_EXT_PLUGIN } from '../../engine/plugins/glue';
import { SUPPORTED_FILES, VMA } from '../../engine/restore/imageset';

/** fds the fake plugins open, to check that each is closed again */
const made: number[] = [];
const mk = (p: string) => { const fd = fs.openSync(p, 'r'); made.push(fd); return fd; };
const isOpen = (fd: number) => { try { fs.fstatSync(fd); return true; } catch { return false; } };
const allClosed = () => { const open = made.filter(isOpen); made.length = 0; return open; };

function images(vmaStatus = VMA.REGULAR | VMA.FILE_SHARED | VMA_EXT_PLUGIN) {
  const files = new Map<number, Msg>([
    [1, { type: FD_TYPE_EXT, id: 1, ext: { id: 1 } }],
    [2, { type: FD_TYPE_EXT, id: 2, ext: { id: 2 } }],
    [3, { type: 1, id: 3, reg: { id: 3, name: '/dev/dri/renderD128', flags: 2 } }],
  ]);
  return {
    files,
    tasks: [
      // task 200 imports what task 100 exports, and is listed first
      { pid: 200, fdinfo: [{ id: 2, fd: 5 }], mm: { vmas: [] as Msg[] } },
      { pid: 100, fdinfo: [{ id: 1, fd: 4 }, { id: 3, fd: 9 }], mm: { vmas: [{ start: 0x10000n, end: 0x12000n, pgoff: 0x1_0000_2000n, shmid: 3, status: vmaStatus }] } },
    ],
  };
}

function host(p?: Plugin): PluginHost {
  const h = new PluginHost('restore', '/nonexistent');
  if (p) h.register(p);
  h.init();
  return h;
}

describe('restore: device files and mappings come from plugins', () => {
  it('EXT (type 16) is a supported file kind, and bit 27 is VMA.EXT_PLUGIN', () => {
    expect(SUPPORTED_FILES.has(16)).toBe(true);
    expect(VMA.EXT_PLUGIN).toBe(0x8000000);
    expect(VMA_EXT_PLUGIN).toBe(VMA.EXT_PLUGIN);
  });

  it('opens every EXT file once (importer waits for exporter) and maps through the fd and offset the plugin gives', () => {
    const calls: string[] = [];
    let exported = false;
    const h = host({
      name: 'fake',
      hooks: {
        RESTORE_EXT_FILE(id) {
          calls.push(`open ${id}`);
          if (id === 2 && !exported) return { retry: true };
          if (id === 1) { exported = true; h.env.notify(); }
          return { fd: mk('/dev/null') };
        },
        UPDATE_VMA_MAP(a) {
          calls.push(`map ${a.pid} ${a.path} 0x${a.start.toString(16)} 0x${a.pgoff.toString(16)}`);
          return { pgoff: a.pgoff + 0x100000n, fd: mk('/dev/zero') };
        },
      },
    });
    const d = restoreDevices(h, images());
    expect(calls).toEqual(['open 2', 'open 1', 'open 2', 'map 100 /dev/dri/renderD128 0x10000 0x100002000']);
    expect([...d.files.keys()].sort()).toEqual([1, 2]);
    expect(fs.readlinkSync(`/proc/self/fd/${d.fileFd(1)}`)).toBe('/dev/null');
    const m = d.vmasOf(100).get(0)!;
    expect(m.pgoff).toBe(0x1_0010_2000n);
    expect(fs.readlinkSync(`/proc/self/fd/${m.fd}`)).toBe('/dev/zero');
    expect(d.vmasOf(200).size).toBe(0);
    expect(made.length).toBe(3);
    expect(made.every(isOpen)).toBe(true);
    d.close();
    expect(allClosed()).toEqual([]);
  });

  it('no plugin: an EXT file and a bit-27 mapping are refused by name, never opened by path', () => {
    expect(() => restoreDevices(host(), images())).toThrow(/^files\.img: id 2: fd 5 of task 200 is a device plugin's file \(EXT\) and no plugin is loaded/);
    const noFiles = images();
    noFiles.tasks.forEach((t) => { t.fdinfo = t.fdinfo.filter((e) => e.id === 3); });
    expect(() => restoreDevices(host(), noFiles)).toThrow(/^mm-100\.img: vmas\[0\]: the mapping of \/dev\/dri\/renderD128 at 0x10000 belongs to a device plugin \(VMA_EXT_PLUGIN\) and no loaded plugin restores it$/);
    // a plain file mapping is none of this step's business
    expect(restoreDevices(host(), { ...images(VMA.REGULAR | VMA.FILE_SHARED), tasks: noFiles.tasks.map((t) => ({ ...t, mm: { vmas: [{ ...(images().tasks[1].mm.vmas[0]), status: VMA.REGULAR | VMA.FILE_SHARED }] } })) }).vmas.size).toBe(0);
  });

  it('a plugin that declines the mapping, or gives no fd: refused, and the files already opened are closed', () => {
    const opener = (map: Plugin['hooks']['UPDATE_VMA_MAP']): Plugin => ({
      name: 'p', hooks: { RESTORE_EXT_FILE: () => ({ fd: mk('/dev/null') }), UPDATE_VMA_MAP: map },
    });
    expect(() => restoreDevices(host(opener(() => NOT_MINE)), images())).toThrow(/no loaded plugin restores it/);
    expect(allClosed()).toEqual([]);
    expect(() => restoreDevices(host(opener((a) => ({ pgoff: a.pgoff }))), images())).toThrow(/^mm-100\.img: vmas\[0\]: the plugin gave no file to map \/dev\/dri\/renderD128 at 0x10000 through$/);
    expect(allClosed()).toEqual([]);
    // an exporter that never comes: the schedule's bounded refusal, nothing left open
    expect(() => restoreDevices(host({ name: 'p', hooks: { RESTORE_EXT_FILE: (id) => (id === 1 ? { fd: mk('/dev/null') } : { retry: true }) } }), images()))
      .toThrow(/task 200 fd 5 \(file id 2\) waits for a buffer no task will provide/);
    expect(allClosed()).toEqual([]);
  });
});
