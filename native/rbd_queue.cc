#include "rbd_queue.h"

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
  // uv_async_send coalesces: one wake-up may carry many records.
  uv_async_send(&async_);
}

void RbdQueue::SetHandler(Napi::Function handler) {
  handler_ = Napi::Persistent(handler);
  if (!context_) context_ = std::make_unique<Napi::AsyncContext>(env_, "tcmu-rbd");
}

void RbdQueue::Started() {
  if (pending_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
}

void RbdQueue::OnAsync(uv_async_t* handle) { static_cast<RbdQueue*>(handle->data)->Drain(); }

void RbdQueue::Drain() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_.swap(records_);
  }
  if (draining_.empty()) return;
  size_t n = draining_.size();
  Napi::HandleScope scope(env_);
  Napi::Float64Array batch = Napi::Float64Array::New(env_, n * 3);
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
  pending_ -= delivered;
  if (pending_ <= 0) {
    pending_ = 0;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  }
  if (handler_.IsEmpty()) return;
  napi_value result;
  napi_value argv[] = {batch};
  napi_status status = napi_make_callback(env_, static_cast<napi_async_context>(*context_), Napi::Object::New(env_),
                                          handler_.Value(), 1, argv, &result);
  if (status == napi_pending_exception) {
    // A throwing handler is a bug in JS: report it as uncaught, like any callback.
    napi_value err;
    napi_get_and_clear_last_exception(env_, &err);
    napi_fatal_exception(env_, err);
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
  self->context_.reset();
  // The queue object itself stays (librbd threads may still call Post).
  uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
}

}  // namespace tcmu
