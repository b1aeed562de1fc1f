#pragma once
#include <napi.h>

namespace tcmu {
// openBeneath(dirfd, path, flags, mode, resolve, forceFallback?) -> fd (see open_beneath.cc).
Napi::Value OpenBeneath(const Napi::CallbackInfo& info);
// Adds O_PATH, AT_FDCWD and RESOLVE_* constants to exports.
void ExportOpenBeneathConstants(Napi::Env env, Napi::Object exports);
}  // namespace tcmu
