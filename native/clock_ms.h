// A clock_gettime clock in milliseconds, as a double for JS. CLOCK_MONOTONIC
// readings are compared with performance.now() after the offset in
// src/tcmu/completion-state.ts; coarse readings only with each other.
#pragma once
#include <time.h>

namespace tcmu {

inline double ClockMs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

}  // namespace tcmu
