// openBeneath: open a path relative to a directory fd such that the result
// provably lies beneath that directory. Mechanism only: which directories
// are allowed and how errors read is decided in JS (src/backstore/confine.ts).
//
// openat2(2) with RESOLVE_BENEATH does the whole job inside one path walk,
// so nothing can be swapped between a check and the open. glibc (Debian 12)
// has no wrapper, hence syscall(SYS_openat2). Kernels before 5.6 answer
// ENOSYS; then the fallback opens with O_PATH (no side effects: a FIFO or
// device outside is never really opened), reads the fd's canonical path
// from /proc/self/fd and only reopens it with the wanted flags when that
// path is beneath the directory's. The check is on the opened fd, so it
// too is race free; it just cannot refuse a symlink that stays inside.
#include "open_beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "errno_error.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

namespace tcmu {

namespace {

// The resolve flags the fallback can honour by its canonical-path check.
constexpr uint64_t kFallbackResolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

int RetryOpenat(int dirfd, const char* path, int flags, mode_t mode) {
  int fd;
  do {
    fd = openat(dirfd, path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Canonical path of an fd ("/proc/self/fd/N" is a magic link to the file).
bool FdPath(int fd, std::string* out) {
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  char buf[4096];
  ssize_t n = readlink(link.c_str(), buf, sizeof(buf));
  if (n < 0) return false;
  if (static_cast<size_t>(n) >= sizeof(buf)) {
    errno = ENAMETOOLONG;
    return false;
  }
  out->assign(buf, static_cast<size_t>(n));
  return true;
}

// True when `fd` names `dirfd`'s directory or something below it; false
// with errno (EXDEV when outside, as openat2 reports an escape).
bool IsBeneath(int fd, int dirfd) {
  std::string dir, file;
  if (dirfd == AT_FDCWD) {
    char cwd[4096];
    if (getcwd(cwd, sizeof(cwd)) == nullptr) return false;
    dir = cwd;
  } else if (!FdPath(dirfd, &dir)) {
    return false;
  }
  if (!FdPath(fd, &file)) return false;
  if (dir == "/") return file.size() > 0 && file[0] == '/';
  if (file == dir || (file.size() > dir.size() && file.compare(0, dir.size(), dir) == 0 && file[dir.size()] == '/')) {
    return true;
  }
  errno = EXDEV;  // also covers "(deleted)" and anon files: not provably beneath
  return false;
}

// Pre-openat2 kernels. O_CREAT cannot go through O_PATH: the parent is
// opened and checked first, then the leaf is created there with O_NOFOLLOW,
// so the new file lands in a directory already proven to be beneath.
int FallbackOpen(int dirfd, const std::string& path, int flags, mode_t mode) {
  if (flags & O_CREAT) {
    size_t slash = path.find_last_of('/');
    std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    std::string leaf = slash == std::string::npos ? path : path.substr(slash + 1);
    if (leaf.empty() || leaf == "." || leaf == "..") {
      errno = EISDIR;
      return -1;
    }
    int parentFd = RetryOpenat(dirfd, parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
    if (parentFd < 0) return -1;
    if (!IsBeneath(parentFd, dirfd)) {
      int err = errno;
      close(parentFd);
      errno = err;
      return -1;
    }
    int fd = RetryOpenat(parentFd, leaf.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    int err = errno;
    close(parentFd);
    errno = err;
    return fd;
  }
  int pathFd = RetryOpenat(dirfd, path.c_str(), O_PATH | O_CLOEXEC | (flags & (O_NOFOLLOW | O_DIRECTORY)), 0);
  if (pathFd < 0) return -1;
  if (!IsBeneath(pathFd, dirfd)) {
    int err = errno;
    close(pathFd);
    errno = err;
    return -1;
  }
  // Reopening through the magic link reaches exactly the inode just checked.
  std::string self = "/proc/self/fd/" + std::to_string(pathFd);
  int fd = RetryOpenat(AT_FDCWD, self.c_str(), (flags & ~O_NOFOLLOW) | O_CLOEXEC, mode);
  int err = errno;
  close(pathFd);
  errno = err;
  return fd;
}

int Openat2(int dirfd, const std::string& path, int flags, mode_t mode, uint64_t resolve) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // openat2 rejects a mode without O_CREAT/O_TMPFILE (EINVAL).
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = resolve;
  long fd;
  do {
    fd = syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
  } while (fd < 0 && errno == EINTR);
  return static_cast<int>(fd);
}

bool ReadInt(const Napi::CallbackInfo& info, size_t index, const char* what, int64_t min, int64_t* out) {
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number");
    return false;
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(min)) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<int64_t>(v))) {
    ThrowArgError(info.Env(), "ERR_OUT_OF_RANGE", std::string(what) + " is out of range");
    return false;
  }
  *out = static_cast<int64_t>(v);
  return true;
}

// The whole open, errno set on failure; `syscall` names what failed.
int DoOpenBeneath(int dirfd, const std::string& path, int flags, mode_t mode, uint64_t resolve, bool forceFallback,
                  const char** syscallName) {
  *syscallName = "openat2";
  if (!forceFallback) {
    int fd = Openat2(dirfd, path, flags, mode, resolve);
    if (fd >= 0 || errno != ENOSYS) return fd;
  }
  *syscallName = "openat (openat2 fallback)";
  if ((resolve & ~kFallbackResolve) != 0) {
    // RESOLVE_NO_SYMLINKS and friends cannot be checked after the fact.
    errno = ENOSYS;
    return -1;
  }
  if (resolve & RESOLVE_BENEATH) return FallbackOpen(dirfd, path, flags, mode);
  return RetryOpenat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
}

struct OpenRequest {
  int dirfd = -1;
  std::string path;
  int flags = 0;
  mode_t mode = 0;
  uint64_t resolve = 0;
  bool forceFallback = false;
};

// Runs the open on a libuv pool thread: a path walk can wait on a slow or
// hung filesystem, and the event loop serves every other LUN meanwhile.
class OpenBeneathWorker : public Napi::AsyncWorker {
 public:
  OpenBeneathWorker(Napi::Function callback, OpenRequest request)
      : Napi::AsyncWorker(callback, "tcmu.openBeneath"), request_(std::move(request)) {}

  void Execute() override {
    fd_ = DoOpenBeneath(request_.dirfd, request_.path, request_.flags, request_.mode, request_.resolve,
                        request_.forceFallback, &syscall_);
    err_ = fd_ < 0 ? errno : 0;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (fd_ < 0) {
      Callback().Call({ErrnoError(env, err_, syscall_).Value(), env.Undefined()});
    } else {
      Callback().Call({env.Null(), Napi::Number::New(env, fd_)});
    }
  }

 private:
  OpenRequest request_;
  int fd_ = -1;
  int err_ = 0;
  const char* syscall_ = "openat2";
};

bool ReadRequest(const Napi::CallbackInfo& info, OpenRequest* out) {
  Napi::Env env = info.Env();
  int64_t dirfd, flags, mode, resolve;
  if (!ReadInt(info, 0, "dirfd", AT_FDCWD, &dirfd)) return false;
  if (info.Length() < 2 || !info[1].IsString()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "path must be a string");
    return false;
  }
  out->path = info[1].As<Napi::String>().Utf8Value();
  if (out->path.find('\0') != std::string::npos) {
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "path must not contain NUL bytes");
    return false;
  }
  if (!ReadInt(info, 2, "flags", 0, &flags) || !ReadInt(info, 3, "mode", 0, &mode) ||
      !ReadInt(info, 4, "resolve", 0, &resolve)) {
    return false;
  }
  out->dirfd = static_cast<int>(dirfd);
  out->flags = static_cast<int>(flags);
  out->mode = static_cast<mode_t>(mode);
  out->resolve = static_cast<uint64_t>(resolve);
  out->forceFallback = info.Length() > 5 && info[5].ToBoolean().Value();
  return true;
}

}  // namespace

// openBeneath(dirfd, path, flags, mode, resolve, forceFallback, callback?):
// with a callback, runs on the thread pool and calls back (err, fd);
// without, returns the fd (or throws).
Napi::Value OpenBeneath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpenRequest request;
  if (!ReadRequest(info, &request)) return Napi::Value();
  if (info.Length() > 6 && info[6].IsFunction()) {
    auto* worker = new OpenBeneathWorker(info[6].As<Napi::Function>(), std::move(request));
    worker->Queue();  // deletes itself after OnOK
    return env.Undefined();
  }
  const char* syscallName = "openat2";
  int fd = DoOpenBeneath(request.dirfd, request.path, request.flags, request.mode, request.resolve,
                         request.forceFallback, &syscallName);
  if (fd < 0) {
    ThrowErrno(env, errno, syscallName);
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

void ExportOpenBeneathConstants(Napi::Env env, Napi::Object exports) {
  exports.Set("O_PATH", Napi::Number::New(env, O_PATH));
  exports.Set("AT_FDCWD", Napi::Number::New(env, AT_FDCWD));
  exports.Set("RESOLVE_BENEATH", Napi::Number::New(env, static_cast<double>(RESOLVE_BENEATH)));
  exports.Set("RESOLVE_NO_MAGICLINKS", Napi::Number::New(env, static_cast<double>(RESOLVE_NO_MAGICLINKS)));
  exports.Set("RESOLVE_NO_SYMLINKS", Napi::Number::New(env, static_cast<double>(RESOLVE_NO_SYMLINKS)));
  exports.Set("RESOLVE_NO_XDEV", Napi::Number::New(env, static_cast<double>(RESOLVE_NO_XDEV)));
}

}  // namespace tcmu
