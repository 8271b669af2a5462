// Module entry and the shared conversion helpers.
#include "common.h"

namespace engine_native {

Napi::Value ThrowSys(Napi::Env env, const SysError &e) {
  std::string msg = std::string(e.call ? e.call : "syscall") + ": " + strerror(e.err);
  if (!e.detail.empty()) msg += " (" + e.detail + ")";
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("errno", Napi::Number::New(env, e.err));
  const char *name = strerrorname_np(e.err);
  err.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  err.Set("syscall", Napi::String::New(env, e.call ? e.call : "syscall"));
  err.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value ThrowSys(Napi::Env env, const char *call, int e) {
  SysError s;
  s.set(call, e);
  return ThrowSys(env, s);
}

Napi::Value ThrowType(Napi::Env env, const std::string &msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ToU64(const Napi::Value &v, uint64_t *out) {
  if (v.IsBigInt()) {
    bool lossless = true;
    *out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return true;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    *out = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    return true;
  }
  return false;
}

bool ToI64(const Napi::Value &v, int64_t *out) {
  if (v.IsBigInt()) {
    bool lossless = true;
    *out = v.As<Napi::BigInt>().Int64Value(&lossless);
    return true;
  }
  if (v.IsNumber()) {
    *out = v.As<Napi::Number>().Int64Value();
    return true;
  }
  return false;
}

Napi::Value U64(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }
Napi::Value I64(Napi::Env env, int64_t v) { return Napi::BigInt::New(env, v); }

bool ToBytes(const Napi::Value &v, uint8_t **data, size_t *len) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  Napi::ArrayBuffer ab = ta.ArrayBuffer();
  *data = static_cast<uint8_t *>(ab.Data()) + ta.ByteOffset();
  *len = ta.ByteLength();
  return true;
}

}  // namespace engine_native

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  engine_native::InitTracer(env, exports);
  engine_native::InitSys(env, exports);
  engine_native::InitRestore(env, exports);
  engine_native::InitGpu(env, exports);
  engine_native::InitLz4(env, exports);
  return exports;
}

NODE_API_MODULE(engine_native, InitModule)
