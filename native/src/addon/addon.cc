// Registers the addon's exports. Placeholder: replaced by the engine bindings.
#include <napi.h>
#include "core/version.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("version", Napi::String::New(env, hs::kVersion));
  return exports;
}

NODE_API_MODULE(hybridserve, Init)
