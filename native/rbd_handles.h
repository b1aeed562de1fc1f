// What the rbd addon's files share (native/rbd.cc: connect, open and the
// data path; native/rbd_admin.cc: snapshots, locks): the handles JS holds,
// the thread-pool Work for blocking librbd calls, and argument checks that
// throw a JS error and return false (or nullptr) on bad input.
#pragma once
#include <napi.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "errno_error.h"
#include "rbd_queue.h"

namespace tcmu {

// A connected cluster with an I/O context on one pool; shared by the images
// opened through it, torn down (on a pool thread) when the last one lets go.
struct Session {
  rados_t cluster = nullptr;
  rados_ioctx_t ioctx = nullptr;
  // librados's and librbd's threads start under SCHED_BATCH (thread_policy.h).
  bool batchThreads = false;
  ~Session() {
    if (ioctx) rados_ioctx_destroy(ioctx);
    if (cluster) rados_shutdown(cluster);
  }
};

struct SessionHandle {
  std::shared_ptr<Session> session;
};

struct ImageHandle {
  std::shared_ptr<Session> session;  // keeps the cluster up while the image is open
  rbd_image_t image = nullptr;
  bool closing = false;
  uint64_t watch = 0;
  bool watching = false;
  std::pair<RbdQueue*, double>* watchArg = nullptr;  // what the update callback receives
};

// ---- blocking calls on the thread pool

class Work : public Napi::AsyncWorker {
 public:
  // `run` executes on a pool thread and returns 0 or -errno, naming the
  // failing call in *what; `done` builds the success value on the loop thread.
  Work(Napi::Function cb, std::function<int(std::string* what)> run, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(cb, "tcmu-rbd-work"), run_(std::move(run)), done_(std::move(done)) {}

  // Keep `value` (an image handle) from being collected while the work runs.
  void Keep(Napi::Value value) {
    Napi::Object box = Napi::Object::New(Env());
    box.Set("v", value);
    keep_ = Napi::Persistent(box);
  }

  void Execute() override { rc_ = run_(&what_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      Callback().Call({ErrnoError(env, -rc_, what_.c_str()).Value()});
    } else {
      Callback().Call({env.Null(), done_ ? done_(env) : env.Undefined()});
    }
  }

 private:
  std::function<int(std::string*)> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::string what_ = "rbd";
  int rc_ = 0;
  Napi::ObjectReference keep_;
};

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out);
bool ArgUint(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out);
bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out);
bool ArgFunction(const Napi::CallbackInfo& info, size_t i, Napi::Function* out);
// An open image the data path may use, or a thrown EBADF.
ImageHandle* ArgImage(const Napi::CallbackInfo& info);

template <typename T>
T* ArgExternal(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsExternal()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a handle from this addon");
    return nullptr;
  }
  return info[i].As<Napi::External<T>>().Data();
}

// Adds rbd_admin.cc's functions (snapshots, locks, extents) to the exports.
void InitRbdAdmin(Napi::Env env, Napi::Object exports);

}  // namespace tcmu
