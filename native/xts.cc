// AES-XTS with dm-crypt's plain64 IV over a run of sectors, for the crypt
// layer (handlers/crypt). OpenSSL's XTS takes one data unit (one sector) per
// call with its own IV, so from JS each sector would cost a cipher object;
// here the key schedule is made once per LUN and each sector costs one
// EVP_CipherInit_ex (IV only) and one EVP_CipherUpdate. OpenSSL is the copy
// inside the node binary (its symbols are exported to addons).
#include "xts.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>

#include "errno_error.h"

namespace tcmu {

namespace {

struct XtsContext {
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
};

void FreeContext(XtsContext* ctx) {
  if (!ctx) return;
  // EVP_CIPHER_CTX_free cleanses the key schedule.
  EVP_CIPHER_CTX_free(ctx->enc);
  EVP_CIPHER_CTX_free(ctx->dec);
  ctx->enc = ctx->dec = nullptr;
}

void Finalize(Napi::Env, XtsContext* ctx) {
  FreeContext(ctx);
  delete ctx;
}

XtsContext* Unwrap(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsExternal()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "handle must be an xtsCreate handle");
    return nullptr;
  }
  return info[0].As<Napi::External<XtsContext>>().Data();
}

bool ReadUint(const Napi::CallbackInfo& info, size_t index, const char* what, uint64_t* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number");
    return false;
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<uint64_t>(v))) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", std::string(what) + " must be a non-negative integer");
    return false;
  }
  *out = static_cast<uint64_t>(v);
  return true;
}

}  // namespace

Napi::Value XtsCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "key must be a Buffer");
    return Napi::Value();
  }
  auto key = info[0].As<Napi::Buffer<uint8_t>>();
  const EVP_CIPHER* cipher = key.Length() == 64 ? EVP_aes_256_xts() : key.Length() == 32 ? EVP_aes_128_xts() : nullptr;
  if (!cipher) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "key must be 32 or 64 bytes");
    return Napi::Value();
  }
  auto* ctx = new XtsContext();
  ctx->enc = EVP_CIPHER_CTX_new();
  ctx->dec = EVP_CIPHER_CTX_new();
  bool ok = ctx->enc && ctx->dec && EVP_CipherInit_ex(ctx->enc, cipher, nullptr, key.Data(), nullptr, 1) == 1 &&
            EVP_CipherInit_ex(ctx->dec, cipher, nullptr, key.Data(), nullptr, 0) == 1;
  if (!ok) {
    FreeContext(ctx);
    delete ctx;
    ThrowErrno(env, EINVAL, "EVP_CipherInit_ex(aes-xts)");
    return Napi::Value();
  }
  return Napi::External<XtsContext>::New(env, ctx, Finalize);
}

Napi::Value XtsCrypt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  XtsContext* ctx = Unwrap(info);
  if (!ctx) return Napi::Value();
  if (!ctx->enc) {
    ThrowErrno(env, EBADF, "xtsCrypt (handle destroyed)");
    return Napi::Value();
  }
  if (info.Length() < 6 || !info[1].IsBoolean() || !info[2].IsBuffer()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "xtsCrypt(handle, encrypt, data, sectorSize, firstIv, ivStep)");
    return Napi::Value();
  }
  bool encrypt = info[1].As<Napi::Boolean>().Value();
  auto data = info[2].As<Napi::Buffer<uint8_t>>();
  uint64_t sectorSize, firstIv, ivStep;
  if (!ReadUint(info, 3, "sectorSize", &sectorSize) || !ReadUint(info, 4, "firstIv", &firstIv) ||
      !ReadUint(info, 5, "ivStep", &ivStep)) {
    return Napi::Value();
  }
  if (sectorSize < 16 || sectorSize > 65536 || sectorSize % 16 != 0 || data.Length() % sectorSize != 0) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "data must be whole sectors of a multiple of 16 bytes");
    return Napi::Value();
  }
  EVP_CIPHER_CTX* c = encrypt ? ctx->enc : ctx->dec;
  uint8_t* p = data.Data();
  size_t count = data.Length() / sectorSize;
  unsigned char iv[16];
  for (size_t s = 0; s < count; s++) {
    uint64_t v = firstIv + s * ivStep;
    for (int i = 0; i < 8; i++) iv[i] = static_cast<unsigned char>(v >> (8 * i));  // plain64: little-endian
    std::memset(iv + 8, 0, 8);
    int outl = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, iv, -1) != 1 ||
        EVP_CipherUpdate(c, p, &outl, p, static_cast<int>(sectorSize)) != 1 || static_cast<uint64_t>(outl) != sectorSize) {
      ThrowErrno(env, EIO, "EVP_CipherUpdate(aes-xts)");
      return Napi::Value();
    }
    p += sectorSize;
  }
  return env.Undefined();
}

Napi::Value XtsDestroy(const Napi::CallbackInfo& info) {
  XtsContext* ctx = Unwrap(info);
  if (ctx) FreeContext(ctx);
  return info.Env().Undefined();
}

}  // namespace tcmu
