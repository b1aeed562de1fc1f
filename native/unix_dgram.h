#pragma once
#include <napi.h>

namespace tcmu {
// unixDatagramSend(path, data): send one datagram to a unix datagram socket
// (path, or "@name" for the abstract namespace) from a fresh unbound socket.
// Node has no unix datagram sockets; systemd's NOTIFY_SOCKET is one.
Napi::Value UnixDatagramSend(const Napi::CallbackInfo& info);
}  // namespace tcmu
