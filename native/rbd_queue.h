// Completions from librbd's threads to the Node event loop: one queue and
// one uv_async per env (not a thread or a handle per LUN). librbd calls its
// completion callbacks on its own finisher threads; they append a record
// under a mutex and wake the loop; the loop drains every record in one go
// and hands JS [tag, result, extra] triples in one Float64Array that is
// reused from batch to batch (the handler reads it before it returns).
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace tcmu {

struct RbdRecord {
  double tag;     // chosen by JS when it submitted the operation
  double result;  // librbd's return value: bytes or 0, or -errno
  double extra;   // compare-and-write: the mismatch offset; else 0
};

class RbdQueue {
 public:
  // Created once per env; lives until process exit (librbd threads may
  // still post after the env is gone, so it is never freed: see Kill).
  static RbdQueue* Create(Napi::Env env);

  // Any thread. Every started operation posts exactly one record.
  void Post(const RbdRecord& record);
  // Any thread: a record that rides with the next wake-up (an operation
  // whose command was already completed in a TCMU ring: JS only has to
  // free its tag). The loop is woken anyway every kQuietLimit such records,
  // so they never pile up, and when it was the last operation pending, so
  // the loop can let go of its handle (a daemon exits once nothing is
  // pending).
  void PostQuietly(const RbdRecord& record);
  static constexpr int kQuietLimit = 64;

  // Loop thread: the JS function that receives batches.
  void SetHandler(Napi::Function handler);
  // Loop thread: an operation was submitted / its record was delivered;
  // the async handle keeps the loop alive only while operations are pending.
  void Started();
  // Loop thread: an operation counted by Started() failed to submit.
  void NotStarted();

 private:
  explicit RbdQueue(Napi::Env env);
  static void OnAsync(uv_async_t* handle);
  static void OnCleanup(void* arg);
  void Drain();
  void ReleaseLoopIfIdle();  // loop thread

  Napi::Env env_;
  uv_async_t async_;
  std::mutex mutex_;
  std::vector<RbdRecord> records_;  // guarded by mutex_
  bool dead_ = false;               // guarded by mutex_: env gone, never wake the loop again
  int quiet_ = 0;                   // guarded by mutex_: records posted without a wake-up since the last one
  size_t quietRecords_ = 0;         // guarded by mutex_: how many of records_ were posted quietly (already counted off)
  std::vector<RbdRecord> draining_; // loop thread only
  Napi::FunctionReference handler_;
  Napi::ObjectReference receiver_;
  Napi::Reference<Napi::Float64Array> batch_;  // grown when a drain holds more records
  size_t batchRecords_ = 0;                     // records batch_ holds room for
  std::unique_ptr<Napi::AsyncContext> context_;
  // Started, not yet finished: decremented by Drain for the records it
  // delivers, by PostQuietly for its own (on librbd's thread).
  std::atomic<int64_t> pending_{0};
  bool refed_ = false;  // loop thread: the async handle keeps the loop alive
};

}  // namespace tcmu
