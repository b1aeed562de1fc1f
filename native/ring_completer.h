// The completion side of one TCMU ring, shared between the event loop (the
// JS RingEngine) and threads that complete commands directly (through
// RingCompletion, ring_completion.h). tcmu-runner completes each command on
// whichever thread finished it; without this, every completion from
// another library's thread costs the event loop a wake-up of its own.
//
// The state both sides update (the tail, the queue of consumed entries the
// tail has not passed, the slots completed here) lives in one block of
// 32-bit words that JS sees as an Int32Array (src/tcmu/completion-state.ts
// names the same words). A word-sized lock guards it: JS takes it around
// each batch and each completion (Atomics.compareExchange, spinning: the
// other side holds it for a few hundred instructions and never blocks
// while holding it); another thread only ever tries it once and, when JS
// holds it, leaves the completion to the event loop.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>

#include "ring_completion.h"

namespace tcmu {

enum class NotifyKind;

// Word indexes of the shared block (src/tcmu/completion-state.ts).
enum CompletionWord : uint32_t {
  kLock = 0,          // 0 free, 1 held
  kOpen = 1,          // 1: other threads may complete (JS clears it to see every completion itself)
  kTail = 2,          // our tail, ring-relative
  kPublished = 3,     // the tail the kernel has seen
  kPendingHead = 4,   // queue of consumed entries the tail has not passed ...
  kPendingCount = 5,  // ... (offsets and len_ops, capacity a power of two)
  kDoneCount = 6,     // slots completed off the event loop, not yet collected by JS
  kKicks = 7,         // kicks sent off the event loop (JS adds them to its stats)
  kHeaderWords = 8,
  // then: done[doneWords] (slot indexes; maxInFlight rounded up to even),
  // pendingOffset[capacity], pendingLenOp[capacity], and doneAt[maxInFlight]
  // (doubles: CLOCK_MONOTONIC in ms when each was completed, for latency).
};

class RingCompleter {
 public:
  // base: the mapping (mailbox at 0); kickFd: the mapping's, used until
  // Detach (not duplicated: an open duplicate of a uio fd would keep the
  // device open, and the kernel refuses a second open). One reference for
  // the caller. timed: stamp each completion's doneAt (else 0: nobody
  // reads latencies). nullptr with errno set.
  static RingCompleter* Create(uint8_t* base, uint32_t cmdrOff, uint32_t cmdrSize, int kickFd, NotifyKind kind,
                               uint32_t maxInFlight, uint32_t pendingCapacity, bool timed);

  void Retain();
  void Release();
  // JS thread, before the mapping is unmapped and its fds closed: no
  // completion touches the ring or the kick fd after this returns (waits
  // for one in progress to finish).
  void Detach();

  int32_t* state() { return state_; }
  size_t stateBytes() const { return stateWords_ * sizeof(int32_t); }
  RingCompletion* api() { return &api_; }

 private:
  RingCompleter() = default;
  ~RingCompleter();
  int CompleteGood(uint32_t slot, uint32_t cmdId);
  bool TryLock();
  void Unlock();
  bool EntryUnchanged(uint32_t tail, uint32_t head) const;
  uint32_t Advance(uint32_t at, uint32_t lenOp) const;
  void Kick();

  std::atomic<int> refs_{1};
  // Threads inside CompleteGood; Detach waits for 0 after setting detached_.
  std::atomic<int> active_{0};
  std::atomic<bool> detached_{false};
  uint8_t* base_ = nullptr;
  uint32_t cmdrOff_ = 0;
  uint32_t cmdrSize_ = 0;
  int kickFd_ = -1;
  NotifyKind kind_{};
  uint32_t maxInFlight_ = 0;
  uint32_t capacity_ = 0;  // pending queue, a power of two
  bool timed_ = true;
  uint32_t doneWords_ = 0;
  int32_t* state_ = nullptr;
  size_t stateWords_ = 0;
  RingCompletion api_{};
};

// ringCompleteGood(handle, slot, cmdId) -> 1 | 0: completeGood on the
// calling thread; ringCompleteGoodOnPool(handle, slot, cmdId, cb(err, 1 | 0)):
// on a libuv pool thread. What an addon does, for the tests of the engine's
// side without librbd.
Napi::Value RingCompleteGood(const Napi::CallbackInfo& info);
Napi::Value RingCompleteGoodOnPool(const Napi::CallbackInfo& info);

}  // namespace tcmu
