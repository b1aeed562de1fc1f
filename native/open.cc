// openUio / openShared / socketPair: obtain the resources a Mapping wraps.
#include "open.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "errno_error.h"
#include "mapping.h"

namespace tcmu {

namespace {

bool ReadSize(const Napi::CallbackInfo& info, size_t index, size_t* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "size must be a number");
    return false;
  }
  double size = info[index].As<Napi::Number>().DoubleValue();
  if (!(size > 0) || size > 9007199254740991.0 || size != static_cast<double>(static_cast<size_t>(size))) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "size must be a positive integer");
    return false;
  }
  *out = static_cast<size_t>(size);
  return true;
}

bool ReadFd(const Napi::CallbackInfo& info, size_t index, int* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "fd must be a number");
    return false;
  }
  int32_t fd = info[index].As<Napi::Number>().Int32Value();
  if (fd < 0) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", "fd must be >= 0");
    return false;
  }
  *out = fd;
  return true;
}

bool ReadPath(const Napi::CallbackInfo& info, std::string* out) {
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "path must be a string");
    return false;
  }
  *out = info[0].As<Napi::String>().Utf8Value();
  return true;
}

// mmap `size` bytes of `fd` shared read-write; nullptr (errno set) on failure.
void* MapShared(int fd, size_t size) {
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return base == MAP_FAILED ? nullptr : base;
}

}  // namespace

Napi::Value OpenUio(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  size_t size = 0;
  if (!ReadPath(info, &path) || !ReadSize(info, 1, &size)) return Napi::Value();
  // Blocking fd on purpose: a read only happens after poll said readable,
  // and the kick write must not be dropped.
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, errno, "open");
    return Napi::Value();
  }
  void* base = MapShared(fd, size);
  if (base == nullptr) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "mmap");
    return Napi::Value();
  }
  return Mapping::Create(env, {base, size, fd, fd, NotifyKind::Uio});
}

Napi::Value OpenShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  size_t size = 0;
  int notifyFd = -1;
  int kickFd = -1;
  if (!ReadPath(info, &path) || !ReadSize(info, 1, &size) || !ReadFd(info, 2, &notifyFd) ||
      !ReadFd(info, 3, &kickFd)) {
    return Napi::Value();
  }
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    ThrowErrno(env, errno, "open");
    return Napi::Value();
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "fstat");
    return Napi::Value();
  }
  // Mapping past EOF would SIGBUS on first touch: refuse instead.
  if (static_cast<size_t>(st.st_size) < size) {
    close(fd);
    ThrowErrno(env, EINVAL, "openShared (file smaller than size)");
    return Napi::Value();
  }
  void* base = MapShared(fd, size);
  int err = errno;
  close(fd);  // the mapping keeps the file alive
  if (base == nullptr) {
    ThrowErrno(env, err, "mmap");
    return Napi::Value();
  }
  // Ownership of notifyFd/kickFd passes to the mapping (closed by close()).
  return Mapping::Create(env, {base, size, notifyFd, kickFd, NotifyKind::Stream});
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    ThrowErrno(env, errno, "socketpair");
    return Napi::Value();
  }
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

}  // namespace tcmu
