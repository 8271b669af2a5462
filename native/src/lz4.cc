// LZ4 raw blocks (the format CRIU stores compressed pages in) through Debian's liblz4, the
// reference implementation CRIU itself links. Thin wrappers: sizes and policy live in images/.
#include "common.h"

#include <lz4.h>

namespace engine_native {

namespace {

// lz4Decompress(src, dst) -> LZ4_decompress_safe(src, dst, src.length, dst.length): the number
// of bytes decoded into dst, or a negative number when src is not a valid block that fits dst.
Napi::Value Lz4Decompress(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint8_t *src = nullptr, *dst = nullptr;
  size_t slen = 0, dlen = 0;
  if (info.Length() < 2 || !ToBytes(info[0], &src, &slen) || !ToBytes(info[1], &dst, &dlen))
    return ThrowType(env, "lz4Decompress(src: Uint8Array, dst: Uint8Array)");
  if (slen > (size_t)LZ4_MAX_INPUT_SIZE || dlen > (size_t)INT32_MAX) return ThrowType(env, "lz4Decompress: buffer too large for LZ4");
  int n = LZ4_decompress_safe(reinterpret_cast<const char *>(src), reinterpret_cast<char *>(dst), (int)slen, (int)dlen);
  return Napi::Number::New(env, n);
}

// lz4DecompressBatch(src, dst, plan) -> blocks decoded: plan holds [srcOff, srcLen, dstOff,
// dstLen] per block; each block is LZ4_decompress_safe(src + srcOff, dst + dstOff) and must give
// exactly dstLen bytes. Stops at the first that does not (its index is the return value), so
// many small blocks cost one call from JS.
Napi::Value Lz4DecompressBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint8_t *src = nullptr, *dst = nullptr;
  size_t slen = 0, dlen = 0;
  if (info.Length() < 3 || !ToBytes(info[0], &src, &slen) || !ToBytes(info[1], &dst, &dlen) || !info[2].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    return ThrowType(env, "lz4DecompressBatch(src: Uint8Array, dst: Uint8Array, plan: Float64Array)");
  Napi::Float64Array plan = info[2].As<Napi::Float64Array>();
  size_t n = plan.ElementLength() / 4;
  const double *p = plan.Data();
  for (size_t i = 0; i < n; i++, p += 4) {
    double so = p[0], sl = p[1], doff = p[2], dl = p[3];
    if (so < 0 || sl < 0 || doff < 0 || dl < 0 || so + sl > (double)slen || doff + dl > (double)dlen || sl > LZ4_MAX_INPUT_SIZE || dl > INT32_MAX)
      return ThrowType(env, "lz4DecompressBatch: block " + std::to_string(i) + " lies outside its buffers");
    int got = LZ4_decompress_safe(reinterpret_cast<const char *>(src) + (size_t)so, reinterpret_cast<char *>(dst) + (size_t)doff, (int)sl, (int)dl);
    if (got != (int)dl) return Napi::Number::New(env, (double)i);
  }
  return Napi::Number::New(env, (double)n);
}

// lz4Compress(src, dst, acceleration) -> LZ4_compress_fast: bytes written to dst, 0 when the
// block does not fit dst.
Napi::Value Lz4Compress(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint8_t *src = nullptr, *dst = nullptr;
  size_t slen = 0, dlen = 0;
  if (info.Length() < 3 || !ToBytes(info[0], &src, &slen) || !ToBytes(info[1], &dst, &dlen) || !info[2].IsNumber())
    return ThrowType(env, "lz4Compress(src: Uint8Array, dst: Uint8Array, acceleration: number)");
  if (slen > (size_t)LZ4_MAX_INPUT_SIZE || dlen > (size_t)INT32_MAX) return ThrowType(env, "lz4Compress: buffer too large for LZ4");
  int n = LZ4_compress_fast(reinterpret_cast<const char *>(src), reinterpret_cast<char *>(dst), (int)slen, (int)dlen, info[2].As<Napi::Number>().Int32Value());
  return Napi::Number::New(env, n);
}

Napi::Value Lz4CompressBound(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "lz4CompressBound(size: number)");
  return Napi::Number::New(env, LZ4_compressBound(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value Lz4Version(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), LZ4_versionString());
}

}  // namespace

void InitLz4(Napi::Env env, Napi::Object exports) {
  exports.Set("lz4Decompress", Napi::Function::New(env, Lz4Decompress));
  exports.Set("lz4DecompressBatch", Napi::Function::New(env, Lz4DecompressBatch));
  exports.Set("lz4Compress", Napi::Function::New(env, Lz4Compress));
  exports.Set("lz4CompressBound", Napi::Function::New(env, Lz4CompressBound));
  exports.Set("lz4Version", Napi::Function::New(env, Lz4Version));
}

}  // namespace engine_native
