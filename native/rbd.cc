// The librbd/librados binding (a separate addon, tcmu_rbd.node, built only
// where the headers exist; see binding.gyp). Mechanism only:
// - connect/open/close/shutdown block on the network, so they run on libuv's
//   thread pool and answer through a node-style callback;
// - the data path (readv, writev, flush, discard, write-zeroes,
//   compare-and-write) submits librbd aio with a JS-chosen tag and returns
//   0 or -errno at once; the completion arrives later through the one
//   per-env RbdQueue (rbd_queue.h) as [tag, result, extra];
// - errors are negative errno numbers (data path) or errno Errors (others).
// Buffers handed to an aio call must stay alive until its completion: the
// JS side keeps them referenced by tag.
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "errno_error.h"
#include "rbd_handles.h"
#include "rbd_queue.h"
#include "ring_completion.h"
#include "thread_policy.h"
#include "view_bytes.h"

namespace tcmu {

namespace {

// One aio operation in flight: what the completion callback needs, and the
// iovec array librbd may still look at until the operation completes.
struct Op {
  Op(RbdQueue* q, double t) : queue(q), tag(t) {}
  ~Op() {
    if (ring != nullptr) ring->release(ring->self);
  }
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
  RbdQueue* queue;
  double tag;
  uint64_t mismatch = 0;
  bool isCompare = false;
  std::vector<iovec> iov;
  // Set for a read or write that may complete its TCMU command itself
  // (RingCompletion, retained until the callback): the command's slot and
  // cmd_id, and what librbd must return for GOOD (a write: >= 0; a read:
  // every byte, `expect`).
  RingCompletion* ring = nullptr;
  uint32_t slot = 0;
  uint32_t cmdId = 0;
  bool isRead = false;
  ssize_t expect = 0;
};

// Record extra for an operation whose command was completed in the ring.
constexpr double kCompletedInRing = -1;

RbdQueue* QueueOf(Napi::Env env) { return env.GetInstanceData<RbdQueue>(); }

void OnAioComplete(rbd_completion_t c, void* arg) {
  auto* op = static_cast<Op*>(arg);
  ssize_t rc = rbd_aio_get_return_value(c);
  rbd_aio_release(c);
  RbdRecord record{op->tag, static_cast<double>(rc), op->isCompare ? static_cast<double>(op->mismatch) : 0.0};
  RbdQueue* queue = op->queue;
  bool inRing = false;
  if (op->ring != nullptr) {
    bool good = op->isRead ? rc == op->expect : rc >= 0;
    // Here, on librbd's thread, as tcmu-runner does: the event loop then
    // has no wake-up to pay for this command.
    inRing = good && op->ring->completeGood(op->ring->self, op->slot, op->cmdId) == 1;
  }
  delete op;  // releases the ring
  if (inRing) {
    record.extra = kCompletedInRing;
    queue->PostQuietly(record);
  } else {
    queue->Post(record);
  }
}

void OnImageUpdated(void* arg) {
  // arg packs the queue and the watch tag; see Watch().
  auto* w = static_cast<std::pair<RbdQueue*, double>*>(arg);
  w->first->Post(RbdRecord{w->second, 0, 0});
}

// ---- argument helpers (throw a JS TypeError and return false on bad input)

// Buffers (ArrayBufferViews) -> iovecs over their memory (no copy).
bool ArgIovec(const Napi::CallbackInfo& info, size_t i, std::vector<iovec>* out) {
  if (info.Length() <= i || !info[i].IsArray()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "buffers must be an array of ArrayBufferViews");
    return false;
  }
  Napi::Array arr = info[i].As<Napi::Array>();
  uint32_t n = arr.Length();
  if (n == 0 || n > 1024) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "buffers must hold 1 to 1024 views");
    return false;
  }
  out->resize(n);
  for (uint32_t k = 0; k < n; k++) {
    void* data = nullptr;
    size_t length = 0;
    if (ViewBytes(info.Env(), arr.Get(k), &data, &length) != napi_ok) {
      ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "buffers must be an array of ArrayBufferViews");
      return false;
    }
    (*out)[k].iov_base = data;
    (*out)[k].iov_len = length;
  }
  return true;
}

void FinalizeSession(Napi::Env, SessionHandle* h) { delete h; }

void FinalizeImage(Napi::Env, ImageHandle* h) {
  // Collected while still open (the JS side always closes first): close here
  // rather than leak the image and its cluster connection.
  if (h->image && !h->closing) {
    if (h->watching) rbd_update_unwatch(h->image, h->watch);
    rbd_close(h->image);
  }
  delete h->watchArg;
  delete h;
}

// connect(conf, id, options: string[] (key, value, key, value...), pool,
//         batchThreads, cb(err, session)): with batchThreads, the threads
// librados and librbd start for this session (and its images) run under
// SCHED_BATCH.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  std::string conf, id, pool;
  Napi::Function cb;
  if (!ArgString(info, 0, "conf", &conf) || !ArgString(info, 1, "id", &id)) return Napi::Value();
  if (info.Length() <= 2 || !info[2].IsArray()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "options must be an array of strings");
    return Napi::Value();
  }
  std::vector<std::pair<std::string, std::string>> options;
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() % 2 != 0 || arr.Length() > 128) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE", "options must be key, value pairs (at most 64)");
    return Napi::Value();
  }
  for (uint32_t k = 0; k < arr.Length(); k += 2) {
    Napi::Value key = arr.Get(k), value = arr.Get(k + 1);
    if (!key.IsString() || !value.IsString()) {
      ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "options must be an array of strings");
      return Napi::Value();
    }
    options.emplace_back(key.As<Napi::String>().Utf8Value(), value.As<Napi::String>().Utf8Value());
  }
  bool batchThreads = false;
  if (!ArgString(info, 3, "pool", &pool) || !ArgBool(info, 4, "batchThreads", &batchThreads) || !ArgFunction(info, 5, &cb)) {
    return Napi::Value();
  }

  auto session = std::make_shared<Session>();
  session->batchThreads = batchThreads;
  auto* work = new Work(
      cb,
      [session, conf, id, options, pool](std::string* what) -> int {
        ScopedBatchPolicy batch(session->batchThreads);
        *what = "rados_create";
        int rc = rados_create(&session->cluster, id.c_str());
        if (rc < 0) {
          session->cluster = nullptr;
          return rc;
        }
        *what = "rados_conf_read_file(" + conf + ")";
        rc = rados_conf_read_file(session->cluster, conf.empty() ? nullptr : conf.c_str());
        if (rc < 0) return rc;
        for (const auto& kv : options) {
          *what = "rados_conf_set(" + kv.first + ")";
          rc = rados_conf_set(session->cluster, kv.first.c_str(), kv.second.c_str());
          if (rc < 0) return rc;
        }
        *what = "rados_connect";
        rc = rados_connect(session->cluster);
        if (rc < 0) return rc;
        *what = "rados_ioctx_create(" + pool + ")";
        return rados_ioctx_create(session->cluster, pool.c_str(), &session->ioctx);
      },
      [session](Napi::Env env) -> Napi::Value {
        return Napi::External<SessionHandle>::New(env, new SessionHandle{session}, FinalizeSession);
      });
  work->Queue();
  return info.Env().Undefined();
}

// shutdown(session, cb(err)): drop this handle's hold on the connection; the
// connection ends (on the pool thread) once no image holds it either.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  auto* h = ArgExternal<SessionHandle>(info, 0, "session");
  Napi::Function cb;
  if (!h || !ArgFunction(info, 1, &cb)) return Napi::Value();
  auto held = std::make_shared<std::shared_ptr<Session>>(std::move(h->session));
  (new Work(cb, [held](std::string*) { held->reset(); return 0; }, nullptr))->Queue();
  return info.Env().Undefined();
}

// open(session, name, snap ('' for none), readOnly, cb(err, image))
Napi::Value Open(const Napi::CallbackInfo& info) {
  auto* s = ArgExternal<SessionHandle>(info, 0, "session");
  std::string name, snap;
  Napi::Function cb;
  bool readOnly = false;
  if (!s || !ArgString(info, 1, "name", &name) || !ArgString(info, 2, "snap", &snap) || !ArgBool(info, 3, "readOnly", &readOnly) ||
      !ArgFunction(info, 4, &cb)) {
    return Napi::Value();
  }
  if (!s->session) {
    ThrowErrno(info.Env(), EBADF, "rbd session (shut down)");
    return Napi::Value();
  }
  // Owned by the work until a successful open hands it to JS; a failed open
  // frees it when the work goes.
  auto holder = std::make_shared<std::unique_ptr<ImageHandle>>(new ImageHandle());
  (*holder)->session = s->session;
  auto* work = new Work(
      cb,
      [holder, name, snap, readOnly](std::string* what) -> int {
        ImageHandle* h = holder->get();
        ScopedBatchPolicy batch(h->session->batchThreads);
        const char* snapName = snap.empty() ? nullptr : snap.c_str();
        *what = "rbd_open(" + name + (snap.empty() ? "" : "@" + snap) + ")";
        int rc = readOnly ? rbd_open_read_only(h->session->ioctx, name.c_str(), &h->image, snapName)
                          : rbd_open(h->session->ioctx, name.c_str(), &h->image, snapName);
        if (rc < 0) h->image = nullptr;
        return rc;
      },
      [holder](Napi::Env env) -> Napi::Value {
        return Napi::External<ImageHandle>::New(env, holder->release(), FinalizeImage);
      });
  work->Queue();
  return info.Env().Undefined();
}

// close(image, cb(err)): stop the watch, rbd_close (librbd finishes what is
// in flight and flushes its cache), release the session.
Napi::Value Close(const Napi::CallbackInfo& info) {
  auto* h = ArgExternal<ImageHandle>(info, 0, "image");
  Napi::Function cb;
  if (!h || !ArgFunction(info, 1, &cb)) return Napi::Value();
  if (h->image == nullptr || h->closing) {
    ThrowErrno(info.Env(), EBADF, "rbd_close (already closed)");
    return Napi::Value();
  }
  h->closing = true;
  auto* work = new Work(
       cb,
       [h](std::string* what) -> int {
         if (h->watching) {
           rbd_update_unwatch(h->image, h->watch);
           h->watching = false;
         }
         *what = "rbd_close";
         int rc = rbd_close(h->image);
         h->image = nullptr;
         h->session.reset();
         return rc;
       },
       nullptr);
  work->Keep(info[0]);
  work->Queue();
  return info.Env().Undefined();
}

// size(image): the image's current size in bytes (librbd's cached header).
Napi::Value Size(const Napi::CallbackInfo& info) {
  ImageHandle* h = ArgImage(info);
  if (!h) return Napi::Value();
  uint64_t size = 0;
  int rc = rbd_get_size(h->image, &size);
  if (rc < 0) {
    ThrowErrno(info.Env(), -rc, "rbd_get_size");
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), static_cast<double>(size));
}

// ---- the data path: submit, return 0 or -errno; completion via the queue

bool ArgTag(const Napi::CallbackInfo& info, size_t i, double* tag) {
  uint64_t t;
  if (!ArgUint(info, i, "tag", &t)) return false;
  *tag = static_cast<double>(t);
  return true;
}

// Create the completion for `op` and run `submit`; on a synchronous failure
// nothing is queued and the caller gets -errno.
int Submit(Napi::Env env, Op* op, const std::function<int(rbd_completion_t)>& submit) {
  rbd_completion_t c;
  int rc = rbd_aio_create_completion(op, OnAioComplete, &c);
  if (rc < 0) {
    delete op;
    return rc;
  }
  // Counted before librbd may complete it (on another thread, at once).
  RbdQueue* queue = QueueOf(env);
  queue->Started();
  rc = submit(c);
  if (rc < 0) {
    rbd_aio_release(c);
    delete op;
    queue->NotStarted();
    return rc;
  }
  return 0;
}

// Optional arguments i, i+1, i+2: a ring completion handle (Mapping's
// completion().handle), the command's engine slot and its cmd_id; sets and
// retains op->ring when given. False after throwing on a bad one.
bool ArgRingCompletion(const Napi::CallbackInfo& info, size_t i, Op* op) {
  if (info.Length() <= i || info[i].IsUndefined()) return true;
  bool tagged = false;
  if (info[i].IsExternal()) napi_check_object_type_tag(info.Env(), info[i], &kRingCompletionTag, &tagged);
  if (!tagged) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "ring must be a ring completion handle (NativeMapping.completion)");
    return false;
  }
  uint64_t slot, cmdId;
  if (!ArgUint(info, i + 1, "slot", &slot) || !ArgUint(info, i + 2, "cmdId", &cmdId)) return false;
  auto* ring = info[i].As<Napi::External<RingCompletion>>().Data();
  if (ring->abi != kRingCompletionAbi || slot > 0xffff || cmdId > 0xffff) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "ring completion: other ABI, or slot / cmdId out of range");
    return false;
  }
  ring->retain(ring->self);
  op->ring = ring;
  op->slot = static_cast<uint32_t>(slot);
  op->cmdId = static_cast<uint32_t>(cmdId);
  return true;
}

// readv(image, buffers, offset, tag[, ring, slot, cmdId]) / writev(the same)
Napi::Value Vectored(const Napi::CallbackInfo& info, bool write) {
  ImageHandle* h = ArgImage(info);
  uint64_t offset;
  double tag;
  if (!h) return Napi::Value();
  auto* op = new Op(QueueOf(info.Env()), 0);
  if (!ArgIovec(info, 1, &op->iov) || !ArgUint(info, 2, "offset", &offset) || !ArgTag(info, 3, &tag) ||
      !ArgRingCompletion(info, 4, op)) {
    delete op;
    return Napi::Value();
  }
  op->tag = tag;
  op->isRead = !write;
  for (const iovec& v : op->iov) op->expect += static_cast<ssize_t>(v.iov_len);
  rbd_image_t image = h->image;
  int rc = Submit(info.Env(), op, [&](rbd_completion_t c) {
    int n = static_cast<int>(op->iov.size());
    return write ? rbd_aio_writev(image, op->iov.data(), n, offset, c) : rbd_aio_readv(image, op->iov.data(), n, offset, c);
  });
  return Napi::Number::New(info.Env(), rc);
}

Napi::Value Readv(const Napi::CallbackInfo& info) { return Vectored(info, false); }
Napi::Value Writev(const Napi::CallbackInfo& info) { return Vectored(info, true); }

// flush(image, tag)
Napi::Value Flush(const Napi::CallbackInfo& info) {
  ImageHandle* h = ArgImage(info);
  double tag;
  if (!h || !ArgTag(info, 1, &tag)) return Napi::Value();
  rbd_image_t image = h->image;
  int rc = Submit(info.Env(), new Op(QueueOf(info.Env()), tag), [&](rbd_completion_t c) { return rbd_aio_flush(image, c); });
  return Napi::Number::New(info.Env(), rc);
}

// discard(image, offset, length, tag) / writeZeroes(image, offset, length, tag)
Napi::Value Ranged(const Napi::CallbackInfo& info, bool zeroes) {
  ImageHandle* h = ArgImage(info);
  uint64_t offset, length;
  double tag;
  if (!h || !ArgUint(info, 1, "offset", &offset) || !ArgUint(info, 2, "length", &length) || !ArgTag(info, 3, &tag)) {
    return Napi::Value();
  }
  rbd_image_t image = h->image;
  int rc = Submit(info.Env(), new Op(QueueOf(info.Env()), tag), [&](rbd_completion_t c) {
    return zeroes ? rbd_aio_write_zeroes(image, offset, length, c, 0, 0) : rbd_aio_discard(image, offset, length, c);
  });
  return Napi::Number::New(info.Env(), rc);
}

Napi::Value Discard(const Napi::CallbackInfo& info) { return Ranged(info, false); }
Napi::Value WriteZeroes(const Napi::CallbackInfo& info) { return Ranged(info, true); }

// compareAndWrite(image, offset, compare: Buffer, data: Buffer, tag): atomic
// on the cluster (the OSD compares and writes in one object operation). The
// completion's result is -EILSEQ on a miscompare, with extra = librbd's
// mismatch offset.
Napi::Value CompareAndWrite(const Napi::CallbackInfo& info) {
  ImageHandle* h = ArgImage(info);
  uint64_t offset;
  double tag;
  if (!h || !ArgUint(info, 1, "offset", &offset)) return Napi::Value();
  if (info.Length() < 4 || !info[2].IsTypedArray() || !info[3].IsTypedArray()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "compare and data must be Buffers");
    return Napi::Value();
  }
  auto cmp = info[2].As<Napi::TypedArray>(), data = info[3].As<Napi::TypedArray>();
  if (cmp.ByteLength() != data.ByteLength() || cmp.ByteLength() == 0) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_VALUE", "compare and data must have the same, non-zero length");
    return Napi::Value();
  }
  if (!ArgTag(info, 4, &tag)) return Napi::Value();
  auto* op = new Op(QueueOf(info.Env()), tag);
  op->isCompare = true;
  const char* cmpBuf = static_cast<const char*>(cmp.ArrayBuffer().Data()) + cmp.ByteOffset();
  const char* dataBuf = static_cast<const char*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  size_t len = cmp.ByteLength();
  rbd_image_t image = h->image;
  int rc = Submit(info.Env(), op, [&](rbd_completion_t c) {
    return static_cast<int>(rbd_aio_compare_and_write(image, offset, len, cmpBuf, dataBuf, c, &op->mismatch, 0));
  });
  return Napi::Number::New(info.Env(), rc);
}

// watch(image, tag): every header update (resize, snapshot, lock owner...)
// posts [tag, 0, 0]; tag must be distinct from operation tags. Idempotent.
Napi::Value Watch(const Napi::CallbackInfo& info) {
  ImageHandle* h = ArgImage(info);
  double tag;
  if (!h || !ArgTag(info, 1, &tag)) return Napi::Value();
  if (h->watching) return Napi::Number::New(info.Env(), 0);
  if (!h->watchArg) h->watchArg = new std::pair<RbdQueue*, double>(QueueOf(info.Env()), -1 - tag);
  int rc = rbd_update_watch(h->image, &h->watch, OnImageUpdated, h->watchArg);
  if (rc == 0) h->watching = true;
  return Napi::Number::New(info.Env(), rc);
}

// setHandler(fn(batch: Float64Array, count)): receives `count` [tag, result,
// extra] triples at the start of `batch`, an array reused by the next call.
// Watch notifications carry tag -1 - watchTag (negative).
Napi::Value SetHandler(const Napi::CallbackInfo& info) {
  Napi::Function fn;
  if (!ArgFunction(info, 0, &fn)) return Napi::Value();
  QueueOf(info.Env())->SetHandler(fn);
  return info.Env().Undefined();
}

// version(): librbd's [major, minor, extra].
Napi::Value Version(const Napi::CallbackInfo& info) {
  int major, minor, extra;
  rbd_version(&major, &minor, &extra);
  Napi::Array out = Napi::Array::New(info.Env(), 3);
  out.Set(0u, major);
  out.Set(1u, minor);
  out.Set(2u, extra);
  return out;
}

}  // namespace

Napi::Object InitRbd(Napi::Env env, Napi::Object exports) {
  // No finalizer: the queue outlives the env (see RbdQueue::OnCleanup).
  napi_set_instance_data(env, RbdQueue::Create(env), nullptr, nullptr);
  exports.Set("EILSEQ", Napi::Number::New(env, EILSEQ));
  exports.Set("setHandler", Napi::Function::New<SetHandler>(env, "setHandler"));
  exports.Set("version", Napi::Function::New<Version>(env, "version"));
  exports.Set("connect", Napi::Function::New<Connect>(env, "connect"));
  exports.Set("shutdown", Napi::Function::New<Shutdown>(env, "shutdown"));
  exports.Set("open", Napi::Function::New<Open>(env, "open"));
  exports.Set("close", Napi::Function::New<Close>(env, "close"));
  exports.Set("size", Napi::Function::New<Size>(env, "size"));
  exports.Set("readv", Napi::Function::New<Readv>(env, "readv"));
  exports.Set("writev", Napi::Function::New<Writev>(env, "writev"));
  exports.Set("flush", Napi::Function::New<Flush>(env, "flush"));
  exports.Set("discard", Napi::Function::New<Discard>(env, "discard"));
  exports.Set("writeZeroes", Napi::Function::New<WriteZeroes>(env, "writeZeroes"));
  exports.Set("compareAndWrite", Napi::Function::New<CompareAndWrite>(env, "compareAndWrite"));
  exports.Set("watch", Napi::Function::New<Watch>(env, "watch"));
  InitRbdAdmin(env, exports);
  return exports;
}

}  // namespace tcmu

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tcmu::InitRbd(env, exports); }

NODE_API_MODULE(tcmu_rbd, InitModule)
