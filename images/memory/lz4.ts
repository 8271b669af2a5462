// LZ4 raw blocks as CRIU stores them (no frame, no size prefix): liblz4 through the native
// addon, loaded only when a compressed set is met, so plain sets need no addon.
import { native } from '../../native';

export class Lz4Error extends Error {}

let lib: ReturnType<typeof native> | undefined;

function addon(): ReturnType<typeof native> {
  if (!lib) {
    try {
      lib = native();
    } catch (e) {
      throw new Lz4Error(`LZ4 pages need the native addon (liblz4): ${(e as Error).message}`);
    }
  }
  return lib;
}

/**
 * Decodes one block into exactly dst.length bytes. CRIU's reader requires the exact size, and
 * liblz4 accepts a block that decodes to fewer bytes than dst holds, so a short result is an error.
 */
export function lz4DecodeExact(src: Uint8Array, dst: Uint8Array): void {
  const n = addon().lz4Decompress(src, dst);
  if (n === dst.length) return;
  throw new Lz4Error(n < 0 ? `not a valid LZ4 block decoding to ${dst.length} bytes` : `LZ4 block decodes to ${n} bytes, not ${dst.length}`);
}

/**
 * Decodes many blocks in one call: plan = [srcOff, srcLen, dstOff, dstLen] per block (the first
 * `count`). Returns `count`, or the index of the first block that did not decode exactly (for
 * a per-block message, decode that one again with lz4DecodeExact).
 */
export function lz4DecodeBatch(src: Uint8Array, dst: Uint8Array, plan: Float64Array, count: number): number {
  return addon().lz4DecompressBatch(src, dst, count * 4 === plan.length ? plan : plan.subarray(0, count * 4));
}

/** Compresses src into dst (at least lz4Bound(src.length) bytes); returns the block's length. */
export function lz4Encode(src: Uint8Array, dst: Uint8Array, acceleration = 1): number {
  const n = addon().lz4Compress(src, dst, acceleration);
  if (n <= 0) throw new Lz4Error(`LZ4 compression of ${src.length} bytes failed`);
  return n;
}

export function lz4Bound(size: number): number {
  return addon().lz4CompressBound(size);
}

export function lz4Version(): string {
  return addon().lz4Version();
}
