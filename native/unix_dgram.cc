// One datagram to a unix socket: the mechanism behind sd_notify-style
// messages (src/daemon/notify.ts holds the protocol). Non-blocking: a
// receiver that does not read makes this fail with EAGAIN instead of
// stalling the event loop.
#include "unix_dgram.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "errno_error.h"

namespace tcmu {

Napi::Value UnixDatagramSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsTypedArray()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "unixDatagramSend(path: string, data: Uint8Array)");
    return Napi::Value();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::TypedArray array = info[1].As<Napi::TypedArray>();
  if (array.TypedArrayType() != napi_uint8_array) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "data must be a Uint8Array");
    return Napi::Value();
  }
  Napi::Uint8Array data = array.As<Napi::Uint8Array>();

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  // Abstract sockets are written "@name"; the kernel wants a leading NUL
  // and counts the name by the address length, not by a terminator.
  bool abstract = !path.empty() && path[0] == '@';
  if (path.empty() || path.size() >= sizeof(addr.sun_path) || (!abstract && path[0] != '/') ||
      path.find('\0') != std::string::npos) {
    ThrowArgError(env, "ERR_INVALID_ARG_VALUE", "path must be an absolute socket path or @abstract name shorter than 108 bytes");
    return Napi::Value();
  }
  memcpy(addr.sun_path, path.data(), path.size());
  if (abstract) addr.sun_path[0] = '\0';
  socklen_t addrLen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket");
    return Napi::Value();
  }
  ssize_t sent = sendto(fd, data.Data(), data.ByteLength(), MSG_NOSIGNAL, reinterpret_cast<struct sockaddr*>(&addr), addrLen);
  int err = errno;
  close(fd);
  if (sent < 0) {
    ThrowErrno(env, err, "sendto");
    return Napi::Value();
  }
  if (static_cast<size_t>(sent) != data.ByteLength()) {
    ThrowErrno(env, EMSGSIZE, "sendto");
    return Napi::Value();
  }
  return env.Undefined();
}

}  // namespace tcmu
