#include "addon/engine_wrap.h"

#include <vector>

#include "addon/convert.h"
#include "addon/guard.h"
#include "addon/workers.h"

namespace hs::addon {

namespace {
constexpr int64_t kMaxSafe = 9007199254740991LL;

// A rejected promise carrying `err` (step/close report argument errors asynchronously).
Napi::Value Rejected(Napi::Env env, const Napi::Error& err) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(err.Value());
  return d.Promise();
}

Napi::Int32Array ToInt32Array(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw ArgTypeError(env, std::string(what) + " must be an Int32Array");
  return v.As<Napi::Int32Array>();
}
}  // namespace

void EngineWrap::Init(Napi::Env env, AddonData* data) {
  Napi::Function ctor = DefineClass(env, "NativeEngine",
                                    {
                                        InstanceMethod("info", &EngineWrap::Info),
                                        InstanceMethod("addSequence", &EngineWrap::AddSequence),
                                        InstanceMethod("removeSequence", &EngineWrap::RemoveSequence),
                                        InstanceMethod("sequence", &EngineWrap::Sequence),
                                        InstanceMethod("step", &EngineWrap::Step),
                                        InstanceMethod("setActFraction", &EngineWrap::SetActFraction),
                                        InstanceMethod("actFraction", &EngineWrap::ActFraction),
                                        InstanceMethod("pools", &EngineWrap::Pools),
                                        InstanceMethod("counters", &EngineWrap::Counters),
                                        InstanceMethod("close", &EngineWrap::Close),
                                    });
  data->engine_ctor = Napi::Persistent(ctor);
}

Napi::Object EngineWrap::New(Napi::Env env, std::unique_ptr<Engine> engine) {
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object obj = data->engine_ctor.New({Napi::External<Engine>::New(env, engine.get())});
  engine.release();  // now owned by the wrapper
  return obj;
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    throw ArgTypeError(info.Env(), "NativeEngine cannot be constructed directly: use createEngine()");
  engine_.reset(info[0].As<Napi::External<Engine>>().Data());
}

Engine& EngineWrap::engine() {
  if (!engine_) throw ToJsError(Env(), "engine is closed", ErrorCode::Closed, false);
  return *engine_;
}

Napi::Value EngineWrap::Info(const Napi::CallbackInfo& info) {
  Engine& e = engine();
  const BackendInfo bi = e.backend_info();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("device", bi.device);
  o.Set("deviceName", bi.device_name);
  o.Set("weightBytes", (double)e.weights().total_bytes());
  o.Set("elementBytes", (double)dtype_size(e.pools().config().dtype));
  o.Set("maxStepsInFlight", Engine::kMaxSlots);
  return o;
}

Napi::Value EngineWrap::AddSequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine& e = engine();
  Napi::Int32Array tokens = ToInt32Array(env, info[0], "tokens");
  const SequenceOptions opts = ParseSequenceOptions(env, info[1]);
  const int64_t id = Guard(env, [&] { return e.AddSequence(tokens.Data(), (int)tokens.ElementLength(), opts); });
  return Napi::Number::New(env, (double)id);
}

Napi::Value EngineWrap::RemoveSequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine& e = engine();
  const int64_t id = ToInteger(env, info[0], "id", 0, kMaxSafe);
  Guard(env, [&] { e.RemoveSequence(id); });
  return env.Undefined();
}

Napi::Value EngineWrap::Sequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine& e = engine();
  const int64_t id = ToInteger(env, info[0], "id", 0, kMaxSafe);
  const SequenceInfo s = Guard(env, [&] { return e.GetSequence(id); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", (double)s.id);
  o.Set("length", s.length);
  o.Set("cachedTokens", s.cached_tokens);
  o.Set("prefixHitTokens", s.prefix_hit_tokens);
  o.Set("kvBlocks", s.kv_blocks);
  o.Set("actBlocks", s.act_blocks);
  o.Set("gpuKvBlocks", s.gpu_kv_blocks);
  return o;
}

Napi::Value EngineWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    Engine& e = engine();
    Napi::Int32Array ids32 = ToInt32Array(env, info[0], "ids");
    bool want_logits = false;
    int slot = 0;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) throw ArgTypeError(env, "step options must be an object");
      Napi::Value lv = info[1].As<Napi::Object>().Get("logits");
      if (!lv.IsUndefined()) {
        if (!lv.IsBoolean()) throw ArgTypeError(env, "options.logits must be a boolean");
        want_logits = lv.As<Napi::Boolean>().Value();
      }
      Napi::Value sv = info[1].As<Napi::Object>().Get("slot");
      if (!sv.IsUndefined()) slot = (int)ToInteger(env, sv, "options.slot", 0, Engine::kMaxSlots - 1);
    }
    std::vector<int64_t> ids(ids32.ElementLength());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = ids32[i];
    Guard(env, [&] { e.PrepareStep(ids.data(), (int)ids.size(), want_logits, slot); });
    auto* worker = new StepWorker(env, Value(), &e, slot);
    Napi::Promise p = worker->Promise();
    worker->Queue();
    return p;
  } catch (const Napi::Error& err) {
    return Rejected(env, err);
  }
}

Napi::Value EngineWrap::SetActFraction(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Engine& e = engine();
  const double f = ToNumber(env, info[0], "fraction");
  Guard(env, [&] { e.SetActFraction(f); });
  return env.Undefined();
}

Napi::Value EngineWrap::ActFraction(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), engine().act_fraction());
}

Napi::Value EngineWrap::Pools(const Napi::CallbackInfo& info) {
  const CachePools& p = engine().pools();
  const BlockManager& m = engine().blocks();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("blockTokens", p.block_tokens());
  o.Set("kvBlocksTotal", p.total_blocks(CacheKind::KV));
  o.Set("kvBlocksFree", m.available(PoolId::HostKv));
  o.Set("actBlocksTotal", p.total_blocks(CacheKind::ACT));
  o.Set("actBlocksFree", m.available(PoolId::HostAct));
  o.Set("gpuKvBlocksTotal", p.total_device_blocks());
  o.Set("gpuKvBlocksFree", m.available(PoolId::DeviceKv));
  o.Set("kvBlocksCachedIdle", m.idle_cached(PoolId::HostKv));
  o.Set("actBlocksCachedIdle", m.idle_cached(PoolId::HostAct));
  o.Set("gpuKvBlocksCachedIdle", m.idle_cached(PoolId::DeviceKv));
  o.Set("prefixQueryTokens", (double)m.stats().query_tokens);
  o.Set("prefixHitTokens", (double)m.stats().hit_tokens);
  o.Set("prefixEvictions", (double)m.stats().evictions);
  o.Set("kvBlockBytes", (double)p.block_bytes_all_layers(CacheKind::KV));
  o.Set("actBlockBytes", (double)p.block_bytes_all_layers(CacheKind::ACT));
  return o;
}

Napi::Value EngineWrap::Counters(const Napi::CallbackInfo& info) { return CountersToJs(info.Env(), engine().totals()); }

Napi::Value EngineWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_) {  // closing twice is harmless
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  if (engine_->busy()) return Rejected(env, ToJsError(env, "engine busy", ErrorCode::Busy, false));
  auto* worker = new CloseWorker(env, TakeEngine());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace hs::addon
