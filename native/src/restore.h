// Restore-side primitives used by the tracer thread (stub spawning) and exported helpers.
#pragma once
#include "common.h"
#include <sys/types.h>

namespace engine_native {

struct StubSpec {
  pid_t want = 0;       // exact PID (clone3 set_tid), 0 = any
  bool new_pidns = false;  // the stub becomes PID 1 of a new PID namespace
  int keep_fd = -1;     // an fd of ours the stub inherits ...
  int keep_as = -1;     // ... under this number (not close-on-exec)
};

// Forks (clone3) and execs the stub from the calling thread, which becomes its tracer
// (PTRACE_TRACEME); waits for the exec stop and sets TRACECLONE|TRACEFORK|EXITKILL.
// Must run on the tracer thread. Returns the stub's PID in our namespace.
bool SpawnStub(const StubSpec &spec, int timeout_ms, pid_t *out, SysError *err);

void InitRestore(Napi::Env env, Napi::Object exports);

}  // namespace engine_native
