// What a test compares before dump and after restore (spec §7.4): per task, its fds, each render
// file's handles (size, domains, flags, alignment, import flag, GPU mappings in uapi terms,
// contents digest) and each device VMA, with buffers named by their first appearance so that
// sharing (and the lack of it) is part of the picture.
import { createHash } from 'crypto';
import { pteToUapi } from '../structs';
import type { SimKernel } from './kernel';
import type { SimBo, SimOpenFile } from './model';

export interface Snapshot {
  tasks: {
    pid: number;
    fds: { fd: number; file: string; kind: string; access: number; buffer?: string }[];
    vmas: { start: bigint; end: bigint; buffer: string; boOffset: bigint }[];
  }[];
  files: Record<string, {
    gpuId: number;
    bos: { handle: number; buffer: string; size: bigint; domains: bigint; flags: bigint; alignPages: bigint; imported: boolean;
      vms: { addr: bigint; size: bigint; offset: bigint; flags: number }[]; digest: string }[];
    prime?: [string, number][];
  }>;
  /** KFD files: paused or running, and their BOs (gpu as the process knows it) */
  kfd: Record<string, { paused: boolean; gpus: number[]; bos: { addr: bigint; size: bigint; flags: number; gpu: number; buffer: string; digest: string }[] }>;
}

export function snapshot(k: SimKernel, pids: number[], withPrime = false): Snapshot {
  const buffers = new Map<SimBo, string>();
  const fileNames = new Map<SimOpenFile, string>();
  const buf = (bo: SimBo) => {
    const id = bo.identity;
    if (!buffers.has(id)) buffers.set(id, `B${buffers.size + 1}`);
    return buffers.get(id)!;
  };
  const snap: Snapshot = { tasks: [], files: {}, kfd: {} };
  for (const pid of pids) {
    const p = k.proc(pid);
    const fds: Snapshot['tasks'][number]['fds'] = [];
    for (const fd of [...p.fds.keys()].sort((a, b) => a - b)) {
      const f = p.fds.get(fd)!.file;
      if (!fileNames.has(f)) {
        const name = `F${fileNames.size + 1}`;
        fileNames.set(f, name);
        if (f.drm) {
          const drm = f.drm;
          snap.files[name] = {
            gpuId: drm.device.gpuId,
            bos: [...drm.handles.keys()].sort((a, b) => a - b).map((h) => {
              const bo = drm.handles.get(h)!;
              return {
                handle: h, buffer: buf(bo), size: bo.size, domains: bo.preferredDomains, flags: bo.allocFlags, alignPages: bo.pageAlignment,
                imported: !!bo.importAttach,
                vms: (drm.vm.get(bo) ?? []).map((m) => ({
                  addr: m.startPage * 4096n, size: (m.lastPage - m.startPage + 1n) * 4096n, offset: m.offset,
                  flags: k.switches.vmFlags === 'pte' ? pteToUapi(m.flags) : Number(m.flags),
                })).sort((a, b) => (a.addr < b.addr ? -1 : 1)),
                digest: createHash('sha1').update(bo.identity.contents).digest('hex').slice(0, 16),
              };
            }),
          };
          if (withPrime) snap.files[name].prime = [...drm.prime].map(([d, h]) => [buf(d.bo), h] as [string, number]);
        }
        const st = f.kind === 'kfd' ? k.kfd.stateOf(f) : undefined;
        if (st) snap.kfd[name] = {
          paused: st.paused, gpus: st.devices.map((d) => d.userGpuId),
          bos: st.bos.map((b) => ({
            addr: b.addr, size: b.size, flags: b.allocFlags, gpu: st.devices.find((d) => d.actualGpuId === b.gpuId)!.userGpuId, buffer: buf(b.bo),
            // doorbells and MMIO are device registers KFD recreates, not memory a checkpoint holds
            digest: b.allocFlags & 0x18 ? '-' : createHash('sha1').update(b.bo.identity.contents).digest('hex').slice(0, 16),
          })),
        };
      }
      fds.push({ fd, file: fileNames.get(f)!, kind: f.kind, access: f.accessMode, buffer: f.dmabuf ? buf(f.dmabuf.bo) : undefined });
    }
    const vmas = p.vmas.map((v) => ({ start: v.start, end: v.end, buffer: buf(v.bo), boOffset: v.boOffset }));
    snap.tasks.push({ pid, fds, vmas });
  }
  return snap;
}

/** problems a restore must not leave: PRIME entries naming missing handles */
export function hygiene(k: SimKernel, pids: number[]): string[] {
  const out: string[] = [];
  for (const pid of pids) for (const [fd, { file }] of k.proc(pid).fds) {
    if (!file.drm) continue;
    for (const [d, h] of file.drm.prime) {
      const bo = file.drm.handles.get(h);
      if (!bo || bo.identity !== d.bo.identity) out.push(`task ${pid} fd ${fd}: PRIME cache entry for handle ${h} does not match its handle`);
    }
  }
  return out;
}
