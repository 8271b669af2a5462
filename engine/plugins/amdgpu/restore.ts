// Restore of render-node files and dma-buf fds (spec §4, with §9's fixes): one new drm file per
// original file description (D7); each BO recreated (or imported from its owner through the fd
// store) and moved to its handle, its GPU mappings and contents put back (every VRAM/GTT/CPU BO,
// mapped or not: D11); owners publish their buffer under its buffer id, not its handle (D1), and
// wake whoever waits (D8). Passes are idempotent; "no fd" is never 0 (D2); a file that fails is
// closed, which drops everything made in it.
import * as fs from 'fs';
import type { Msg } from '../../../images/codec';
import { EngineError } from '../../errors';
import { NOT_MINE, Answer, RestoreFileResult, VmaMapArgs, VmaMapResult } from '../host';
import { FdStore } from '../fdstore';
import { DeviceSys, O_RDWR, O_CLOEXEC } from './backend';
import { Drm } from './drm';
import * as S from './structs';
import { renderName, dmabufName, drmPagesName, kfdName, kfdPagesName, readMessage, checkRenderNode, checkKfd, openPages, AmdgpuImageError } from './images';
import { Kfd, mapGpus } from './kfd';

export interface RestoreConfig {
  /** used when an image does not say (CRIU's images) */
  vmFlags: 'uapi' | 'pte';
  alignmentUnit: number;
  chunk?: number;
}

interface FileState {
  rd: Msg;
  fd: number;
  drm: Drm;
  minor: number;
  done: boolean[];
}

/** a CPU-mappable range at dump (offset in the render node of minor ckptMinor, or in /dev/kfd: -1) and now */
interface Range { ckptMinor: number; old: bigint; size: bigint; now: bigint; fd: number }
interface KfdState { fd: number; drmFds: number[]; pid: number }

const big = (v: unknown): bigint => (v === undefined || v === null ? 0n : BigInt(v as number | bigint));

export class AmdgpuRestorer {
  /** buffer key -> fdstore id of its dma-buf (RESTORE_INIT's shared table) */
  private table = new Map<string, number>();
  private store: FdStore;
  private files = new Map<number, FileState>();
  private ranges: Range[] = [];
  private renders = new Map<number, Msg>();
  private dmabufs = new Map<number, Msg>();
  private kfdImages = new Map<number, Msg>();
  private kfds = new Map<number, KfdState>();

  constructor(private sys: DeviceSys, private dir: string, private cfg: RestoreConfig, private notify: () => void) {
    this.store = new FdStore(sys);
  }

  /** reads and checks every plugin image up front (through the images dir, not the cwd: D16) */
  init(): boolean {
    for (const name of fs.readdirSync(this.dir).sort()) {
      let m: RegExpExecArray | null;
      if ((m = /^amdgpu-renderD-(\d+)\.img$/.exec(name))) {
        const rd = readMessage(this.dir, name)!;
        checkRenderNode(name, rd);
        if (Number(rd.id) !== Number(m[1])) throw new AmdgpuImageError(name, 'id', `${rd.id} does not match the file name`);
        this.renders.set(Number(m[1]), rd);
      } else if ((m = /^amdgpu-dmabuf_(\d+)\.img$/.exec(name))) {
        this.dmabufs.set(Number(m[1]), readMessage(this.dir, name)!);
      } else if ((m = /^amdgpu-kfd-(\d+)\.img$/.exec(name))) {
        const k = readMessage(this.dir, name)!;
        checkKfd(name, k);
        this.kfdImages.set(Number(m[1]), k);
      }
    }
    return this.renders.size > 0 || this.dmabufs.size > 0 || this.kfdImages.size > 0;
  }

  restoreFile(id: number): Answer<RestoreFileResult> {
    const k = this.kfdImages.get(id);
    if (k) return this.restoreKfd(id, k);
    const rd = this.renders.get(id);
    if (rd) return this.restoreRender(id, rd);
    const d = this.dmabufs.get(id);
    if (d) return this.restoreDmabuf(id, d);
    return NOT_MINE;
  }

  /** CRIU's images have no buffer ids: their handle is all there is (their semantics, D1 included) */
  private key(bo: Msg, handle: unknown): string {
    return bo.buffer_id !== undefined ? `b${bo.buffer_id}` : `h${handle}`;
  }

  private targetNode(rd: Msg, name: string): { path: string; minor: number } {
    const nodes = this.sys.renderNodes();
    const minor = Number(rd.drm_render_minor), gpu = Number(rd.gpu_id);
    const same = nodes.find((n) => n.minor === minor);
    if (same && (!gpu || !same.gpuId || same.gpuId === gpu)) return same;
    const byGpu = gpu ? nodes.find((n) => n.gpuId === gpu) : undefined;
    if (byGpu) return byGpu;
    throw new AmdgpuImageError(name, 'drm_render_minor', `no amdgpu render node here for renderD${minor}${gpu ? ` (gpu 0x${gpu.toString(16)})` : ''}`);
  }

  private restoreRender(id: number, rd: Msg): Answer<RestoreFileResult> {
    const name = renderName(id);
    let st = this.files.get(id);
    if (!st) {
      const node = this.targetNode(rd, name);
      const fd = this.sys.open(node.path, O_RDWR | O_CLOEXEC);
      st = { rd, fd, minor: node.minor, drm: new Drm(this.sys, fd, `${name} (${node.path})`), done: ((rd.bo_entries ?? []) as Msg[]).map(() => false) };
      this.files.set(id, st);
    }
    let retry = false;
    try {
      ((rd.bo_entries ?? []) as Msg[]).forEach((bo, i) => {
        if (st!.done[i]) return;
        if (!this.restoreBo(st!, id, bo, i)) retry = true;
      });
    } catch (e) {
      // nothing half-made survives: closing our only fd on the file frees its handles and VM
      this.ranges = this.ranges.filter((r) => r.fd !== st!.fd);
      this.files.delete(id);
      this.sys.close(st.fd);
      throw e;
    }
    if (retry) return { retry: true };
    // the core gets its own fd; ours stays for UPDATE_VMA_MAP until exit
    return { fd: this.sys.dup(st.fd) };
  }

  /** false: its owner has not published it yet */
  private restoreBo(st: FileState, id: number, bo: Msg, i: number): boolean {
    const handle = Number(bo.handle);
    const drm = st.drm;
    const key = this.key(bo, handle);
    const size = big(bo.size);
    if (Number(bo.is_import)) {
      const sid = this.table.get(key);
      if (sid === undefined) return false;
      const dfd = this.store.get(sid);
      let tmp: number;
      try {
        tmp = drm.importFd(dfd);
      } finally {
        this.sys.close(dfd);
      }
      if (tmp !== handle && st.done.some((d, j) => d && Number(st.rd.bo_entries[j].handle) === tmp))
        throw new EngineError(`${drm.label}: buffer handle ${handle} is the same buffer as handle ${tmp} of the same file (inconsistent image)`);
      this.place(drm, tmp, handle);
    } else {
      const unit = bo.alignment !== undefined ? Number(st.rd.alignment_unit ?? this.cfg.alignmentUnit) : 1;
      const tmp = drm.create({ size, alignment: big(bo.alignment) * BigInt(unit), domains: BigInt(Number(bo.preferred_domains)), flags: big(bo.alloc_flags) });
      this.place(drm, tmp, handle);
    }
    const offset = bo.no_cpu_offset ? undefined : drm.mmapOffset(handle);
    if (!Number(bo.is_import) && bo.contents_owner !== false && Number(bo.preferred_domains) & S.CONTENT_DOMAINS) {
      const file = drmPagesName(id, Number(st.rd.drm_render_minor), i);
      if (offset === undefined) throw new EngineError(`${drm.label}: buffer handle ${handle} has no CPU access; its contents (${file}) need the SDMA path, not implemented`);
      this.writeContents(st.fd, offset, size, file, `buffer handle ${handle}`);
    }
    const pte = (st.rd.vm_flags_format !== undefined ? Number(st.rd.vm_flags_format) === 2 : this.cfg.vmFlags === 'pte');
    for (const v of (bo.vm_entries ?? []) as Msg[]) {
      const flags = pte ? S.pteToUapi(big(v.flags)) : Number(big(v.flags) & 0xffffffffn);
      drm.mapVa({ handle, flags, va: big(v.addr), offset: big(v.offset), size: big(v.size) });
    }
    if (offset !== undefined) this.ranges.push({ ckptMinor: Number(st.rd.drm_render_minor), old: big(bo.offset), size, now: offset, fd: st.fd });
    if (!Number(bo.is_import)) {
      // publish for importers in other files: a read-write dma-buf (D18), parked in the fd store
      const dfd = drm.exportFd(handle, S.DRM_RDWR | S.DRM_CLOEXEC);
      try {
        if (!this.table.has(key)) this.table.set(key, this.store.add(dfd));
      } finally {
        this.sys.close(dfd);
      }
      this.notify();
    }
    st.done[i] = true;
    return true;
  }

  /** moves a handle we just made to its number; on failure the handle we made is closed */
  private place(drm: Drm, tmp: number, handle: number): void {
    try {
      drm.changeHandle(tmp, handle);
    } catch (e) {
      try { drm.closeHandle(tmp); } catch { /* the file is closed next anyway */ }
      throw e;
    }
  }

  private writeContents(fd: number, offset: bigint, size: bigint, file: string, who: string): void {
    const src = openPages(this.dir, file, size, who);
    try {
      const chunk = this.cfg.chunk ?? 16 << 20;
      for (let at = 0n; at < size; at += BigInt(chunk)) {
        const n = size - at < BigInt(chunk) ? Number(size - at) : chunk;
        this.sys.writeMapped(fd, offset + at, src.read(Number(at), n));
      }
    } finally {
      src.close();
    }
  }

  /**
   * A /dev/kfd file (spec §5.3): devices mapped to local GPUs, each bound to a new drm file of
   * ours (CPU mappings of its BOs go through it), RESTORE, then contents from the per-GPU pages
   * file, and every VRAM/GTT BO published for the render files and dma-bufs that share it.
   */
  private restoreKfd(id: number, e: Msg): Answer<RestoreFileResult> {
    const name = kfdName(id);
    const fd = this.sys.open('/dev/kfd', O_RDWR | O_CLOEXEC);
    const drmFds: number[] = [];
    const ranges: Range[] = [];
    let out: S.KfdBoBucket[] = [];
    try {
      const kfd = new Kfd(this.sys, fd, `${name} (/dev/kfd)`);
      kfd.checkVersion();
      const entries = (e.device_entries ?? []) as Msg[];
      const gpus = mapGpus(name, entries, this.sys.kfdNodes());
      const nodes = this.sys.renderNodes();
      const devices: S.KfdDeviceBucket[] = [];
      const drmOf = new Map<number, number>();
      for (const [user, node] of gpus) {
        const rn = nodes.find((n) => n.gpuId === node.gpuId);
        if (!rn) throw new AmdgpuImageError(name, 'device_entries', `gpu 0x${node.gpuId.toString(16)} has no render node here`);
        const dfd = this.sys.open(rn.path, O_RDWR | O_CLOEXEC);
        drmFds.push(dfd);
        drmOf.set(user, dfd);
        devices.push({ userGpuId: user, actualGpuId: node.gpuId, drmFd: dfd });
      }
      const bos = (e.bo_entries ?? []) as Msg[];
      out = kfd.restore(Number(e.pid), Number(e.num_of_objects), devices, bos.map((b) => ({
        addr: big(b.addr), size: big(b.size), offset: big(b.offset), restoredOffset: 0n, gpuId: Number(b.gpu_id), allocFlags: Number(b.alloc_flags), dmabufFd: 0,
      })), Buffer.from(e.priv_data as Uint8Array));
      const content = (b: Msg) => (Number(b.alloc_flags) & (S.KFD_ALLOC.VRAM | S.KFD_ALLOC.GTT)) !== 0;
      for (const user of new Set(bos.map((b) => Number(b.gpu_id)))) {
        const idx = bos.map((b, i) => i).filter((i) => Number(bos[i].gpu_id) === user && content(bos[i]));
        if (!idx.length) continue;
        const total = idx.reduce((s, i) => s + big(bos[i].size), 0n);
        const src = openPages(this.dir, kfdPagesName(id, user), total, `the VRAM/GTT buffers of gpu 0x${user.toString(16)}`);
        try {
          let at = 0;
          for (const i of idx) {
            const fdI = out[i].dmabufFd;
            if (fdI < 0) throw new EngineError(`${name}: RESTORE gave no dma-buf for bo_entries[${i}] (VRAM/GTT)`);
            this.copyIn(fdI, 0n, big(bos[i].size), (o, n) => src.read(at + o, n));
            at += Number(big(bos[i].size));
          }
        } finally {
          src.close();
        }
      }
      const minorOf = new Map(entries.filter((d) => Number(d.gpu_id)).map((d) => [Number(d.gpu_id), Number(d.drm_render_minor)]));
      bos.forEach((b, i) => {
        const f = Number(b.alloc_flags);
        if (content(b)) ranges.push({ ckptMinor: minorOf.get(Number(b.gpu_id)) ?? -2, old: big(b.offset), size: big(b.size), now: out[i].restoredOffset, fd: drmOf.get(Number(b.gpu_id))! });
        else if (f & (S.KFD_ALLOC.DOORBELL | S.KFD_ALLOC.MMIO_REMAP)) ranges.push({ ckptMinor: -1, old: big(b.offset), size: big(b.size), now: out[i].restoredOffset, fd });
      });
      // published last: an importer must never see a buffer whose contents are not in yet
      bos.forEach((b, i) => {
        if (!content(b)) return;
        const key = this.key(b, b.handle);
        if (!this.table.has(key)) this.table.set(key, this.store.add(out[i].dmabufFd));
      });
    } catch (err) {
      for (const d of [fd, ...drmFds]) try { this.sys.close(d); } catch { /* closed */ }
      throw err;
    } finally {
      for (const b of out) if (b.dmabufFd >= 0 && b.dmabufFd !== S.KFD_INVALID_FD) this.sys.close(b.dmabufFd);
    }
    this.ranges.push(...ranges);
    this.kfds.set(id, { fd, drmFds, pid: Number(e.pid) });
    this.notify();
    return { fd: this.sys.dup(fd) };
  }

  /** RESUME of the KFD processes restored for pid; NOT_MINE when there are none */
  resume(pid: number): Answer<void> {
    const mine = [...this.kfds.values()].filter((k) => k.pid === pid);
    if (!mine.length) return NOT_MINE;
    for (const k of mine) new Kfd(this.sys, k.fd, `/dev/kfd of task ${pid}`).resume(pid);
  }

  /** copies size bytes (from read(offset, n)) into a mapping of fd, chunk by chunk */
  private copyIn(fd: number, offset: bigint, size: bigint, read: (off: number, n: number) => Buffer): void {
    const chunk = this.cfg.chunk ?? 16 << 20;
    for (let at = 0n; at < size; at += BigInt(chunk)) {
      const n = size - at < BigInt(chunk) ? Number(size - at) : chunk;
      this.sys.writeMapped(fd, offset + at, read(Number(at), n));
    }
  }

  private restoreDmabuf(id: number, d: Msg): Answer<RestoreFileResult> {
    const sid = this.table.get(this.key(d, d.gem_handle));
    if (sid === undefined) return { retry: true };
    return { fd: this.store.get(sid) };
  }

  /** a CPU mapping of a BO: the new offset (same delta inside the BO) and a file that may map it */
  updateVmaMap(a: VmaMapArgs): Answer<VmaMapResult> {
    const p = a.path.replace(/\/+/g, '/');
    const m = /^\/dev\/dri\/renderD(\d+)$/.exec(p);
    if ((!m && p !== '/dev/kfd') || (!this.renders.size && !this.kfdImages.size)) return NOT_MINE;
    const minor = m ? Number(m[1]) : -1;
    const r = this.ranges.find((x) => x.ckptMinor === minor && a.pgoff >= x.old && a.pgoff < x.old + x.size);
    if (!r) throw new EngineError(`task ${a.pid}: mapping at 0x${a.start.toString(16)} of ${a.path} (offset 0x${a.pgoff.toString(16)}) shows no restored buffer`);
    if (a.pgoff + (a.end - a.start) > r.old + r.size) throw new EngineError(`task ${a.pid}: mapping at 0x${a.start.toString(16)} runs past the end of its buffer`);
    return { pgoff: r.now + (a.pgoff - r.old), fd: this.sys.dup(r.fd) };
  }

  /** closes what the plugin holds: its fds on restored files and the fd store */
  close(): void {
    for (const st of this.files.values()) try { this.sys.close(st.fd); } catch { /* gone */ }
    this.files.clear();
    for (const k of this.kfds.values()) for (const fd of [k.fd, ...k.drmFds]) try { this.sys.close(fd); } catch { /* gone */ }
    this.kfds.clear();
    this.ranges = [];
    this.store.close();
    this.table.clear();
  }
}
