// A minimal io_uring (raw syscalls, no liburing): queue positional vectored
// reads/writes, submit them with one io_uring_enter, copy completions out,
// and poll the ring fd inside libuv. Mechanism only: JS owns the tags, the
// in-flight limit, short-transfer continuation and error mapping.
#pragma once
#include <linux/io_uring.h>
#include <napi.h>
#include <sys/uio.h>

#include <vector>

#include "fd_watch.h"

namespace tcmu {

class IoRingWatcher;

// monotonicCoarseMs(): CLOCK_MONOTONIC_COARSE in milliseconds (see WriteNow).
Napi::Value MonotonicCoarseMs(const Napi::CallbackInfo& info);

class IoRing : public Napi::ObjectWrap<IoRing> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit IoRing(const Napi::CallbackInfo& info);
  ~IoRing() override;

  // Called by the watcher when it stops.
  void ForgetWatcher(IoRingWatcher* w) {
    if (watcher_ == w) watcher_ = nullptr;
  }

 private:
  Napi::Value PrepReadv(const Napi::CallbackInfo& info);
  Napi::Value PrepWritev(const Napi::CallbackInfo& info);
  Napi::Value Prep(const Napi::CallbackInfo& info, uint8_t opcode);
  bool SqFull() const;
  // offload: IOSQE_ASYNC, i.e. always on an io-wq worker, never inline.
  void QueueVectored(unsigned index, uint8_t opcode, int fd, uint64_t offset, uint32_t tag, bool offload);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  // io_ring_batch.cc: the numbers-only batch interface of the hot path.
  Napi::Value RegisterBuffer(const Napi::CallbackInfo& info);
  void UnregisterBuffer(const Napi::CallbackInfo& info);
  void Run(const Napi::CallbackInfo& info);
  Napi::Value TryNow(const Napi::CallbackInfo& info);
  Napi::Value WriteNow(const Napi::CallbackInfo& info);
  // The staged record done at once: RWF_NOWAIT (tryNow) or a blocking write (writeNow).
  Napi::Value DoNow(Napi::Env env, bool blockingWrite);
  void SetNowStage(const Napi::CallbackInfo& info);
  void ForgetNowStage();
  struct Record {
    bool write = false;
    bool offload = false;
    int fd = -1;
    uint64_t position = 0;
    int32_t tag = -1;
  };
  // The last buffer a batch resolved (records mostly name the same one).
  struct BufferCache {
    uint32_t id = UINT32_MAX;
    uint8_t* data = nullptr;
    size_t length = 0;
    bool ok = false;
  };
  // Ok; Fault: memory outside its buffer (-EFAULT for that operation);
  // Invalid: kind/fd/position out of range (-EINVAL for that operation);
  // Malformed: the record cannot even be delimited or attributed (a bug in
  // the caller's staging: the whole call throws).
  enum class RecordStatus { Ok, Fault, Invalid, Malformed };
  RecordStatus DecodeRecord(Napi::Env env, const double* stage, size_t stageLen, size_t* at, Record* rec,
                            std::vector<iovec>* iov, BufferCache* cache);
  bool ResolveBuffer(Napi::Env env, uint32_t id, uint8_t** data, size_t* length);
  size_t ReapInto(int32_t* pairs, size_t room);
  int EnterAll();
  Napi::Value Reap(const Napi::CallbackInfo& info);
  void Watch(const Napi::CallbackInfo& info);
  void Unwatch(const Napi::CallbackInfo& info);
  void Ref(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  static void OnEnvCleanup(void* arg);
  void CloseAll();
  bool CheckOpen(Napi::Env env, const char* what);

  int fd_ = -1;
  bool closed_ = false;
  bool cleanupHookRegistered_ = false;
  void* sqRing_ = nullptr;
  size_t sqRingSize_ = 0;
  void* cqRing_ = nullptr;
  size_t cqRingSize_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqesSize_ = 0;
  unsigned* sqHead_ = nullptr;
  unsigned* sqTail_ = nullptr;
  unsigned sqMask_ = 0;
  unsigned sqEntries_ = 0;
  unsigned* cqHead_ = nullptr;
  unsigned* cqTail_ = nullptr;
  unsigned cqMask_ = 0;
  unsigned cqEntries_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  unsigned localTail_ = 0;   // SQ tail including prepared, unsubmitted entries
  unsigned unsubmitted_ = 0;
  // iovec storage per SQE slot; valid until the kernel consumed the SQE
  // (IORING_FEAT_SUBMIT_STABLE: once io_uring_enter returned).
  std::vector<std::vector<iovec>> iovs_;
  // The record of the synchronous tryNow()/writeNow() calls (setNowStage)
  // and its iovecs; writeNow() times its write into nowClock_[0..1].
  napi_ref nowStageRef_ = nullptr;
  const double* nowStage_ = nullptr;
  size_t nowStageLen_ = 0;
  napi_ref nowClockRef_ = nullptr;
  double* nowClock_ = nullptr;
  std::vector<iovec> nowIov_;
  IoRingWatcher* watcher_ = nullptr;
  // Registered ArrayBuffers (weak references), indexed by the id JS uses in
  // batch records; freed ids are reused.
  std::vector<napi_ref> buffers_;
  std::vector<uint32_t> freeBufferIds_;
};

Napi::Value IoRingCreate(const Napi::CallbackInfo& info);

}  // namespace tcmu
