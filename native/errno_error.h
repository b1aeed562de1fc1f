// Errors that look like Node's own system errors: `code` is the errno name
// ('EIO', 'EBUSY'...), `errno` is the negated errno (Node's convention, as in
// fs errors) and `syscall` names the failing call. JS matches on `code`.
#pragma once
#include <napi.h>

namespace tcmu {

// Build (not throw) an errno error; used for errors delivered to callbacks.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);

// Throw an errno error into JS (addon is built without C++ exceptions).
void ThrowErrno(Napi::Env env, int err, const char* syscall);

// Throw a TypeError/RangeError with a `code` like Node's argument errors.
void ThrowArgError(Napi::Env env, const char* code, const std::string& message);

}  // namespace tcmu
