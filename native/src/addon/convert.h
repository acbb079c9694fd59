// JS ⇄ C++ conversions for the addon, with argument checks that throw Napi::TypeError (wrong
// type) or Napi::RangeError (right type, bad value) naming the offending field.
#pragma once
#include <napi.h>

#include <string>

#include "addon/backend_factory.h"
#include "addon/guard.h"
#include "core/cache_pools.h"
#include "core/engine.h"
#include "core/weights.h"

namespace hs::addon {

struct CreateOptions {
  ModelConfig config;
  WeightSource weights;
  PoolConfig pools;
  DeviceOptions device;
  double act_fraction = 0;
  bool prefix_caching = false;
  int mini_batch_tokens = 0;  // Engine::SetMiniBatchTokens
};

CreateOptions ParseCreateOptions(Napi::Env env, Napi::Value v);
SequenceOptions ParseSequenceOptions(Napi::Env env, Napi::Value v);
// A finite number (TypeError otherwise).
double ToNumber(Napi::Env env, Napi::Value v, const std::string& what);
// An integer in [lo, hi] (TypeError / RangeError otherwise).
int64_t ToInteger(Napi::Env env, Napi::Value v, const std::string& what, int64_t lo, int64_t hi);

Napi::Object CountersToJs(Napi::Env env, const StepCounters& c);

}  // namespace hs::addon
