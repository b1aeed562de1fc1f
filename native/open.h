#pragma once
#include <napi.h>

namespace tcmu {
Napi::Value OpenUio(const Napi::CallbackInfo& info);
Napi::Value OpenShared(const Napi::CallbackInfo& info);
Napi::Value SocketPair(const Napi::CallbackInfo& info);
}  // namespace tcmu
