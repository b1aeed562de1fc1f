#include "netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "addon_data.h"
#include "errno_error.h"
#include "fd_watch.h"

namespace tcmu {

namespace {

// Large enough that a burst of device events (many LUNs created at once)
// does not overflow; the kernel caps SO_RCVBUF without CAP_NET_ADMIN.
constexpr int kReceiveBufferBytes = 16 * 1024 * 1024;
// Generic netlink messages from TCMU are small; 64 KiB covers any datagram.
constexpr size_t kMaxDatagram = 64 * 1024;

bool ReadFdArg(const Napi::CallbackInfo& info, int* fd) {
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int32Value() < 0) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "fd must be a non-negative number");
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  return true;
}

class NetlinkWatcher : public FdWatcher {
 public:
  NetlinkWatcher(Napi::Env env, int fd, Napi::Function onDatagram, Napi::Function onError)
      : FdWatcher(env, fd, onDatagram, onError, "tcmu:netlink"), buffer_(kMaxDatagram) {}

 protected:
  void OnReadable() override {
    while (!stopped()) {
      ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        // ENOBUFS: messages were lost (should not happen with
        // NETLINK_NO_ENOBUFS); report and keep receiving.
        EmitErrno(errno, "recv");
        if (errno != ENOBUFS) return;
        continue;
      }
      if (static_cast<size_t>(n) > buffer_.size()) {
        EmitErrno(EMSGSIZE, "recv (datagram truncated)");
        continue;
      }
      // A copy: the datagram is small and JS may keep it.
      EmitEvent({Napi::Buffer<uint8_t>::Copy(env_, buffer_.data(), static_cast<size_t>(n))});
    }
  }

  void OnStop() override {
    AddonData* data = GetAddonData(env_);
    auto it = data->netlinkWatchers.find(fd_);
    if (it != data->netlinkWatchers.end() && it->second == this) data->netlinkWatchers.erase(it);
  }

 private:
  std::vector<uint8_t> buffer_;
};

}  // namespace

Napi::Value NetlinkOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_GENERIC);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return Napi::Value();
  }
  sockaddr_nl local = {};
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel assigns our port id
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "bind");
    return Napi::Value();
  }
  int bytes = kReceiveBufferBytes;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    // Without CAP_NET_ADMIN: take what rmem_max allows.
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
  int on = 1;
  if (setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, err, "setsockopt(NETLINK_NO_ENOBUFS)");
    return Napi::Value();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value NetlinkPortId(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFdArg(info, &fd)) return Napi::Value();
  sockaddr_nl local = {};
  socklen_t len = sizeof local;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    ThrowErrno(info.Env(), errno, "getsockname");
    return Napi::Value();
  }
  return Napi::Number::New(info.Env(), local.nl_pid);
}

Napi::Value NetlinkJoin(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFdArg(info, &fd)) return Napi::Value();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "groupId must be a number");
    return Napi::Value();
  }
  int group = info[1].As<Napi::Number>().Int32Value();
  if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
    ThrowErrno(info.Env(), errno, "setsockopt(NETLINK_ADD_MEMBERSHIP)");
  }
  return info.Env().Undefined();
}

Napi::Value NetlinkSend(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFdArg(info, &fd)) return Napi::Value();
  if (info.Length() < 2 || !info[1].IsTypedArray()) {
    ThrowArgError(info.Env(), "ERR_INVALID_ARG_TYPE", "message must be a Buffer");
    return Napi::Value();
  }
  Napi::Uint8Array message = info[1].As<Napi::Uint8Array>();
  sockaddr_nl kernel = {};
  kernel.nl_family = AF_NETLINK;  // nl_pid 0 = the kernel
  ssize_t n;
  do {
    n = sendto(fd, message.Data(), message.ByteLength(), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowErrno(info.Env(), errno, "sendto");
  } else if (static_cast<size_t>(n) != message.ByteLength()) {
    ThrowErrno(info.Env(), EMSGSIZE, "sendto (short send)");
  }
  return info.Env().Undefined();
}

Napi::Value NetlinkWatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ReadFdArg(info, &fd)) return Napi::Value();
  if (info.Length() < 3 || !info[1].IsFunction() || !info[2].IsFunction()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "netlinkWatch(fd, onDatagram, onError) needs two functions");
    return Napi::Value();
  }
  AddonData* data = GetAddonData(env);
  if (data->netlinkWatchers.count(fd) != 0) {
    ThrowErrno(env, EBUSY, "netlinkWatch (already watching)");
    return Napi::Value();
  }
  auto* watcher = new NetlinkWatcher(env, fd, info[1].As<Napi::Function>(), info[2].As<Napi::Function>());
  data->netlinkWatchers[fd] = watcher;
  int rc = watcher->Start();
  if (rc != 0) {
    data->netlinkWatchers.erase(fd);
    ThrowErrno(env, -rc, "uv_poll_start");
  }
  return env.Undefined();
}

Napi::Value NetlinkClose(const Napi::CallbackInfo& info) {
  int fd;
  if (!ReadFdArg(info, &fd)) return Napi::Value();
  AddonData* data = GetAddonData(info.Env());
  auto it = data->netlinkWatchers.find(fd);
  if (it != data->netlinkWatchers.end()) it->second->Stop();  // erases itself
  if (close(fd) != 0) ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}

}  // namespace tcmu
