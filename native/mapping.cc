#include "mapping.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "addon_data.h"
#include "bound_method.h"
#include "errno_error.h"
#include "notify_watcher.h"
#include "ring_completer.h"
#include "ring_layout.h"
#include "uncounted_array_buffer.h"

namespace tcmu {

void Region::Unmap() {
  if (base != nullptr) munmap(base, size);
  base = nullptr;
}

void Region::Retire() {
  if (base == nullptr) return;
  // MAP_FIXED replaces the device's pages in one step: no moment where the
  // range is unmapped. NORESERVE: it costs no memory until touched.
  void* at = mmap(base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  // Failed: the device's pages stay mapped (still harmless to touch).
  (void)at;
  base = nullptr;  // no later Unmap: the addresses stay valid for good
}

void Region::Release() {
  if (--refs == 0) {
    Unmap();
    delete this;
  }
}

Napi::Function Mapping::DefineClass(Napi::Env env) {
  return ObjectWrap<Mapping>::DefineClass(env, "NativeMapping",
                                          {
                                              InstanceMethod<&Mapping::LoadAcquire32>("loadAcquire32"),
                                              InstanceMethod<&Mapping::StoreRelease32>("storeRelease32"),
                                              InstanceMethod<&Mapping::Watch>("watch"),
                                              InstanceMethod<&Mapping::Unwatch>("unwatch"),
                                              InstanceMethod<&Mapping::Close>("close"),
                                              InstanceMethod<&Mapping::Completion>("completion"),
                                          });
}

Napi::Value Mapping::Create(Napi::Env env, const MappingParams& params) {
  MappingParams copy = params;
  Napi::External<MappingParams> token = Napi::External<MappingParams>::New(env, &copy);
  // The constructor consumes `copy` synchronously.
  return GetAddonData(env)->mappingConstructor.New({token});
}

Mapping::Mapping(const Napi::CallbackInfo& info) : ObjectWrap<Mapping>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    ThrowArgError(env, "ERR_ILLEGAL_CONSTRUCTOR", "NativeMapping is created by openUio/openShared only");
    return;
  }
  const MappingParams* params = info[0].As<Napi::External<MappingParams>>().Data();
  region_ = new Region{params->base, params->size, 1};
  notifyFd_ = params->notifyFd;
  kickFd_ = params->kickFd;
  kind_ = params->kind;

  // Zero copy: JS sees the mapping itself, in a buffer V8 does not count as
  // its own memory (uncounted_array_buffer.h). The finalizer only drops the
  // ArrayBuffer's reference on the region (see Region).
  napi_value raw = nullptr;
  if (NewUncountedArrayBuffer(env, region_->base, region_->size, &raw) != napi_ok) {
    ThrowArgError(env, "ERR_INTERNAL_ASSERTION", "cannot make an ArrayBuffer over the mapping");
    return;
  }
  Napi::ArrayBuffer buffer(env, raw);
  region_->refs++;
  buffer.AddFinalizer([](Napi::Env, Region* region) { region->Release(); }, region_);
  buffer_ = Napi::Weak(buffer);

  Napi::Object self = info.This().As<Napi::Object>();
  self.DefineProperties({
      Napi::PropertyDescriptor::Value("buffer", buffer, napi_enumerable),
      Napi::PropertyDescriptor::Value("size", Napi::Number::New(env, static_cast<double>(region_->size)),
                                      napi_enumerable),
  });
  // Kicked once per batch: skips napi_unwrap (bound_method.h).
  DefineBoundMethod<Mapping, &Mapping::Kick>(self, this, "kick");
  napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  cleanupHookRegistered_ = true;
}

Mapping::~Mapping() {
  // Garbage-collected without close(): release fds now; the region is
  // unmapped once the ArrayBuffer is gone too.
  if (cleanupHookRegistered_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
  StopWatching();
  DetachCompleter();
  CloseFds();
  if (region_ != nullptr) region_->Release();
}

void Mapping::OnEnvCleanup(void* arg) {
  auto* self = static_cast<Mapping*>(arg);
  self->cleanupHookRegistered_ = false;
  self->CloseAll(false);
}

uint32_t* Mapping::WordAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowErrno(env, EBADF, "mapping access after close");
    return nullptr;
  }
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "offset must be a number");
    return nullptr;
  }
  double off = info[0].As<Napi::Number>().DoubleValue();
  if (!(off >= 0) || off + 4 > static_cast<double>(region_->size) || off != static_cast<double>(static_cast<size_t>(off)) ||
      (static_cast<size_t>(off) & 3) != 0) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "offset must be a 4-aligned integer inside the mapping");
    return nullptr;
  }
  return reinterpret_cast<uint32_t*>(static_cast<char*>(region_->base) + static_cast<size_t>(off));
}

Napi::Value Mapping::LoadAcquire32(const Napi::CallbackInfo& info) {
  uint32_t* word = WordAt(info);
  if (word == nullptr) return Napi::Value();
  return Napi::Number::New(info.Env(), __atomic_load_n(word, __ATOMIC_ACQUIRE));
}

void Mapping::StoreRelease32(const Napi::CallbackInfo& info) {
  uint32_t* word = WordAt(info);
  if (word == nullptr) return;
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "value must be a number");
    return;
  }
  uint32_t value = info[1].As<Napi::Number>().Uint32Value();
  __atomic_store_n(word, value, __ATOMIC_RELEASE);
}

void Mapping::Kick(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowErrno(env, EBADF, "kick after close");
    return;
  }
  int err = SendKick(kickFd_, kind_);
  if (err != 0) ThrowErrno(env, err, "write");
}

int SendKick(int kickFd, NotifyKind kind) {
  uint32_t one = 1;
  for (;;) {
    ssize_t n = kind == NotifyKind::Uio ? write(kickFd, &one, sizeof one) : send(kickFd, &one, sizeof one, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK) n = write(kickFd, &one, sizeof one);  // a pipe
    if (n >= 0) return 0;
    if (errno == EINTR) continue;
    // A full socket buffer means the peer has unread kicks already.
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return errno;
  }
}

void Mapping::Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowErrno(env, EBADF, "watch after close");
    return;
  }
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "watch(onEvent, onError) needs two functions");
    return;
  }
  if (watcher_ != nullptr) {
    ThrowErrno(env, EBUSY, "watch (already watching)");
    return;
  }
  auto* watcher = new NotifyWatcher(env, notifyFd_, kind_, &watcher_, info[0].As<Napi::Function>(),
                                    info[1].As<Napi::Function>());
  watcher_ = watcher;
  int rc = watcher->Start();
  if (rc != 0) {
    watcher_ = nullptr;
    ThrowErrno(env, -rc, "uv_poll_start");
  }
}

void Mapping::StopWatching() {
  if (watcher_ != nullptr) watcher_->Stop();  // clears watcher_ via OnStop
  watcher_ = nullptr;
}

void Mapping::Unwatch(const Napi::CallbackInfo&) { StopWatching(); }

void Mapping::CloseFds() {
  if (kickFd_ >= 0 && kickFd_ != notifyFd_) close(kickFd_);
  if (notifyFd_ >= 0) close(notifyFd_);
  kickFd_ = notifyFd_ = -1;
}

void Mapping::CloseAll(bool detach, bool retire) {
  if (closed_) return;
  closed_ = true;
  StopWatching();
  if (detach) {
    // Detach first so no JS view can reach the memory we unmap next.
    Napi::ArrayBuffer buffer = buffer_.Value();
    if (!buffer.IsEmpty() && !buffer.IsDetached()) buffer.Detach();
  }
  DetachCompleter();
  if (retire) {
    region_->Retire();
  } else {
    region_->Unmap();
  }
  CloseFds();
}

void Mapping::DetachCompleter() {
  if (completer_ == nullptr) return;
  completer_->Detach();
  completer_->Release();
  completer_ = nullptr;
}

// completion(maxInFlight, pendingCapacity, timed = true) -> { state: ArrayBuffer, handle: external }:
// the ring's completion side, shared with other threads (ring_completer.h).
// Once per mapping. The ring's bounds come from the mailbox, checked here.
Napi::Value Mapping::Completion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    ThrowErrno(env, EBADF, "completion after close");
    return Napi::Value();
  }
  if (completer_ != nullptr) {
    ThrowErrno(env, EBUSY, "completion (already made for this mapping)");
    return Napi::Value();
  }
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber() ||
      (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsBoolean())) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "completion(maxInFlight, pendingCapacity, timed?) needs two numbers and a boolean");
    return Napi::Value();
  }
  bool timed = info.Length() <= 2 || info[2].IsUndefined() || info[2].As<Napi::Boolean>().Value();
  uint32_t maxInFlight = info[0].As<Napi::Number>().Uint32Value();
  uint32_t capacity = info[1].As<Napi::Number>().Uint32Value();
  if (maxInFlight == 0 || maxInFlight > 65535 || capacity == 0 || capacity > (1u << 20) || (capacity & (capacity - 1)) != 0) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "maxInFlight must be 1..65535 and pendingCapacity a power of two up to 2^20");
    return Napi::Value();
  }
  auto* base = static_cast<uint8_t*>(region_->base);
  uint32_t cmdrOff, cmdrSize;
  memcpy(&cmdrOff, base + TCMU_TS_MAILBOX_CMDR_OFF, sizeof cmdrOff);
  memcpy(&cmdrSize, base + TCMU_TS_MAILBOX_CMDR_SIZE, sizeof cmdrSize);
  if (region_->size < 128 || cmdrOff < 128 || cmdrSize < 8 || cmdrOff % 8 != 0 || cmdrSize % 8 != 0 ||
      static_cast<uint64_t>(cmdrOff) + cmdrSize > region_->size) {
    ThrowErrno(env, EPROTO, "completion: the mailbox describes an impossible ring");
    return Napi::Value();
  }
  RingCompleter* completer = RingCompleter::Create(base, cmdrOff, cmdrSize, kickFd_, kind_, maxInFlight, capacity, timed);
  if (completer == nullptr) {
    ThrowErrno(env, errno, "completion");
    return Napi::Value();
  }
  completer_ = completer;  // the mapping's reference, dropped at close
  completer->Retain();     // the ArrayBuffer's
  Napi::ArrayBuffer state = Napi::ArrayBuffer::New(
      env, completer->state(), completer->stateBytes(), [](Napi::Env, void*, RingCompleter* c) { c->Release(); }, completer);
  completer->Retain();  // the external's
  Napi::External<RingCompletion> handle = Napi::External<RingCompletion>::New(
      env, completer->api(), [](Napi::Env, RingCompletion* api) { static_cast<RingCompleter*>(api->self)->Release(); });
  napi_type_tag_object(env, handle, &kRingCompletionTag);
  Napi::Object result = Napi::Object::New(env);
  result.Set("state", state);
  result.Set("handle", handle);
  return result;
}

// close(retire = false)
void Mapping::Close(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsBoolean()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "close(retire?) takes a boolean");
    return;
  }
  bool retire = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  if (cleanupHookRegistered_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
  cleanupHookRegistered_ = false;
  CloseAll(true, retire);
}

}  // namespace tcmu
