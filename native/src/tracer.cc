// The tracer: one dedicated OS thread that owns every ptrace relationship of an engine.
// ptrace requests are only accepted from the thread that attached, so every JS call is
// posted to that thread and the JS thread waits for the answer (calls are synchronous;
// a dump is a sequence of dependent steps, and a single tracer keeps ordering trivial).
#include "common.h"
#include "restore.h"

#include <linux/elf.h>
#include <linux/ptrace.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

// sys/ptrace.h and linux/ptrace.h clash; call the raw syscall with the uapi constants.
static long Ptrace(long req, pid_t pid, void *addr, void *data) {
  return syscall(SYS_ptrace, req, pid, addr, data);
}

namespace engine_native {

namespace {

struct WaitResult {
  pid_t pid = 0;
  int status = 0;
};

// Waits for a state change of one tracee (explicit tid, __WALL: never -1, so events of
// other tracees are never consumed). timeout_ms < 0 waits forever.
bool WaitTid(pid_t tid, int timeout_ms, WaitResult *out, SysError *err) {
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  long sleep_ns = 20000;
  int spins = 0;  // a stop after a single step or an injected call comes within microseconds
  for (;;) {
    int st = 0;
    pid_t r = waitpid(tid, &st, __WALL | WNOHANG);
    if (r < 0) {
      if (errno == EINTR) continue;
      err->set("waitpid");
      return false;
    }
    if (r > 0) {
      out->pid = r;
      out->status = st;
      return true;
    }
    if (timeout_ms >= 0) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
      if (elapsed_ms >= timeout_ms) {
        err->set("waitpid", ETIMEDOUT, "tid " + std::to_string(tid) + " did not stop");
        return false;
      }
    }
    if (spins++ < 64) {
      sched_yield();
      continue;
    }
    struct timespec ts = {0, sleep_ns};
    nanosleep(&ts, nullptr);
    if (sleep_ns < 1000000) sleep_ns *= 2;
  }
}

bool GetRegs(pid_t tid, user_regs_struct *regs, SysError *err) {
  struct iovec iov = {regs, sizeof(*regs)};
  if (Ptrace(PTRACE_GETREGSET, tid, (void *)(uintptr_t)NT_PRSTATUS, &iov) < 0) {
    err->set("ptrace(GETREGSET)");
    return false;
  }
  return true;
}

bool SetRegs(pid_t tid, const user_regs_struct *regs, SysError *err) {
  struct iovec iov = {const_cast<user_regs_struct *>(regs), sizeof(*regs)};
  if (Ptrace(PTRACE_SETREGSET, tid, (void *)(uintptr_t)NT_PRSTATUS, &iov) < 0) {
    err->set("ptrace(SETREGSET)");
    return false;
  }
  return true;
}

struct InjectCall {
  long nr = 0;
  uint64_t args[6] = {0, 0, 0, 0, 0, 0};
};

struct InjectOutcome {
  std::vector<int64_t> results;
  std::vector<int> signals;  // signals that stopped the thread mid-step (not delivered)
  std::vector<int> events;   // ptrace events seen during steps (e.g. PTRACE_EVENT_CLONE)
  std::vector<unsigned long> event_msgs;
};

// Executes each call by pointing rip at an existing `syscall` instruction (`gadget`) and
// single-stepping over it. All signals but SIGTRAP are blocked meanwhile so none is delivered
// into the injected context; the thread's registers and mask are restored afterwards in every
// case. SIGTRAP stays unblocked: the kernel forces the single-step SIGTRAP, and forcing a
// blocked (or ignored) signal resets the task's handler for it to SIG_DFL. So a task with a
// SIGTRAP pending or ignored must not be stepped at all (the callers refuse it).
bool Inject(pid_t tid, uint64_t gadget, const std::vector<InjectCall> &calls, bool stop_on_error, int timeout_ms,
            InjectOutcome *out, SysError *err) {
  user_regs_struct saved;
  if (!GetRegs(tid, &saved, err)) return false;
  uint64_t saved_mask = 0;
  if (Ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(saved_mask), &saved_mask) < 0) {
    err->set("ptrace(GETSIGMASK)");
    return false;
  }
  uint64_t all = ~0ULL & ~(1ULL << (SIGTRAP - 1));
  if (Ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof(all), &all) < 0) {
    err->set("ptrace(SETSIGMASK)");
    return false;
  }
  bool ok = true;
  bool task_gone = false;
  for (const InjectCall &c : calls) {
    user_regs_struct r = saved;
    r.rip = gadget;
    r.rax = (unsigned long long)c.nr;
    r.orig_rax = (unsigned long long)-1;  // not inside a syscall: no restart fixup on resume
    r.rdi = c.args[0];
    r.rsi = c.args[1];
    r.rdx = c.args[2];
    r.r10 = c.args[3];
    r.r8 = c.args[4];
    r.r9 = c.args[5];
    if (!SetRegs(tid, &r, err)) { ok = false; break; }
    bool done = false;
    while (!done) {
      if (Ptrace(PTRACE_SINGLESTEP, tid, nullptr, nullptr) < 0) {
        err->set("ptrace(SINGLESTEP)");
        ok = false;
        break;
      }
      WaitResult w;
      if (!WaitTid(tid, timeout_ms, &w, err)) { ok = false; break; }
      if (WIFEXITED(w.status) || WIFSIGNALED(w.status)) {
        err->set("inject", ESRCH, "task " + std::to_string(tid) + " exited during injection");
        task_gone = true;
        ok = false;
        break;
      }
      int sig = WSTOPSIG(w.status);
      int event = w.status >> 16;
      if (event != 0) {
        unsigned long msg = 0;
        Ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg);
        out->events.push_back(event);
        out->event_msgs.push_back(msg);
        continue;  // event stop inside the syscall: step on to its end
      }
      if (sig != SIGTRAP) {
        out->signals.push_back(sig);  // SIGSTOP etc. cannot be blocked; caller re-queues
        continue;
      }
      done = true;
    }
    if (!ok) break;
    user_regs_struct after;
    if (!GetRegs(tid, &after, err)) { ok = false; break; }
    if (after.rip != gadget + 2) {
      err->set("inject", EFAULT, "rip did not advance over the syscall gadget");
      ok = false;
      break;
    }
    int64_t res = (int64_t)after.rax;
    out->results.push_back(res);
    if (stop_on_error && res < 0 && res > -4096) break;
  }
  if (!task_gone) {
    SysError restore_err;
    if (!SetRegs(tid, &saved, &restore_err) && ok) { *err = restore_err; ok = false; }
    if (Ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof(saved_mask), &saved_mask) < 0 && ok) {
      err->set("ptrace(SETSIGMASK)");
      ok = false;
    }
  }
  return ok;
}

}  // namespace

class Tracer : public Napi::ObjectWrap<Tracer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Tracer",
                       {
                           InstanceMethod("seize", &Tracer::Seize),
                           InstanceMethod("interrupt", &Tracer::Interrupt),
                           InstanceMethod("wait", &Tracer::Wait),
                           InstanceMethod("setOptions", &Tracer::SetOptions),
                           InstanceMethod("cont", &Tracer::Cont),
                           InstanceMethod("listen", &Tracer::Listen),
                           InstanceMethod("detach", &Tracer::Detach),
                           InstanceMethod("getEventMsg", &Tracer::GetEventMsg),
                           InstanceMethod("getRegset", &Tracer::GetRegset),
                           InstanceMethod("setRegset", &Tracer::SetRegset),
                           InstanceMethod("getSigmask", &Tracer::GetSigmask),
                           InstanceMethod("setSigmask", &Tracer::SetSigmask),
                           InstanceMethod("getRseqConfig", &Tracer::GetRseqConfig),
                           InstanceMethod("peekSiginfo", &Tracer::PeekSiginfo),
                           InstanceMethod("getSeccompFilter", &Tracer::GetSeccompFilter),
                           InstanceMethod("getThreadArea", &Tracer::GetThreadArea),
                           InstanceMethod("inject", &Tracer::InjectJs),
                           InstanceMethod("spawnStub", &Tracer::SpawnStubJs),
                           InstanceMethod("close", &Tracer::Close),
                       });
  }

  explicit Tracer(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Tracer>(info) {
    thread_ = std::thread([this] { Loop(); });
  }

  ~Tracer() override { Stop(); }

 private:
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;

  void Loop() {
    // waits poll with short sleeps; a 1 ns timer slack keeps a 20 us sleep near 20 us
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  // Runs fn on the tracer thread and waits for it.
  void Run(std::function<void()> fn) {
    std::mutex done_mu;
    std::condition_variable done_cv;
    bool done = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      jobs_.push_back([&] {
        fn();
        std::lock_guard<std::mutex> dl(done_mu);
        done = true;
        done_cv.notify_one();
      });
    }
    cv_.notify_one();
    std::unique_lock<std::mutex> dl(done_mu);
    done_cv.wait(dl, [&] { return done; });
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  bool Closed(Napi::Env env) {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) {
      Napi::Error::New(env, "tracer is closed").ThrowAsJavaScriptException();
      return true;
    }
    return false;
  }

  static bool Tid(const Napi::CallbackInfo &info, size_t i, pid_t *tid) {
    if (info.Length() <= i || !info[i].IsNumber()) {
      ThrowType(info.Env(), "expected a tid number as argument " + std::to_string(i + 1));
      return false;
    }
    *tid = info[i].As<Napi::Number>().Int32Value();
    return true;
  }

  // A ptrace request without output, run on the tracer thread.
  Napi::Value Simple(const Napi::CallbackInfo &info, long req, const char *name, void *addr, void *data) {
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(info.Env())) return info.Env().Undefined();
    SysError err;
    Run([&] {
      if (Ptrace(req, tid, addr, data) < 0) err.set(name);
    });
    if (err.failed()) return ThrowSys(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value Seize(const Napi::CallbackInfo &info) {
    uint64_t opts = 0;
    if (info.Length() > 1) ToU64(info[1], &opts);
    return Simple(info, PTRACE_SEIZE, "ptrace(SEIZE)", nullptr, (void *)(uintptr_t)opts);
  }
  Napi::Value Interrupt(const Napi::CallbackInfo &info) {
    return Simple(info, PTRACE_INTERRUPT, "ptrace(INTERRUPT)", nullptr, nullptr);
  }
  Napi::Value SetOptions(const Napi::CallbackInfo &info) {
    uint64_t opts = 0;
    if (info.Length() > 1) ToU64(info[1], &opts);
    return Simple(info, PTRACE_SETOPTIONS, "ptrace(SETOPTIONS)", nullptr, (void *)(uintptr_t)opts);
  }
  Napi::Value Cont(const Napi::CallbackInfo &info) {
    long sig = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 0;
    return Simple(info, PTRACE_CONT, "ptrace(CONT)", nullptr, (void *)sig);
  }
  Napi::Value Listen(const Napi::CallbackInfo &info) {
    return Simple(info, PTRACE_LISTEN, "ptrace(LISTEN)", nullptr, nullptr);
  }
  Napi::Value Detach(const Napi::CallbackInfo &info) {
    long sig = info.Length() > 1 ? info[1].As<Napi::Number>().Int32Value() : 0;
    return Simple(info, PTRACE_DETACH, "ptrace(DETACH)", nullptr, (void *)sig);
  }

  // wait(tid, timeoutMs) -> {pid, status, exited, exitCode, signaled, termSig, stopped, stopSig, event}
  Napi::Value Wait(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    int timeout = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : -1;
    SysError err;
    WaitResult w;
    Run([&] { WaitTid(tid, timeout, &w, &err); });
    if (err.failed()) return ThrowSys(env, err);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", w.pid);
    o.Set("status", w.status);
    o.Set("exited", WIFEXITED(w.status));
    o.Set("exitCode", WIFEXITED(w.status) ? WEXITSTATUS(w.status) : 0);
    o.Set("signaled", WIFSIGNALED(w.status));
    o.Set("termSig", WIFSIGNALED(w.status) ? WTERMSIG(w.status) : 0);
    o.Set("stopped", WIFSTOPPED(w.status));
    o.Set("stopSig", WIFSTOPPED(w.status) ? WSTOPSIG(w.status) : 0);
    o.Set("event", WIFSTOPPED(w.status) ? (w.status >> 16) : 0);
    return o;
  }

  Napi::Value GetEventMsg(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    SysError err;
    unsigned long msg = 0;
    Run([&] {
      if (Ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &msg) < 0) err.set("ptrace(GETEVENTMSG)");
    });
    if (err.failed()) return ThrowSys(env, err);
    return U64(env, msg);
  }

  // getRegset(tid, nt) -> Buffer holding exactly what the kernel returned (PRSTATUS 216 B,
  // PRFPREG 512 B, X86_XSTATE the CPU's XSAVE size).
  Napi::Value GetRegset(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    long nt = info[1].As<Napi::Number>().Int32Value();
    std::vector<uint8_t> buf(16384);
    SysError err;
    size_t got = 0;
    Run([&] {
      struct iovec iov = {buf.data(), buf.size()};
      if (Ptrace(PTRACE_GETREGSET, tid, (void *)nt, &iov) < 0) err.set("ptrace(GETREGSET)");
      got = iov.iov_len;
    });
    if (err.failed()) return ThrowSys(env, err);
    return Napi::Buffer<uint8_t>::Copy(env, buf.data(), got);
  }

  Napi::Value SetRegset(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    long nt = info[1].As<Napi::Number>().Int32Value();
    uint8_t *data;
    size_t len;
    if (!ToBytes(info[2], &data, &len)) return ThrowType(env, "setRegset: expected a Buffer");
    std::vector<uint8_t> copy(data, data + len);
    SysError err;
    Run([&] {
      struct iovec iov = {copy.data(), copy.size()};
      if (Ptrace(PTRACE_SETREGSET, tid, (void *)nt, &iov) < 0) err.set("ptrace(SETREGSET)");
    });
    if (err.failed()) return ThrowSys(env, err);
    return env.Undefined();
  }

  Napi::Value GetSigmask(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    uint64_t mask = 0;
    SysError err;
    Run([&] {
      if (Ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(mask), &mask) < 0) err.set("ptrace(GETSIGMASK)");
    });
    if (err.failed()) return ThrowSys(env, err);
    return U64(env, mask);
  }

  Napi::Value SetSigmask(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    uint64_t mask = 0;
    if (!ToU64(info[1], &mask)) return ThrowType(env, "setSigmask: expected a mask");
    SysError err;
    Run([&] {
      if (Ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof(mask), &mask) < 0) err.set("ptrace(SETSIGMASK)");
    });
    if (err.failed()) return ThrowSys(env, err);
    return env.Undefined();
  }

  Napi::Value GetRseqConfig(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    struct ptrace_rseq_configuration conf;
    memset(&conf, 0, sizeof(conf));
    SysError err;
    Run([&] {
      if (Ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tid, (void *)sizeof(conf), &conf) < 0)
        err.set("ptrace(GET_RSEQ_CONFIGURATION)");
    });
    if (err.failed()) return ThrowSys(env, err);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pointer", U64(env, conf.rseq_abi_pointer));
    o.Set("size", conf.rseq_abi_size);
    o.Set("signature", conf.signature);
    o.Set("flags", conf.flags);
    return o;
  }

  // peekSiginfo(tid, shared) -> Buffer[] of 128-byte siginfo_t, without dequeuing them.
  Napi::Value PeekSiginfo(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    bool shared = info.Length() > 1 && info[1].ToBoolean().Value();
    std::vector<siginfo_t> all;
    SysError err;
    Run([&] {
      for (;;) {
        struct ptrace_peeksiginfo_args args;
        args.off = all.size();
        args.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0;
        args.nr = 32;
        siginfo_t batch[32];
        long n = Ptrace(PTRACE_PEEKSIGINFO, tid, &args, batch);
        if (n < 0) {
          err.set("ptrace(PEEKSIGINFO)");
          return;
        }
        if (n == 0) return;
        all.insert(all.end(), batch, batch + n);
      }
    });
    if (err.failed()) return ThrowSys(env, err);
    Napi::Array arr = Napi::Array::New(env, all.size());
    for (size_t i = 0; i < all.size(); i++)
      arr.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(&all[i]), sizeof(siginfo_t)));
    return arr;
  }

  // getSeccompFilter(tid, index) -> Buffer of sock_filter (8 B each), or null past the last filter.
  Napi::Value GetSeccompFilter(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    long index = info[1].As<Napi::Number>().Int32Value();
    std::vector<uint8_t> buf;
    SysError err;
    bool none = false;
    Run([&] {
      long n = Ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)index, nullptr);
      if (n < 0) {
        if (errno == ENOENT || errno == EINVAL) none = true;
        else err.set("ptrace(SECCOMP_GET_FILTER)");
        return;
      }
      buf.resize(n * 8);
      if (Ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)index, buf.data()) < 0) err.set("ptrace(SECCOMP_GET_FILTER)");
    });
    if (err.failed()) return ThrowSys(env, err);
    if (none) return env.Null();
    return Napi::Buffer<uint8_t>::Copy(env, buf.data(), buf.size());
  }

  // getThreadArea(tid, index) -> the 16-byte struct user_desc of a GDT TLS slot (x86).
  Napi::Value GetThreadArea(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    long index = info[1].As<Napi::Number>().Int32Value();
    uint32_t desc[4] = {0, 0, 0, 0};
    SysError err;
    Run([&] {
      if (Ptrace(25 /* PTRACE_GET_THREAD_AREA */, tid, (void *)index, desc) < 0) err.set("ptrace(GET_THREAD_AREA)");
    });
    if (err.failed()) return ThrowSys(env, err);
    return Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(desc), sizeof desc);
  }

  // inject(tid, gadget, calls: {nr, args?: (number|bigint)[]}[], {stopOnError?, timeoutMs?})
  //   -> {results: bigint[], signals: number[], events: number[], eventMsgs: bigint[]}
  Napi::Value InjectJs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    pid_t tid;
    if (!Tid(info, 0, &tid) || Closed(env)) return env.Undefined();
    uint64_t gadget = 0;
    if (!ToU64(info[1], &gadget)) return ThrowType(env, "inject: expected a gadget address");
    if (!info[2].IsArray()) return ThrowType(env, "inject: expected an array of calls");
    Napi::Array arr = info[2].As<Napi::Array>();
    std::vector<InjectCall> calls(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Object c = arr.Get(i).As<Napi::Object>();
      calls[i].nr = c.Get("nr").As<Napi::Number>().Int64Value();
      Napi::Value a = c.Get("args");
      if (a.IsArray()) {
        Napi::Array args = a.As<Napi::Array>();
        for (uint32_t j = 0; j < args.Length() && j < 6; j++) ToU64(args.Get(j), &calls[i].args[j]);
      }
    }
    bool stop_on_error = false;
    int timeout = 5000;
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object o = info[3].As<Napi::Object>();
      if (o.Has("stopOnError")) stop_on_error = o.Get("stopOnError").ToBoolean().Value();
      if (o.Has("timeoutMs")) timeout = o.Get("timeoutMs").As<Napi::Number>().Int32Value();
    }
    InjectOutcome out;
    SysError err;
    Run([&] { Inject(tid, gadget, calls, stop_on_error, timeout, &out, &err); });
    if (err.failed()) return ThrowSys(env, err);
    Napi::Object o = Napi::Object::New(env);
    Napi::Array results = Napi::Array::New(env, out.results.size());
    for (size_t i = 0; i < out.results.size(); i++) results.Set(i, I64(env, out.results[i]));
    Napi::Array sigs = Napi::Array::New(env, out.signals.size());
    for (size_t i = 0; i < out.signals.size(); i++) sigs.Set(i, out.signals[i]);
    Napi::Array events = Napi::Array::New(env, out.events.size());
    Napi::Array msgs = Napi::Array::New(env, out.events.size());
    for (size_t i = 0; i < out.events.size(); i++) {
      events.Set(i, out.events[i]);
      msgs.Set(i, U64(env, out.event_msgs[i]));
    }
    o.Set("results", results);
    o.Set("signals", sigs);
    o.Set("events", events);
    o.Set("eventMsgs", msgs);
    return o;
  }

  // spawnStub({pid?, newPidns?, keepFd?, keepAs?, timeoutMs?}) -> pid of a stopped, traced stub
  // (restore.cc); forked from this thread so that the thread is its tracer.
  Napi::Value SpawnStubJs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (Closed(env)) return env.Undefined();
    StubSpec spec;
    int timeout = 5000;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      auto num = [&](const char *k, int d) { return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Int32Value() : d; };
      spec.want = num("pid", 0);
      spec.new_pidns = o.Has("newPidns") && o.Get("newPidns").ToBoolean().Value();
      spec.keep_fd = num("keepFd", -1);
      spec.keep_as = num("keepAs", -1);
      timeout = num("timeoutMs", 5000);
    }
    SysError err;
    pid_t pid = 0;
    Run([&] { SpawnStub(spec, timeout, &pid, &err); });
    if (err.failed()) return ThrowSys(env, err);
    return Napi::Number::New(env, pid);
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    Stop();
    return info.Env().Undefined();
  }
};

void InitTracer(Napi::Env env, Napi::Object exports) { exports.Set("Tracer", Tracer::Define(env)); }

}  // namespace engine_native
