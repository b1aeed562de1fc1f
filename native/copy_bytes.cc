#include "copy_bytes.h"

#include <cstdint>
#include <cstring>

namespace tcmu {

namespace {

// The bytes of an ArrayBufferView (TypedArray or DataView); false if it is none.
bool ViewBytes(napi_env env, napi_value value, uint8_t** data, size_t* length) {
  bool is = false;
  void* base = nullptr;
  if (napi_is_typedarray(env, value, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t elements = 0;
    if (napi_get_typedarray_info(env, value, &type, &elements, &base, nullptr, nullptr) != napi_ok) return false;
    // Byte length: elements times the element size of `type`.
    static const size_t kSize[] = {1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 8};
    if (static_cast<size_t>(type) >= sizeof(kSize) / sizeof(kSize[0])) return false;
    *length = elements * kSize[type];
  } else if (napi_is_dataview(env, value, &is) == napi_ok && is) {
    if (napi_get_dataview_info(env, value, length, &base, nullptr, nullptr) != napi_ok) return false;
  } else {
    return false;
  }
  // A zero-length or detached view may have no data pointer at all.
  *data = static_cast<uint8_t*>(base);
  return true;
}

// A non-negative integer number no larger than 2^53; false otherwise.
bool Offset(napi_env env, napi_value value, size_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return false;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = static_cast<size_t>(d);
  return true;
}

}  // namespace

Napi::Value CopyBytes(const Napi::CallbackInfo& info) {
  napi_env env = info.Env();
  uint8_t *target = nullptr, *source = nullptr;
  size_t targetLength = 0, sourceLength = 0, targetOffset = 0, sourceOffset = 0, length = 0;
  if (info.Length() < 5 || !ViewBytes(env, info[0], &target, &targetLength) || !ViewBytes(env, info[2], &source, &sourceLength)) {
    Napi::TypeError::New(info.Env(), "copyBytes(target, targetOffset, source, sourceOffset, length): target and source must be ArrayBufferViews")
        .ThrowAsJavaScriptException();
    return Napi::Value();
  }
  if (!Offset(env, info[1], &targetOffset) || !Offset(env, info[3], &sourceOffset) || !Offset(env, info[4], &length) ||
      targetOffset > targetLength || length > targetLength - targetOffset || sourceOffset > sourceLength ||
      length > sourceLength - sourceOffset) {
    Napi::RangeError::New(info.Env(), "copyBytes: offsets and length must be integers within both views").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  if (length > 0) memmove(target + targetOffset, source + sourceOffset, length);
  return Napi::Value();
}

}  // namespace tcmu
