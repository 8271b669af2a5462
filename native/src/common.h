// Shared helpers of the addon: errno-carrying errors and JS<->C value conversion.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>
#include <sys/socket.h>

namespace engine_native {

// A failed system call: the errno and the call's name, turned into a JS exception on the JS thread.
struct SysError {
  int err = 0;
  const char *call = nullptr;
  std::string detail;
  bool failed() const { return err != 0; }
  void set(const char *c, int e = errno, std::string d = "") {
    call = c;
    err = e ? e : EIO;
    detail = std::move(d);
  }
};

// Throws a JS Error with .errno (positive), .code ("ESRCH") and .syscall; returns undefined.
Napi::Value ThrowSys(Napi::Env env, const SysError &e);
Napi::Value ThrowSys(Napi::Env env, const char *call, int err);
Napi::Value ThrowType(Napi::Env env, const std::string &msg);

// Numbers or BigInts as 64-bit values (addresses, masks).
bool ToU64(const Napi::Value &v, uint64_t *out);
bool ToI64(const Napi::Value &v, int64_t *out);
Napi::Value U64(Napi::Env env, uint64_t v);
Napi::Value I64(Napi::Env env, int64_t v);

// Byte view of a Buffer / Uint8Array argument.
bool ToBytes(const Napi::Value &v, uint8_t **data, size_t *len);

// sendmsg of len bytes with fds as one SCM_RIGHTS message (none: plain data), to the address
// `to` (tolen bytes) when given; flags gain MSG_NOSIGNAL. Returns what sendmsg returns.
ssize_t SendWithRights(int sock, const void *data, size_t len, const std::vector<int> &fds, const void *to, socklen_t tolen, int flags);

void InitTracer(Napi::Env env, Napi::Object exports);
void InitSys(Napi::Env env, Napi::Object exports);
void InitRestore(Napi::Env env, Napi::Object exports);
void InitGpu(Napi::Env env, Napi::Object exports);
void InitLz4(Napi::Env env, Napi::Object exports);

}  // namespace engine_native
