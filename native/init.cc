// Module entry: one AddonData per env (main thread and each worker).
#include <napi.h>

#include "addon_data.h"
#ifdef TCMU_HAVE_CLUSTER_CODEC
#include "cluster_codec.h"
#endif
#include "copy_bytes.h"
#include "fallocate.h"
#include "io_ring.h"
#include "mapping.h"
#include "netlink.h"
#include "open.h"
#include "open_beneath.h"
#include "peer_cred.h"
#include "ring_completer.h"
#include "unix_dgram.h"
#include "xts.h"

namespace tcmu {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->mappingConstructor = Napi::Persistent(Mapping::DefineClass(env));
  data->ioRingConstructor = Napi::Persistent(IoRing::DefineClass(env));
  env.SetInstanceData<AddonData>(data);

  exports.Set("openUio", Napi::Function::New<OpenUio>(env, "openUio"));
  exports.Set("openShared", Napi::Function::New<OpenShared>(env, "openShared"));
  exports.Set("ringCompleteGood", Napi::Function::New<RingCompleteGood>(env, "ringCompleteGood"));
  exports.Set("ringCompleteGoodOnPool", Napi::Function::New<RingCompleteGoodOnPool>(env, "ringCompleteGoodOnPool"));
  exports.Set("socketPair", Napi::Function::New<SocketPair>(env, "socketPair"));
  exports.Set("fallocate", Napi::Function::New<Fallocate>(env, "fallocate"));
  ExportFallocateConstants(env, exports);
  exports.Set("openBeneath", Napi::Function::New<OpenBeneath>(env, "openBeneath"));
  ExportOpenBeneathConstants(env, exports);
  exports.Set("ioRingCreate", Napi::Function::New<IoRingCreate>(env, "ioRingCreate"));
  exports.Set("copyBytes", Napi::Function::New<CopyBytes>(env, "copyBytes"));
  exports.Set("monotonicCoarseMs", Napi::Function::New<MonotonicCoarseMs>(env, "monotonicCoarseMs"));
  exports.Set("netlinkOpen", Napi::Function::New<NetlinkOpen>(env, "netlinkOpen"));
  exports.Set("netlinkPortId", Napi::Function::New<NetlinkPortId>(env, "netlinkPortId"));
  exports.Set("netlinkJoin", Napi::Function::New<NetlinkJoin>(env, "netlinkJoin"));
  exports.Set("netlinkSend", Napi::Function::New<NetlinkSend>(env, "netlinkSend"));
  exports.Set("netlinkWatch", Napi::Function::New<NetlinkWatch>(env, "netlinkWatch"));
  exports.Set("netlinkClose", Napi::Function::New<NetlinkClose>(env, "netlinkClose"));
  exports.Set("peerCred", Napi::Function::New<PeerCred>(env, "peerCred"));
  exports.Set("unixDatagramSend", Napi::Function::New<UnixDatagramSend>(env, "unixDatagramSend"));
  exports.Set("xtsCreate", Napi::Function::New<XtsCreate>(env, "xtsCreate"));
  exports.Set("xtsCrypt", Napi::Function::New<XtsCrypt>(env, "xtsCrypt"));
  exports.Set("xtsDestroy", Napi::Function::New<XtsDestroy>(env, "xtsDestroy"));
#ifdef TCMU_HAVE_CLUSTER_CODEC
  exports.Set("inflateCluster", Napi::Function::New<InflateCluster>(env, "inflateCluster"));
  exports.Set("deflateCluster", Napi::Function::New<DeflateCluster>(env, "deflateCluster"));
#endif
  return exports;
}

}  // namespace tcmu

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tcmu::Init(env, exports); }

NODE_API_MODULE(tcmu_native, InitModule)
