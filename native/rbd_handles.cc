// Argument checks shared by the rbd addon's files (see rbd_handles.h).
#include "rbd_handles.h"

#include <cerrno>

namespace tcmu {

bool ArgString(const Napi::CallbackInfo& info, size_t i, const char* what, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a string");
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  if (out->find('\0') != std::string::npos) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE", std::string(what) + " contains a NUL byte");
    return false;
  }
  return true;
}

bool ArgUint(const Napi::CallbackInfo& info, size_t i, const char* what, uint64_t* out) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number");
    return false;
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<uint64_t>(v))) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", std::string(what) + " must be a non-negative integer");
    return false;
  }
  *out = static_cast<uint64_t>(v);
  return true;
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* what, bool* out) {
  if (info.Length() <= i || !info[i].IsBoolean()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a boolean");
    return false;
  }
  *out = info[i].As<Napi::Boolean>().Value();
  return true;
}

bool ArgFunction(const Napi::CallbackInfo& info, size_t i, Napi::Function* out) {
  if (info.Length() <= i || !info[i].IsFunction()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return false;
  }
  *out = info[i].As<Napi::Function>();
  return true;
}

// An open image the data path may use, or a thrown EBADF.
ImageHandle* ArgImage(const Napi::CallbackInfo& info) {
  auto* h = ArgExternal<ImageHandle>(info, 0, "image");
  if (h && (h->image == nullptr || h->closing)) {
    ThrowErrno(info.Env(), EBADF, "rbd image (closed)");
    return nullptr;
  }
  return h;
}

}  // namespace tcmu
