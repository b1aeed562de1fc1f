// Own-property methods for the per-command calls. A prototype method
// (ObjectWrap::InstanceMethod) finds its C++ object through napi_unwrap, a
// private-property lookup on every call: ~3.5% of the runner's CPU in a
// guest profile of 4k reads. A function created with the object as its
// data skips that lookup.
//
// Lifetime: the function holds its wrapper (a symbol-keyed property), so
// the C++ object cannot be collected while the function is reachable, even
// if JS kept the function and dropped the object.
#pragma once
#include <napi.h>

namespace tcmu {

namespace detail {

template <typename T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
Napi::Value CallBound(const Napi::CallbackInfo& info) {
  return (static_cast<T*>(info.Data())->*Method)(info);
}

template <typename T, void (T::*Method)(const Napi::CallbackInfo&)>
void CallBoundVoid(const Napi::CallbackInfo& info) {
  (static_cast<T*>(info.Data())->*Method)(info);
}

// wrapper[name] = fn (read-only, not enumerable); fn holds wrapper.
inline void Attach(Napi::Object wrapper, Napi::Function fn, const char* name) {
  fn.DefineProperty(Napi::PropertyDescriptor::Value(Napi::Symbol::New(fn.Env(), "owner"), wrapper, napi_default));
  wrapper.DefineProperty(Napi::PropertyDescriptor::Value(name, fn, napi_default));
}

}  // namespace detail

// Defines wrapper[name] calling instance->Method.
template <typename T, Napi::Value (T::*Method)(const Napi::CallbackInfo&)>
void DefineBoundMethod(Napi::Object wrapper, T* instance, const char* name) {
  detail::Attach(wrapper, Napi::Function::New<&detail::CallBound<T, Method>>(wrapper.Env(), name, instance), name);
}

template <typename T, void (T::*Method)(const Napi::CallbackInfo&)>
void DefineBoundMethod(Napi::Object wrapper, T* instance, const char* name) {
  detail::Attach(wrapper, Napi::Function::New<&detail::CallBoundVoid<T, Method>>(wrapper.Env(), name, instance), name);
}

}  // namespace tcmu
