// Runs a block with the calling thread under SCHED_BATCH, so that every
// thread it creates (pthread_create inherits the creator's policy) starts
// under SCHED_BATCH too. librados and librbd spawn their messenger, io
// context and finisher threads inside rados_connect and rbd_open; under
// SCHED_BATCH a wake-up of one of them (each submission wakes librbd's io
// context thread) no longer preempts the thread that woke it, the event loop:
// the woken thread runs on an idle CPU, when the loop sleeps, or at the tick.
// A thread that is not SCHED_OTHER (an admin's real-time or idle policy) is
// left as it is, and the calling thread gets its own policy back at the end.
#pragma once

#include <sched.h>

namespace tcmu {

class ScopedBatchPolicy {
 public:
  explicit ScopedBatchPolicy(bool wanted) {
    if (!wanted || sched_getscheduler(0) != SCHED_OTHER) return;
    sched_param param{};
    switched_ = sched_setscheduler(0, SCHED_BATCH, &param) == 0;
  }
  ~ScopedBatchPolicy() {
    if (!switched_) return;
    sched_param param{};
    sched_setscheduler(0, SCHED_OTHER, &param);
  }
  ScopedBatchPolicy(const ScopedBatchPolicy&) = delete;
  ScopedBatchPolicy& operator=(const ScopedBatchPolicy&) = delete;

 private:
  bool switched_ = false;
};

}  // namespace tcmu
