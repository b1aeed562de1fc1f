// SO_PEERCRED: Node has no API for the credentials of a unix socket's peer.
// Mechanism only; the access rule lives in src/daemon/control.ts.
#include "peer_cred.h"

#include <errno.h>
#include <sys/socket.h>

#include "errno_error.h"

namespace tcmu {

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowArgError(env, "ERR_INVALID_ARG_TYPE", "fd must be a number");
    return Napi::Value();
  }
  double fd = info[0].As<Napi::Number>().DoubleValue();
  if (!(fd >= 0) || fd > 2147483647.0 || fd != static_cast<double>(static_cast<int>(fd))) {
    ThrowArgError(env, "ERR_OUT_OF_RANGE", "fd must be a non-negative integer");
    return Napi::Value();
  }
  struct ucred cred = {};
  socklen_t len = sizeof(cred);
  if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt");
    return Napi::Value();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace tcmu
