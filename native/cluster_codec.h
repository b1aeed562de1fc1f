// qcow2 compressed clusters inflated and deflated on libuv's thread pool
// (zlib raw deflate and zstd, QEMU's two formats), straight from the
// caller's buffer into the caller's. Mechanism only: which clusters, and
// what an error means for the LUN, is decided in handlers/qcow2/.
// Built only where zstd.h and zlib.h exist (binding.gyp); without it the
// qcow2 handler runs both on its worker threads instead.
#pragma once
#include <napi.h>

namespace tcmu {

// inflateCluster(type, src, dst, cb): type 0 = zlib (raw deflate, 4 KiB
// window), 1 = zstd (one or more frames). Fills dst (one cluster) and calls
// back (null, bytesWritten) or (message) when the data is corrupt or does not
// fit. src and dst must stay untouched until the callback.
Napi::Value InflateCluster(const Napi::CallbackInfo& info);

// deflateCluster(type, src, dst, cb): compress one cluster (src) into dst
// with QEMU's parameters (zlib: raw deflate, 4 KiB window, default level;
// zstd: one frame at level 3) and call back (null, n): n > 0 payload bytes
// in dst, 0 = not smaller than the cluster (store it raw), -1 = all zeros.
Napi::Value DeflateCluster(const Napi::CallbackInfo& info);

}  // namespace tcmu
