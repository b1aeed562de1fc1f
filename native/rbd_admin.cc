// The rbd addon's non-data-path calls: snapshots, the exclusive lock's
// owners, the client's own address and allocation extents. Mechanism only:
// each blocking librbd call runs on libuv's pool (Work) and answers through
// a node-style callback with an errno Error naming the call; what to do with
// the answers (which lock to break, how to report extents) is decided in TS
// (handlers/rbd).
#include <time.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "rbd_handles.h"

namespace tcmu {

namespace {

// Most extents one allocationExtents call returns: a caller asking about a
// huge range gets the first ones and asks again from where they end (no
// allocation sized by what the cluster says).
constexpr size_t kMaxExtents = 4096;
// Snapshots listed at most (librbd's own limit per image is far lower).
constexpr int kMaxSnaps = 4096;

// Run `call(image)` on the pool; `keep` holds the image handle until done.
void QueueImageCall(const Napi::CallbackInfo& info, Napi::Function cb, std::string what,
                    std::function<int(rbd_image_t)> call, std::function<Napi::Value(Napi::Env)> done = nullptr) {
  ImageHandle* h = info[0].As<Napi::External<ImageHandle>>().Data();
  rbd_image_t image = h->image;
  auto* work = new Work(
      cb,
      [image, what, call](std::string* failed) -> int {
        *failed = what;
        return call(image);
      },
      std::move(done));
  work->Keep(info[0]);
  work->Queue();
}

// instanceAddress(session): this client's messenger address(es), as the
// cluster's blocklist and lock owners name it.
Napi::Value InstanceAddress(const Napi::CallbackInfo& info) {
  auto* s = ArgExternal<SessionHandle>(info, 0, "session");
  if (!s) return Napi::Value();
  if (!s->session) {
    ThrowErrno(info.Env(), EBADF, "rbd session (shut down)");
    return Napi::Value();
  }
  char* addrs = nullptr;
  int rc = rados_getaddrs(s->session->cluster, &addrs);
  if (rc < 0) {
    ThrowErrno(info.Env(), -rc, "rados_getaddrs");
    return Napi::Value();
  }
  Napi::String out = Napi::String::New(info.Env(), addrs ? addrs : "");
  free(addrs);
  return out;
}

// lockOwners(image, cb(err, owners: string[])): the exclusive lock's owner
// addresses ([] when nobody holds it).
Napi::Value LockOwners(const Napi::CallbackInfo& info) {
  Napi::Function cb;
  if (!ArgImage(info) || !ArgFunction(info, 1, &cb)) return Napi::Value();
  auto owners = std::make_shared<std::vector<std::string>>();
  QueueImageCall(
      info, cb, "rbd_lock_get_owners",
      [owners](rbd_image_t image) -> int {
        rbd_lock_mode_t mode;
        char* list[8];
        size_t n = 8;
        int rc = rbd_lock_get_owners(image, &mode, list, &n);
        if (rc == -ENOENT) return 0;
        if (rc < 0) return rc;
        for (size_t k = 0; k < n; k++) owners->emplace_back(list[k]);
        rbd_lock_get_owners_cleanup(list, n);
        return 0;
      },
      [owners](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, owners->size());
        for (size_t k = 0; k < owners->size(); k++) out.Set(static_cast<uint32_t>(k), (*owners)[k]);
        return out;
      });
  return info.Env().Undefined();
}

// lockBreak(image, owner, cb(err)): break the exclusive lock held by
// `owner` (librbd blocklists it first, rbd_blocklist_on_break_lock).
Napi::Value LockBreak(const Napi::CallbackInfo& info) {
  std::string owner;
  Napi::Function cb;
  if (!ArgImage(info) || !ArgString(info, 1, "owner", &owner) || !ArgFunction(info, 2, &cb)) return Napi::Value();
  QueueImageCall(info, cb, "rbd_lock_break", [owner](rbd_image_t image) {
    return rbd_lock_break(image, RBD_LOCK_MODE_EXCLUSIVE, owner.c_str());
  });
  return info.Env().Undefined();
}

// snapCreate / snapRemove / snapRollback (image, name, cb(err))
Napi::Value SnapNamed(const Napi::CallbackInfo& info, const char* what, int (*call)(rbd_image_t, const char*)) {
  std::string name;
  Napi::Function cb;
  if (!ArgImage(info) || !ArgString(info, 1, "name", &name) || !ArgFunction(info, 2, &cb)) return Napi::Value();
  QueueImageCall(info, cb, std::string(what) + "(" + name + ")", [call, name](rbd_image_t image) { return call(image, name.c_str()); });
  return info.Env().Undefined();
}

Napi::Value SnapCreate(const Napi::CallbackInfo& info) { return SnapNamed(info, "rbd_snap_create", rbd_snap_create); }
Napi::Value SnapRemove(const Napi::CallbackInfo& info) { return SnapNamed(info, "rbd_snap_remove", rbd_snap_remove); }
Napi::Value SnapRollback(const Napi::CallbackInfo& info) { return SnapNamed(info, "rbd_snap_rollback", rbd_snap_rollback); }

struct SnapInfo {
  uint64_t id;
  uint64_t size;
  std::string name;
  double timestampMs;
};

// snapList(image, cb(err, [{id, name, size, timestampMs}]))
Napi::Value SnapList(const Napi::CallbackInfo& info) {
  Napi::Function cb;
  if (!ArgImage(info) || !ArgFunction(info, 1, &cb)) return Napi::Value();
  auto snaps = std::make_shared<std::vector<SnapInfo>>();
  QueueImageCall(
      info, cb, "rbd_snap_list",
      [snaps](rbd_image_t image) -> int {
        int max = 16;
        std::vector<rbd_snap_info_t> list;
        int rc;
        for (;;) {
          list.resize(max);
          rc = rbd_snap_list(image, list.data(), &max);
          if (rc != -ERANGE) break;
          if (max > kMaxSnaps) return -E2BIG;
        }
        if (rc < 0) return rc;
        for (int k = 0; k < rc; k++) {
          timespec ts{};
          double ms = rbd_snap_get_timestamp(image, list[k].id, &ts) == 0 ? ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6 : 0;
          snaps->push_back(SnapInfo{list[k].id, list[k].size, list[k].name, ms});
        }
        rbd_snap_list_end(list.data());
        return 0;
      },
      [snaps](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, snaps->size());
        for (size_t k = 0; k < snaps->size(); k++) {
          const SnapInfo& s = (*snaps)[k];
          Napi::Object o = Napi::Object::New(env);
          o.Set("id", static_cast<double>(s.id));
          o.Set("name", s.name);
          o.Set("size", static_cast<double>(s.size));
          o.Set("timestampMs", s.timestampMs);
          out.Set(static_cast<uint32_t>(k), o);
        }
        return out;
      });
  return info.Env().Undefined();
}

struct ExtentList {
  std::vector<double> triples;  // offset, length, allocated (1/0)
  size_t count = 0;
};

int OnDiffExtent(uint64_t offset, size_t length, int exists, void* arg) {
  auto* list = static_cast<ExtentList*>(arg);
  if (list->count == kMaxExtents) return -E2BIG;  // enough: the caller continues from the last end
  list->triples.push_back(static_cast<double>(offset));
  list->triples.push_back(static_cast<double>(length));
  list->triples.push_back(exists ? 1 : 0);
  list->count++;
  return 0;
}

// allocationExtents(image, offset, length, cb(err, Float64Array)): the data
// extents (whole objects, parent included) librbd knows in the range, as
// [offset, length, allocated] triples in order, at most kMaxExtents of them.
// Gaps between extents are unallocated. Cheap when the image has the
// object-map and fast-diff features (no object is read).
Napi::Value AllocationExtents(const Napi::CallbackInfo& info) {
  uint64_t offset, length;
  Napi::Function cb;
  if (!ArgImage(info) || !ArgUint(info, 1, "offset", &offset) || !ArgUint(info, 2, "length", &length) || !ArgFunction(info, 3, &cb)) {
    return Napi::Value();
  }
  auto list = std::make_shared<ExtentList>();
  QueueImageCall(
      info, cb, "rbd_diff_iterate2",
      [list, offset, length](rbd_image_t image) -> int {
        int rc = rbd_diff_iterate2(image, nullptr, offset, length, 1, 1, OnDiffExtent, list.get());
        return rc == -E2BIG && list->count == kMaxExtents ? 0 : rc;
      },
      [list](Napi::Env env) -> Napi::Value {
        Napi::Float64Array out = Napi::Float64Array::New(env, list->triples.size());
        for (size_t k = 0; k < list->triples.size(); k++) out[k] = list->triples[k];
        return out;
      });
  return info.Env().Undefined();
}

}  // namespace

void InitRbdAdmin(Napi::Env env, Napi::Object exports) {
  exports.Set("instanceAddress", Napi::Function::New<InstanceAddress>(env, "instanceAddress"));
  exports.Set("lockOwners", Napi::Function::New<LockOwners>(env, "lockOwners"));
  exports.Set("lockBreak", Napi::Function::New<LockBreak>(env, "lockBreak"));
  exports.Set("snapCreate", Napi::Function::New<SnapCreate>(env, "snapCreate"));
  exports.Set("snapRemove", Napi::Function::New<SnapRemove>(env, "snapRemove"));
  exports.Set("snapRollback", Napi::Function::New<SnapRollback>(env, "snapRollback"));
  exports.Set("snapList", Napi::Function::New<SnapList>(env, "snapList"));
  exports.Set("allocationExtents", Napi::Function::New<AllocationExtents>(env, "allocationExtents"));
}

}  // namespace tcmu
