#include "io_ring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "addon_data.h"
#include "bound_method.h"
#include "errno_error.h"
#include "view_bytes.h"

namespace tcmu {

namespace {

int SysSetup(unsigned entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}

int SysEnter(int fd, unsigned toSubmit) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, toSubmit, 0, 0, nullptr, 0));
}

template <typename T>
T* At(void* base, unsigned off) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + off);
}

}  // namespace

// The ring fd is readable while completions wait in the CQ.
class IoRingWatcher : public FdWatcher {
 public:
  IoRingWatcher(Napi::Env env, int fd, IoRing* owner, Napi::Function onEvent, Napi::Function onError)
      : FdWatcher(env, fd, onEvent, onError, "tcmu:io_ring"), owner_(owner) {}
  void Detach() { owner_ = nullptr; }

 protected:
  void OnReadable() override { EmitEvent({}); }
  void OnStop() override {
    if (owner_ != nullptr) owner_->ForgetWatcher(this);
  }

 private:
  IoRing* owner_;
};

Napi::Function IoRing::DefineClass(Napi::Env env) {
  return ObjectWrap<IoRing>::DefineClass(env, "NativeIoRing",
                                         {
                                             InstanceMethod<&IoRing::PrepReadv>("prepReadv"),
                                             InstanceMethod<&IoRing::PrepWritev>("prepWritev"),
                                             InstanceMethod<&IoRing::Submit>("submit"),
                                             InstanceMethod<&IoRing::RegisterBuffer>("registerBuffer"),
                                             InstanceMethod<&IoRing::UnregisterBuffer>("unregisterBuffer"),
                                             InstanceMethod<&IoRing::SetNowStage>("setNowStage"),
                                             InstanceMethod<&IoRing::Reap>("reap"),
                                             InstanceMethod<&IoRing::Watch>("watch"),
                                             InstanceMethod<&IoRing::Unwatch>("unwatch"),
                                             InstanceMethod<&IoRing::Ref>("ref"),
                                             InstanceMethod<&IoRing::Close>("close"),
                                         });
}

Napi::Value IoRingCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "entries must be a number");
    return Napi::Value();
  }
  double entries = info[0].As<Napi::Number>().DoubleValue();
  if (!(entries >= 1 && entries <= 4096) || entries != static_cast<double>(static_cast<unsigned>(entries))) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "entries must be an integer in [1, 4096]");
    return Napi::Value();
  }
  return GetAddonData(env)->ioRingConstructor.New({info[0]});
}

IoRing::IoRing(const Napi::CallbackInfo& info) : ObjectWrap<IoRing>(info) {
  Napi::Env env = info.Env();
  unsigned entries = info[0].As<Napi::Number>().Uint32Value();
  io_uring_params p;
  memset(&p, 0, sizeof p);
  p.flags = IORING_SETUP_CLAMP;
  int fd = SysSetup(entries, &p);
  if (fd < 0) {
    closed_ = true;
    ThrowErrno(env, errno, "io_uring_setup");
    return;
  }
  fd_ = fd;
  // Stable submissions (iovecs may be reused once enter returned) and no
  // dropped completions are what the JS side relies on.
  const unsigned needed = IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_NODROP;
  if ((p.features & needed) != needed) {
    CloseAll();
    ThrowErrno(env, ENOTSUP, "io_uring_setup (kernel lacks SUBMIT_STABLE/NODROP)");
    return;
  }
  sqRingSize_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cqRingSize_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) sqRingSize_ = cqRingSize_ = std::max(sqRingSize_, cqRingSize_);
  // Map one region of the ring; on failure release everything and throw.
  auto mapRegion = [&](size_t size, off_t offset, const char* what) -> void* {
    void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
    if (m != MAP_FAILED) return m;
    int err = errno;
    CloseAll();
    ThrowErrno(env, err, what);
    return nullptr;
  };
  sqRing_ = mapRegion(sqRingSize_, IORING_OFF_SQ_RING, "mmap (io_uring sq)");
  if (sqRing_ == nullptr) return;
  cqRing_ = single ? sqRing_ : mapRegion(cqRingSize_, IORING_OFF_CQ_RING, "mmap (io_uring cq)");
  if (cqRing_ == nullptr) return;
  sqesSize_ = p.sq_entries * sizeof(io_uring_sqe);
  sqes_ = static_cast<io_uring_sqe*>(mapRegion(sqesSize_, IORING_OFF_SQES, "mmap (io_uring sqes)"));
  if (sqes_ == nullptr) return;
  sqHead_ = At<unsigned>(sqRing_, p.sq_off.head);
  sqTail_ = At<unsigned>(sqRing_, p.sq_off.tail);
  sqMask_ = *At<unsigned>(sqRing_, p.sq_off.ring_mask);
  sqEntries_ = p.sq_entries;
  cqHead_ = At<unsigned>(cqRing_, p.cq_off.head);
  cqTail_ = At<unsigned>(cqRing_, p.cq_off.tail);
  cqMask_ = *At<unsigned>(cqRing_, p.cq_off.ring_mask);
  cqEntries_ = p.cq_entries;
  cqes_ = At<io_uring_cqe>(cqRing_, p.cq_off.cqes);
  // SQE slot i is always submitted through array slot i.
  unsigned* array = At<unsigned>(sqRing_, p.sq_off.array);
  for (unsigned i = 0; i < sqEntries_; i++) array[i] = i;
  localTail_ = *sqTail_;
  iovs_.resize(sqEntries_);

  Napi::Object self = info.This().As<Napi::Object>();
  self.DefineProperties({
      Napi::PropertyDescriptor::Value("sqEntries", Napi::Number::New(env, sqEntries_), napi_enumerable),
      Napi::PropertyDescriptor::Value("cqEntries", Napi::Number::New(env, cqEntries_), napi_enumerable),
  });
  // The per-command calls skip napi_unwrap (bound_method.h).
  DefineBoundMethod<IoRing, &IoRing::Run>(self, this, "run");
  DefineBoundMethod<IoRing, &IoRing::TryNow>(self, this, "tryNow");
  DefineBoundMethod<IoRing, &IoRing::WriteNow>(self, this, "writeNow");
  napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  cleanupHookRegistered_ = true;
}

IoRing::~IoRing() {
  if (cleanupHookRegistered_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
  CloseAll();
}

void IoRing::OnEnvCleanup(void* arg) {
  auto* self = static_cast<IoRing*>(arg);
  self->cleanupHookRegistered_ = false;
  self->CloseAll();
}

void IoRing::CloseAll() {
  if (watcher_ != nullptr) {
    IoRingWatcher* w = watcher_;
    watcher_ = nullptr;
    w->Detach();
    w->Stop();
  }
  for (napi_ref& ref : buffers_) {
    if (ref != nullptr) napi_delete_reference(Env(), ref);
    ref = nullptr;
  }
  ForgetNowStage();
  if (sqes_ != nullptr) munmap(sqes_, sqesSize_);
  if (cqRing_ != nullptr && cqRing_ != sqRing_) munmap(cqRing_, cqRingSize_);
  if (sqRing_ != nullptr) munmap(sqRing_, sqRingSize_);
  sqes_ = nullptr;
  cqRing_ = sqRing_ = nullptr;
  if (fd_ >= 0) close(fd_);  // the kernel cancels or finishes what is in flight
  fd_ = -1;
  closed_ = true;
}

bool IoRing::CheckOpen(Napi::Env env, const char* what) {
  if (!closed_) return true;
  ThrowErrno(env, EBADF, what);
  return false;
}

Napi::Value IoRing::PrepReadv(const Napi::CallbackInfo& info) { return Prep(info, IORING_OP_READV); }
Napi::Value IoRing::PrepWritev(const Napi::CallbackInfo& info) { return Prep(info, IORING_OP_WRITEV); }

// prepReadv/prepWritev(fd, buffers, position, tag) -> true, or false when
// the submission queue is full (submit, then retry).
Napi::Value IoRing::Prep(const Napi::CallbackInfo& info, uint8_t opcode) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring prep after close")) return Napi::Value();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsArray() || !info[2].IsNumber() || !info[3].IsNumber()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "prep(fd: number, buffers: ArrayBufferView[], position: number, tag: number)");
    return Napi::Value();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  double position = info[2].As<Napi::Number>().DoubleValue();
  if (!(position >= 0) || position > 9007199254740991.0 || position != static_cast<double>(static_cast<int64_t>(position))) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "position must be a non-negative integer");
    return Napi::Value();
  }
  uint32_t tag = info[3].As<Napi::Number>().Uint32Value();
  if (SqFull()) return Napi::Boolean::New(env, false);

  napi_value array = info[1];
  uint32_t count = 0;
  napi_get_array_length(env, array, &count);
  if (count == 0 || count > IOV_MAX) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "buffers must hold 1 to IOV_MAX views");
    return Napi::Value();
  }
  unsigned index = localTail_ & sqMask_;
  std::vector<iovec>& iov = iovs_[index];
  iov.resize(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    void* data = nullptr;
    size_t length = 0;
    if (napi_get_element(env, array, i, &element) != napi_ok) return Napi::Value();
    napi_status status = ViewBytes(env, element, &data, &length);
    if (status == napi_invalid_arg) {
      ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "buffers must be ArrayBufferViews");
      return Napi::Value();
    }
    if (status != napi_ok) return Napi::Value();
    iov[i].iov_base = data;
    iov[i].iov_len = length;
  }
  QueueVectored(index, opcode, fd, static_cast<uint64_t>(position), tag, false);
  __atomic_store_n(sqTail_, localTail_, __ATOMIC_RELEASE);
  return Napi::Boolean::New(env, true);
}

bool IoRing::SqFull() const { return localTail_ - __atomic_load_n(sqHead_, __ATOMIC_ACQUIRE) >= sqEntries_; }

// Fill the SQE at `index` as a readv/writev over iovs_[index] and count it as
// prepared (the caller publishes the SQ tail). Shared by prep and run.
void IoRing::QueueVectored(unsigned index, uint8_t opcode, int fd, uint64_t offset, uint32_t tag, bool offload) {
  const std::vector<iovec>& iov = iovs_[index];
  io_uring_sqe* sqe = &sqes_[index];
  memset(sqe, 0, sizeof *sqe);
  sqe->opcode = opcode;
  if (offload) sqe->flags = IOSQE_ASYNC;
  sqe->fd = fd;
  sqe->off = offset;
  sqe->addr = reinterpret_cast<uint64_t>(iov.data());
  sqe->len = static_cast<uint32_t>(iov.size());
  sqe->user_data = tag;
  localTail_++;
  unsubmitted_++;
}

// submit() -> how many prepared entries the kernel took (0 on EAGAIN/EBUSY:
// retry after reaping). Page-cache hits usually complete inside this call.
Napi::Value IoRing::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring submit after close")) return Napi::Value();
  int rc = EnterAll();
  if (rc < 0) {
    ThrowErrno(env, -rc, "io_uring_enter");
    return Napi::Value();
  }
  return Napi::Number::New(env, rc);
}

// io_uring_enter for every prepared entry: how many the kernel took (0 on
// EAGAIN/EBUSY, when it is short of resources), or -errno.
int IoRing::EnterAll() {
  if (unsubmitted_ == 0) return 0;
  int rc;
  do {
    rc = SysEnter(fd_, unsubmitted_);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return errno == EAGAIN || errno == EBUSY ? 0 : -errno;
  unsubmitted_ -= static_cast<unsigned>(rc) > unsubmitted_ ? unsubmitted_ : static_cast<unsigned>(rc);
  return rc;
}

// reap(out: Int32Array) -> n; out[2k] = tag, out[2k+1] = result (bytes or -errno).
Napi::Value IoRing::Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring reap after close")) return Napi::Value();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "reap(out: Int32Array)");
    return Napi::Value();
  }
  Napi::Int32Array out = info[0].As<Napi::Int32Array>();
  size_t n = ReapInto(out.Data(), out.ElementLength() / 2);
  return Napi::Number::New(env, static_cast<double>(n));
}

// Move up to `room` completions into pairs[2k] = tag, pairs[2k+1] = result.
size_t IoRing::ReapInto(int32_t* dst, size_t room) {
  unsigned head = *cqHead_;
  unsigned tail = __atomic_load_n(cqTail_, __ATOMIC_ACQUIRE);
  size_t n = 0;
  while (head != tail && n < room) {
    const io_uring_cqe& cqe = cqes_[head & cqMask_];
    dst[2 * n] = static_cast<int32_t>(cqe.user_data);
    dst[2 * n + 1] = cqe.res;
    n++;
    head++;
  }
  __atomic_store_n(cqHead_, head, __ATOMIC_RELEASE);
  return n;
}

void IoRing::Watch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckOpen(env, "io_ring watch after close")) return;
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "watch(onEvent, onError) needs two functions");
    return;
  }
  if (watcher_ != nullptr) {
    ThrowErrno(env, EBUSY, "watch (already watching)");
    return;
  }
  auto* w = new IoRingWatcher(env, fd_, this, info[0].As<Napi::Function>(), info[1].As<Napi::Function>());
  watcher_ = w;
  int rc = w->Start();
  if (rc != 0) {
    watcher_ = nullptr;
    ThrowErrno(env, -rc, "uv_poll_start");
  }
}

void IoRing::Unwatch(const Napi::CallbackInfo&) {
  if (watcher_ == nullptr) return;
  IoRingWatcher* w = watcher_;
  watcher_ = nullptr;
  w->Detach();
  w->Stop();
}

// ref(true|false): whether the watch keeps the event loop alive.
void IoRing::Ref(const Napi::CallbackInfo& info) {
  if (watcher_ == nullptr) return;
  watcher_->SetRef(info.Length() > 0 && info[0].ToBoolean().Value());
}

void IoRing::Close(const Napi::CallbackInfo&) {
  if (cleanupHookRegistered_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
  cleanupHookRegistered_ = false;
  CloseAll();
}

}  // namespace tcmu
