// State of the simulated amdgpu driver (spec §7.2): devices, GEM objects, per-file handle
// tables, VMs and PRIME caches, dma-bufs, and the open files and processes that hold them.
// Reference counts decide when objects die, so tests can check that nothing leaks.
import { PAGE } from '../structs';

export interface SimMapping {
  startPage: bigint;
  lastPage: bigint;
  /** byte offset inside the BO */
  offset: bigint;
  /** as stored: uapi flags, or PTE bits (switch vmFlags) */
  flags: bigint;
}

export class SimDevice {
  /** fake mmap offsets: page-granular, unique per device, handed out on the first GEM_MMAP */
  nextOffset: bigint;
  readonly bos = new Set<SimBo>();
  constructor(public readonly minor: number, public readonly gpuId: number, offsetBase: bigint, public driver = 'amdgpu') {
    this.nextOffset = offsetBase;
  }
}

let nextObjId = 1;

export class SimBo {
  readonly objId = nextObjId++;
  refs = 0;
  mmapOffset?: bigint;
  /** the dma-buf this object is exported as (one per object, reused) */
  dmaBuf?: SimDmaBuf;
  /** cross-device import: the dma-buf it is attached to (contents are the exporter's) */
  importAttach?: SimDmaBuf;
  isUserptr = false;
  freed = false;
  constructor(
    public readonly device: SimDevice,
    public readonly size: bigint,
    public readonly pageAlignment: bigint,
    public readonly preferredDomains: bigint,
    public readonly allocFlags: bigint,
    public contents: Uint8Array,
  ) {
    device.bos.add(this);
  }

  /** the GEM object whose memory this is (importers resolve to their exporter) */
  get identity(): SimBo {
    return this.importAttach ? this.importAttach.bo.identity : this;
  }

  ref(): void {
    this.refs++;
  }

  unref(): void {
    if (--this.refs > 0) return;
    this.freed = true;
    this.device.bos.delete(this);
    const att = this.importAttach;
    this.importAttach = undefined;
    att?.unref();
  }
}

let nextIno = 5000;

export class SimDmaBuf {
  readonly ino = nextIno++;
  refs = 0;
  constructor(public readonly bo: SimBo, public readonly accessMode: number) {
    bo.ref();
  }
  ref(): void {
    this.refs++;
  }
  unref(): void {
    if (--this.refs > 0) return;
    if (this.bo.dmaBuf === this) this.bo.dmaBuf = undefined;
    this.bo.unref();
  }
}

export class SimDrmFile {
  readonly handles = new Map<number, SimBo>();
  /** PRIME cache: dma-buf <-> handle */
  readonly prime = new Map<SimDmaBuf, number>();
  /** per BO, this file's GPU VM mappings (valid ones, in insertion order) */
  readonly vm = new Map<SimBo, SimMapping[]>();
  /** objects this file may mmap without holding a handle (KFD BOs of the VM bound to it) */
  readonly mmapAllowed = new Set<SimBo>();
  constructor(public readonly device: SimDevice) {}

  handleOf(bo: SimBo): number | undefined {
    for (const [h, b] of this.handles) if (b === bo) return h;
    return undefined;
  }

  lowestFree(): number {
    let h = 1;
    while (this.handles.has(h)) h++;
    return h;
  }

  /** drops a handle; on the BO's last handle here, its mappings and PRIME entry go too */
  dropHandle(h: number): void {
    const bo = this.handles.get(h)!;
    this.handles.delete(h);
    if (this.handleOf(bo) === undefined) {
      this.vm.delete(bo);
      for (const [d, hh] of this.prime) if (hh === h || d.bo === bo) { this.prime.delete(d); d.unref(); }
    }
    bo.unref();
  }

  release(): void {
    for (const h of [...this.handles.keys()]) this.dropHandle(h);
    for (const [d] of this.prime) d.unref();
    this.prime.clear();
  }
}

export type FileKind = 'drm' | 'dmabuf' | 'kfd' | 'other';

let nextFileIno = 90000;

/** an open file description */
export class SimOpenFile {
  refs = 0;
  readonly ino: number;
  /** called when the last reference goes (KFD state dies with its file) */
  onRelease?: () => void;
  constructor(
    public readonly kind: FileKind,
    public readonly path: string,
    public readonly accessMode: number,
    public readonly drm?: SimDrmFile,
    public readonly dmabuf?: SimDmaBuf,
    public readonly kfd?: { device: number },
  ) {
    this.ino = dmabuf ? dmabuf.ino : nextFileIno++;
    dmabuf?.ref();
  }
  ref(): this {
    this.refs++;
    return this;
  }
  unref(): void {
    if (--this.refs > 0) return;
    this.drm?.release();
    this.dmabuf?.unref();
    this.onRelease?.();
  }
}

export interface SimVma {
  start: bigint;
  end: bigint;
  /** byte offset, as /proc/PID/maps shows it */
  pgoff: bigint;
  file: SimOpenFile;
  /** the BO the mapping shows, and where in it the mapping starts */
  bo: SimBo;
  boOffset: bigint;
}

export class SimProcess {
  readonly fds = new Map<number, { file: SimOpenFile; cloexec: boolean }>();
  readonly vmas: SimVma[] = [];
  /** fds the plugin closed that it had not opened (must stay empty: D2) */
  constructor(public readonly pid: number) {}

  install(file: SimOpenFile, cloexec: boolean, at?: number): number {
    let fd = at ?? 0;
    if (at === undefined) while (this.fds.has(fd)) fd++;
    else if (this.fds.has(at)) this.closeFd(at);
    this.fds.set(fd, { file: file.ref(), cloexec });
    return fd;
  }

  closeFd(fd: number): boolean {
    const e = this.fds.get(fd);
    if (!e) return false;
    this.fds.delete(fd);
    e.file.unref();
    return true;
  }
}

export const pages = (bytes: bigint): bigint => (bytes + PAGE - 1n) / PAGE;
