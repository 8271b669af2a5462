// Two calls the GPU plugin's real backend needs and Node cannot make: an ioctl whose struct carries
// user pointers, and a copy through a shared mapping of a device fd. Thin wrappers, no policy.
#include "common.h"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

namespace engine_native {

namespace {

// ioctlPointers(fd, req, buf, [{at, target}]) -> ioctl result. The u64 at each `at` of a copy of
// buf is set to the address of `target` for the call; the kernel reads and writes the targets in
// place; afterwards the copy goes back into buf with the pointer fields as the caller wrote them
// (no engine address leaks into the struct).
Napi::Value IoctlPointers(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t req = 0;
  uint8_t *data = nullptr;
  size_t len = 0;
  if (info.Length() < 4 || !info[0].IsNumber() || !ToU64(info[1], &req) || !ToBytes(info[2], &data, &len) || !info[3].IsArray())
    return ThrowType(env, "ioctlPointers(fd, request, buf, [{at, target}])");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Array fix = info[3].As<Napi::Array>();
  std::vector<uint8_t> copy(data, data + len);
  std::vector<size_t> ats;
  for (uint32_t i = 0; i < fix.Length(); i++) {
    Napi::Value v = fix.Get(i);
    if (!v.IsObject()) return ThrowType(env, "ioctlPointers: each pointer field is {at, target}");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value at = o.Get("at");
    uint8_t *t = nullptr;
    size_t tlen = 0;
    if (!at.IsNumber() || !ToBytes(o.Get("target"), &t, &tlen)) return ThrowType(env, "ioctlPointers: each pointer field is {at: number, target: Uint8Array}");
    int64_t off = at.As<Napi::Number>().Int64Value();
    if (off < 0 || (uint64_t)off + 8 > len) return ThrowType(env, "ioctlPointers: pointer field at " + std::to_string(off) + " is outside the " + std::to_string(len) + "-byte struct");
    uint64_t addr = (uint64_t)(uintptr_t)t;
    memcpy(copy.data() + off, &addr, 8);
    ats.push_back((size_t)off);
  }
  int r = ioctl(fd, (unsigned long)req, copy.data());
  if (r < 0) return ThrowSys(env, "ioctl", errno);
  for (size_t off : ats) memcpy(copy.data() + off, data + off, 8);
  memcpy(data, copy.data(), len);
  return Napi::Number::New(env, r);
}

// mmapCopy(fd, offset, length, buf, write): maps [offset, offset+length) of fd shared, copies
// length bytes out of it into buf (write false) or from buf into it (write true), unmaps. The
// offset need not be page-aligned. A regular file (memfd) too short for the range is refused with
// ENXIO: touching a page past its end would kill the process with SIGBUS.
Napi::Value MmapCopy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t offset = 0, length = 0;
  uint8_t *data = nullptr;
  size_t len = 0;
  if (info.Length() < 5 || !info[0].IsNumber() || !ToU64(info[1], &offset) || !ToU64(info[2], &length) || !ToBytes(info[3], &data, &len) || !info[4].IsBoolean())
    return ThrowType(env, "mmapCopy(fd, offset, length, buf, write)");
  if (length > len) return ThrowType(env, "mmapCopy: length " + std::to_string(length) + " is more than the buffer's " + std::to_string(len) + " bytes");
  if (length == 0) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool write = info[4].As<Napi::Boolean>().Value();
  struct stat st;
  if (fstat(fd, &st) < 0) return ThrowSys(env, "fstat", errno);
  if (S_ISREG(st.st_mode) && offset + length > (uint64_t)st.st_size) return ThrowSys(env, "mmap", ENXIO);
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t base = offset & ~(page - 1);
  size_t delta = (size_t)(offset - base);
  size_t maplen = (size_t)length + delta;
  void *m = mmap(nullptr, maplen, write ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, (off_t)base);
  if (m == MAP_FAILED) return ThrowSys(env, "mmap", errno);
  uint8_t *p = static_cast<uint8_t *>(m) + delta;
  if (write) memcpy(p, data, (size_t)length);
  else memcpy(data, p, (size_t)length);
  if (munmap(m, maplen) < 0) return ThrowSys(env, "munmap", errno);
  return env.Undefined();
}

}  // namespace

void InitGpu(Napi::Env env, Napi::Object exports) {
  exports.Set("ioctlPointers", Napi::Function::New(env, IoctlPointers));
  exports.Set("mmapCopy", Napi::Function::New(env, MmapCopy));
}

}  // namespace engine_native
