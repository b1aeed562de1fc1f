// AES-XTS with dm-crypt's plain64 IV over a run of sectors, for the crypt
// layer (handlers/crypt). XTS is ECB between two XORs with a per-block tweak:
//
//   T(s, 0) = AES-enc(K2, plain64(s)),  T(s, j+1) = T(s, j) * alpha in GF(2^128)
//   C = AES-enc(K1, P ^ T) ^ T          P = AES-dec(K1, C ^ T) ^ T
//
// so for small sectors a chunk of them costs one ECB call (K2) for all its
// initial tweaks, the tweak doubling in C, and one ECB call (K1) for all its
// data: OpenSSL's AES-NI code then runs over long runs of blocks. One
// EVP_CipherInit_ex(iv) + EVP_CipherUpdate per sector with OpenSSL's own XTS
// spends about as long re-initialising as encrypting a 512-byte sector (the
// ECB way measured ~1.2x of it, CPU time per byte, 512-byte sectors); for
// 4096-byte sectors OpenSSL's XTS (tweaks interleaved in its assembly) is
// faster (~1.6x of the ECB way) and is used per sector.
// Output may go to a second buffer (a write encrypts the caller's data
// straight into its scratch buffer, no copy first). OpenSSL is the copy
// inside the node binary (its symbols are exported to addons).
#include "xts.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "errno_error.h"

namespace tcmu {

namespace {

// Bytes per pass: tweaks for this many data bytes live in the context (in
// cache while the pass XORs them in twice).
constexpr size_t kChunk = 32 * 1024;
constexpr size_t kMaxSectorsPerChunk = kChunk / 16;

// Sectors at least this large go through OpenSSL's XTS one sector per call.
constexpr uint64_t kXtsPerSector = 4096;

struct XtsContext {
  EVP_CIPHER_CTX* xtsEnc = nullptr;
  EVP_CIPHER_CTX* xtsDec = nullptr;
  EVP_CIPHER_CTX* k1Enc = nullptr;
  EVP_CIPHER_CTX* k1Dec = nullptr;
  EVP_CIPHER_CTX* k2Enc = nullptr;
  // Tweaks of the current chunk, then the initial tweaks (one per sector); wiped on destroy.
  alignas(16) uint8_t tweaks[kChunk];
  alignas(16) uint8_t ivs[kMaxSectorsPerChunk * 16];
};

void FreeContext(XtsContext* ctx) {
  if (!ctx) return;
  // EVP_CIPHER_CTX_free cleanses the key schedules.
  EVP_CIPHER_CTX_free(ctx->xtsEnc);
  EVP_CIPHER_CTX_free(ctx->xtsDec);
  EVP_CIPHER_CTX_free(ctx->k1Enc);
  EVP_CIPHER_CTX_free(ctx->k1Dec);
  EVP_CIPHER_CTX_free(ctx->k2Enc);
  ctx->xtsEnc = ctx->xtsDec = ctx->k1Enc = ctx->k1Dec = ctx->k2Enc = nullptr;
  OPENSSL_cleanse(ctx->tweaks, sizeof ctx->tweaks);
  OPENSSL_cleanse(ctx->ivs, sizeof ctx->ivs);
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

// A keyed context; ECB ones without padding (whole blocks only).
EVP_CIPHER_CTX* KeyedContext(const EVP_CIPHER* cipher, const uint8_t* key, int encrypt) {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  if (!c) return nullptr;
  if (EVP_CipherInit_ex(c, cipher, nullptr, key, nullptr, encrypt) != 1 || EVP_CIPHER_CTX_set_padding(c, 0) != 1) {
    EVP_CIPHER_CTX_free(c);
    return nullptr;
  }
  return c;
}

// ECB over whole blocks, in place.
bool Ecb(EVP_CIPHER_CTX* c, uint8_t* p, size_t len) {
  int outl = 0;
  return EVP_CipherUpdate(c, p, &outl, p, static_cast<int>(len)) == 1 && static_cast<size_t>(outl) == len;
}

inline void Load(const uint8_t* p, uint64_t* lo, uint64_t* hi) {
  std::memcpy(lo, p, 8);
  std::memcpy(hi, p + 8, 8);
}
inline void Store(uint8_t* p, uint64_t lo, uint64_t hi) {
  std::memcpy(p, &lo, 8);
  std::memcpy(p + 8, &hi, 8);
}

// dst = src ^ t, 16 bytes at a time (dst may be src).
inline void Xor(uint8_t* dst, const uint8_t* src, const uint8_t* t, size_t len) {
  for (size_t i = 0; i < len; i += 16) {
    uint64_t a, b, x, y;
    Load(src + i, &a, &b);
    Load(t + i, &x, &y);
    Store(dst + i, a ^ x, b ^ y);
  }
}

// One chunk: `count` sectors from `in` to `out` (may be the same memory).
bool CryptChunk(XtsContext* ctx, bool encrypt, const uint8_t* in, uint8_t* out, size_t sectorSize, size_t count,
                uint64_t firstIv, uint64_t ivStep) {
  // Initial tweaks: plain64 IVs (64-bit little-endian sector number, zero padded), one ECB call with K2.
  for (size_t s = 0; s < count; s++) Store(ctx->ivs + 16 * s, firstIv + s * ivStep, 0);
  if (!Ecb(ctx->k2Enc, ctx->ivs, 16 * count)) return false;
  const size_t blocks = sectorSize / 16;
  uint8_t* t = ctx->tweaks;
  for (size_t s = 0; s < count; s++) {
    uint64_t lo, hi;
    Load(ctx->ivs + 16 * s, &lo, &hi);
    for (size_t j = 0; j < blocks; j++, t += 16) {
      Store(t, lo, hi);
      // multiply by alpha: 128-bit little-endian shift left, reduce by x^128 = x^7 + x^2 + x + 1
      uint64_t carry = hi >> 63;
      hi = (hi << 1) | (lo >> 63);
      lo = (lo << 1) ^ (carry * 0x87);
    }
  }
  const size_t len = count * sectorSize;
  Xor(out, in, ctx->tweaks, len);
  if (!Ecb(encrypt ? ctx->k1Enc : ctx->k1Dec, out, len)) return false;
  Xor(out, out, ctx->tweaks, len);
  return true;
}

// Sectors of kXtsPerSector bytes or more: OpenSSL's XTS, one data unit per call.
bool CryptPerSector(XtsContext* ctx, bool encrypt, const uint8_t* in, uint8_t* out, size_t sectorSize, size_t count,
                    uint64_t firstIv, uint64_t ivStep) {
  EVP_CIPHER_CTX* c = encrypt ? ctx->xtsEnc : ctx->xtsDec;
  uint8_t iv[16];
  for (size_t s = 0; s < count; s++) {
    Store(iv, firstIv + s * ivStep, 0);  // plain64
    int outl = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, iv, -1) != 1 ||
        EVP_CipherUpdate(c, out + s * sectorSize, &outl, in + s * sectorSize, static_cast<int>(sectorSize)) != 1 ||
        static_cast<size_t>(outl) != sectorSize) {
      return false;
    }
  }
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
  const bool wide = key.Length() == 64;
  const EVP_CIPHER* cipher = wide ? EVP_aes_256_ecb() : key.Length() == 32 ? EVP_aes_128_ecb() : nullptr;
  if (!cipher) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "key must be 32 or 64 bytes");
    return Napi::Value();
  }
  const size_t half = key.Length() / 2;
  // OpenSSL's XTS refuses a key whose halves are equal (no tweak secrecy); so do we.
  if (CRYPTO_memcmp(key.Data(), key.Data() + half, half) == 0) {
    ThrowErrno(env, EINVAL, "aes-xts key with two equal halves");
    return Napi::Value();
  }
  auto* ctx = new XtsContext();
  const EVP_CIPHER* xts = wide ? EVP_aes_256_xts() : EVP_aes_128_xts();
  ctx->xtsEnc = KeyedContext(xts, key.Data(), 1);
  ctx->xtsDec = KeyedContext(xts, key.Data(), 0);
  ctx->k1Enc = KeyedContext(cipher, key.Data(), 1);
  ctx->k1Dec = KeyedContext(cipher, key.Data(), 0);
  ctx->k2Enc = KeyedContext(cipher, key.Data() + half, 1);
  if (!ctx->xtsEnc || !ctx->xtsDec || !ctx->k1Enc || !ctx->k1Dec || !ctx->k2Enc) {
    FreeContext(ctx);
    delete ctx;
    ThrowErrno(env, EINVAL, "EVP_CipherInit_ex(aes-xts/aes-ecb)");
    return Napi::Value();
  }
  return Napi::External<XtsContext>::New(env, ctx, Finalize);
}

// xtsCrypt(handle, encrypt, data, sectorSize, firstIv, ivStep[, out])
Napi::Value XtsCrypt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  XtsContext* ctx = Unwrap(info);
  if (!ctx) return Napi::Value();
  if (!ctx->k1Enc) {
    ThrowErrno(env, EBADF, "xtsCrypt (handle destroyed)");
    return Napi::Value();
  }
  if (info.Length() < 6 || !info[1].IsBoolean() || !info[2].IsBuffer() ||
      (info.Length() > 6 && !info[6].IsUndefined() && !info[6].IsBuffer())) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "xtsCrypt(handle, encrypt, data, sectorSize, firstIv, ivStep[, out])");
    return Napi::Value();
  }
  bool encrypt = info[1].As<Napi::Boolean>().Value();
  auto data = info[2].As<Napi::Buffer<uint8_t>>();
  uint64_t sectorSize, firstIv, ivStep;
  if (!ReadUint(info, 3, "sectorSize", &sectorSize) || !ReadUint(info, 4, "firstIv", &firstIv) ||
      !ReadUint(info, 5, "ivStep", &ivStep)) {
    return Napi::Value();
  }
  if (sectorSize < 16 || sectorSize > kChunk || sectorSize % 16 != 0 || data.Length() % sectorSize != 0) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "data must be whole sectors of a multiple of 16 bytes, at most 32 KiB each");
    return Napi::Value();
  }
  const uint8_t* in = data.Data();
  uint8_t* out = data.Data();
  if (info.Length() > 6 && info[6].IsBuffer()) {
    auto dst = info[6].As<Napi::Buffer<uint8_t>>();
    if (dst.Length() != data.Length()) {
      ThrowArgError(env, "ERR_OUT_OF_RANGE", "out must be as long as data");
      return Napi::Value();
    }
    out = dst.Data();
    // Partial overlap would read bytes already written; exact aliasing is in place and fine.
    if (out != in && out < in + data.Length() && in < out + data.Length()) {
      ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "out overlaps data");
      return Napi::Value();
    }
  }
  size_t sectors = data.Length() / sectorSize;
  if (sectorSize >= kXtsPerSector) {
    if (!CryptPerSector(ctx, encrypt, in, out, sectorSize, sectors, firstIv, ivStep)) {
      ThrowErrno(env, EIO, "EVP_CipherUpdate(aes-xts)");
      return Napi::Value();
    }
    return env.Undefined();
  }
  const size_t perChunk = kChunk / sectorSize;
  uint64_t iv = firstIv;
  while (sectors > 0) {
    size_t n = sectors < perChunk ? sectors : perChunk;
    if (!CryptChunk(ctx, encrypt, in, out, sectorSize, n, iv, ivStep)) {
      ThrowErrno(env, EIO, "EVP_CipherUpdate(aes-ecb)");
      return Napi::Value();
    }
    in += n * sectorSize;
    out += n * sectorSize;
    iv += n * ivStep;
    sectors -= n;
  }
  return env.Undefined();
}

Napi::Value XtsDestroy(const Napi::CallbackInfo& info) {
  XtsContext* ctx = Unwrap(info);
  if (ctx) FreeContext(ctx);
  return info.Env().Undefined();
}

}  // namespace tcmu
