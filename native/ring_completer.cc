#include "ring_completer.h"

#include <errno.h>
#include <sched.h>

#include <cstdlib>
#include <cstring>

#include "clock_ms.h"
#include "mapping.h"
#include "ring_layout.h"

namespace tcmu {

namespace {

constexpr uint32_t kMailboxCmdTail = TCMU_TS_MAILBOX_CMD_TAIL;
constexpr uint32_t kEntryCmdId = TCMU_TS_ENTRY_CMD_ID;
constexpr uint32_t kEntryUflags = TCMU_TS_ENTRY_UFLAGS;
constexpr uint32_t kRspScsiStatus = TCMU_TS_RSP_SCSI_STATUS;
constexpr uint32_t kOpMask = TCMU_TS_OP_MASK;
constexpr uint32_t kOpCmd = TCMU_TS_OP_CMD;

int32_t Load(const int32_t* word) { return __atomic_load_n(word, __ATOMIC_RELAXED); }
void Store(int32_t* word, int32_t value) { __atomic_store_n(word, value, __ATOMIC_RELAXED); }

}  // namespace

RingCompleter* RingCompleter::Create(uint8_t* base, uint32_t cmdrOff, uint32_t cmdrSize, int kickFd, NotifyKind kind,
                                     uint32_t maxInFlight, uint32_t pendingCapacity, bool timed) {
  if (maxInFlight == 0 || pendingCapacity == 0 || (pendingCapacity & (pendingCapacity - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  auto* self = new RingCompleter();
  self->base_ = base;
  self->cmdrOff_ = cmdrOff;
  self->cmdrSize_ = cmdrSize;
  self->kickFd_ = kickFd;
  self->kind_ = kind;
  self->maxInFlight_ = maxInFlight;
  self->capacity_ = pendingCapacity;
  self->timed_ = timed;
  self->doneWords_ = maxInFlight + (maxInFlight & 1);  // keeps doneAt 8-aligned
  self->stateWords_ = kHeaderWords + self->doneWords_ + 2 * static_cast<size_t>(pendingCapacity) + 3 * static_cast<size_t>(maxInFlight);
  self->state_ = static_cast<int32_t*>(calloc(self->stateWords_, sizeof(int32_t)));
  if (self->state_ == nullptr) {
    delete self;
    errno = ENOMEM;
    return nullptr;
  }
  self->api_.abi = kRingCompletionAbi;
  self->api_.self = self;
  self->api_.retain = [](void* p) { static_cast<RingCompleter*>(p)->Retain(); };
  self->api_.release = [](void* p) { static_cast<RingCompleter*>(p)->Release(); };
  self->api_.completeGood = [](void* p, uint32_t slot, uint32_t cmdId) {
    return static_cast<RingCompleter*>(p)->CompleteGood(slot, cmdId);
  };
  return self;
}

RingCompleter::~RingCompleter() { free(state_); }

void RingCompleter::Retain() { refs_.fetch_add(1, std::memory_order_relaxed); }

void RingCompleter::Release() {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

void RingCompleter::Detach() {
  detached_.store(true, std::memory_order_seq_cst);
  // A completion that saw detached_ false is still writing the ring: it
  // finishes in well under a microsecond unless its thread is preempted.
  while (active_.load(std::memory_order_seq_cst) != 0) sched_yield();
}

// Takes the lock when it is free, or hands the command over to JS when JS
// holds it (the LockWord list). A few tries at most: the word only changes
// when a holder comes or goes or another thread hands a command over.
RingCompleter::Outcome RingCompleter::LockOrHandOver(uint32_t slot, uint32_t cmdId) {
  int32_t* lock = &state_[kLock];
  int32_t* link = state_ + kHeaderWords + doneWords_ + 2 * capacity_ + 2 * maxInFlight_ + slot;
  int32_t word = __atomic_load_n(lock, __ATOMIC_RELAXED);
  for (int tries = 0; tries < 8; tries++) {
    if (word == kFree) {
      if (__atomic_compare_exchange_n(lock, &word, kHeldHere, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return Outcome::kLocked;
      continue;  // `word` now holds what is there
    }
    // Only to JS, and only while it takes completions from other threads
    // at all (it clears kOpen to see each one come through the event loop).
    // kOpen is read before the swap, so this is advice, not a guarantee:
    // the swap may land in a later hold of the lock, with kOpen cleared
    // since. That is safe: JS completes whatever it is handed, in any state.
    if ((word & kHolderMask) != kHeldByLoop || Load(&state_[kOpen]) != 1) return Outcome::kRefused;
    uint32_t next = static_cast<uint32_t>(word) >> kListShift;
    Store(link, static_cast<int32_t>(cmdId << 16 | next));
    // Release: JS reads the link after it takes the list.
    int32_t pushed = static_cast<int32_t>((slot + 1) << kListShift) | kHeldByLoop;
    if (__atomic_compare_exchange_n(lock, &word, pushed, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) return Outcome::kHandedOver;
  }
  return Outcome::kRefused;
}

void RingCompleter::Unlock() { __atomic_store_n(&state_[kLock], kFree, __ATOMIC_RELEASE); }

uint32_t RingCompleter::Advance(uint32_t at, uint32_t lenOp) const {
  uint32_t next = at + (lenOp & ~kOpMask);
  return next == cmdrSize_ ? 0 : next;
}

// The entry at the front of the pending queue is at the tail and still has
// the len_op it had when JS consumed it (the checks JS makes before moving
// the tail; a mismatch is left to JS, which fails the ring).
bool RingCompleter::EntryUnchanged(uint32_t tail, uint32_t head) const {
  const int32_t* offsets = state_ + kHeaderWords + doneWords_;
  const int32_t* lenOps = offsets + capacity_;
  uint32_t recorded = static_cast<uint32_t>(Load(&lenOps[head]));
  uint32_t now;
  memcpy(&now, base_ + cmdrOff_ + tail, sizeof now);
  return static_cast<uint32_t>(Load(&offsets[head])) == tail && now == recorded && (recorded & ~kOpMask) != 0 &&
         tail + (recorded & ~kOpMask) <= cmdrSize_;
}

int RingCompleter::CompleteGood(uint32_t slot, uint32_t cmdId) {
  if (slot >= maxInFlight_ || cmdId > 0xffff) return 0;
  // Read before the lock, which JS spins on: where the clocksource has no
  // vDSO reader (HPET) this is a system call.
  double completedAt = timed_ ? ClockMs(CLOCK_MONOTONIC) : 0;
  active_.fetch_add(1, std::memory_order_seq_cst);
  int done = 0;
  if (!detached_.load(std::memory_order_seq_cst)) {
    switch (LockOrHandOver(slot, cmdId)) {
      case Outcome::kLocked:
        done = CompleteAtTail(slot, cmdId, completedAt) ? 1 : 0;
        Unlock();
        if (done) Kick();
        break;
      case Outcome::kHandedOver:
        done = 1;  // JS completes it before it releases the lock
        break;
      case Outcome::kRefused:
        break;
    }
  }
  active_.fetch_sub(1, std::memory_order_seq_cst);
  return done;
}

// Lock held: the GOOD response at the tail, the tail published. False when
// the ring is not in the state JS left it in, or JS asked to see every
// completion itself.
bool RingCompleter::CompleteAtTail(uint32_t slot, uint32_t cmdId, double completedAt) {
  uint32_t tail = static_cast<uint32_t>(Load(&state_[kTail]));
  uint32_t head = static_cast<uint32_t>(Load(&state_[kPendingHead]));
  uint32_t count = static_cast<uint32_t>(Load(&state_[kPendingCount]));
  uint32_t doneCount = static_cast<uint32_t>(Load(&state_[kDoneCount]));
  const int32_t* lenOps = state_ + kHeaderWords + doneWords_ + capacity_;
  uint32_t mask = capacity_ - 1;
  if (Load(&state_[kOpen]) != 1 || tail >= cmdrSize_ || head >= capacity_ || count > capacity_ || doneCount >= maxInFlight_) {
    return false;
  }
  // Pass PAD and TMR entries at the front, as JS's publish would.
  while (count > 0 && (static_cast<uint32_t>(Load(&lenOps[head])) & kOpMask) != kOpCmd) {
    if (!EntryUnchanged(tail, head)) return false;
    tail = Advance(tail, static_cast<uint32_t>(Load(&lenOps[head])));
    head = (head + 1) & mask;
    count--;
  }
  if (count == 0 || !EntryUnchanged(tail, head)) return false;
  // Out-of-order completion: the response goes into the CMD entry at the
  // tail, whichever command that entry carried.
  uint8_t* entry = base_ + cmdrOff_ + tail;
  entry[kRspScsiStatus] = 0;  // GOOD
  entry[kEntryUflags] = 0;
  uint16_t id = static_cast<uint16_t>(cmdId);
  memcpy(entry + kEntryCmdId, &id, sizeof id);
  tail = Advance(tail, static_cast<uint32_t>(Load(&lenOps[head])));
  head = (head + 1) & mask;
  count--;
  Store(&state_[kTail], static_cast<int32_t>(tail));
  Store(&state_[kPendingHead], static_cast<int32_t>(head));
  Store(&state_[kPendingCount], static_cast<int32_t>(count));
  Store(&state_[kHeaderWords + doneCount], static_cast<int32_t>(slot));
  double* doneAt = reinterpret_cast<double*>(state_ + kHeaderWords + doneWords_ + 2 * capacity_);
  doneAt[doneCount] = completedAt;
  Store(&state_[kDoneCount], static_cast<int32_t>(doneCount + 1));
  Store(&state_[kPublished], static_cast<int32_t>(tail));
  Store(&state_[kKicks], Load(&state_[kKicks]) + 1);
  // Release: the response is visible before the kernel sees the tail.
  __atomic_store_n(reinterpret_cast<uint32_t*>(base_ + kMailboxCmdTail), tail, __ATOMIC_RELEASE);
  return true;
}

void RingCompleter::Kick() {
  // A failed kick (device gone: EIO) needs nothing more: the tail is
  // published, and the event loop's own notification or error path takes
  // it from here.
  (void)SendKick(kickFd_, kind_);
}

namespace {

// Arguments (handle, slot, cmdId) at 0..2: the RingCompletion, or nullptr
// after throwing.
RingCompletion* ArgCompletion(const Napi::CallbackInfo& info, uint32_t* slot, uint32_t* cmdId) {
  bool tagged = false;
  if (info.Length() >= 3 && info[0].IsExternal()) napi_check_object_type_tag(info.Env(), info[0], &kRingCompletionTag, &tagged);
  if (!tagged || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(info.Env(), "expected (ring completion handle, slot, cmdId)").ThrowAsJavaScriptException();
    return nullptr;
  }
  *slot = info[1].As<Napi::Number>().Uint32Value();
  *cmdId = info[2].As<Napi::Number>().Uint32Value();
  return info[0].As<Napi::External<RingCompletion>>().Data();
}

class CompleteOnPool : public Napi::AsyncWorker {
 public:
  CompleteOnPool(Napi::Function cb, RingCompletion* ring, uint32_t slot, uint32_t cmdId)
      : Napi::AsyncWorker(cb), ring_(ring), slot_(slot), cmdId_(cmdId) {
    ring_->retain(ring_->self);
  }
  ~CompleteOnPool() override { ring_->release(ring_->self); }
  void Execute() override { result_ = ring_->completeGood(ring_->self, slot_, cmdId_); }
  void OnOK() override { Callback().Call({Env().Null(), Napi::Number::New(Env(), result_)}); }

 private:
  RingCompletion* ring_;
  uint32_t slot_;
  uint32_t cmdId_;
  int result_ = 0;
};

}  // namespace

Napi::Value RingCompleteGood(const Napi::CallbackInfo& info) {
  uint32_t slot, cmdId;
  RingCompletion* ring = ArgCompletion(info, &slot, &cmdId);
  if (ring == nullptr) return Napi::Value();
  return Napi::Number::New(info.Env(), ring->completeGood(ring->self, slot, cmdId));
}

Napi::Value RingCompleteGoodOnPool(const Napi::CallbackInfo& info) {
  uint32_t slot, cmdId;
  RingCompletion* ring = ArgCompletion(info, &slot, &cmdId);
  if (ring == nullptr) return Napi::Value();
  if (info.Length() < 4 || !info[3].IsFunction()) {
    Napi::TypeError::New(info.Env(), "expected a callback").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  (new CompleteOnPool(info[3].As<Napi::Function>(), ring, slot, cmdId))->Queue();
  return info.Env().Undefined();
}

}  // namespace tcmu
