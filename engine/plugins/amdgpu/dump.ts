// Dump of render-node files and dma-buf fds (spec §3, with §9's fixes). Buffers are identified
// by what the kernel says they are, never by handle numbers (D1): a CPU-mappable object by its
// device and fake mmap offset (unique per object, and the same in every file that holds it);
// anything else by the inode of its dma-buf, tied back to its device's object by importing that
// dma-buf into a private drm file of our own. The live process's handles, VMs and PRIME caches
// are only read (D4); contents are copied through a CPU mapping of the engine's own fd.
import type { Msg } from '../../../images/codec';
import { UnsupportedError, EngineError } from '../../errors';
import { DeviceSys, minor as minorOf, O_RDWR, O_CLOEXEC } from './backend';
import { Drm } from './drm';
import * as S from './structs';
import { renderName, dmabufName, drmPagesName, kfdName, kfdPagesName, writeMessage, writePages } from './images';
import { Kfd, deviceEntries } from './kfd';
import * as fs from 'fs';
import * as path from 'path';

export interface DumpConfig {
  /** how this kernel's GET_MAPPING_INFO reports flags (D5: settle on hardware) */
  vmFlags: 'uapi' | 'pte';
  /** unit of LIST_HANDLES' alignment (D14: the kernel reports pages) */
  alignmentUnit: number;
  /** bytes per contents copy */
  chunk?: number;
}

interface BoRecord {
  e: S.ListEntry;
  key: string;
  offset?: bigint;
  vms: S.VmEntry[];
  owner: boolean;
}

interface RenderRecord { id: number; minor: number; label: string; bos: BoRecord[] }
interface DmabufRecord { id: number; key: string; access: number; label: string }
interface KfdBoRecord { b: S.KfdBoBucket; key?: string; handle: number }
interface KfdRecord { id: number; label: string; msg: Msg; bos: KfdBoRecord[] }

/** union-find over identity keys */
class Identities {
  private parent = new Map<string, string>();
  find(k: string): string {
    let p = this.parent.get(k) ?? k;
    if (p !== k) { p = this.find(p); this.parent.set(k, p); }
    return p;
  }
  union(a: string, b: string): void {
    const ra = this.find(a), rb = this.find(b);
    if (ra !== rb) this.parent.set(rb, ra);
  }
}

export class AmdgpuDumper {
  readonly renders: RenderRecord[] = [];
  readonly dmabufs: DmabufRecord[] = [];
  private ids = new Identities();
  private nativeSeen = new Set<string>();
  private linked = new Map<string, boolean>();
  /** our own drm files, one per device, for identifying dma-bufs */
  private privates = new Map<number, Drm>();
  /** a dma-buf's handle in our private file (what CRIU records as a KFD BO's handle) */
  private privHandles = new Map<string, number>();
  readonly kfds: KfdRecord[] = [];
  /** KFD processes paused by PROCESS_INFO, on our duplicates of their fds: unpaused at the end */
  private paused: Kfd[] = [];

  constructor(private sys: DeviceSys, private dir: string, private cfg: DumpConfig) {}

  get empty(): boolean {
    return !this.renders.length && !this.dmabufs.length && !this.kfds.length && !this.paused.length;
  }

  /** a buffer whose identity a KFD BO has: the KFD image owns it (its RESTORE recreates it) */
  private kfdOwned(key: string): boolean {
    const root = this.ids.find(key);
    return this.kfds.some((k) => k.bos.some((b) => b.key !== undefined && this.ids.find(b.key) === root));
  }

  /** a /dev/kfd file (spec §5.2): the checkpoint, its devices, BOs and the VRAM/GTT contents per GPU */
  dumpKfd(fd: number, id: number, label: string): void {
    // the version check needs only a fd of our own (the drained one is for CRIU ops)
    const own = this.sys.open('/dev/kfd', O_RDWR | O_CLOEXEC);
    try {
      new Kfd(this.sys, own, "/dev/kfd (engine's own)").checkVersion();
    } finally {
      this.sys.close(own);
    }
    // PROCESS_INFO pauses the queues; our duplicate unpauses them after every task (or on failure)
    const kept = new Kfd(this.sys, this.sys.dup(fd), label);
    this.paused.push(kept);
    const ck = kept.checkpoint();
    const open = ck.bos.filter((b) => b.dmabufFd >= 0).map((b) => b.dmabufFd);
    try {
      const userOf = new Map(ck.devices.map((d) => [d.actualGpuId, d.userGpuId]));
      const nodes = this.sys.kfdNodes();
      for (const d of ck.devices)
        if (!nodes.some((n) => n.gpuId === d.actualGpuId)) throw new EngineError(`${label}: gpu 0x${d.actualGpuId.toString(16)} is not in the KFD topology`);
      const entries = deviceEntries(nodes, (a) => userOf.get(a) ?? a);
      const bos: KfdBoRecord[] = ck.bos.map((b) => {
        if (b.dmabufFd < 0) return { b, handle: S.KFD_INVALID_FD };
        const key = `dmabuf:${this.sys.fstat(b.dmabufFd).ino}`;
        this.link(key, b.dmabufFd);
        return { b, key, handle: this.privHandles.get(key) ?? S.KFD_INVALID_FD };
      });
      // contents: one file per GPU, its VRAM/GTT BOs back to back in bucket order
      for (const gpu of new Set(bos.map((x) => x.b.gpuId))) {
        const mine = bos.filter((x) => x.b.gpuId === gpu && x.b.allocFlags & (S.KFD_ALLOC.VRAM | S.KFD_ALLOC.GTT));
        if (!mine.length) continue;
        const total = mine.reduce((s, x) => s + x.b.size, 0n);
        writePages(this.dir, kfdPagesName(id, gpu), total, this.chunks(mine.map((x) => ({ fd: x.b.dmabufFd, offset: 0n, size: x.b.size }))));
      }
      const gpus = nodes.filter((n) => n.gpuId).length;
      this.kfds.push({
        id, label, bos,
        msg: {
          pid: ck.info.pid, num_of_gpus: gpus, num_of_cpus: nodes.length - gpus, device_entries: entries, num_of_bos: bos.length,
          num_of_objects: ck.info.numObjects, shared_mem_size: 0n, shared_mem_magic: 0, priv_data: ck.priv,
        },
      });
    } finally {
      for (const dfd of open) this.sys.close(dfd);
    }
  }

  /** contents of several buffers, read through mappings, in chunks */
  private *chunks(parts: { fd: number; offset: bigint; size: bigint }[]): Generator<Buffer> {
    const chunk = BigInt(this.cfg.chunk ?? 16 << 20);
    for (const p of parts)
      for (let at = 0n; at < p.size; at += chunk) yield this.sys.readMapped(p.fd, p.offset + at, Number(p.size - at < chunk ? p.size - at : chunk));
  }

  dumpRender(fd: number, id: number, rdev: number, label: string): void {
    const minor = minorOf(rdev);
    const drm = new Drm(this.sys, fd, label);
    const rec: RenderRecord = { id, minor, label, bos: [] };
    drm.listHandles().forEach((e, index) => {
      const offset = drm.mmapOffset(e.handle);
      const vms = drm.mappings(e.handle);
      const imported = (e.flags & S.LIST_FLAG_IS_IMPORT) !== 0;
      const key = !imported && offset !== undefined ? `bo:${minor}:${offset}` : this.keyViaExport(drm, e.handle);
      const owner = !imported && !this.nativeSeen.has(key) && !this.kfdOwned(key);
      if (owner) this.nativeSeen.add(key);
      const bo: BoRecord = { e, key, offset, vms, owner };
      rec.bos.push(bo);
      if (owner && Number(e.preferredDomains) & S.CONTENT_DOMAINS) this.saveContents(fd, rec, bo, index);
    });
    this.renders.push(rec);
  }

  /** a dma-buf fd: mine only when an amdgpu device owns the buffer */
  dumpDmabuf(fd: number, id: number, label: string): boolean {
    const key = `dmabuf:${this.sys.fstat(fd).ino}`;
    if (!this.link(key, fd)) return false;
    this.dmabufs.push({ id, key, access: this.sys.accessMode(fd), label });
    return true;
  }

  private keyViaExport(drm: Drm, handle: number): string {
    // the export reuses the object's dma-buf (an import re-exports its source), so the inode
    // is the buffer's; the fd is ours and closed here
    const dfd = drm.exportFd(handle, S.DRM_CLOEXEC);
    try {
      const key = `dmabuf:${this.sys.fstat(dfd).ino}`;
      this.link(key, dfd);
      return key;
    } finally {
      this.sys.close(dfd);
    }
  }

  /** ties a dma-buf to the amdgpu object it exports, if any; true when one was found */
  private link(key: string, dmabufFd: number): boolean {
    const known = this.linked.get(key);
    if (known !== undefined) return known;
    let found = false;
    for (const node of this.sys.renderNodes()) {
      const priv = this.privateFile(node.minor, node.path);
      const h = priv.importFd(dmabufFd);
      const e = priv.listHandles().find((x) => x.handle === h);
      if (!e || e.flags & S.LIST_FLAG_IS_IMPORT) continue; // another device's buffer
      found = true;
      this.privHandles.set(key, h);
      const off = priv.mmapOffset(h);
      if (off !== undefined) this.ids.union(`bo:${node.minor}:${off}`, key);
      break;
    }
    this.linked.set(key, found);
    return found;
  }

  private privateFile(minor: number, path: string): Drm {
    let d = this.privates.get(minor);
    if (!d) {
      d = new Drm(this.sys, this.sys.open(path, O_RDWR | O_CLOEXEC), `${path} (engine's own)`);
      this.privates.set(minor, d);
    }
    return d;
  }

  private saveContents(fd: number, rec: RenderRecord, bo: BoRecord, index: number): void {
    const { e } = bo;
    if (bo.offset === undefined)
      throw new UnsupportedError(`${rec.label}: buffer handle ${e.handle} (${e.size} bytes) has no CPU access (NO_CPU_ACCESS or userptr); saving it needs the SDMA copy path, which is not implemented`);
    const chunk = this.cfg.chunk ?? 16 << 20;
    const size = e.size;
    const sys = this.sys;
    const off0 = bo.offset;
    writePages(this.dir, drmPagesName(rec.id, rec.minor, index), size, (function* () {
      for (let at = 0n; at < size; at += BigInt(chunk)) {
        const n = size - at < BigInt(chunk) ? Number(size - at) : chunk;
        yield sys.readMapped(fd, off0 + at, n);
      }
    })());
  }

  /** after every task: identities are complete, so the metadata can be written */
  finish(): void {
    const bufferIds = new Map<string, number>();
    /** identity root -> the handle CRIU's readers know the owner by */
    const owners = new Map<string, number>();
    const idOf = (key: string) => {
      const root = this.ids.find(key);
      if (!bufferIds.has(root)) bufferIds.set(root, bufferIds.size + 1);
      return root;
    };
    // a KFD BO owns its buffer even when a render file was dumped first (its copy goes)
    for (const k of this.kfds) for (const b of k.bos) if (b.key !== undefined) owners.set(idOf(b.key), b.handle);
    for (const rec of this.renders) rec.bos.forEach((bo, index) => {
      const root = idOf(bo.key);
      if (bo.owner && owners.has(root) && this.kfds.length && this.kfdOwned(bo.key)) {
        bo.owner = false;
        fs.rmSync(path.join(this.dir, drmPagesName(rec.id, rec.minor, index)), { force: true });
      }
      if (bo.owner) owners.set(root, bo.e.handle);
    });
    for (const rec of this.renders) for (const bo of rec.bos) {
      if (!owners.has(this.ids.find(bo.key)))
        throw new UnsupportedError(`${rec.label}: buffer handle ${bo.e.handle} is imported from outside the checkpoint (no dumped render-node file owns it)`);
    }
    const gpuIds = new Map(this.sys.renderNodes().map((n) => [n.minor, n.gpuId]));
    for (const rec of this.renders) {
      const msg: Msg = {
        gpu_id: gpuIds.get(rec.minor) ?? 0, id: rec.id, drm_render_minor: rec.minor, num_of_bos: rec.bos.length,
        bo_entries: rec.bos.map((bo) => {
          const vms = bo.vms.map((v) => ({ addr: v.addr, size: v.size, offset: v.offset, flags: v.flags }));
          const m: Msg = {
            addr: vms.length ? vms[vms.length - 1].addr : 0n, size: bo.e.size, offset: bo.offset ?? 0n, alloc_flags: bo.e.allocFlags,
            alignment: bo.e.alignment, preferred_domains: Number(bo.e.preferredDomains & 0xffffffffn), handle: bo.e.handle,
            is_import: bo.owner ? 0 : 1, num_of_vms: vms.length, vm_entries: vms,
            buffer_id: BigInt(bufferIds.get(this.ids.find(bo.key))!), contents_owner: bo.owner && (Number(bo.e.preferredDomains) & S.CONTENT_DOMAINS) !== 0,
          };
          if (bo.offset === undefined) m.no_cpu_offset = true;
          return m;
        }),
        vm_flags_format: this.cfg.vmFlags === 'pte' ? 2 : 1, alignment_unit: this.cfg.alignmentUnit,
      };
      writeMessage(this.dir, renderName(rec.id), 'AMDGPU_RENDER_NODE', msg);
    }
    for (const d of this.dmabufs) {
      const root = this.ids.find(d.key);
      const own = owners.get(root);
      if (own === undefined) throw new UnsupportedError(`${d.label}: the dma-buf exports a buffer that no dumped render-node or KFD file holds`);
      writeMessage(this.dir, dmabufName(d.id), 'AMDGPU_DMABUF', { gem_handle: own, buffer_id: BigInt(bufferIds.get(root)!), access_mode: d.access });
    }
    for (const k of this.kfds) {
      const msg: Msg = {
        ...k.msg,
        bo_entries: k.bos.map(({ b, key, handle }) => {
          const e: Msg = { addr: b.addr, size: b.size, offset: b.offset, alloc_flags: b.allocFlags, gpu_id: b.gpuId, handle };
          if (key !== undefined) e.buffer_id = BigInt(bufferIds.get(this.ids.find(key))!);
          return e;
        }),
      };
      writeMessage(this.dir, kfdName(k.id), 'AMDGPU_KFD', msg);
    }
    this.unpauseAll();
  }

  /** UNPAUSE every KFD process we paused; the first failure is reported after all were tried */
  private unpauseAll(): void {
    let first: unknown;
    for (const k of this.paused.splice(0)) {
      try { k.unpause(); } catch (e) { first ??= e; }
      try { this.sys.close(k.fd); } catch (e) { first ??= e; }
    }
    if (first) throw first;
  }

  /** closes our private files (and with them every handle we made) */
  close(): void {
    let first: unknown;
    try { this.unpauseAll(); } catch (e) { first = e; } // a failed dump must not leave the process paused
    for (const d of this.privates.values()) {
      try { this.sys.close(d.fd); } catch (e) { first ??= e; }
    }
    this.privates.clear();
    if (first) throw new EngineError(`closing the engine's drm files: ${(first as Error).message}`);
  }
}
