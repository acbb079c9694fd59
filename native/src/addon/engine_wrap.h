// The JS engine object (NativeEngine in native/ts/addon-types.ts): an ObjectWrap over hs::Engine.
// Synchronous methods only touch bookkeeping; step and close are AsyncWorkers (workers.h).
#pragma once
#include <napi.h>

#include <memory>

#include "core/engine.h"

namespace hs::addon {

struct AddonData {
  Napi::FunctionReference engine_ctor;
};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static void Init(Napi::Env env, AddonData* data);
  // Wraps an engine built off the main thread (takes ownership).
  static Napi::Object New(Napi::Env env, std::unique_ptr<Engine> engine);
  explicit EngineWrap(const Napi::CallbackInfo& info);

  Engine& engine();  // throws Napi::Error when closed
  std::unique_ptr<Engine> TakeEngine() { return std::move(engine_); }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value AddSequence(const Napi::CallbackInfo& info);
  Napi::Value RemoveSequence(const Napi::CallbackInfo& info);
  Napi::Value Sequence(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value SetActFraction(const Napi::CallbackInfo& info);
  Napi::Value ActFraction(const Napi::CallbackInfo& info);
  Napi::Value Pools(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::unique_ptr<Engine> engine_;
};

}  // namespace hs::addon
