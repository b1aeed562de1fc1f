// A mapped region (the TCMU mailbox + ring + data area) and the fd(s) that
// signal it. Exposed to JS as a NativeMapping (src/tcmu/native.ts).
#pragma once
#include <napi.h>

#include <cstddef>

namespace tcmu {

class NotifyWatcher;
class RingCompleter;

// The mmap itself, shared by the Mapping object and the ArrayBuffer over it:
// whichever is released last unmaps, so an ArrayBuffer that outlives a
// garbage-collected (never closed) Mapping never points at unmapped memory.
struct Region {
  void* base = nullptr;
  size_t size = 0;
  int refs = 0;
  void Unmap();
  // Swap the pages for private anonymous ones at the same addresses and
  // never unmap them: for a close while a library may still touch the data
  // area (a store that did not close in time), so a late read or write of
  // it lands in harmless memory instead of faulting the daemon.
  void Retire();
  void Release();
};

enum class NotifyKind {
  Uio,     // notify fd is a uio device: read exactly the 4-byte event counter
  Stream,  // notify fd is a socket/pipe: drain every pending byte
};

// Tell the other side of the ring that the tail moved: 4 bytes to the
// kick fd (write on uio, send on the simulator's socket, write on a pipe).
// 0, or errno; a full socket counts as done (the peer has kicks unread).
int SendKick(int kickFd, NotifyKind kind);

struct MappingParams {
  void* base;
  size_t size;
  int notifyFd;
  int kickFd;  // may equal notifyFd (uio, socketpair end)
  NotifyKind kind;
};

class Mapping : public Napi::ObjectWrap<Mapping> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  // Wraps already-opened resources; takes ownership of the map and the fds.
  static Napi::Value Create(Napi::Env env, const MappingParams& params);

  explicit Mapping(const Napi::CallbackInfo& info);
  ~Mapping() override;

 private:
  Napi::Value LoadAcquire32(const Napi::CallbackInfo& info);
  void StoreRelease32(const Napi::CallbackInfo& info);
  void Kick(const Napi::CallbackInfo& info);
  void Watch(const Napi::CallbackInfo& info);
  void Unwatch(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value Completion(const Napi::CallbackInfo& info);

  // Validates a 4-aligned in-range offset; throws and returns nullptr otherwise.
  uint32_t* WordAt(const Napi::CallbackInfo& info);
  void StopWatching();
  void DetachCompleter();
  void CloseFds();
  // detach: false from the env cleanup hook (no JS can run any more).
  // retire: Region::Retire instead of unmapping.
  void CloseAll(bool detach, bool retire = false);
  static void OnEnvCleanup(void* arg);

  Region* region_ = nullptr;
  int notifyFd_ = -1;
  int kickFd_ = -1;
  NotifyKind kind_ = NotifyKind::Stream;
  bool closed_ = false;
  bool cleanupHookRegistered_ = false;
  NotifyWatcher* watcher_ = nullptr;
  RingCompleter* completer_ = nullptr;  // one reference, dropped when the region goes
  Napi::Reference<Napi::ArrayBuffer> buffer_;  // weak: only to detach on close
};

}  // namespace tcmu
