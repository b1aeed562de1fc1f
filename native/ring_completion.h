// Completing TCMU commands on a thread other than the event loop's: the
// interface between the ring's owner (tcmu_native's RingCompleter, see
// ring_completer.h) and an addon whose library calls back on its own
// threads (tcmu_rbd: librbd's completion callbacks). Plain C types and
// function pointers only, so the two .node files share no C++ ABI. JS hands
// it over as a napi_external carrying kRingCompletionTag.
#pragma once
#include <node_api.h>
#include <stdint.h>

namespace tcmu {

// Bumped on any change to RingCompletion; a user refuses another version.
constexpr uint32_t kRingCompletionAbi = 1;

struct RingCompletion {
  uint32_t abi;
  void* self;
  // Reference counting: a user retains it (on the JS thread) for as long
  // as it may call completeGood, then releases it (on any thread).
  void (*retain)(void* self);
  void (*release)(void* self);
  // Complete the command `cmdId`, held in the engine's slot `slot`, with
  // GOOD status, no sense and no data-in limit: write the response at the
  // ring's tail, publish the tail, kick the kernel. Any thread. 1: done,
  // or handed over to the event loop's batch that holds the ring, which
  // completes it before it lets go: either way nothing else may complete
  // the command. 0: not done (another thread is completing in the ring,
  // the engine asked for completions to come through it, or the ring is
  // not in the state the engine left it in): the caller delivers the
  // completion to the event loop as if this did not exist.
  int (*completeGood)(void* self, uint32_t slot, uint32_t cmdId);
};

constexpr napi_type_tag kRingCompletionTag = {0x74636d752d74732dULL, 0x72696e67636f6d70ULL};

}  // namespace tcmu
