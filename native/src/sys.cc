// Thin wrappers of system calls Node does not offer. No policy: each throws on failure with
// errno and the call's name. None of these needs the tracer thread.
#include "common.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <linux/netlink.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <thread>
#include <vector>

// PAGEMAP_SCAN (Linux 6.7) is newer than Debian 12's uapi headers.
struct pm_scan_arg_v {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct page_region_v {
  uint64_t start, end, categories;
};
#define PAGEMAP_SCAN_IOCTL _IOWR('f', 16, struct pm_scan_arg_v)

namespace engine_native {

namespace {

int Int(const Napi::Value &v) { return v.As<Napi::Number>().Int32Value(); }

// readMemory(pid, addr, buf, offset?, length?) -> bytes read (process_vm_readv, one iovec).
Napi::Value ReadMemory(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  pid_t pid = Int(info[0]);
  uint64_t addr;
  uint8_t *data;
  size_t len;
  if (!ToU64(info[1], &addr) || !ToBytes(info[2], &data, &len)) return ThrowType(env, "readMemory(pid, addr, buf)");
  size_t off = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : 0;
  size_t n = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Int64Value() : len - off;
  if (off > len || n > len - off) return ThrowType(env, "readMemory: range outside the buffer");
  struct iovec local = {data + off, n};
  struct iovec remote = {(void *)addr, n};
  ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (r < 0) return ThrowSys(env, "process_vm_readv", errno);
  return Napi::Number::New(env, (double)r);
}

// writeMemory(pid, addr, buf) -> bytes written (process_vm_writev; needs a writable mapping).
Napi::Value WriteMemory(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  pid_t pid = Int(info[0]);
  uint64_t addr;
  uint8_t *data;
  size_t len;
  if (!ToU64(info[1], &addr) || !ToBytes(info[2], &data, &len)) return ThrowType(env, "writeMemory(pid, addr, buf)");
  struct iovec local = {data, len};
  struct iovec remote = {(void *)addr, len};
  ssize_t r = process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (r < 0) return ThrowSys(env, "process_vm_writev", errno);
  return Napi::Number::New(env, (double)r);
}

bool WriteAll(int fd, const uint8_t *p, size_t n, SysError *err) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      err->set("write");
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

// copyMemoryToFd(pid, ranges: BigUint64Array [addr, len, addr, len, ...], fd, chunkBytes)
//   -> bytes written. Copies remote ranges, in order, into fd through one reused buffer.
Napi::Value CopyMemoryToFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  pid_t pid = Int(info[0]);
  if (!info[1].IsTypedArray()) return ThrowType(env, "copyMemoryToFd: ranges must be a BigUint64Array");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_biguint64_array) return ThrowType(env, "copyMemoryToFd: ranges must be a BigUint64Array");
  const uint64_t *ranges = reinterpret_cast<const uint64_t *>(
      static_cast<uint8_t *>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
  size_t nranges = ta.ElementLength() / 2;
  int fd = Int(info[2]);
  size_t chunk = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int64Value() : (4 << 20);
  std::vector<uint8_t> buf(chunk);
  SysError err;
  uint64_t total = 0;
  for (size_t i = 0; i < nranges && !err.failed(); i++) {
    uint64_t addr = ranges[2 * i], left = ranges[2 * i + 1];
    while (left > 0) {
      size_t n = left < chunk ? left : chunk;
      struct iovec local = {buf.data(), n};
      struct iovec remote = {(void *)addr, n};
      ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (r < 0) {
        char where[64];
        snprintf(where, sizeof where, "at 0x%llx", (unsigned long long)addr);
        err.set("process_vm_readv", errno, where);
        break;
      }
      if (r == 0) {
        err.set("process_vm_readv", EFAULT, "short read");
        break;
      }
      if (!WriteAll(fd, buf.data(), (size_t)r, &err)) break;
      addr += r;
      left -= r;
      total += r;
    }
  }
  if (err.failed()) return ThrowSys(env, err);
  return Napi::Number::New(env, (double)total);
}

// pagemapScan(pagemapFd, start, end, {categoryMask, categoryInverted, anyofMask, returnMask,
//   flags, maxPages, maxRegions}) -> {regions: BigUint64Array [start, end, categories]..., walkEnd}
Napi::Value PagemapScan(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0]);
  uint64_t start, end;
  if (!ToU64(info[1], &start) || !ToU64(info[2], &end)) return ThrowType(env, "pagemapScan(fd, start, end, opts)");
  Napi::Object o = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  auto opt = [&](const char *k, uint64_t def) {
    uint64_t v = def;
    if (o.Has(k)) ToU64(o.Get(k), &v);
    return v;
  };
  size_t max_regions = opt("maxRegions", 4096);
  std::vector<page_region_v> vec(max_regions);
  pm_scan_arg_v arg;
  memset(&arg, 0, sizeof arg);
  arg.size = sizeof arg;
  arg.flags = opt("flags", 0);
  arg.start = start;
  arg.end = end;
  arg.vec = (uint64_t)(uintptr_t)vec.data();
  arg.vec_len = max_regions;
  arg.max_pages = opt("maxPages", 0);
  arg.category_inverted = opt("categoryInverted", 0);
  arg.category_mask = opt("categoryMask", 0);
  arg.category_anyof_mask = opt("anyofMask", 0);
  arg.return_mask = opt("returnMask", 0);
  long n = ioctl(fd, PAGEMAP_SCAN_IOCTL, &arg);
  if (n < 0) return ThrowSys(env, "ioctl(PAGEMAP_SCAN)", errno);
  Napi::BigUint64Array regions = Napi::BigUint64Array::New(env, n * 3);
  for (long i = 0; i < n; i++) {
    regions[(size_t)(3 * i)] = vec[i].start;
    regions[(size_t)(3 * i + 1)] = vec[i].end;
    regions[(size_t)(3 * i + 2)] = vec[i].categories;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("regions", regions);
  r.Set("walkEnd", U64(env, arg.walk_end));
  return r;
}

// preadU64(fd, offset, count) -> BigUint64Array (pagemap entries at a 64-bit offset).
Napi::Value PreadU64(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0]);
  uint64_t off;
  if (!ToU64(info[1], &off)) return ThrowType(env, "preadU64(fd, offset, count)");
  size_t count = info[2].As<Napi::Number>().Int64Value();
  Napi::BigUint64Array out = Napi::BigUint64Array::New(env, count);
  uint8_t *p = reinterpret_cast<uint8_t *>(out.ArrayBuffer().Data()) + out.ByteOffset();
  size_t want = count * 8, got = 0;
  while (got < want) {
    ssize_t r = pread(fd, p + got, want - got, (off_t)(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return ThrowSys(env, "pread", errno);
    }
    if (r == 0) break;
    got += r;
  }
  return out;
}

// pread/pwrite with 64-bit offsets (for /proc/PID/mem above 2^53 is not needed, but exact).
Napi::Value Pread(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0]);
  uint8_t *data;
  size_t len;
  uint64_t off;
  if (!ToBytes(info[1], &data, &len) || !ToU64(info[2], &off)) return ThrowType(env, "pread(fd, buf, offset)");
  ssize_t r = pread(fd, data, len, (off_t)off);
  if (r < 0) return ThrowSys(env, "pread", errno);
  return Napi::Number::New(env, (double)r);
}

Napi::Value Pwrite(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = Int(info[0]);
  uint8_t *data;
  size_t len;
  uint64_t off;
  if (!ToBytes(info[1], &data, &len) || !ToU64(info[2], &off)) return ThrowType(env, "pwrite(fd, buf, offset)");
  ssize_t r = pwrite(fd, data, len, (off_t)off);
  if (r < 0) return ThrowSys(env, "pwrite", errno);
  return Napi::Number::New(env, (double)r);
}

Napi::Value PidfdOpen(const Napi::CallbackInfo &info) {
  long r = syscall(SYS_pidfd_open, Int(info[0]), info.Length() > 1 ? Int(info[1]) : 0);
  if (r < 0) return ThrowSys(info.Env(), "pidfd_open", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value PidfdGetfd(const Napi::CallbackInfo &info) {
  long r = syscall(SYS_pidfd_getfd, Int(info[0]), Int(info[1]), 0);
  if (r < 0) return ThrowSys(info.Env(), "pidfd_getfd", errno);
  return Napi::Number::New(info.Env(), r);
}

// kcmp(pid1, pid2, type, idx1, idx2) -> 0 equal, 1/2 ordered, 3 not equal.
Napi::Value Kcmp(const Napi::CallbackInfo &info) {
  uint64_t i1 = 0, i2 = 0;
  ToU64(info[3], &i1);
  ToU64(info[4], &i2);
  long r = syscall(SYS_kcmp, Int(info[0]), Int(info[1]), Int(info[2]), i1, i2);
  if (r < 0) return ThrowSys(info.Env(), "kcmp", errno);
  return Napi::Number::New(info.Env(), r);
}

// kcmpEpollTfd(pid1, pid2, fd1, efd, tfd, toff) -> kcmp(KCMP_EPOLL_TFD): 0 when pid1's fd1 is the
// file registered in pid2's epoll efd as the toff-th target under fd number tfd.
Napi::Value KcmpEpollTfd(const Napi::CallbackInfo &info) {
  struct { uint32_t efd, tfd, toff; } slot = {(uint32_t)Int(info[3]), (uint32_t)Int(info[4]), (uint32_t)Int(info[5])};
  long r = syscall(SYS_kcmp, Int(info[0]), Int(info[1]), 7 /* KCMP_EPOLL_TFD */, (unsigned long)Int(info[2]), (unsigned long)&slot);
  if (r < 0) return ThrowSys(info.Env(), "kcmp", errno);
  return Napi::Number::New(info.Env(), r);
}

// readlinkFd(fd) -> the target of the symlink an O_PATH|O_NOFOLLOW fd refers to (readlinkat with
// an empty path), also when the symlink was unlinked.
Napi::Value ReadlinkFd(const Napi::CallbackInfo &info) {
  char buf[PATH_MAX];
  ssize_t r = readlinkat(Int(info[0]), "", buf, sizeof buf);
  if (r < 0) return ThrowSys(info.Env(), "readlinkat", errno);
  return Napi::String::New(info.Env(), buf, r);
}

// linkFollow(src, dst): linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW), so that a
// /proc/PID/fd/N link gives the open file a new name.
Napi::Value LinkFollow(const Napi::CallbackInfo &info) {
  std::string src = info[0].As<Napi::String>().Utf8Value(), dst = info[1].As<Napi::String>().Utf8Value();
  if (linkat(AT_FDCWD, src.c_str(), AT_FDCWD, dst.c_str(), AT_SYMLINK_FOLLOW) < 0) return ThrowSys(info.Env(), "linkat", errno);
  return info.Env().Undefined();
}

// tee(fdIn, fdOut, len, flags) -> bytes duplicated (pipe to pipe, nothing consumed).
Napi::Value Tee(const Napi::CallbackInfo &info) {
  ssize_t r = tee(Int(info[0]), Int(info[1]), info[2].As<Napi::Number>().Int64Value(),
                  info.Length() > 3 ? Int(info[3]) : 0);
  if (r < 0) return ThrowSys(info.Env(), "tee", errno);
  return Napi::Number::New(info.Env(), (double)r);
}

Napi::Value Pipe2(const Napi::CallbackInfo &info) {
  int fds[2];
  if (pipe2(fds, info.Length() > 0 ? Int(info[0]) : 0) < 0) return ThrowSys(info.Env(), "pipe2", errno);
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set((uint32_t)0, fds[0]);
  a.Set((uint32_t)1, fds[1]);
  return a;
}

// fcntl(fd, cmd, intArg) -> int result (F_GETFL, F_GETPIPE_SZ, F_SETPIPE_SZ, ...).
Napi::Value Fcntl(const Napi::CallbackInfo &info) {
  long arg = info.Length() > 2 ? info[2].As<Napi::Number>().Int64Value() : 0;
  int r = fcntl(Int(info[0]), Int(info[1]), arg);
  if (r < 0) return ThrowSys(info.Env(), "fcntl", errno);
  return Napi::Number::New(info.Env(), r);
}

// ioctl(fd, request, buf?) -> int result; buf is passed by pointer and filled in place.
Napi::Value Ioctl(const Napi::CallbackInfo &info) {
  uint64_t req = 0;
  ToU64(info[1], &req);
  uint8_t *data = nullptr;
  size_t len = 0;
  long argInt = 0;
  void *arg = nullptr;
  if (info.Length() > 2 && ToBytes(info[2], &data, &len)) arg = data;
  else if (info.Length() > 2 && info[2].IsNumber()) argInt = info[2].As<Napi::Number>().Int64Value(), arg = (void *)argInt;
  int r = ioctl(Int(info[0]), (unsigned long)req, arg);
  if (r < 0) return ThrowSys(info.Env(), "ioctl", errno);
  return Napi::Number::New(info.Env(), r);
}

Napi::Value Close(const Napi::CallbackInfo &info) {
  if (close(Int(info[0])) < 0) return ThrowSys(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// sendFds(sock, fds: number[], data?: Buffer) -> bytes sent (SCM_RIGHTS).
Napi::Value SendFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int sock = Int(info[0]);
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<int> fds(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) fds[i] = Int(arr.Get(i));
  uint8_t one = 0;
  uint8_t *data = &one;
  size_t len = 1;
  if (info.Length() > 2) ToBytes(info[2], &data, &len);
  ssize_t r = SendWithRights(sock, data, len, fds, nullptr, 0, 0);
  if (r < 0) return ThrowSys(env, "sendmsg", errno);
  return Napi::Number::New(env, (double)r);
}

// recvFds(sock, maxFds, maxBytes) -> {fds: number[], data: Buffer}
Napi::Value RecvFds(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int sock = Int(info[0]);
  size_t maxfds = Int(info[1]);
  size_t maxbytes = info.Length() > 2 ? Int(info[2]) : 1;
  std::vector<uint8_t> data(maxbytes ? maxbytes : 1);
  std::vector<uint8_t> cbuf(CMSG_SPACE(sizeof(int) * (maxfds ? maxfds : 1)));
  struct iovec iov = {data.data(), data.size()};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf.data();
  mh.msg_controllen = cbuf.size();
  ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  if (r < 0) return ThrowSys(env, "recvmsg", errno);
  Napi::Array fds = Napi::Array::New(env);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int *p = reinterpret_cast<int *>(CMSG_DATA(c));
    for (size_t i = 0; i < n; i++) fds.Set(fds.Length(), p[i]);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fds", fds);
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, data.data(), (size_t)r));
  return o;
}

// netlinkQuery(protocol, request: Buffer) -> Buffer[] (each a whole nlmsghdr message), for
// sock_diag dumps: sends one request and collects the replies up to NLMSG_DONE.
Napi::Value NetlinkQuery(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int proto = Int(info[0]);
  uint8_t *req;
  size_t reqlen;
  if (!ToBytes(info[1], &req, &reqlen)) return ThrowType(env, "netlinkQuery(protocol, request)");
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
  if (s < 0) return ThrowSys(env, "socket(AF_NETLINK)", errno);
  struct sockaddr_nl nl;
  memset(&nl, 0, sizeof nl);
  nl.nl_family = AF_NETLINK;
  if (sendto(s, req, reqlen, 0, (struct sockaddr *)&nl, sizeof nl) < 0) {
    int e = errno;
    close(s);
    return ThrowSys(env, "sendto(netlink)", e);
  }
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> buf(1 << 16);
  bool done = false;
  while (!done) {
    ssize_t r = recv(s, buf.data(), buf.size(), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(s);
      return ThrowSys(env, "recv(netlink)", e);
    }
    if (r == 0) break;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf.data(); NLMSG_OK(h, (size_t)r); h = NLMSG_NEXT(h, r)) {
      if (h->nlmsg_type == NLMSG_DONE) { done = true; break; }
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(h);
        if (e->error != 0) {
          close(s);
          return ThrowSys(env, "netlink", -e->error);
        }
        done = true;
        break;
      }
      out.Set(out.Length(), Napi::Buffer<uint8_t>::Copy(env, (uint8_t *)h, h->nlmsg_len));
    }
  }
  close(s);
  return out;
}

Napi::Value ClockGettime(const Napi::CallbackInfo &info) {
  struct timespec ts;
  if (clock_gettime(Int(info[0]), &ts) < 0) return ThrowSys(info.Env(), "clock_gettime", errno);
  return U64(info.Env(), (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec);
}

// lseek(fd, offset, whence) -> new offset as a BigInt (SEEK_DATA/SEEK_HOLE find the populated
// ranges of a shmem/tmpfs file; ENXIO past the last data).
// mknod(path, mode, major, minor): FIFOs and device nodes (Node has no mkfifo or mknod)
Napi::Value Mknod(const Napi::CallbackInfo &info) {
  std::string p = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = info[1].As<Napi::Number>().Uint32Value();
  dev_t dev = makedev(info.Length() > 2 ? info[2].As<Napi::Number>().Uint32Value() : 0, info.Length() > 3 ? info[3].As<Napi::Number>().Uint32Value() : 0);
  if (mknod(p.c_str(), mode, dev) < 0) return ThrowSys(info.Env(), "mknod", errno);
  return info.Env().Undefined();
}

// mount(source, target, fstype, flags, data)
Napi::Value Mount(const Napi::CallbackInfo &info) {
  std::string src = info[0].As<Napi::String>().Utf8Value(), tgt = info[1].As<Napi::String>().Utf8Value();
  std::string type = info[2].As<Napi::String>().Utf8Value();
  unsigned long flags = info.Length() > 3 ? (unsigned long)info[3].As<Napi::Number>().Int64Value() : 0;
  std::string data = info.Length() > 4 ? info[4].As<Napi::String>().Utf8Value() : "";
  if (mount(src.c_str(), tgt.c_str(), type.c_str(), flags, data.empty() ? nullptr : data.c_str()) < 0) return ThrowSys(info.Env(), "mount", errno);
  return info.Env().Undefined();
}

// umount2(target, flags)
Napi::Value Umount2(const Napi::CallbackInfo &info) {
  std::string tgt = info[0].As<Napi::String>().Utf8Value();
  int flags = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (umount2(tgt.c_str(), flags) < 0) return ThrowSys(info.Env(), "umount2", errno);
  return info.Env().Undefined();
}

// mmap(addr, length, prot, flags, fd, offset) -> the address (a bigint); munmap(addr, length).
// For the engine's own short-lived mappings (e.g. to make an anonymous shared memory object).
Napi::Value Mmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t addr = 0, len = 0, off = 0;
  if (info.Length() < 6 || !ToU64(info[0], &addr) || !ToU64(info[1], &len) || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsNumber() || !ToU64(info[5], &off))
    return ThrowType(env, "mmap(addr, length, prot, flags, fd, offset)");
  void *m = mmap((void *)(uintptr_t)addr, (size_t)len, Int(info[2]), Int(info[3]), Int(info[4]), (off_t)off);
  if (m == MAP_FAILED) return ThrowSys(env, "mmap", errno);
  return U64(env, (uint64_t)(uintptr_t)m);
}

Napi::Value Munmap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t addr = 0, len = 0;
  if (info.Length() < 2 || !ToU64(info[0], &addr) || !ToU64(info[1], &len)) return ThrowType(env, "munmap(addr, length)");
  if (munmap((void *)(uintptr_t)addr, (size_t)len) < 0) return ThrowSys(env, "munmap", errno);
  return env.Undefined();
}

Napi::Value Lseek(const Napi::CallbackInfo &info) {
  int64_t off = 0;
  if (!ToI64(info[1], &off)) return ThrowType(info.Env(), "lseek(fd, offset, whence)");
  off_t r = lseek(Int(info[0]), (off_t)off, Int(info[2]));
  if (r < 0) return ThrowSys(info.Env(), "lseek", errno);
  return I64(info.Env(), (int64_t)r);
}

// getsockopt(fd, level, name, len) -> Buffer of the option value (optlen bytes).
Napi::Value Getsockopt(const Napi::CallbackInfo &info) {
  std::vector<uint8_t> buf(info.Length() > 3 ? Int(info[3]) : 4);
  socklen_t len = buf.size();
  if (getsockopt(Int(info[0]), Int(info[1]), Int(info[2]), buf.data(), &len) < 0)
    return ThrowSys(info.Env(), "getsockopt", errno);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), buf.data(), len);
}

// setsockopt(fd, level, name, value: number (int) | Buffer).
Napi::Value Setsockopt(const Napi::CallbackInfo &info) {
  uint8_t *data;
  size_t len;
  int v = 0;
  if (!ToBytes(info[3], &data, &len)) {
    v = Int(info[3]);
    data = reinterpret_cast<uint8_t *>(&v);
    len = sizeof v;
  }
  if (setsockopt(Int(info[0]), Int(info[1]), Int(info[2]), data, len) < 0)
    return ThrowSys(info.Env(), "setsockopt", errno);
  return info.Env().Undefined();
}

// recvmsg(fd, maxBytes, flags, maxControl?) -> {bytes, data, msgFlags, cmsgs: {level, type, data}[]}
// (with MSG_PEEK: queued data is copied, not consumed; SCM_RIGHTS fds, if any, are the caller's to close).
Napi::Value Recvmsg(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<uint8_t> data(info[1].As<Napi::Number>().Int64Value() + 1);
  std::vector<uint8_t> cbuf(info.Length() > 3 ? Int(info[3]) : 256);
  struct iovec iov = {data.data(), data.size() - 1};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf.data();
  mh.msg_controllen = cbuf.size();
  ssize_t r = recvmsg(Int(info[0]), &mh, Int(info[2]) | MSG_CMSG_CLOEXEC);
  if (r < 0) return ThrowSys(env, "recvmsg", errno);
  Napi::Array cmsgs = Napi::Array::New(env);
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("level", c->cmsg_level);
    o.Set("type", c->cmsg_type);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, CMSG_DATA(c), c->cmsg_len - CMSG_LEN(0)));
    cmsgs.Set(cmsgs.Length(), o);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytes", Napi::Number::New(env, (double)r));
  o.Set("data", Napi::Buffer<uint8_t>::Copy(env, data.data(), r < (ssize_t)iov.iov_len ? r : iov.iov_len));
  o.Set("msgFlags", mh.msg_flags);
  o.Set("cmsgs", cmsgs);
  return o;
}

// openByHandleAt(mountFd, handleType, handle: Buffer, flags) -> fd (needs CAP_DAC_READ_SEARCH);
// resolves an inotify/fanotify watch's file handle to an open file.
Napi::Value OpenByHandleAt(const Napi::CallbackInfo &info) {
  uint8_t *data;
  size_t len;
  if (!ToBytes(info[2], &data, &len)) return ThrowType(info.Env(), "openByHandleAt(mountFd, type, handle, flags)");
  std::vector<uint8_t> fh(sizeof(struct file_handle) + len);
  struct file_handle *h = reinterpret_cast<struct file_handle *>(fh.data());
  h->handle_bytes = len;
  h->handle_type = Int(info[1]);
  memcpy(h->f_handle, data, len);
  int fd = open_by_handle_at(Int(info[0]), h, Int(info[3]));
  if (fd < 0) return ThrowSys(info.Env(), "open_by_handle_at", errno);
  return Napi::Number::New(info.Env(), fd);
}

// getOwnerEx(fd) -> {type, pid}: fcntl(F_GETOWN_EX), the SIGIO owner of an open file.
Napi::Value GetOwnerEx(const Napi::CallbackInfo &info) {
  struct f_owner_ex o = {F_OWNER_TID, 0};
  if (fcntl(Int(info[0]), F_GETOWN_EX, &o) < 0) return ThrowSys(info.Env(), "fcntl(F_GETOWN_EX)", errno);
  Napi::Object r = Napi::Object::New(info.Env());
  r.Set("type", (int)o.type);
  r.Set("pid", (int)o.pid);
  return r;
}

// Interrupt guard of a dump or restore: while on, SIGINT, SIGTERM and SIGHUP only record the
// first signal's number, so the engine can put its tracees back before it exits.
volatile sig_atomic_t g_interrupt = 0;
bool g_guard_on = false;
const int kGuarded[3] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_guard_old[3];

void OnInterrupt(int sig) {
  if (!g_interrupt) g_interrupt = sig;
}

// interruptGuard(on): installs (true) or removes (false) the recording handlers.
Napi::Value InterruptGuard(const Napi::CallbackInfo &info) {
  bool on = info.Length() > 0 && info[0].ToBoolean().Value();
  if (on && !g_guard_on) {
    g_interrupt = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnInterrupt;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 3; i++)
      if (sigaction(kGuarded[i], &sa, &g_guard_old[i]) < 0) return ThrowSys(info.Env(), "sigaction", errno);
    g_guard_on = true;
  } else if (!on && g_guard_on) {
    for (int i = 0; i < 3; i++) sigaction(kGuarded[i], &g_guard_old[i], nullptr);
    g_guard_on = false;
  }
  return info.Env().Undefined();
}

// interruptPending() -> the number of the first guarded signal received (0 = none).
Napi::Value InterruptPending(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), (int)g_interrupt); }

// fsyncAll(fds) -> undefined: fsync of every fd, run in parallel threads so that the
// filesystem can commit them together (sequential fsyncs each wait for their own commit).
Napi::Value FsyncAll(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) return ThrowType(env, "fsyncAll(fds: number[])");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<int> fds(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) fds[i] = arr.Get(i).As<Napi::Number>().Int32Value();
  std::vector<int> errs(fds.size(), 0);
  const size_t nthreads = fds.size() < 16 ? fds.size() : 16;
  std::vector<std::thread> threads;
  for (size_t t = 0; t < nthreads; t++)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < fds.size(); i += nthreads)
        if (fsync(fds[i]) < 0) errs[i] = errno;
    });
  for (auto &th : threads) th.join();
  for (int e : errs)
    if (e) return ThrowSys(env, "fsync", e);
  return env.Undefined();
}

// ioSetup(nrEvents) -> the new AIO context (its ring's address, a bigint); ioDestroy(ctx);
// ioGetevents(ctx, minNr, nr) -> the number of events (they are dropped; nothing waits);
// mremap(oldAddr, oldLength, newLength, flags, newAddr) -> the new address.
Napi::Value IoSetup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) return ThrowType(env, "ioSetup(nrEvents)");
  unsigned long ctx = 0;
  if (syscall(SYS_io_setup, (unsigned)Int(info[0]), &ctx) < 0) return ThrowSys(env, "io_setup", errno);
  return U64(env, ctx);
}

Napi::Value IoDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t ctx = 0;
  if (!ToU64(info[0], &ctx)) return ThrowType(env, "ioDestroy(ctx)");
  if (syscall(SYS_io_destroy, (unsigned long)ctx) < 0) return ThrowSys(env, "io_destroy", errno);
  return env.Undefined();
}

Napi::Value IoGetevents(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t ctx = 0;
  if (info.Length() < 3 || !ToU64(info[0], &ctx) || !info[1].IsNumber() || !info[2].IsNumber()) return ThrowType(env, "ioGetevents(ctx, minNr, nr)");
  long nr = Int(info[2]);
  if (nr < 0 || nr > 4096) return ThrowType(env, "ioGetevents: nr must be 0..4096");
  std::vector<uint8_t> events((size_t)nr * 32 + 32);
  struct timespec zero = {0, 0};
  long r = syscall(SYS_io_getevents, (unsigned long)ctx, (long)Int(info[1]), nr, events.data(), &zero);
  if (r < 0) return ThrowSys(env, "io_getevents", errno);
  return Napi::Number::New(env, (double)r);
}

Napi::Value Mremap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t old = 0, oldLen = 0, newLen = 0, to = 0;
  if (info.Length() < 5 || !ToU64(info[0], &old) || !ToU64(info[1], &oldLen) || !ToU64(info[2], &newLen) || !info[3].IsNumber() || !ToU64(info[4], &to))
    return ThrowType(env, "mremap(oldAddr, oldLength, newLength, flags, newAddr)");
  void *m = mremap((void *)(uintptr_t)old, (size_t)oldLen, (size_t)newLen, Int(info[3]), (void *)(uintptr_t)to);
  if (m == MAP_FAILED) return ThrowSys(env, "mremap", errno);
  return U64(env, (uint64_t)(uintptr_t)m);
}

}  // namespace

ssize_t SendWithRights(int sock, const void *data, size_t len, const std::vector<int> &fds, const void *to, socklen_t tolen, int flags) {
  std::vector<uint8_t> cbuf(CMSG_SPACE(sizeof(int) * fds.size()));
  struct iovec iov = {const_cast<void *>(data), len};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_name = const_cast<void *>(to);
  mh.msg_namelen = to ? tolen : 0;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (!fds.empty()) {
    mh.msg_control = cbuf.data();
    mh.msg_controllen = cbuf.size();
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
}

void InitSys(Napi::Env env, Napi::Object exports) {
  exports.Set("readMemory", Napi::Function::New(env, ReadMemory));
  exports.Set("mknod", Napi::Function::New(env, Mknod));
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("umount2", Napi::Function::New(env, Umount2));
  exports.Set("writeMemory", Napi::Function::New(env, WriteMemory));
  exports.Set("copyMemoryToFd", Napi::Function::New(env, CopyMemoryToFd));
  exports.Set("pagemapScan", Napi::Function::New(env, PagemapScan));
  exports.Set("preadU64", Napi::Function::New(env, PreadU64));
  exports.Set("pread", Napi::Function::New(env, Pread));
  exports.Set("pwrite", Napi::Function::New(env, Pwrite));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd));
  exports.Set("kcmp", Napi::Function::New(env, Kcmp));
  exports.Set("kcmpEpollTfd", Napi::Function::New(env, KcmpEpollTfd));
  exports.Set("tee", Napi::Function::New(env, Tee));
  exports.Set("readlinkFd", Napi::Function::New(env, ReadlinkFd));
  exports.Set("linkFollow", Napi::Function::New(env, LinkFollow));
  exports.Set("pipe2", Napi::Function::New(env, Pipe2));
  exports.Set("fcntl", Napi::Function::New(env, Fcntl));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl));
  exports.Set("close", Napi::Function::New(env, Close));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
  exports.Set("netlinkQuery", Napi::Function::New(env, NetlinkQuery));
  exports.Set("clockGettime", Napi::Function::New(env, ClockGettime));
  exports.Set("lseek", Napi::Function::New(env, Lseek));
  exports.Set("mmap", Napi::Function::New(env, Mmap));
  exports.Set("munmap", Napi::Function::New(env, Munmap));
  exports.Set("getsockopt", Napi::Function::New(env, Getsockopt));
  exports.Set("setsockopt", Napi::Function::New(env, Setsockopt));
  exports.Set("recvmsg", Napi::Function::New(env, Recvmsg));
  exports.Set("openByHandleAt", Napi::Function::New(env, OpenByHandleAt));
  exports.Set("getOwnerEx", Napi::Function::New(env, GetOwnerEx));
  exports.Set("interruptGuard", Napi::Function::New(env, InterruptGuard));
  exports.Set("interruptPending", Napi::Function::New(env, InterruptPending));
  exports.Set("fsyncAll", Napi::Function::New(env, FsyncAll));
  exports.Set("ioSetup", Napi::Function::New(env, IoSetup));
  exports.Set("ioDestroy", Napi::Function::New(env, IoDestroy));
  exports.Set("ioGetevents", Napi::Function::New(env, IoGetevents));
  exports.Set("mremap", Napi::Function::New(env, Mremap));
}

}  // namespace engine_native
