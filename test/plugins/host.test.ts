// The plugin host's dispatch (CRIU's run_plugins: NOT_MINE passes on, anything else decides,
// errors stop the walk), the inventory plugin list, and the retry schedule's wake-ups and bounds.
import { describe, it, expect } from 'vitest';
import { PluginHost, NOT_MINE, Plugin, PluginError } from '../../engine/plugins/host';
import { openExtFiles } from '../../engine/plugins/schedule';

const P = (name: string, hooks: Plugin['hooks']): Plugin => ({ name, hooks });

describe('plugin host', () => {
  it('walks plugins in load order; NOT_MINE passes, a value or an error stops', () => {
    const seen: string[] = [];
    const h = new PluginHost('restore', '/nonexistent');
    h.register(P('a', { RESTORE_EXT_FILE: () => { seen.push('a'); return NOT_MINE; } }));
    h.register(P('b', { RESTORE_EXT_FILE: (id) => { seen.push('b'); return id === 1 ? { fd: 7 } : NOT_MINE; } }));
    h.register(P('c', { RESTORE_EXT_FILE: () => { seen.push('c'); throw new Error('boom'); } }));
    h.init();
    expect(h.run('RESTORE_EXT_FILE', 1)).toEqual({ fd: 7 });
    expect(seen).toEqual(['a', 'b']);
    expect(() => h.run('RESTORE_EXT_FILE', 2)).toThrow(PluginError);
    expect(() => h.run('RESTORE_EXT_FILE', 2)).toThrow(/^c: RESTORE_EXT_FILE: boom$/);
    expect(h.run('UPDATE_VMA_MAP', { pid: 1, path: '/x', start: 0n, end: 1n, pgoff: 0n })).toBe(NOT_MINE);
  });

  it('records the plugins that claimed files or mappings for the inventory', () => {
    const h = new PluginHost('dump', '/tmp');
    h.register(P('idle', { DUMP_EXT_FILE: () => NOT_MINE }));
    h.register(P('gpu', { DUMP_EXT_FILE: () => undefined, DUMP_DEVICES_LATE: () => undefined }));
    h.init();
    expect(h.inventoryEntry()).toEqual({});
    h.call('DUMP_DEVICES_LATE', 1);
    expect(h.inventoryEntry()).toEqual({});
    h.run('DUMP_EXT_FILE', { fd: 3, id: 1, pid: 1, fdNum: 3, link: '/dev/x' });
    expect(h.inventoryEntry()).toEqual({ plugins: ['gpu'] });
  });

  it('restore: a listed plugin that is not loaded refuses; unlisted plugins stay idle; no field 12 enables all', () => {
    const mk = () => new PluginHost('restore', '/tmp').register(P('a', { RESTORE_INIT: () => undefined })).register(P('b', {}));
    expect(() => mk().applyInventory({ plugins_entry: { plugins: ['a', 'cuda_plugin'] } })).toThrow(/missing required plugin cuda_plugin/);
    const h = mk();
    h.applyInventory({ plugins_entry: { plugins: ['b'] } });
    expect(h.isEnabled('a')).toBe(false);
    expect(h.isEnabled('b')).toBe(true);
    const all = mk();
    all.applyInventory({ img_version: 2 });
    expect(all.isEnabled('a') && all.isEnabled('b')).toBe(true);
    const none = mk();
    none.applyInventory({ plugins_entry: {} });
    expect(none.isEnabled('a') || none.isEnabled('b')).toBe(false);
  });

  it('retry schedule: a waiting task is woken by notify, and a wait nobody can end fails at once', () => {
    const published = new Set<number>();
    const h = new PluginHost('restore', '/tmp');
    h.register(P('x', {
      RESTORE_EXT_FILE: (id) => {
        if (id === 10) { published.add(10); h.env.notify(); return { fd: 100 }; }
        if (id === 20) return published.has(10) ? { fd: 200 } : { retry: true };
        return { retry: true };
      },
    }));
    h.init();
    const got: [number, number][] = [];
    // the importer (task 2) goes first and must wait for the exporter (task 1)
    openExtFiles(h, [{ pid: 2, fd: 3, id: 20 }, { pid: 1, fd: 4, id: 10 }], { opened: (o, fd) => got.push([o.id, fd]) });
    expect(got).toEqual([[10, 100], [20, 200]]);
    const t0 = Date.now();
    expect(() => openExtFiles(h, [{ pid: 2, fd: 5, id: 30 }], { opened: () => {} })).toThrow(/task 2 fd 5 \(file id 30\) waits for a buffer no task will provide/);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(() => openExtFiles(h, [{ pid: 2, fd: 5, id: 30 }, { pid: 3, fd: 1, id: 40 }], { opened: () => {}, deadlineMs: -1 })).toThrow(/timed out/);
  });
});
