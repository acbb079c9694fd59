// Registers the addon's exports: createEngine, runRank, probe, devices, gpuCount, version (see
// native/ts/addon-types.ts).
#include <napi.h>

#include "addon/backend_factory.h"
#include "addon/convert.h"
#include "addon/engine_wrap.h"
#include "addon/workers.h"
#include "core/version.h"
#ifdef HS_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace hs::addon {
namespace {

Napi::Value Rejected(Napi::Env env, const Napi::Error& err) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(err.Value());
  return d.Promise();
}

Napi::Value CreateEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    CreateOptions opts = ParseCreateOptions(env, info[0]);
    auto* worker = new CreateEngineWorker(env, std::move(opts));
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  } catch (const Napi::Error& err) {
    return Rejected(env, err);
  }
}

// runRank(options): a rank > 0 of a pipeline over processes (options as createEngine's, with rank,
// worldSize and leaderAddress; the pools come from the leader). Resolves when the leader stops.
Napi::Value RunRank(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    CreateOptions opts = ParseCreateOptions(env, info[0]);
    if (opts.device.world_size < 2 || opts.device.rank < 1)
      throw ArgRangeError(env, "runRank needs options.rank >= 1 of options.worldSize >= 2");
    auto* worker = new RankWorker(env, std::move(opts));
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  } catch (const Napi::Error& err) {
    return Rejected(env, err);
  }
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (!info[0].IsString()) throw ArgTypeError(env, "device must be a string");
    const std::string device = info[0].As<Napi::String>().Utf8Value();
    if (device != "cpu" && device != "cuda")
      throw ArgRangeError(env, "device must be 'cpu' or 'cuda', got '" + device + "'");
    int threads = 0;
    if (info.Length() > 1 && !info[1].IsUndefined()) threads = (int)ToInteger(env, info[1], "threads", 0, 1024);
    auto* worker = new ProbeWorker(env, device, threads);
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  } catch (const Napi::Error& err) {
    return Rejected(env, err);
  }
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto devs = AvailableDevices();
  Napi::Array a = Napi::Array::New(env, devs.size());
  for (size_t i = 0; i < devs.size(); ++i) a.Set((uint32_t)i, devs[i]);
  return a;
}

// gpuCount(): the GPUs this process sees (cudaGetDeviceCount); 0 in a build without CUDA. Cheap
// (no context is created), so synchronous.
Napi::Value GpuCount(const Napi::CallbackInfo& info) {
#ifdef HS_WITH_CUDA
  return Napi::Number::New(info.Env(), hs::cuda::DeviceCount());
#else
  return Napi::Number::New(info.Env(), 0);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);  // deleted by node-addon-api at environment teardown
  EngineWrap::Init(env, data);
  exports.Set("createEngine", Napi::Function::New(env, CreateEngine, "createEngine"));
  exports.Set("probe", Napi::Function::New(env, Probe, "probe"));
  exports.Set("runRank", Napi::Function::New(env, RunRank, "runRank"));
  exports.Set("devices", Napi::Function::New(env, Devices, "devices"));
  exports.Set("gpuCount", Napi::Function::New(env, GpuCount, "gpuCount"));
  exports.Set("version", Napi::String::New(env, hs::kVersion));
  return exports;
}

}  // namespace
}  // namespace hs::addon

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return hs::addon::Init(env, exports); }

NODE_API_MODULE(hybridserve, InitAddon)
