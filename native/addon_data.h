// Per-env state (the main thread and every worker get their own).
#pragma once
#include <napi.h>

#include <unordered_map>

namespace tcmu {

class FdWatcher;

struct AddonData {
  Napi::FunctionReference mappingConstructor;
  Napi::FunctionReference ioRingConstructor;
  // netlink fd -> its watcher, so netlinkClose can stop it.
  std::unordered_map<int, FdWatcher*> netlinkWatchers;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace tcmu
