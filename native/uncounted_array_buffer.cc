#include "uncounted_array_buffer.h"

#include <v8.h>

#include <cstring>
#include <memory>

namespace tcmu {

napi_status NewUncountedArrayBuffer(napi_env, void* data, size_t length, napi_value* result) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate == nullptr || result == nullptr) return napi_generic_failure;
  // EmptyDeleter: V8 frees nothing, and so counts nothing (a backing store
  // with an empty deleter has no per-isolate accounting length).
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(data, length, v8::BackingStore::EmptyDeleter, nullptr);
  v8::Local<v8::Value> buffer = v8::ArrayBuffer::New(isolate, std::move(store));
  // A napi_value is, in Node, the address of a v8::Local's handle (what
  // Node-API's own v8impl::JsValueFromV8LocalValue returns).
  static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>), "napi_value is a v8::Local");
  std::memcpy(result, &buffer, sizeof *result);
  return napi_ok;
}

}  // namespace tcmu
