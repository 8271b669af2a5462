// The plugin's image files, named and framed exactly as CRIU's amdgpu plugin does (spec §2):
// an 8-byte little-endian length, then one protobuf message or the raw contents. Unlike CRIU we
// write the true length, write atomically (no stale tail, D10), and check everything on reading
// (counts, lengths, presence: D3, D6, D16).
import * as fs from 'fs';
import * as path from 'path';
import { writeImage, loadImage } from '../../../images/files';
import type { Msg } from '../../../images/codec';
import { EngineError } from '../../errors';

export const renderName = (id: number) => `amdgpu-renderD-${id}.img`;
export const dmabufName = (id: number) => `amdgpu-dmabuf_${id}.img`;
export const kfdName = (id: number) => `amdgpu-kfd-${id}.img`;
/** one file per GPU (its user gpu_id in hex): the KFD file's VRAM/GTT BOs in bucket order */
export const kfdPagesName = (id: number, gpuId: number) => `amdgpu-pages-${id}-${gpuId.toString(16).padStart(4, '0')}.img`;
/** one file per BO: CRIU file id, render minor at dump (decimal), index in bo_entries (hex) */
export const drmPagesName = (id: number, minor: number, index: number) => `amdgpu-drm-pages-${id}-${minor}-${index.toString(16).padStart(4, '0')}.img`;

export class AmdgpuImageError extends EngineError {
  constructor(file: string, field: string, why: string) {
    super(`${file}: ${field}: ${why}`, 'EIMAGE');
    this.name = 'AmdgpuImageError';
  }
}

export function writeMessage(dir: string, name: string, kind: 'AMDGPU_RENDER_NODE' | 'AMDGPU_DMABUF' | 'AMDGPU_KFD', msg: Msg): void {
  writeImage(path.join(dir, name), kind, [{ msg }]);
}

export function readMessage(dir: string, name: string): Msg | undefined {
  const file = path.join(dir, name);
  if (!fs.existsSync(file)) return undefined;
  try {
    return loadImage(file).entries[0].msg;
  } catch (e) {
    throw new AmdgpuImageError(name, 'message', `unreadable: ${(e as Error).message.replace(/^.*?: /, '')}`);
  }
}

const big = (v: unknown): bigint => BigInt(v as number | bigint);

/** checks a criu_render_node beyond what the decoder does: counts match, sizes make sense */
export function checkRenderNode(name: string, rd: Msg): void {
  const bos = (rd.bo_entries ?? []) as Msg[];
  if (big(rd.num_of_bos) !== BigInt(bos.length)) throw new AmdgpuImageError(name, 'num_of_bos', `says ${rd.num_of_bos}, bo_entries holds ${bos.length}`);
  const seen = new Set<number>();
  bos.forEach((b, i) => {
    const vms = (b.vm_entries ?? []) as Msg[];
    if (Number(b.num_of_vms) !== vms.length) throw new AmdgpuImageError(name, `bo_entries[${i}].num_of_vms`, `says ${b.num_of_vms}, vm_entries holds ${vms.length}`);
    if (big(b.size) <= 0n || big(b.size) % 4096n) throw new AmdgpuImageError(name, `bo_entries[${i}].size`, `${b.size} is not a positive multiple of 4096`);
    const h = Number(b.handle);
    if (h <= 0 || h > 0x7fffffff) throw new AmdgpuImageError(name, `bo_entries[${i}].handle`, `invalid handle ${h}`);
    if (seen.has(h)) throw new AmdgpuImageError(name, `bo_entries[${i}].handle`, `handle ${h} appears twice`);
    seen.add(h);
  });
}

/** checks a criu_kfd: counts match, every BO names a GPU of the image */
export function checkKfd(name: string, k: Msg): void {
  const bos = (k.bo_entries ?? []) as Msg[];
  const devs = (k.device_entries ?? []) as Msg[];
  if (big(k.num_of_bos) !== BigInt(bos.length)) throw new AmdgpuImageError(name, 'num_of_bos', `says ${k.num_of_bos}, bo_entries holds ${bos.length}`);
  if (Number(k.num_of_gpus) + Number(k.num_of_cpus) !== devs.length)
    throw new AmdgpuImageError(name, 'device_entries', `holds ${devs.length}, num_of_gpus + num_of_cpus say ${Number(k.num_of_gpus) + Number(k.num_of_cpus)}`);
  const gpus = new Set(devs.map((d) => Number(d.gpu_id)).filter((g) => g));
  bos.forEach((b, i) => {
    if (!gpus.has(Number(b.gpu_id))) throw new AmdgpuImageError(name, `bo_entries[${i}].gpu_id`, `0x${Number(b.gpu_id).toString(16)} is not in device_entries`);
    if (big(b.size) <= 0n || big(b.size) % 4096n) throw new AmdgpuImageError(name, `bo_entries[${i}].size`, `${b.size} is not a positive multiple of 4096`);
  });
}

/** writes a contents file with its true length, atomically */
export function writePages(dir: string, name: string, size: bigint, chunks: Iterable<Uint8Array>): void {
  const file = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.${process.pid}.tmp`);
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    const hdr = Buffer.alloc(8);
    hdr.writeBigUInt64LE(size);
    fs.writeSync(fd, hdr);
    let n = 0n;
    for (const c of chunks) {
      let off = 0;
      while (off < c.length) off += fs.writeSync(fd, c, off, c.length - off);
      n += BigInt(c.length);
    }
    if (n !== size) throw new EngineError(`${name}: wrote ${n} bytes of ${size}`);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** opens a contents file after checking its header and length against the BO size */
export function openPages(dir: string, name: string, size: bigint, who: string): { fd: number; read(off: number, len: number): Buffer; close(): void } {
  const file = path.join(dir, name);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    throw new AmdgpuImageError(name, 'file', `missing (contents of ${who})`);
  }
  const len = BigInt(fs.fstatSync(fd).size);
  const hdr = Buffer.alloc(8);
  const got = fs.readSync(fd, hdr, 0, 8, 0);
  const fail = (why: string) => { fs.closeSync(fd); return new AmdgpuImageError(name, 'size', why); };
  if (got < 8) throw fail(`truncated length header (${got} of 8 bytes)`);
  const header = hdr.readBigUInt64LE(0);
  if (len - 8n < size) throw fail(`truncated: ${who} has ${size} bytes, the file holds ${len - 8n}`);
  if (len - 8n > size) throw fail(`${len - 8n} bytes of contents, but ${who} has ${size}`);
  if (header !== size) throw fail(`header says ${header} bytes, ${who} has ${size}`);
  return {
    fd,
    read(off: number, n: number): Buffer {
      const b = Buffer.alloc(n);
      let at = 0;
      while (at < n) {
        const r = fs.readSync(fd, b, at, n - at, 8 + off + at);
        if (r <= 0) throw new AmdgpuImageError(name, 'size', `short read at ${off + at}`);
        at += r;
      }
      return b;
    },
    close: () => fs.closeSync(fd),
  };
}
