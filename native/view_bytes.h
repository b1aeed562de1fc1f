#pragma once
#include <node_api.h>

#include <cstddef>

namespace tcmu {
// The memory of an ArrayBufferView (any TypedArray, or a DataView): its first
// byte and its length in bytes, without a copy. napi_invalid_arg when `value`
// is no view (or N-API cannot describe the DataView); another status when
// N-API failed on a TypedArray (an exception may then be pending). A
// zero-length view may come back with a null `data`.
napi_status ViewBytes(napi_env env, napi_value value, void** data, size_t* length);
}  // namespace tcmu
