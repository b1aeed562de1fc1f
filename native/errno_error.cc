#include "errno_error.h"

#include <string.h>

#include <string>

namespace tcmu {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* name = strerrorname_np(err);
  if (name == nullptr) name = "EUNKNOWN";
  std::string message = std::string(syscall) + " failed: " + strerror(err) + " (" + name + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, name));
  error.Value().Set("errno", Napi::Number::New(env, -err));
  error.Value().Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  ErrnoError(env, err, syscall).ThrowAsJavaScriptException();
}

void ThrowArgError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::TypeError::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  error.ThrowAsJavaScriptException();
}

}  // namespace tcmu
