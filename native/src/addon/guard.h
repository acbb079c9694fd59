// Runs `fn` and turns engine exceptions into the matching JS error: RangeErrorEx → RangeError,
// any other std::exception → Error with its message. Napi errors pass through.
#pragma once
#include <napi.h>

#include "core/errors.h"

namespace hs::addon {

template <class Fn>
auto Guard(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const RangeErrorEx& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace hs::addon
