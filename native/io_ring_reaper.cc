// The reaper of an io_uring created with completesInRing (see io_ring.h).
//
// Why a thread: a large write or a page-cache miss runs on an io-wq worker,
// and its completion then woke the event loop, which reaped it, completed
// the TCMU command and kicked the kernel. For such commands the event loop
// had two wake-ups (the ring's notification and this one); tcmu-runner's
// I/O thread has none for the completion: it finishes the I/O and
// completes the command itself. Here this thread waits in io_uring_enter
// for completions and, for an operation that names its command
// (RingCompletion) and moved every byte, completes it in the ring at once.
// Everything else (errors, short transfers, operations without a command,
// a ring whose event loop holds the completion lock) goes to JS through a
// CompletionQueue with the result, exactly as a plain ring reports it.
//
// The loop thread owns the submission side and intents_[tag] (written
// before the operation is submitted, read here after its completion: the
// kernel's submit and completion order the two). This thread owns the
// completion side. Stopping: the loop thread queues a NOP with kStopTag
// and joins.
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "errno_error.h"
#include "io_ring.h"

namespace tcmu {

namespace {

constexpr uint64_t kStopTag = ~0ULL;

int SysWait(int fd) { return static_cast<int>(syscall(__NR_io_uring_enter, fd, 0, 1, IORING_ENTER_GETEVENTS, nullptr, 0)); }

}  // namespace

bool IoRing::StartReaper(Napi::Env env) {
  intents_.resize(sqEntries_);
  queue_ = CompletionQueue::Create(env, "tcmu:io_ring");
  reaper_ = std::thread(&IoRing::ReapLoop, this);
  return true;
}

void IoRing::ReapLoop() {
  for (;;) {
    int rc = SysWait(fd_);
    if (rc < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY) {
      // The ring itself failed (it cannot, short of a kernel bug): JS fails every operation.
      queue_->Post(CompletionRecord{-1, static_cast<double>(-errno), 0});
      return;
    }
    unsigned head = *cqHead_;
    unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
    bool stop = false;
    for (; head != tail; head++) {
      const io_uring_cqe& cqe = cqes_[head & cqMask_];
      if (cqe.user_data == kStopTag) {
        stop = true;
      } else {
        ReapCompletion(cqe);
      }
    }
    __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
    if (stop) return;
  }
}

void IoRing::ReapCompletion(const io_uring_cqe& cqe) {
  uint32_t tag = static_cast<uint32_t>(cqe.user_data);
  CompletionRecord record{static_cast<double>(tag), static_cast<double>(cqe.res), 0};
  if (tag >= intents_.size()) {
    queue_->Post(record);  // not one of ours (cannot happen): JS ignores it
    return;
  }
  Intent& intent = intents_[tag];
  RingCompletion* ring = intent.ring;
  intent.ring = nullptr;
  bool inRing = ring != nullptr && cqe.res >= 0 && cqe.res == intent.expected &&
                ring->completeGood(ring->self, intent.slot, intent.cmdId) == 1;
  if (ring != nullptr) ring->release(ring->self);
  if (inRing) {
    record.extra = kCompletedInRing;
    queue_->PostQuietly(record);
  } else {
    queue_->Post(record);
  }
}

bool IoRing::SetIntent(const Record& rec, const std::vector<iovec>& iov) {
  if (rec.tag < 0 || static_cast<size_t>(rec.tag) >= intents_.size()) return false;
  Intent& intent = intents_[rec.tag];
  if (intent.ring != nullptr) intent.ring->release(intent.ring->self);  // a tag reused before its completion (a bug in JS)
  intent.ring = nullptr;
  if (rec.completion < 0) return true;
  if (static_cast<size_t>(rec.completion) >= completions_.size() || completions_[rec.completion] == nullptr) return false;
  RingCompletion* ring = completions_[rec.completion];
  int64_t expected = 0;
  for (const iovec& v : iov) expected += static_cast<int64_t>(v.iov_len);
  ring->retain(ring->self);
  intent.ring = ring;
  intent.slot = rec.slot;
  intent.cmdId = rec.cmdId;
  intent.expected = expected;
  return true;
}

void IoRing::StopReaper() {
  if (!reaper_.joinable()) return;
  // The slot Usable() kept free for this.
  unsigned index = localTail_ & sqMask_;
  io_uring_sqe* sqe = &sqes_[index];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = IORING_OP_NOP;
  sqe->user_data = kStopTag;
  localTail_++;
  unsubmitted_++;
  __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
  int rc = 0;
  // EAGAIN/EBUSY: the kernel is short of resources for a moment.
  for (int tries = 0; tries < 1000 && (rc = EnterAll()) == 0 && unsubmitted_ > 0; tries++) usleep(1000);
  if (rc < 0 || unsubmitted_ > 0) {
    // Cannot reach the thread: leave it (and the mappings it reads) be.
    reaper_.detach();
    sqes_ = nullptr;
    cqRing_ = sqRing_ = nullptr;
    return;
  }
  reaper_.join();
  for (Intent& intent : intents_) {
    if (intent.ring != nullptr) intent.ring->release(intent.ring->self);
    intent.ring = nullptr;
  }
  for (RingCompletion*& ring : completions_) {
    if (ring != nullptr) ring->release(ring->self);
    ring = nullptr;
  }
  queue_->Destroy();
  queue_ = nullptr;
}

// registerCompletion(handle) -> id: a RingCompletion (NativeMapping.completion)
// that in-ring records name by id; retained until unregisterCompletion(id).
Napi::Value IoRing::RegisterCompletion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring registerCompletion after close")) return Napi::Value();
  bool tagged = false;
  if (info.Length() > 0 && info[0].IsExternal()) napi_check_object_type_tag(env, info[0], &kRingCompletionTag, &tagged);
  if (!tagged) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "registerCompletion(handle: a ring completion handle (NativeMapping.completion))");
    return Napi::Value();
  }
  auto* ring = info[0].As<Napi::External<RingCompletion>>().Data();
  if (ring->abi != kRingCompletionAbi) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "ring completion of another ABI");
    return Napi::Value();
  }
  if (!reaper_.joinable()) {
    ThrowErrno(env, EINVAL, "registerCompletion (only a ring created with completesInRing completes commands)");
    return Napi::Value();
  }
  ring->retain(ring->self);
  uint32_t id;
  if (!freeCompletionIds_.empty()) {
    id = freeCompletionIds_.back();
    freeCompletionIds_.pop_back();
    completions_[id] = ring;
  } else {
    id = static_cast<uint32_t>(completions_.size());
    completions_.push_back(ring);
  }
  return Napi::Number::New(env, id);
}

void IoRing::UnregisterCompletion(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) return;
  double v = info[0].As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v < static_cast<double>(completions_.size())) || v != static_cast<double>(static_cast<uint32_t>(v))) return;
  uint32_t id = static_cast<uint32_t>(v);
  if (completions_[id] == nullptr) return;
  completions_[id]->release(completions_[id]->self);  // operations in flight hold their own reference
  completions_[id] = nullptr;
  freeCompletionIds_.push_back(id);
}

// onCompletions(handler(batch: Float64Array, n)): [tag, result, extra]
// triples, extra = -1 when the command was completed in its ring; a negative
// tag reports the ring itself failing (result = -errno).
void IoRing::OnCompletions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring onCompletions after close")) return;
  if (!reaper_.joinable() || info.Length() < 1 || !info[0].IsFunction()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "onCompletions(handler) on a ring created with completesInRing");
    return;
  }
  queue_->SetHandler(info[0].As<Napi::Function>());
}

}  // namespace tcmu
