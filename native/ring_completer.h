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
// while holding it). Another thread never waits for it:
//  - free: it takes it and completes the command itself;
//  - held by JS (a batch is running): it hands the command over, pushing
//    its slot onto a list that lives in the lock word itself, and JS
//    completes it before it lets the lock go (no promise, no wake-up);
//  - held by another such thread: it leaves the completion to the event
//    loop's usual path (the caller's).
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>

#include "ring_completion.h"

namespace tcmu {

enum class NotifyKind;

// Word indexes of the shared block (src/tcmu/completion-state.ts).
enum CompletionWord : uint32_t {
  kLock = 0,          // LockWord: who holds it, and the handed-over list
  kOpen = 1,          // 1: other threads may complete (JS clears it to see every completion itself)
  kTail = 2,          // our tail, ring-relative
  kPublished = 3,     // the tail the kernel has seen
  kPendingHead = 4,   // queue of consumed entries the tail has not passed ...
  kPendingCount = 5,  // ... (offsets and len_ops, capacity a power of two)
  kDoneCount = 6,     // slots completed off the event loop, not yet collected by JS
  kKicks = 7,         // kicks sent off the event loop (JS adds them to its stats)
  kHeaderWords = 8,
  // then: done[doneWords] (slot indexes; maxInFlight rounded up to even),
  // pendingOffset[capacity], pendingLenOp[capacity], doneAt[maxInFlight]
  // (doubles: CLOCK_MONOTONIC in ms when each was completed, for latency),
  // and handedOver[maxInFlight] (per slot: cmd_id << 16 | the next slot of
  // the list + 1, 0 ending it).
};

// The lock word: bits 0-1 the holder, bits 2-31 the first slot + 1 of the
// list of commands handed over to JS while it holds the lock (0: none).
// A thread pushes with one compare-and-swap that also checks JS still
// holds it; JS takes the list with one exchange, so no entry can be left
// behind once the lock is free.
enum LockWord : int32_t {
  kFree = 0,
  kHeldHere = 1,    // by a thread completing through this class
  kHeldByLoop = 2,  // by JS
  kHolderMask = 3,
  kListShift = 2,
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
  enum class Outcome { kLocked, kHandedOver, kRefused };
  int CompleteGood(uint32_t slot, uint32_t cmdId);
  Outcome LockOrHandOver(uint32_t slot, uint32_t cmdId);
  bool CompleteAtTail(uint32_t slot, uint32_t cmdId, double completedAt);
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
