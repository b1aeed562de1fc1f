// The batch interface of the I/O hot path. Per operation, prepReadv() costs
// several N-API calls (argument checks, array element reads, typed-array
// info), a visible share of the runner's CPU per command. Here JS
// writes a whole batch as plain numbers into a Float64Array and ONE call
// prepares every entry, enters the kernel once and copies the completions
// that are already there (page-cache hits) back out.
//
// Memory is named by (buffer id, byte offset, length) instead of pointers:
// an id stands for an ArrayBuffer registered once (held weakly), and every
// range is checked against that buffer's current size, so a detached buffer
// (an unmapped TCMU ring) fails the operation with EFAULT instead of
// handing the kernel a stale address.
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "clock_ms.h"
#include "errno_error.h"
#include "io_ring.h"

namespace tcmu {

namespace {

constexpr uint32_t kIovMax = 1024;
// Record layout, in float64 slots: kind (0 read, 1 write; + 2: offload to
// an io-wq worker), fd, position, tag, iovec count, then per iovec: buffer
// id, byte offset, length.
constexpr size_t kHeader = 5;
constexpr size_t kPerIovec = 3;

bool IsIndex(double v, double max) { return v >= 0 && v <= max && v == static_cast<double>(static_cast<uint64_t>(v)); }

}  // namespace

// registerBuffer(ab: ArrayBuffer) -> id (weakly held; unregister when done).
Napi::Value IoRing::RegisterBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring registerBuffer after close")) return Napi::Value();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "registerBuffer(buffer: ArrayBuffer)");
    return Napi::Value();
  }
  napi_ref ref;
  if (napi_create_reference(env, info[0], 0, &ref) != napi_ok) return Napi::Value();
  uint32_t id;
  if (!freeBufferIds_.empty()) {
    id = freeBufferIds_.back();
    freeBufferIds_.pop_back();
    buffers_[id] = ref;
  } else {
    id = static_cast<uint32_t>(buffers_.size());
    buffers_.push_back(ref);
  }
  return Napi::Number::New(env, id);
}

void IoRing::UnregisterBuffer(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) return;
  double v = info[0].As<Napi::Number>().DoubleValue();
  if (!IsIndex(v, static_cast<double>(buffers_.size()) - 1)) return;
  uint32_t id = static_cast<uint32_t>(v);
  if (buffers_[id] == nullptr) return;
  napi_delete_reference(Env(), buffers_[id]);
  buffers_[id] = nullptr;
  freeBufferIds_.push_back(id);
}

// The memory behind id now; false if the id is unknown or its buffer is gone.
bool IoRing::ResolveBuffer(Napi::Env env, uint32_t id, uint8_t** data, size_t* length) {
  if (id >= buffers_.size() || buffers_[id] == nullptr) return false;
  napi_value value;
  if (napi_get_reference_value(env, buffers_[id], &value) != napi_ok || value == nullptr) return false;
  void* base = nullptr;
  if (napi_get_arraybuffer_info(env, value, &base, length) != napi_ok) return false;
  *data = static_cast<uint8_t*>(base);
  return base != nullptr || *length == 0;
}

// Check the record at stage[at] and point `iov` at its memory. Advances
// `at` past the record. Malformed: the caller throws; Fault: a range does
// not lie inside its registered buffer (the operation gets -EFAULT);
// Invalid: kind, fd or position out of range (the operation gets -EINVAL).
IoRing::RecordStatus IoRing::DecodeRecord(Napi::Env env, const double* stage, size_t stageLen, size_t* at, Record* rec,
                                          std::vector<iovec>* iov, BufferCache* cache) {
  if (*at + kHeader > stageLen) return RecordStatus::Malformed;
  const double* r = stage + *at;
  double count = r[4];
  if (!IsIndex(count, kIovMax) || count < 1 || *at + kHeader + kPerIovec * static_cast<size_t>(count) > stageLen ||
      !IsIndex(r[3], 2147483647.0)) {
    return RecordStatus::Malformed;
  }
  uint32_t n = static_cast<uint32_t>(count);
  *at += kHeader + kPerIovec * n;
  rec->tag = static_cast<int32_t>(r[3]);
  // One operation's bad argument fails that operation, never the batch:
  // the batch carries other LUNs' I/O.
  if (!IsIndex(r[0], 3) || !IsIndex(r[2], 9007199254740991.0) || !IsIndex(r[1], 2147483647.0)) return RecordStatus::Invalid;
  rec->write = (static_cast<int>(r[0]) & 1) != 0;
  rec->offload = (static_cast<int>(r[0]) & 2) != 0;
  rec->fd = static_cast<int>(r[1]);
  rec->position = static_cast<uint64_t>(r[2]);
  iov->resize(n);
  for (uint32_t i = 0; i < n; i++) {
    const double* v = r + kHeader + kPerIovec * i;
    if (!IsIndex(v[0], 4294967294.0) || !IsIndex(v[1], 9007199254740991.0) || !IsIndex(v[2], 2147483647.0)) {
      return RecordStatus::Fault;
    }
    uint32_t id = static_cast<uint32_t>(v[0]);
    if (id != cache->id) {
      cache->id = id;
      cache->ok = ResolveBuffer(env, id, &cache->data, &cache->length);
    }
    size_t offset = static_cast<size_t>(v[1]);
    size_t length = static_cast<size_t>(v[2]);
    if (!cache->ok || offset > cache->length || length > cache->length - offset) return RecordStatus::Fault;
    (*iov)[i].iov_base = cache->data + offset;
    (*iov)[i].iov_len = length;
  }
  return RecordStatus::Ok;
}

// run(stage: Float64Array, ops: number, out: Int32Array): prepare `ops`
// records from `stage`, submit everything prepared, reap what completed.
// out[0] = completions written, out[1] = entries still unsubmitted (the
// kernel said EAGAIN/EBUSY: call again later), then [tag, result] pairs.
// Records whose memory does not check out complete at once with -EFAULT.
void IoRing::Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring run after close")) return;
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsNumber() || !info[2].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "run(stage: Float64Array, ops: number, out: Int32Array)");
    return;
  }
  Napi::Float64Array stageArray = info[0].As<Napi::Float64Array>();
  const double* stage = stageArray.Data();
  size_t stageLen = stageArray.ElementLength();
  uint32_t ops = info[1].As<Napi::Number>().Uint32Value();
  Napi::Int32Array outArray = info[2].As<Napi::Int32Array>();
  int32_t* out = outArray.Data();
  size_t room = outArray.ElementLength() < 2 ? 0 : (outArray.ElementLength() - 2) / 2;
  if (room < ops) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "out must have room for a result per record");
    return;
  }
  size_t done = 0;
  // Records mostly name the same buffer (the TCMU data area): resolve once.
  BufferCache cache;
  size_t at = 0;
  for (uint32_t op = 0; op < ops; op++) {
    if (SqFull()) {
      // The caller keeps in-flight operations <= sqEntries, so this is a bug there.
      ThrowErrno(env, EOVERFLOW, "io_ring run (submission queue full)");
      return;
    }
    unsigned index = localTail_ & sqMask_;
    Record rec;
    RecordStatus status = DecodeRecord(env, stage, stageLen, &at, &rec, &iovs_[index], &cache);
    if (status == RecordStatus::Malformed) {
      ThrowArgError(env, "ERR_OUT_OF_RANGE", "malformed batch record");
      return;
    }
    if (status == RecordStatus::Fault || status == RecordStatus::Invalid) {
      out[2 + 2 * done] = rec.tag;
      out[2 + 2 * done + 1] = status == RecordStatus::Fault ? -EFAULT : -EINVAL;
      done++;
      continue;
    }
    // Always the vectored opcodes: IORING_OP_WRITE for a single buffer was
    // measured slower on Linux 6.1 ext4 buffered writes (4.6-6.4k vs
    // 7.8-9.6k IOPS, 4k random, VM bench) and IORING_OP_READ no faster.
    QueueVectored(index, rec.write ? IORING_OP_WRITEV : IORING_OP_READV, rec.fd, rec.position, static_cast<uint32_t>(rec.tag),
                  rec.offload);
  }
  __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
  int rc = EnterAll();
  if (rc < 0) {
    ThrowErrno(env, -rc, "io_uring_enter");
    return;
  }
  done += ReapInto(out + 2 + 2 * done, room - done);
  out[0] = static_cast<int32_t>(done);
  out[1] = static_cast<int32_t>(unsubmitted_);
}

// setNowStage(stage: Float64Array, clock?: Float64Array): the record
// tryNow()/writeNow() read, and where writeNow() reports its timing.
// Registered once (held strongly, their memory pinned off the V8 heap by
// taking the data pointers) so that the per-command calls cost no
// typed-array checks.
void IoRing::SetNowStage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring setNowStage after close")) return;
  auto isFloat64 = [](const Napi::Value& v) {
    return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array;
  };
  bool withClock = info.Length() >= 2 && !info[1].IsUndefined();
  if (info.Length() < 1 || !isFloat64(info[0]) ||
      (withClock && (!isFloat64(info[1]) || info[1].As<Napi::Float64Array>().ElementLength() < 2))) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "setNowStage(stage: Float64Array, clock?: Float64Array of 2)");
    return;
  }
  Napi::Float64Array stage = info[0].As<Napi::Float64Array>();
  napi_ref ref;
  if (napi_create_reference(env, stage, 1, &ref) != napi_ok) return;
  napi_ref clockRef = nullptr;
  if (withClock && napi_create_reference(env, info[1], 1, &clockRef) != napi_ok) {
    napi_delete_reference(env, ref);
    return;
  }
  ForgetNowStage();
  nowStageRef_ = ref;
  nowStage_ = stage.Data();
  nowStageLen_ = stage.ElementLength();
  nowClockRef_ = clockRef;
  nowClock_ = withClock ? info[1].As<Napi::Float64Array>().Data() : nullptr;
}

void IoRing::ForgetNowStage() {
  if (nowStageRef_ != nullptr) napi_delete_reference(Env(), nowStageRef_);
  if (nowClockRef_ != nullptr) napi_delete_reference(Env(), nowClockRef_);
  nowStageRef_ = nullptr;
  nowStage_ = nullptr;
  nowStageLen_ = 0;
  nowClockRef_ = nullptr;
  nowClock_ = nullptr;
}

// CLOCK_MONOTONIC_COARSE in ms. The vDSO answers it from the kernel's
// last tick without reading the clock hardware, so it never costs a system
// call; CLOCK_MONOTONIC (performance.now()) does where the clocksource has
// no vDSO reader (HPET, some hypervisors' clocks: the test VM's, where
// timing inline writes here instead cut the daemon's CPU per 4 KiB write
// to 0.78x, bench-vm-writenow.txt). Its resolution is one tick (1-10
// ms): enough to see a write that slept for tens of milliseconds, and a
// sum of many short measurements is still right on average (each counts a
// whole tick with the chance that a tick fell inside it).
Napi::Value MonotonicCoarseMs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ClockMs(CLOCK_MONOTONIC_COARSE)); }

// tryNow() -> bytes transferred or -errno: the record in the registered
// stage (setNowStage), done right here with preadv2/pwritev2(RWF_NOWAIT).
// The kernel refuses (-EAGAIN) instead of waiting for storage, so the
// event loop never blocks; what it does is copy page-cache data, the same
// work io_uring's inline completion does, without the completion round
// trip through JS promises. -EOPNOTSUPP: the file cannot do this at all.
Napi::Value IoRing::TryNow(const Napi::CallbackInfo& info) { return DoNow(info.Env(), false); }

// writeNow() -> bytes written or -errno: the staged record, which must be a
// write, done right here with a plain (blocking) pwritev2, timed with the
// coarse monotonic clock into the registered clock array: [start ms, took
// ms]. JS decides when a write may block the event loop and watches what
// it costs (src/io/inline-write-guard.ts).
Napi::Value IoRing::WriteNow(const Napi::CallbackInfo& info) { return DoNow(info.Env(), true); }

Napi::Value IoRing::DoNow(Napi::Env env, bool blockingWrite) {
  if (!CheckOpen(env, "io_ring tryNow/writeNow after close")) return Napi::Value();
  if (nowStage_ == nullptr || (blockingWrite && nowClock_ == nullptr)) {
    ThrowArgError(env, "ERR_INVALID_STATE", blockingWrite ? "writeNow() before setNowStage(stage, clock)" : "tryNow() before setNowStage()");
    return Napi::Value();
  }
  size_t at = 0;
  Record rec;
  BufferCache cache;
  RecordStatus status = DecodeRecord(env, nowStage_, nowStageLen_, &at, &rec, &nowIov_, &cache);
  if (status == RecordStatus::Malformed) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "malformed batch record");
    return Napi::Value();
  }
  if (blockingWrite && !rec.write) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "writeNow(): the staged record is not a write");
    return Napi::Value();
  }
  if (status == RecordStatus::Fault) return Napi::Number::New(env, -EFAULT);
  if (status == RecordStatus::Invalid) return Napi::Number::New(env, -EINVAL);
  int count = static_cast<int>(nowIov_.size());
  int flags = blockingWrite ? 0 : RWF_NOWAIT;
  double start = blockingWrite ? ClockMs(CLOCK_MONOTONIC_COARSE) : 0;
  ssize_t n;
  do {
    n = rec.write ? pwritev2(rec.fd, nowIov_.data(), count, static_cast<off_t>(rec.position), flags)
                  : preadv2(rec.fd, nowIov_.data(), count, static_cast<off_t>(rec.position), flags);
  } while (n < 0 && errno == EINTR);
  int err = errno;
  if (blockingWrite) {
    nowClock_[0] = start;
    nowClock_[1] = ClockMs(CLOCK_MONOTONIC_COARSE) - start;
  }
  return Napi::Number::New(env, n < 0 ? -err : static_cast<double>(n));
}

}  // namespace tcmu
