#pragma once
#include <napi.h>

namespace tcmu {
// peerCred(fd) -> { pid, uid, gid } of the process at the other end of a
// connected unix socket (SO_PEERCRED), as the kernel recorded it at connect().
Napi::Value PeerCred(const Napi::CallbackInfo& info);
}  // namespace tcmu
