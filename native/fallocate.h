#pragma once
#include <napi.h>

namespace tcmu {
Napi::Value Fallocate(const Napi::CallbackInfo& info);
// Adds FALLOC_FL_* constants to exports.
void ExportFallocateConstants(Napi::Env env, Napi::Object exports);
}  // namespace tcmu
