// qcow2 compressed-cluster inflate on libuv's thread pool (zlib raw deflate
// and zstd, QEMU's two formats), straight from the caller's buffer into the
// caller's cluster buffer. Mechanism only: which clusters, and what an error
// means for the LUN, is decided in handlers/qcow2/.
// Built only where zstd.h and zlib.h exist (binding.gyp); without it the
// qcow2 handler inflates on its worker threads instead.
#pragma once
#include <napi.h>

namespace tcmu {

// inflateCluster(type, src, dst, cb): type 0 = zlib (raw deflate, 4 KiB
// window), 1 = zstd (one or more frames). Fills dst (one cluster) and calls
// back (null, bytesWritten) or (message) when the data is corrupt or does not
// fit. src and dst must stay untouched until the callback.
Napi::Value InflateCluster(const Napi::CallbackInfo& info);

}  // namespace tcmu
