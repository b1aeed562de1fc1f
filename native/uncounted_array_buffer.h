#pragma once
#include <node_api.h>

#include <cstddef>

namespace tcmu {
// A JS ArrayBuffer over `length` bytes at `data` that V8 neither frees nor
// counts as external memory. V8 counts the bytes of any other external
// ArrayBuffer as memory a collection could give back, and a count that
// jumps far past its limit makes it collect the whole heap at once, so a
// buffer over a TCMU mapping (up to GiBs of data area) cost every LUN's
// start a full collection of the daemon's heap, pausing every other LUN.
// The caller keeps the memory valid until the buffer is detached or
// collected (napi_add_finalizer on the result tells it when). Uses V8's
// own API: Node-API has no way to say "not owned by V8". Call only inside
// a Node-API callback (its handle scope keeps the result alive).
napi_status NewUncountedArrayBuffer(napi_env env, void* data, size_t length, napi_value* result);
}  // namespace tcmu
