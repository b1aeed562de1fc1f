// Watches a mapping's notify fd: acknowledges each readable event the way
// its kind requires, then calls onEvent(ack).
#pragma once
#include "fd_watch.h"
#include "mapping.h"

namespace tcmu {

class NotifyWatcher : public FdWatcher {
 public:
  // `owner` is cleared when the watcher stops (the owner's pointer to it).
  NotifyWatcher(Napi::Env env, int fd, NotifyKind kind, NotifyWatcher** owner, Napi::Function onEvent,
                Napi::Function onError)
      : FdWatcher(env, fd, onEvent, onError, "tcmu:notify"), kind_(kind), owner_(owner) {}

 protected:
  void OnReadable() override;
  void OnStop() override {
    if (owner_ != nullptr && *owner_ == this) *owner_ = nullptr;
  }

 private:
  void ReadUioCounter();
  void DrainStream();

  NotifyKind kind_;
  NotifyWatcher** owner_;
};

}  // namespace tcmu
