#include "copy_bytes.h"

#include <cstdint>
#include <cstring>

#include "view_bytes.h"

namespace tcmu {

namespace {

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
  void *target = nullptr, *source = nullptr;
  size_t targetLength = 0, sourceLength = 0, targetOffset = 0, sourceOffset = 0, length = 0;
  if (info.Length() < 5 || ViewBytes(env, info[0], &target, &targetLength) != napi_ok ||
      ViewBytes(env, info[2], &source, &sourceLength) != napi_ok) {
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
  if (length > 0) memmove(static_cast<uint8_t*>(target) + targetOffset, static_cast<uint8_t*>(source) + sourceOffset, length);
  return Napi::Value();
}

}  // namespace tcmu
