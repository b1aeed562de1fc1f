#pragma once
#include <napi.h>

namespace tcmu {
// xtsCreate(key: Buffer(32|64)) -> External: two OpenSSL AES-XTS contexts (encrypt, decrypt)
// keyed once. xtsCrypt(handle, encrypt, data, sectorSize, firstIv, ivStep): every sector of
// `data` in place, plain64 IVs. xtsDestroy(handle): free and wipe (also done by GC).
Napi::Value XtsCreate(const Napi::CallbackInfo& info);
Napi::Value XtsCrypt(const Napi::CallbackInfo& info);
Napi::Value XtsDestroy(const Napi::CallbackInfo& info);
}  // namespace tcmu
