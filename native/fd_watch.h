// A readable-fd watcher running inside the calling thread's libuv loop
// (uv_poll: no extra thread, no busy polling). Subclasses decide how to
// acknowledge a readable event (read the uio counter, drain a socket,
// receive netlink datagrams) and what to hand to JS.
//
// Lifetime: a watcher is heap-allocated and deletes itself in the uv_close
// callback, so Stop() may be called from inside its own JS callback; after
// Stop() no JS function is ever called again.
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>

namespace tcmu {

class FdWatcher {
 public:
  FdWatcher(const FdWatcher&) = delete;
  FdWatcher& operator=(const FdWatcher&) = delete;

  // Begin polling; returns 0 or a negative libuv error (the watcher is
  // already freed in that case).
  int Start();
  // Idempotent; safe inside callbacks and from an env cleanup hook.
  void Stop();
  bool stopped() const { return stopped_; }
  // Whether the poll handle keeps the event loop alive (uv_ref/uv_unref).
  void SetRef(bool ref);

 protected:
  FdWatcher(Napi::Env env, int fd, Napi::Function onEvent, Napi::Function onError, const char* resourceName);
  virtual ~FdWatcher();

  // Called when fd is readable. Acknowledge the event, then call Emit*.
  virtual void OnReadable() = 0;
  // Called once when the watcher stops (before it is freed), so an owner
  // holding a pointer to it can forget it.
  virtual void OnStop() {}

  // Call onEvent(args...) with proper callback scope (microtasks run after).
  void EmitEvent(const std::initializer_list<napi_value>& args);
  // Call onError(err) where err carries the errno name; keeps watching
  // unless the subclass calls Stop().
  void EmitErrno(int err, const char* syscall);

  Napi::Env env_;
  int fd_;

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnCleanup(void* arg);
  void Call(Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args);

  uv_poll_t poll_;
  Napi::FunctionReference onEvent_;
  Napi::FunctionReference onError_;
  Napi::ObjectReference receiver_;  // napi_make_callback needs an object `this`
  // Destroyed in Stop(), while the env is certainly alive: the handle itself
  // may only be freed later, during env teardown, when napi calls crash.
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  bool stopped_ = false;
  bool cleanupHookRegistered_ = false;
  bool inCleanupHook_ = false;
};

}  // namespace tcmu
