// Completions from librbd's threads to the Node event loop: one queue and
// one uv_async per env (not a thread or a handle per LUN). librbd calls its
// completion callbacks on its own finisher threads; they append a record
// under a mutex and wake the loop; the loop drains every record in one go
// and hands JS [tag, result, extra] triples in one Float64Array that is
// reused from batch to batch (the handler reads it before it returns).
#pragma once
#include <napi.h>
#include <uv.h>

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

  // Any thread.
  void Post(const RbdRecord& record);

  // Loop thread: the JS function that receives batches.
  void SetHandler(Napi::Function handler);
  // Loop thread: an operation was submitted / its record was delivered;
  // the async handle keeps the loop alive only while operations are pending.
  void Started();

 private:
  explicit RbdQueue(Napi::Env env);
  static void OnAsync(uv_async_t* handle);
  static void OnCleanup(void* arg);
  void Drain();

  Napi::Env env_;
  uv_async_t async_;
  std::mutex mutex_;
  std::vector<RbdRecord> records_;  // guarded by mutex_
  bool dead_ = false;               // guarded by mutex_: env gone, never wake the loop again
  std::vector<RbdRecord> draining_; // loop thread only
  Napi::FunctionReference handler_;
  Napi::ObjectReference receiver_;
  Napi::Reference<Napi::Float64Array> batch_;  // grown when a drain holds more records
  size_t batchRecords_ = 0;                     // records batch_ holds room for
  std::unique_ptr<Napi::AsyncContext> context_;
  int64_t pending_ = 0;  // loop thread: submitted, not yet delivered
};

}  // namespace tcmu
