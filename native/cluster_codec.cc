#include "cluster_codec.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "errno_error.h"

namespace tcmu {

namespace {

constexpr int kZlib = 0;
constexpr int kZstd = 1;
// QEMU deflates with a 4 KiB window and no header (windowBits -12). zlib's
// inflate checks a distance against what it has already written, so it
// also reads streams that reach further back (as Node's zlib does); none
// reaches outside the cluster buffer.
constexpr int kZlibWindowBits = -12;
// A cluster is at most 2 MiB in qcow2.
constexpr size_t kMaxCluster = 2u << 20;

// Returns "" or why the payload does not inflate to a cluster. Never writes
// past dst + cap, whatever src holds.
std::string InflateZlib(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t cap, size_t* written) {
  z_stream s{};
  if (inflateInit2(&s, kZlibWindowBits) != Z_OK) return "cannot start zlib";
  s.next_in = const_cast<Bytef*>(src);
  s.avail_in = static_cast<uInt>(srcLen);
  s.next_out = dst;
  s.avail_out = static_cast<uInt>(cap);
  // SYNC_FLUSH: the payload is rounded up to a sector and may end mid-stream.
  int rc = inflate(&s, Z_SYNC_FLUSH);
  std::string error;
  if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
    error = "corrupt compressed data";
  } else if (rc != Z_STREAM_END && s.avail_out == 0 && s.avail_in > 0) {
    // The cluster is full and input is left: does it produce more?
    uint8_t probe;
    s.next_out = &probe;
    s.avail_out = 1;
    int more = inflate(&s, Z_SYNC_FLUSH);
    if (more == Z_DATA_ERROR || more == Z_NEED_DICT || more == Z_MEM_ERROR) error = "corrupt compressed data";
    else if (s.avail_out == 0) error = "data inflates beyond one cluster";
    s.avail_out = 0;
  }
  *written = cap - s.avail_out;
  inflateEnd(&s);
  return error;
}

std::string InflateZstd(const uint8_t* src, size_t srcLen, uint8_t* dst, size_t cap, size_t* written) {
  // One context per pool thread, kept: creating one costs more than a 64 KiB inflate.
  thread_local ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return "cannot start zstd";
  size_t out = 0, at = 0;
  // One or more frames (QEMU may write several); stop once the cluster is full.
  while (out < cap && at < srcLen) {
    size_t frame = ZSTD_findFrameCompressedSize(src + at, srcLen - at);
    if (ZSTD_isError(frame)) return "corrupt compressed data";
    size_t n = ZSTD_decompressDCtx(dctx, dst + out, cap - out, src + at, frame);
    if (ZSTD_isError(n)) return "corrupt compressed data";
    out += n;
    at += frame;
  }
  *written = out;
  return "";
}

// Compress one cluster into at most `cap` bytes (cap < the cluster: a
// payload that is not smaller is not worth storing compressed). Returns the
// payload length, 0 when it does not fit in cap, or -1 when the codec failed.
long DeflateZlib(const uint8_t* src, size_t len, uint8_t* dst, size_t cap) {
  z_stream s{};
  // QEMU's parameters: default level, 4 KiB window, memLevel 9, no header.
  if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, kZlibWindowBits, 9, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
  s.next_in = const_cast<Bytef*>(src);
  s.avail_in = static_cast<uInt>(len);
  s.next_out = dst;
  s.avail_out = static_cast<uInt>(cap);
  int rc = deflate(&s, Z_FINISH);
  long out = rc == Z_STREAM_END ? static_cast<long>(cap - s.avail_out) : (rc == Z_OK || rc == Z_BUF_ERROR ? 0 : -1);
  deflateEnd(&s);
  return out;
}

long DeflateZstd(const uint8_t* src, size_t len, uint8_t* dst, size_t cap) {
  thread_local ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) return -1;
  // Level 3, zstd's default and QEMU's; one frame with its content size.
  size_t n = ZSTD_compressCCtx(cctx, dst, cap, src, len, 3);
  if (!ZSTD_isError(n)) return static_cast<long>(n);
  return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -1;
}

bool AllZero(const uint8_t* p, size_t len) {
  static const uint8_t kZeros[4096] = {};
  for (size_t at = 0; at < len; at += sizeof kZeros) {
    size_t n = len - at < sizeof kZeros ? len - at : sizeof kZeros;
    if (std::memcmp(p + at, kZeros, n) != 0) return false;
  }
  return true;
}

// The buffers and codec of one call, checked.
struct CodecArgs {
  int type = kZlib;
  Napi::Object src, dst;
  const uint8_t* in = nullptr;
  size_t inLen = 0;
  uint8_t* out = nullptr;
  size_t outLen = 0;
};

bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* what, Napi::Object* obj, uint8_t** data, size_t* len) {
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a Buffer or Uint8Array");
    return false;
  }
  auto a = info[i].As<Napi::Uint8Array>();
  *obj = a;
  *data = a.Data();
  *len = a.ByteLength();
  return true;
}

// (type, src, dst, callback), as both exported functions take them.
bool ReadCodecArgs(const Napi::CallbackInfo& info, const char* usage, CodecArgs* a) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[3].IsFunction()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", usage);
    return false;
  }
  a->type = info[0].As<Napi::Number>().Int32Value();
  if (a->type != kZlib && a->type != kZstd) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "type must be 0 (zlib) or 1 (zstd)");
    return false;
  }
  uint8_t* in = nullptr;
  if (!ArgBytes(info, 1, "src", &a->src, &in, &a->inLen) || !ArgBytes(info, 2, "dst", &a->dst, &a->out, &a->outLen)) return false;
  a->in = in;
  return true;
}

// One cluster through a codec on a pool thread: inflate (payload -> the
// whole of dst) or deflate (src, one cluster -> at most `cap` bytes of dst).
class ClusterWorker : public Napi::AsyncWorker {
 public:
  ClusterWorker(Napi::Function cb, bool deflate, const CodecArgs& a, size_t cap)
      : Napi::AsyncWorker(cb, deflate ? "tcmu.deflateCluster" : "tcmu.inflateCluster"),
        deflate_(deflate),
        type_(a.type),
        src_(Napi::Persistent(a.src)),
        dst_(Napi::Persistent(a.dst)),
        in_(a.in),
        inLen_(a.inLen),
        out_(a.out),
        cap_(cap) {}

  void Execute() override { error_ = deflate_ ? Deflate() : Inflate(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!error_.empty()) {
      Callback().Call({Napi::String::New(env, error_), Napi::Number::New(env, 0)});
    } else {
      Callback().Call({env.Null(), Napi::Number::New(env, result_)});
    }
  }

 private:
  std::string Inflate() {
    size_t written = 0;
    std::string error = type_ == kZlib ? InflateZlib(in_, inLen_, out_, cap_, &written) : InflateZstd(in_, inLen_, out_, cap_, &written);
    if (error.empty() && written != cap_) error = "decompressed to " + std::to_string(written) + " bytes, expected " + std::to_string(cap_);
    result_ = static_cast<double>(written);
    return error;
  }

  // result_: payload bytes, 0 = not smaller than the cluster, -1 = all zeros.
  std::string Deflate() {
    if (AllZero(in_, inLen_)) {
      result_ = -1;
      return "";
    }
    long n = type_ == kZlib ? DeflateZlib(in_, inLen_, out_, cap_) : DeflateZstd(in_, inLen_, out_, cap_);
    if (n < 0) return type_ == kZlib ? "zlib failed" : "zstd failed";
    result_ = static_cast<double>(n);
    return "";
  }

  bool deflate_;
  int type_;
  // Held so neither buffer is collected while a pool thread uses its memory.
  Napi::ObjectReference src_;
  Napi::ObjectReference dst_;
  const uint8_t* in_;
  size_t inLen_;
  uint8_t* out_;
  size_t cap_;
  double result_ = 0;
  std::string error_;
};

}  // namespace

Napi::Value InflateCluster(const Napi::CallbackInfo& info) {
  CodecArgs a;
  if (!ReadCodecArgs(info, "inflateCluster(type, src, dst, callback)", &a)) return Napi::Value();
  if (a.outLen == 0 || a.outLen > kMaxCluster || a.inLen > kMaxCluster) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "src and dst must be 1 byte to 2 MiB (dst: one cluster)");
    return Napi::Value();
  }
  (new ClusterWorker(info[3].As<Napi::Function>(), false, a, a.outLen))->Queue();  // deletes itself after OnOK
  return info.Env().Undefined();
}

Napi::Value DeflateCluster(const Napi::CallbackInfo& info) {
  CodecArgs a;
  if (!ReadCodecArgs(info, "deflateCluster(type, src, dst, callback)", &a)) return Napi::Value();
  if (a.inLen < 2 || a.inLen > kMaxCluster || a.outLen == 0) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "src must be one cluster (2 bytes to 2 MiB), dst not empty");
    return Napi::Value();
  }
  // Smaller than the cluster or not at all.
  size_t cap = a.outLen < a.inLen - 1 ? a.outLen : a.inLen - 1;
  (new ClusterWorker(info[3].As<Napi::Function>(), true, a, cap))->Queue();
  return info.Env().Undefined();
}

}  // namespace tcmu
