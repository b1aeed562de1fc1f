#include "notify_watcher.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

namespace tcmu {

void NotifyWatcher::OnReadable() {
  if (kind_ == NotifyKind::Uio) {
    ReadUioCounter();
  } else {
    DrainStream();
  }
}

// uio: a readable fd holds a 4-byte interrupt counter; reading it re-arms
// the fd. Events coalesce, so the counter value is informational only.
void NotifyWatcher::ReadUioCounter() {
  uint32_t counter = 0;
  ssize_t n;
  do {
    n = read(fd_, &counter, sizeof counter);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // spurious wakeup
    // EIO once the device is removed; it would repeat on every poll.
    int err = errno;
    EmitErrno(err, "read");
    Stop();
    return;
  }
  if (n != sizeof counter) {
    EmitErrno(EIO, "read");
    Stop();
    return;
  }
  EmitEvent({Napi::Number::New(env_, counter)});
}

// socket/pipe (the simulator): several kicks may be pending; take them all
// and report how many bytes were consumed (4 per kick).
void NotifyWatcher::DrainStream() {
  char chunk[4096];
  double drained = 0;
  for (;;) {
    ssize_t n = read(fd_, chunk, sizeof chunk);
    if (n > 0) {
      drained += static_cast<double>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // n == 0: the peer closed its end; n < 0: a real error. Both end the stream.
    int err = n == 0 ? EPIPE : errno;
    if (drained > 0) EmitEvent({Napi::Number::New(env_, drained)});
    EmitErrno(err, "read");
    Stop();
    return;
  }
  if (drained > 0) EmitEvent({Napi::Number::New(env_, drained)});
}

}  // namespace tcmu
