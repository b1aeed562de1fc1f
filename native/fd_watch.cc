#include "fd_watch.h"

#include "errno_error.h"

namespace tcmu {

FdWatcher::FdWatcher(Napi::Env env, int fd, Napi::Function onEvent, Napi::Function onError,
                     const char* resourceName)
    : env_(env),
      fd_(fd),
      onEvent_(Napi::Persistent(onEvent)),
      onError_(Napi::Persistent(onError)),
      receiver_(Napi::Persistent(Napi::Object::New(env))),
      asyncContext_(std::make_unique<Napi::AsyncContext>(env, resourceName)) {
  poll_.data = this;
}

FdWatcher::~FdWatcher() = default;

int FdWatcher::Start() {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env_, &loop);
  int rc = uv_poll_init(loop, &poll_, fd_);
  if (rc != 0) {
    delete this;  // the handle was never initialised: nothing to uv_close
    return rc;
  }
  rc = uv_poll_start(&poll_, UV_READABLE, OnPoll);
  if (rc != 0) {
    stopped_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_),
             [](uv_handle_t* h) { delete static_cast<FdWatcher*>(h->data); });
    return rc;
  }
  // If the env goes away first (worker exit, process exit), stop there so
  // no JS is called on a dead env.
  napi_add_env_cleanup_hook(env_, OnCleanup, this);
  cleanupHookRegistered_ = true;
  return 0;
}

void FdWatcher::OnCleanup(void* arg) {
  auto* self = static_cast<FdWatcher*>(arg);
  self->inCleanupHook_ = true;
  self->Stop();
}

void FdWatcher::Stop() {
  if (stopped_) return;
  stopped_ = true;
  OnStop();
  if (cleanupHookRegistered_ && !inCleanupHook_) napi_remove_env_cleanup_hook(env_, OnCleanup, this);
  cleanupHookRegistered_ = false;
  onEvent_.Reset();
  onError_.Reset();
  receiver_.Reset();
  asyncContext_.reset();
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_),
           [](uv_handle_t* h) { delete static_cast<FdWatcher*>(h->data); });
}

void FdWatcher::SetRef(bool ref) {
  if (stopped_) return;
  if (ref) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
}

void FdWatcher::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<FdWatcher*>(handle->data);
  if (self->stopped_) return;
  Napi::HandleScope scope(self->env_);
  if (status < 0) {
    // A poll failure (EBADF...) would repeat forever: report it and stop.
    self->EmitErrno(-status, "uv_poll");
    self->Stop();
    return;
  }
  self->OnReadable();
}

void FdWatcher::EmitEvent(const std::initializer_list<napi_value>& args) { Call(onEvent_, args); }

void FdWatcher::EmitErrno(int err, const char* syscall) {
  if (stopped_) return;
  Napi::Error error = ErrnoError(env_, err, syscall);
  Call(onError_, {error.Value()});
}

void FdWatcher::Call(Napi::FunctionReference& fn, const std::initializer_list<napi_value>& args) {
  if (stopped_ || fn.IsEmpty()) return;
  // MakeCallback (not Call): we are entered from libuv, so the callback
  // scope must drain the microtask queue when it closes, exactly as for
  // Node's own I/O callbacks.
  fn.MakeCallback(receiver_.Value(), args, *asyncContext_);
  if (env_.IsExceptionPending()) {
    Napi::Error error = env_.GetAndClearPendingException();
    napi_fatal_exception(env_, error.Value());
  }
}

}  // namespace tcmu
