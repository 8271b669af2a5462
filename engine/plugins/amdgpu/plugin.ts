// amdgpu_plugin: the hooks (spec §1.6) over the dump and restore halves. Claims only what is
// an amdgpu device's (D17): other render nodes, unknown dma-bufs and foreign mappings are
// answered NOT_MINE so that the next plugin is asked.
import { NOT_MINE, Plugin, PluginEnv, DumpFileArgs, DeviceVmaArgs } from '../host';
import { DeviceSys, S_IFMT, S_IFCHR, major, minor } from './backend';
import { DRM_MAJOR } from './structs';
import { AmdgpuDumper } from './dump';
import { AmdgpuRestorer } from './restore';

export const AMDGPU_PLUGIN = 'amdgpu_plugin';

export interface AmdgpuOptions {
  sys: DeviceSys;
  /** what GET_MAPPING_INFO reports on this kernel (D5); default 'pte', as the kernel sources read */
  vmFlags?: 'uapi' | 'pte';
  /** unit of LIST_HANDLES' alignment (D14); default 4096 (pages) */
  alignmentUnit?: number;
  chunk?: number;
}

export function amdgpuPlugin(opts: AmdgpuOptions): Plugin {
  const sys = opts.sys;
  const cfg = { vmFlags: opts.vmFlags ?? 'pte', alignmentUnit: opts.alignmentUnit ?? 4096, chunk: opts.chunk } as const;
  let env: PluginEnv | undefined;
  let dumper: AmdgpuDumper | undefined;
  let restorer: AmdgpuRestorer | undefined;
  let restoring = false;
  const d = () => (dumper ??= new AmdgpuDumper(sys, env!.imagesDir, cfg));
  const r = () => (restorer ??= new AmdgpuRestorer(sys, env!.imagesDir, cfg, () => env!.notify()));

  const isKfd = (rdev: number) => {
    const k = sys.stat('/dev/kfd');
    return k !== undefined && k.rdev === rdev;
  };
  const isRenderNode = (rdev: number) => major(rdev) === DRM_MAJOR && minor(rdev) >= 128 && sys.driverOf(rdev) === 'amdgpu';

  return {
    name: AMDGPU_PLUGIN,
    init(e) {
      env = e;
    },
    exit(failed) {
      try {
        dumper?.close();
      } finally {
        restorer?.close();
        dumper = restorer = undefined;
        restoring = false;
      }
      void failed;
    },
    hooks: {
      DUMP_EXT_FILE(a: DumpFileArgs) {
        const label = `task ${a.pid} fd ${a.fdNum} (${a.link})`;
        if (a.link.startsWith('/dmabuf:') || a.link === 'anon_inode:dmabuf') return d().dumpDmabuf(a.fd, a.id, label) ? undefined : NOT_MINE;
        const st = sys.fstat(a.fd);
        if ((st.mode & S_IFMT) !== S_IFCHR) return NOT_MINE;
        if (isRenderNode(st.rdev)) return d().dumpRender(a.fd, a.id, st.rdev, label);
        if (isKfd(st.rdev)) return d().dumpKfd(a.fd, a.id, label);
        return NOT_MINE;
      },
      HANDLE_DEVICE_VMA(a: DeviceVmaArgs) {
        // metadata only: a BO's contents are dumped with its file (render node or /dev/kfd)
        if (isRenderNode(a.rdev) || isKfd(a.rdev)) return;
        return NOT_MINE;
      },
      DUMP_DEVICES_LATE() {
        if (!dumper || dumper.empty) return NOT_MINE;
        dumper.finish();
      },
      RESTORE_INIT() {
        restoring = r().init();
        return restoring ? undefined : NOT_MINE;
      },
      RESTORE_EXT_FILE(id: number) {
        if (!restoring) return NOT_MINE;
        return r().restoreFile(id);
      },
      UPDATE_VMA_MAP(a) {
        if (!restoring) return NOT_MINE;
        return r().updateVmaMap(a);
      },
      RESUME_DEVICES_LATE(pid: number) {
        if (!restoring) return NOT_MINE;
        return r().resume(pid);
      },
    },
  };
}
