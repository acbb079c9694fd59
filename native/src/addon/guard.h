// JS errors with the engine's typed codes (core/errors.h): every error the addon raises carries
// `code` (HS_INVALID_ARGUMENT for bad arguments, HS_OUT_OF_BLOCKS, …). Guard runs `fn` and turns
// engine exceptions into the matching JS error: RangeErrorEx → RangeError, any other
// std::exception → Error, each with CodeOf(e). Napi errors pass through.
#pragma once
#include <napi.h>

#include <string>

#include "core/errors.h"

namespace hs::addon {

template <class E>
E WithCode(E err, ErrorCode code) {
  err.Set("code", Napi::String::New(err.Env(), ErrorCodeName(code)));
  return err;
}

// Argument errors: a wrong type (TypeError) or a bad value (RangeError), both HS_INVALID_ARGUMENT.
inline Napi::TypeError ArgTypeError(Napi::Env env, const std::string& msg) {
  return WithCode(Napi::TypeError::New(env, msg), ErrorCode::InvalidArgument);
}
inline Napi::RangeError ArgRangeError(Napi::Env env, const std::string& msg) {
  return WithCode(Napi::RangeError::New(env, msg), ErrorCode::InvalidArgument);
}

// The JS error for an engine exception (RangeError for RangeErrorEx).
inline Napi::Error ToJsError(Napi::Env env, const std::string& msg, ErrorCode code, bool range) {
  if (range) return WithCode(Napi::RangeError::New(env, msg), code);
  return WithCode(Napi::Error::New(env, msg), code);
}

template <class Fn>
auto Guard(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw ToJsError(env, e.what(), CodeOf(e), dynamic_cast<const RangeErrorEx*>(&e) != nullptr);
  }
}

}  // namespace hs::addon
