#pragma once
#include <napi.h>

namespace tcmu {
// copyBytes(target, targetOffset, source, sourceOffset, length): memmove
// between two ArrayBufferViews, bounds checked (RangeError). Unlike
// Buffer.prototype.copy, it creates no view of a partial source, so a
// store that copies (ram) allocates nothing per command.
Napi::Value CopyBytes(const Napi::CallbackInfo& info);
}  // namespace tcmu
