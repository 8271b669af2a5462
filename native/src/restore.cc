// Restore primitives: the stub (a tiny static ELF kept in a memfd, never on disk) spawned with
// clone3(set_tid) from the tracer thread, a socketpair to pass fds into stubs, XCR0 and CPUID.
#include "restore.h"

#include <cpuid.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/filter.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vector>

namespace engine_native {

namespace {

struct CloneArgs {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// The stub's code: `for (;;) if (wait4(-1, 0, __WALL, 0) == -ECHILD) exit(0);` -- it reaps
// orphans when it is PID 1 of a new namespace, and is never run otherwise (it is stopped at
// its exec and its address space is replaced).
const uint8_t kStubCode[] = {
    0xb8, 0x3d, 0x00, 0x00, 0x00,              // mov eax, 61 (wait4)
    0x48, 0xc7, 0xc7, 0xff, 0xff, 0xff, 0xff,  // mov rdi, -1
    0x31, 0xf6,                                // xor esi, esi
    0xba, 0x00, 0x00, 0x00, 0x40,              // mov edx, __WALL
    0x45, 0x31, 0xd2,                          // xor r10d, r10d
    0x0f, 0x05,                                // syscall
    0x48, 0x83, 0xf8, 0xf6,                    // cmp rax, -ECHILD
    0x75, 0xe2,                                // jne start
    0x31, 0xff,                                // xor edi, edi
    0xb8, 0x3c, 0x00, 0x00, 0x00,              // mov eax, 60 (exit)
    0x0f, 0x05,                                // syscall
};

std::vector<uint8_t> StubElf() {
  const uint64_t base = 0x10000;  // low, rarely part of a dumped layout (and torn down anyway)
  Elf64_Ehdr eh;
  Elf64_Phdr ph;
  memset(&eh, 0, sizeof eh);
  memset(&ph, 0, sizeof ph);
  memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = base + sizeof eh + sizeof ph;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof ph;
  eh.e_phnum = 1;
  ph.p_type = PT_LOAD;
  ph.p_flags = PF_R | PF_X;
  ph.p_offset = 0;
  ph.p_vaddr = ph.p_paddr = base;
  ph.p_filesz = ph.p_memsz = sizeof eh + sizeof ph + sizeof kStubCode;
  ph.p_align = 0x1000;
  std::vector<uint8_t> out(sizeof eh + sizeof ph + sizeof kStubCode);
  memcpy(out.data(), &eh, sizeof eh);
  memcpy(out.data() + sizeof eh, &ph, sizeof ph);
  memcpy(out.data() + sizeof eh + sizeof ph, kStubCode, sizeof kStubCode);
  return out;
}

int StubFd(SysError *err) {
  int fd = (int)syscall(SYS_memfd_create, "engine-stub", MFD_CLOEXEC);
  if (fd < 0) {
    err->set("memfd_create");
    return -1;
  }
  std::vector<uint8_t> elf = StubElf();
  if (write(fd, elf.data(), elf.size()) != (ssize_t)elf.size()) {
    err->set("write(stub)");
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool SpawnStub(const StubSpec &spec, int timeout_ms, pid_t *out, SysError *err) {
  int mfd = StubFd(err);
  if (mfd < 0) return false;
  pid_t tid = spec.want;
  CloneArgs args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  if (spec.new_pidns) args.flags |= CLONE_NEWPID;
  if (spec.want > 0 && !spec.new_pidns) {
    args.set_tid = (uint64_t)(uintptr_t)&tid;
    args.set_tid_size = 1;
  }
  static char arg0[] = "engine-stub";
  static char *argv[] = {arg0, nullptr};
  static char *envp[] = {nullptr};
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    // Child of a multithreaded process: raw system calls only until execveat.
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
    if (spec.keep_fd >= 0 && spec.keep_as >= 0) {
      if (spec.keep_fd != spec.keep_as) syscall(SYS_dup3, spec.keep_fd, spec.keep_as, 0);
      else syscall(SYS_fcntl, spec.keep_as, F_SETFD, 0);
      if (spec.keep_as > 3) syscall(SYS_close_range, 3, spec.keep_as - 1, CLOSE_RANGE_CLOEXEC);
      syscall(SYS_close_range, spec.keep_as + 1, ~0U, CLOSE_RANGE_CLOEXEC);
    } else {
      syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    }
    if (syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) < 0) syscall(SYS_exit_group, 126);
    syscall(SYS_execveat, mfd, "", argv, envp, AT_EMPTY_PATH);
    syscall(SYS_exit_group, 127);
  }
  int e = errno;
  close(mfd);
  if (pid < 0) {
    err->set("clone3", e, spec.want ? "pid " + std::to_string(spec.want) : "");
    return false;
  }
  // the exec stop (SIGTRAP) of the traced stub
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int st = 0;
    pid_t r = waitpid((pid_t)pid, &st, __WALL | WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err->set("waitpid");
      return false;
    }
    if (r == pid) {
      if (WIFSTOPPED(st) && WSTOPSIG(st) == SIGTRAP) break;
      if (WIFSTOPPED(st)) {  // some other stop before exec: let it go on
        syscall(SYS_ptrace, PTRACE_CONT, pid, 0, 0);
        continue;
      }
      err->set("execveat(stub)", ENOEXEC, "the stub exited with status " + std::to_string(st));
      return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > timeout_ms) {
      kill((pid_t)pid, SIGKILL);
      err->set("waitpid", ETIMEDOUT, "the stub did not stop after exec");
      return false;
    }
    struct timespec ts = {0, 20000};
    nanosleep(&ts, nullptr);
  }
  long opts = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_EXITKILL;
  if (syscall(SYS_ptrace, PTRACE_SETOPTIONS, pid, 0, opts) < 0) {
    err->set("ptrace(SETOPTIONS)");
    kill((pid_t)pid, SIGKILL);
    return false;
  }
  *out = (pid_t)pid;
  return true;
}

namespace {

// socketpair(domain, type) -> [fd, fd]
Napi::Value SocketPair(const Napi::CallbackInfo &info) {
  int sv[2];
  int domain = info.Length() > 0 ? info[0].As<Napi::Number>().Int32Value() : AF_UNIX;
  int type = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : SOCK_DGRAM;
  if (socketpair(domain, type, 0, sv) < 0) return ThrowSys(info.Env(), "socketpair", errno);
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set((uint32_t)0, sv[0]);
  a.Set((uint32_t)1, sv[1]);
  return a;
}

// The XSAVE feature mask this CPU and kernel enable for user state (XCR0).
// cpuid(leaf, subleaf) -> [eax, ebx, ecx, edx]
Napi::Value Cpuid(const Napi::CallbackInfo &info) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  __cpuid_count(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(), a, b, c, d);
  Napi::Array out = Napi::Array::New(info.Env(), 4);
  out.Set(0u, Napi::Number::New(info.Env(), a));
  out.Set(1u, Napi::Number::New(info.Env(), b));
  out.Set(2u, Napi::Number::New(info.Env(), c));
  out.Set(3u, Napi::Number::New(info.Env(), d));
  return out;
}

Napi::Value Xcr0(const Napi::CallbackInfo &info) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return U64(info.Env(), ((uint64_t)hi << 32) | lo);
}

// setChildSubreaper(on): orphans of stubs come back to the engine, which reaps them itself.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo &info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, info.Length() > 0 && info[0].ToBoolean().Value() ? 1 : 0, 0, 0, 0) < 0)
    return ThrowSys(info.Env(), "prctl(PR_SET_CHILD_SUBREAPER)", errno);
  return info.Env().Undefined();
}


// memfdCreate(name, flags) -> fd (MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2)
Napi::Value MemfdCreate(const Napi::CallbackInfo &info) {
  std::string name = info[0].As<Napi::String>().Utf8Value();
  unsigned flags = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 0;
  long fd = syscall(SYS_memfd_create, name.c_str(), flags);
  if (fd < 0) return ThrowSys(info.Env(), "memfd_create", errno);
  return Napi::Number::New(info.Env(), (double)fd);
}

// A sockaddr_un from the raw name bytes (abstract names start with a NUL; a path keeps its NUL).
socklen_t UnixAddr(const Napi::Value &v, struct sockaddr_un *a, bool *ok) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  uint8_t *data;
  size_t len;
  *ok = ToBytes(v, &data, &len) && len <= sizeof a->sun_path;
  if (!*ok) return 0;
  memcpy(a->sun_path, data, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

// unixSocket(type) -> fd (AF_UNIX, close-on-exec)
Napi::Value UnixSocket(const Napi::CallbackInfo &info) {
  int fd = socket(AF_UNIX, info[0].As<Napi::Number>().Int32Value() | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowSys(info.Env(), "socket(AF_UNIX)", errno);
  return Napi::Number::New(info.Env(), fd);
}

// unixBind(fd, name) / unixConnect(fd, name): name is the raw sun_path bytes
Napi::Value UnixBind(const Napi::CallbackInfo &info) {
  struct sockaddr_un a;
  bool ok;
  socklen_t n = UnixAddr(info[1], &a, &ok);
  if (!ok) return ThrowType(info.Env(), "unixBind(fd, name: Buffer of at most 108 bytes)");
  if (bind(info[0].As<Napi::Number>().Int32Value(), (struct sockaddr *)&a, n) < 0) return ThrowSys(info.Env(), "bind", errno);
  return info.Env().Undefined();
}

Napi::Value UnixConnect(const Napi::CallbackInfo &info) {
  struct sockaddr_un a;
  bool ok;
  socklen_t n = UnixAddr(info[1], &a, &ok);
  if (!ok) return ThrowType(info.Env(), "unixConnect(fd, name: Buffer of at most 108 bytes)");
  if (connect(info[0].As<Napi::Number>().Int32Value(), (struct sockaddr *)&a, n) < 0) return ThrowSys(info.Env(), "connect", errno);
  return info.Env().Undefined();
}

Napi::Value Listen(const Napi::CallbackInfo &info) {
  if (listen(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()) < 0)
    return ThrowSys(info.Env(), "listen", errno);
  return info.Env().Undefined();
}

// sendTo(fd, data, name?: Buffer | null, flags?, fds?: number[]) -> bytes sent (MSG_NOSIGNAL
// always); fds ride along as one SCM_RIGHTS message.
Napi::Value SendTo(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint8_t *data;
  size_t len;
  if (!ToBytes(info[1], &data, &len)) return ThrowType(info.Env(), "sendTo(fd, data, name?, flags?, fds?)");
  int flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 0;
  struct sockaddr_un a;
  socklen_t n = 0;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    bool ok;
    n = UnixAddr(info[2], &a, &ok);
    if (!ok) return ThrowType(info.Env(), "sendTo: name of at most 108 bytes");
  }
  std::vector<int> fds;
  if (info.Length() > 4 && info[4].IsArray()) {
    Napi::Array arr = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) fds.push_back(arr.Get(i).As<Napi::Number>().Int32Value());
  }
  ssize_t r = SendWithRights(fd, data, len, fds, n ? &a : nullptr, n, flags);
  if (r < 0) return ThrowSys(info.Env(), "sendmsg", errno);
  return Napi::Number::New(info.Env(), (double)r);
}

Napi::Value Shutdown(const Napi::CallbackInfo &info) {
  if (shutdown(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()) < 0)
    return ThrowSys(info.Env(), "shutdown", errno);
  return info.Env().Undefined();
}

// socket(domain, type, protocol, fsuid?, fsgid?) -> fd (the caller adds SOCK_CLOEXEC to type).
// With fsuid/fsgid the socket is made under them (its inode's owner, the file's credentials);
// this thread's own are put back right after.
Napi::Value Socket(const Napi::CallbackInfo &info) {
  bool as = info.Length() > 4 && info[3].IsNumber() && info[4].IsNumber();
  uid_t oldUid = 0;
  gid_t oldGid = 0;
  if (as) {
    gid_t g = info[4].As<Napi::Number>().Uint32Value();
    uid_t u = info[3].As<Napi::Number>().Uint32Value();
    oldGid = setfsgid(g);
    if ((gid_t)setfsgid(-1) != g) return ThrowSys(info.Env(), "setfsgid", EPERM);
    oldUid = setfsuid(u);
    if ((uid_t)setfsuid(-1) != u) {
      setfsgid(oldGid);
      return ThrowSys(info.Env(), "setfsuid", EPERM);
    }
  }
  int fd = socket(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value());
  int err = errno;
  if (as) {
    setfsuid(oldUid);
    setfsgid(oldGid);
  }
  if (fd < 0) return ThrowSys(info.Env(), "socket", err);
  return Napi::Number::New(info.Env(), fd);
}

// sockBind(fd, addr) / sockConnect(fd, addr): addr is a whole struct sockaddr as bytes
Napi::Value SockBind(const Napi::CallbackInfo &info) {
  uint8_t *data;
  size_t len;
  if (!ToBytes(info[1], &data, &len)) return ThrowType(info.Env(), "sockBind(fd, addr: Buffer)");
  if (bind(info[0].As<Napi::Number>().Int32Value(), (struct sockaddr *)data, (socklen_t)len) < 0) return ThrowSys(info.Env(), "bind", errno);
  return info.Env().Undefined();
}

Napi::Value SockConnect(const Napi::CallbackInfo &info) {
  uint8_t *data;
  size_t len;
  if (!ToBytes(info[1], &data, &len)) return ThrowType(info.Env(), "sockConnect(fd, addr: Buffer)");
  if (connect(info[0].As<Napi::Number>().Int32Value(), (struct sockaddr *)data, (socklen_t)len) < 0) return ThrowSys(info.Env(), "connect", errno);
  return info.Env().Undefined();
}

// sockName(fd) -> the struct sockaddr getsockname returns, as bytes
Napi::Value SockName(const Napi::CallbackInfo &info) {
  struct sockaddr_storage a;
  socklen_t len = sizeof a;
  if (getsockname(info[0].As<Napi::Number>().Int32Value(), (struct sockaddr *)&a, &len) < 0) return ThrowSys(info.Env(), "getsockname", errno);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), (uint8_t *)&a, len < sizeof a ? len : sizeof a);
}

// pollOne(fd, events, timeoutMs) -> revents (0 on timeout)
Napi::Value PollOne(const Napi::CallbackInfo &info) {
  struct pollfd p = {info[0].As<Napi::Number>().Int32Value(), (short)info[1].As<Napi::Number>().Int32Value(), 0};
  int r = poll(&p, 1, info[2].As<Napi::Number>().Int32Value());
  if (r < 0) return ThrowSys(info.Env(), "poll", errno);
  return Napi::Number::New(info.Env(), r ? p.revents : 0);
}

// getFilter(fd) -> the classic BPF program attached with SO_ATTACH_FILTER, as struct sock_filter bytes
Napi::Value GetFilter(const Napi::CallbackInfo &info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  socklen_t n = 0;  // in and out: a count of instructions, not bytes
  if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, nullptr, &n) < 0) return ThrowSys(info.Env(), "getsockopt(SO_GET_FILTER)", errno);
  std::vector<struct sock_filter> prog(n);
  if (n && getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, prog.data(), &n) < 0) return ThrowSys(info.Env(), "getsockopt(SO_GET_FILTER)", errno);
  return Napi::Buffer<uint8_t>::Copy(info.Env(), (uint8_t *)prog.data(), (size_t)n * sizeof(struct sock_filter));
}

// attachFilter(fd, program: struct sock_filter bytes): setsockopt(SO_ATTACH_FILTER)
Napi::Value AttachFilter(const Napi::CallbackInfo &info) {
  uint8_t *data;
  size_t len;
  if (!ToBytes(info[1], &data, &len) || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > 0xffff)
    return ThrowType(info.Env(), "attachFilter(fd, program: Buffer of sock_filter)");
  std::vector<struct sock_filter> prog(len / sizeof(struct sock_filter));
  memcpy(prog.data(), data, len);
  struct sock_fprog f = {(unsigned short)prog.size(), prog.data()};
  if (setsockopt(info[0].As<Napi::Number>().Int32Value(), SOL_SOCKET, SO_ATTACH_FILTER, &f, sizeof f) < 0)
    return ThrowSys(info.Env(), "setsockopt(SO_ATTACH_FILTER)", errno);
  return info.Env().Undefined();
}

}  // namespace

void InitRestore(Napi::Env env, Napi::Object exports) {
  exports.Set("socketPair", Napi::Function::New(env, SocketPair));
  exports.Set("xcr0", Napi::Function::New(env, Xcr0));
  exports.Set("cpuid", Napi::Function::New(env, Cpuid));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate));
  exports.Set("unixSocket", Napi::Function::New(env, UnixSocket));
  exports.Set("unixBind", Napi::Function::New(env, UnixBind));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("listen", Napi::Function::New(env, Listen));
  exports.Set("sendTo", Napi::Function::New(env, SendTo));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown));
  exports.Set("socket", Napi::Function::New(env, Socket));
  exports.Set("sockBind", Napi::Function::New(env, SockBind));
  exports.Set("sockConnect", Napi::Function::New(env, SockConnect));
  exports.Set("sockName", Napi::Function::New(env, SockName));
  exports.Set("pollOne", Napi::Function::New(env, PollOne));
  exports.Set("getFilter", Napi::Function::New(env, GetFilter));
  exports.Set("attachFilter", Napi::Function::New(env, AttachFilter));
}

}  // namespace engine_native
