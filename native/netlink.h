// Generic-netlink socket primitives. Message encoding and decoding (nlmsghdr,
// genlmsghdr, attributes) live in JS; this file only moves datagrams.
#pragma once
#include <napi.h>

namespace tcmu {
Napi::Value NetlinkOpen(const Napi::CallbackInfo& info);
Napi::Value NetlinkPortId(const Napi::CallbackInfo& info);
Napi::Value NetlinkJoin(const Napi::CallbackInfo& info);
Napi::Value NetlinkSend(const Napi::CallbackInfo& info);
Napi::Value NetlinkWatch(const Napi::CallbackInfo& info);
Napi::Value NetlinkClose(const Napi::CallbackInfo& info);
}  // namespace tcmu
