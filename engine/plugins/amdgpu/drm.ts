// The DRM calls the plugin makes, over DeviceSys: each one marshals through structs.ts, probes
// sizes with the kernel's two-call protocol, and turns an errno into a message that says what
// the kernel lacks or refused.
import { DeviceSys, isSysError, SysError } from './backend';
import * as S from './structs';
import { EngineError } from '../../errors';

const PROBE = 8;

export class DrmError extends EngineError {
  constructor(message: string, code?: string) {
    super(message, code ?? 'EDRM');
    this.name = 'DrmError';
  }
}

/** Runs a driver call; a kernel error becomes a DrmError naming the call (and what the code means). */
export function wrap<T>(what: string, f: () => T, known: Record<string, string> = {}): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof SysError) throw new DrmError(`${what}: ${known[e.code] ?? e.code}`, e.code);
    throw e;
  }
}

export class Drm {
  constructor(readonly sys: DeviceSys, readonly fd: number, readonly label: string) {}

  listHandles(): S.ListEntry[] {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        let cap = PROBE;
        for (;;) {
          const a = S.listHandlesArg(cap);
          this.sys.ioctl(this.fd, S.REQ.GEM_LIST_HANDLES, a);
          const r = S.listHandlesResult(a, cap);
          if (r.entries) return r.entries;
          cap = r.count;
        }
      } catch (e) {
        if (isSysError(e, 'EAGAIN')) continue; // the table changed between counting and filling
        if (isSysError(e, 'EINVAL')) throw new DrmError(`${this.label}: the kernel has no AMDGPU_GEM_LIST_HANDLES (needs Linux 6.18 or later); its buffers cannot be listed`, 'ENOTSUP');
        return wrap(`${this.label}: GEM_LIST_HANDLES`, () => { throw e; });
      }
    }
    throw new DrmError(`${this.label}: GEM_LIST_HANDLES kept changing (EAGAIN 5 times)`, 'EAGAIN');
  }

  mappings(handle: number): S.VmEntry[] {
    let cap = PROBE;
    for (;;) {
      const a = S.mappingInfoArg(handle, cap);
      wrap(`${this.label}: GEM_OP(GET_MAPPING_INFO) of handle ${handle}`, () => this.sys.ioctl(this.fd, S.REQ.GEM_OP, a), {
        EINVAL: 'EINVAL: the kernel has no AMDGPU_GEM_OP_GET_MAPPING_INFO (needs Linux 6.18 or later)',
      });
      const r = S.mappingInfoResult(a, cap);
      if (r.entries) return r.entries;
      cap = r.count;
    }
  }

  /** the BO's fake mmap offset, or undefined when the kernel refuses CPU access (EPERM, D13) */
  mmapOffset(handle: number): bigint | undefined {
    const a = S.gemMmapArg(handle);
    try {
      this.sys.ioctl(this.fd, S.REQ.GEM_MMAP, a);
    } catch (e) {
      if (isSysError(e, 'EPERM')) return undefined;
      return wrap(`${this.label}: GEM_MMAP of handle ${handle}`, () => { throw e; });
    }
    return S.gemMmapResult(a);
  }

  create(c: S.CreateInfo): number {
    const a = S.gemCreateArg(c);
    wrap(`${this.label}: GEM_CREATE of ${c.size} bytes`, () => this.sys.ioctl(this.fd, S.REQ.GEM_CREATE, a));
    return S.gemCreateResult(a);
  }

  changeHandle(handle: number, to: number): void {
    if (handle === to) return;
    wrap(`${this.label}: GEM_CHANGE_HANDLE ${handle} -> ${to}`, () => this.sys.ioctl(this.fd, S.REQ.GEM_CHANGE_HANDLE, S.changeHandleArg(handle, to)), {
      EINVAL: 'EINVAL: the kernel has no usable DRM_IOCTL_GEM_CHANGE_HANDLE (missing or disabled); buffers cannot be put back at their handles',
      ENOSPC: `ENOSPC: handle ${to} is already in use`,
    });
  }

  mapVa(v: Omit<S.GemVa, 'operation'>): void {
    wrap(`${this.label}: GEM_VA MAP of handle ${v.handle} at 0x${v.va.toString(16)} (+0x${v.size.toString(16)}, offset 0x${v.offset.toString(16)}, flags 0x${v.flags.toString(16)})`,
      () => this.sys.ioctl(this.fd, S.REQ.GEM_VA, S.gemVaArg({ ...v, operation: S.VA_OP.MAP })));
  }

  exportFd(handle: number, flags: number): number {
    const a = S.primeArg(handle, flags);
    wrap(`${this.label}: PRIME_HANDLE_TO_FD of handle ${handle}`, () => this.sys.ioctl(this.fd, S.REQ.PRIME_HANDLE_TO_FD, a));
    return S.primeFdResult(a);
  }

  importFd(dmabufFd: number): number {
    const a = S.primeArg(0, 0, dmabufFd);
    wrap(`${this.label}: PRIME_FD_TO_HANDLE`, () => this.sys.ioctl(this.fd, S.REQ.PRIME_FD_TO_HANDLE, a));
    return S.primeHandleResult(a);
  }

  closeHandle(handle: number): void {
    wrap(`${this.label}: GEM_CLOSE ${handle}`, () => this.sys.ioctl(this.fd, S.REQ.GEM_CLOSE, S.gemCloseArg(handle)));
  }
}
