// fallocate(2): Node has no binding for punching holes or zeroing ranges.
#include "fallocate.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>

#include "errno_error.h"

namespace tcmu {

namespace {
bool ReadInt(const Napi::CallbackInfo& info, size_t index, const char* what, double* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number");
    return false;
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<int64_t>(v))) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", std::string(what) + " must be a non-negative integer");
    return false;
  }
  *out = v;
  return true;
}
}  // namespace

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  double fd, mode, offset, length;
  if (!ReadInt(info, 0, "fd", &fd) || !ReadInt(info, 1, "mode", &mode) || !ReadInt(info, 2, "offset", &offset) ||
      !ReadInt(info, 3, "length", &length)) {
    return Napi::Value();
  }
  int rc;
  do {
    rc = fallocate(static_cast<int>(fd), static_cast<int>(mode), static_cast<off_t>(offset),
                   static_cast<off_t>(length));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) ThrowErrno(info.Env(), errno, "fallocate");
  return info.Env().Undefined();
}

void ExportFallocateConstants(Napi::Env env, Napi::Object exports) {
  exports.Set("FALLOC_FL_KEEP_SIZE", Napi::Number::New(env, FALLOC_FL_KEEP_SIZE));
  exports.Set("FALLOC_FL_PUNCH_HOLE", Napi::Number::New(env, FALLOC_FL_PUNCH_HOLE));
  exports.Set("FALLOC_FL_ZERO_RANGE", Napi::Number::New(env, FALLOC_FL_ZERO_RANGE));
}

}  // namespace tcmu
