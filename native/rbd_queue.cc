#include "rbd_queue.h"

#include <algorithm>

namespace tcmu {

RbdQueue* RbdQueue::Create(Napi::Env env) {
  auto* queue = new RbdQueue(env);
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  uv_async_init(loop, &queue->async_, OnAsync);
  queue->async_.data = queue;
  uv_unref(reinterpret_cast<uv_handle_t*>(&queue->async_));
  napi_add_env_cleanup_hook(env, OnCleanup, queue);
  return queue;
}

RbdQueue::RbdQueue(Napi::Env env) : env_(env) {}

void RbdQueue::Post(const RbdRecord& record) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (dead_) return;
  records_.push_back(record);
  quiet_ = 0;
  // uv_async_send coalesces: one wake-up may carry many records.
  uv_async_send(&async_);
}

void RbdQueue::PostQuietly(const RbdRecord& record) {
  bool last = pending_.fetch_sub(1) == 1;
  std::lock_guard<std::mutex> lock(mutex_);
  if (dead_) return;
  records_.push_back(record);
  quietRecords_++;
  if (!last && ++quiet_ < kQuietLimit) return;
  quiet_ = 0;
  uv_async_send(&async_);
}

void RbdQueue::SetHandler(Napi::Function handler) {
  handler_ = Napi::Persistent(handler);
  if (receiver_.IsEmpty()) receiver_ = Napi::Persistent(Napi::Object::New(env_));
  if (!context_) context_ = std::make_unique<Napi::AsyncContext>(env_, "tcmu-rbd");
}

void RbdQueue::Started() {
  pending_++;
  if (!refed_) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
  refed_ = true;
}

void RbdQueue::NotStarted() {
  pending_--;
  ReleaseLoopIfIdle();
}

void RbdQueue::OnAsync(uv_async_t* handle) { static_cast<RbdQueue*>(handle->data)->Drain(); }

void RbdQueue::Drain() {
  size_t quiet;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_.swap(records_);
    quiet = quietRecords_;
    quietRecords_ = 0;
  }
  if (draining_.empty()) {
    ReleaseLoopIfIdle();
    return;
  }
  size_t n = draining_.size();
  Napi::HandleScope scope(env_);
  if (n > batchRecords_) {
    // Records in flight are bounded by the commands in flight (the rings'
    // sizes), so this grows a few times at most.
    batchRecords_ = std::max(n, 2 * batchRecords_);
    batch_ = Napi::Persistent(Napi::Float64Array::New(env_, batchRecords_ * 3));
  }
  Napi::Float64Array batch = batch_.Value();
  double* out = batch.Data();
  int64_t delivered = 0;
  for (size_t i = 0; i < n; i++) {
    out[3 * i] = draining_[i].tag;
    out[3 * i + 1] = draining_[i].result;
    out[3 * i + 2] = draining_[i].extra;
    // Watch notifications carry a negative tag and were never "started".
    if (draining_[i].tag >= 0) delivered++;
  }
  draining_.clear();
  pending_ -= delivered - static_cast<int64_t>(quiet);  // quiet ones counted themselves off
  ReleaseLoopIfIdle();
  if (handler_.IsEmpty()) return;
  napi_value result;
  napi_value argv[] = {batch, Napi::Number::New(env_, static_cast<double>(n))};
  napi_status status = napi_make_callback(env_, static_cast<napi_async_context>(*context_), receiver_.Value(),
                                          handler_.Value(), 2, argv, &result);
  if (status == napi_pending_exception) {
    // A throwing handler is a bug in JS: report it as uncaught, like any callback.
    napi_value err;
    napi_get_and_clear_last_exception(env_, &err);
    napi_fatal_exception(env_, err);
  }
}

void RbdQueue::ReleaseLoopIfIdle() {
  // Only PostQuietly lowers pending_ elsewhere, and the one that reaches 0
  // wakes the loop, so a 0 missed here is seen at that wake-up.
  if (refed_ && pending_.load() <= 0) {
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    refed_ = false;
  }
}

void RbdQueue::OnCleanup(void* arg) {
  auto* self = static_cast<RbdQueue*>(arg);
  {
    std::lock_guard<std::mutex> lock(self->mutex_);
    self->dead_ = true;
    self->records_.clear();
  }
  self->handler_.Reset();
  self->receiver_.Reset();
  self->batch_.Reset();
  self->context_.reset();
  // The queue object itself stays (librbd threads may still call Post).
  uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
}

}  // namespace tcmu
