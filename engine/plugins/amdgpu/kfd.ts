// The /dev/kfd calls the plugin makes (spec §5.1), over DeviceSys and structs.ts, and the
// topology records of a KFD image (kfd_device_entry). Note for hardware: the kernel binds KFD
// state to the calling process (current->mm); the engine runs plugins in its own process, so on
// real hardware RESTORE (and RESUME) must be issued from the restored task; the simulator keeps
// the state on the open file instead.
import type { Msg } from '../../../images/codec';
import { DeviceSys, KfdNode, SysError } from './backend';
import * as S from './structs';
import { DrmError, wrap } from './drm';

export const KFD_MIN_VERSION = { major: 1, minor: 8 };


export interface KfdCheckpoint {
  info: S.KfdCriuArgs;
  devices: S.KfdDeviceBucket[];
  bos: S.KfdBoBucket[];
  priv: Buffer;
}

export class Kfd {
  constructor(readonly sys: DeviceSys, readonly fd: number, readonly label: string) {}

  /** refuses a KFD without the CRIU ops (1.7) and SDMA-copied GTT BOs (1.8) */
  checkVersion(): void {
    const a = S.kfdVersionArg();
    wrap(`${this.label}: AMDKFD_IOC_GET_VERSION`, () => this.sys.ioctl(this.fd, S.REQ.KFD_GET_VERSION, a));
    const v = S.kfdVersionResult(a);
    if (v.major !== KFD_MIN_VERSION.major || v.minor < KFD_MIN_VERSION.minor)
      throw new DrmError(`${this.label}: KFD interface ${v.major}.${v.minor}; checkpoint needs ${KFD_MIN_VERSION.major}.${KFD_MIN_VERSION.minor} or later`, 'ENOTSUP');
  }

  private op(a: S.IoctlArg, what: string): void {
    wrap(`${this.label}: AMDKFD_IOC_CRIU_OP(${what})`, () => this.sys.ioctl(this.fd, S.REQ.KFD_CRIU_OP, a), {
      EPERM: 'EPERM: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN',
    });
  }

  /** PROCESS_INFO (pauses the process's queues) then CHECKPOINT; the bucket dma-buf fds are the caller's */
  checkpoint(): KfdCheckpoint {
    const pi = S.kfdCriuArg(S.KFD_OP.PROCESS_INFO, {});
    this.op(pi, 'PROCESS_INFO');
    const info = S.readKfdCriu(pi.buf);
    const ck = S.kfdCriuArg(S.KFD_OP.CHECKPOINT, { ...info }, info.numDevices, info.numBos);
    this.op(ck, 'CHECKPOINT');
    const [devBuf, boBuf, priv] = ck.ptrs.map((p) => p.target);
    return {
      info,
      devices: Array.from({ length: info.numDevices }, (_, i) => S.readDeviceBucket(devBuf, i * S.SIZE.KFD_DEVICE_BUCKET)),
      bos: Array.from({ length: info.numBos }, (_, i) => S.readBoBucket(boBuf, i * S.SIZE.KFD_BO_BUCKET)),
      priv,
    };
  }

  unpause(): void {
    this.op(S.kfdCriuArg(S.KFD_OP.UNPAUSE, {}), 'UNPAUSE');
  }

  /** RESTORE: fills restored_offset and dmabuf_fd of every bucket */
  restore(pid: number, numObjects: number, devices: S.KfdDeviceBucket[], bos: S.KfdBoBucket[], priv: Buffer): S.KfdBoBucket[] {
    const a = S.kfdCriuArg(S.KFD_OP.RESTORE, { pid, numObjects }, devices, bos, priv);
    this.op(a, 'RESTORE');
    const out = a.ptrs[1].target;
    return bos.map((_, i) => S.readBoBucket(out, i * S.SIZE.KFD_BO_BUCKET));
  }

  /** RESUME of a restored process; false when the kernel has no KFD state for it (ESRCH) */
  resume(pid: number): boolean {
    try {
      this.sys.ioctl(this.fd, S.REQ.KFD_CRIU_OP, S.kfdCriuArg(S.KFD_OP.RESUME, { pid }));
      return true;
    } catch (e) {
      if (e instanceof SysError && e.code === 'ESRCH') return false;
      return wrap(`${this.label}: AMDKFD_IOC_CRIU_OP(RESUME) of ${pid}`, () => { throw e; });
    }
  }
}

/** u32 fields of kfd_device_entry, named as the sysfs properties that fill them */
const DEVICE_U32 = [
  'cpu_cores_count', 'simd_count', 'mem_banks_count', 'caches_count', 'io_links_count', 'max_waves_per_simd', 'lds_size_in_kb', 'gds_size_in_kb',
  'num_gws', 'wave_front_size', 'array_count', 'simd_arrays_per_engine', 'cu_per_simd_array', 'simd_per_cu', 'max_slots_scratch_cu', 'vendor_id',
  'device_id', 'domain', 'drm_render_minor', 'num_sdma_engines', 'num_sdma_xgmi_engines', 'num_sdma_queues_per_engine', 'num_cp_queues',
  'fw_version', 'capability', 'sdma_fw_version', 'vram_public',
] as const;

/** one kfd_device_entry per topology node; GPUs carry the process's (user) gpu_id */
export function deviceEntries(nodes: KfdNode[], userIdOf: (actual: number) => number): Msg[] {
  return nodes.map((n) => {
    const e: Msg = { node_id: n.nodeId, gpu_id: n.gpuId ? userIdOf(n.gpuId) : 0, hive_id: n.props.hive_id ?? 0n, vram_size: n.props.vram_size ?? 0n };
    for (const k of DEVICE_U32) e[k] = Number((n.props[k] ?? 0n) & 0xffffffffn);
    e.iolinks = n.ioLinks.map((l) => ({ type: l.type, node_to_id: l.nodeTo }));
    return e;
  });
}

/** properties that must match for a GPU to stand in for another at restore (spec §5.3, simplified) */
const SAME = ['simd_count', 'vendor_id', 'device_id', 'wave_front_size', 'cu_per_simd_array', 'simd_per_cu', 'array_count'] as const;

/** user gpu_id -> a local node: the same gpu_id if it is here, else an unused GPU with the same properties */
export function mapGpus(name: string, entries: Msg[], local: KfdNode[]): Map<number, KfdNode> {
  const gpus = local.filter((n) => n.gpuId);
  const out = new Map<number, KfdNode>();
  const used = new Set<KfdNode>();
  const want = entries.filter((e) => Number(e.gpu_id));
  for (const e of want) {
    const same = gpus.find((n) => n.gpuId === Number(e.gpu_id));
    if (same) { out.set(Number(e.gpu_id), same); used.add(same); }
  }
  for (const e of want) {
    if (out.has(Number(e.gpu_id))) continue;
    const alike = gpus.find((n) => !used.has(n) && SAME.every((k) => Number(n.props[k] ?? 0n) === Number(e[k] ?? 0)));
    if (!alike) throw new DrmError(`${name}: device_entries: no GPU here like gpu 0x${Number(e.gpu_id).toString(16)} (renderD${e.drm_render_minor}, device 0x${Number(e.device_id).toString(16)})`, 'ENODEV');
    out.set(Number(e.gpu_id), alike);
    used.add(alike);
  }
  return out;
}
