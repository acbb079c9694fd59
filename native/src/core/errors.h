// Typed engine errors. Every error the addon raises carries one of these codes as `err.code`
// (mirrored in native/ts/addon-types.ts as NativeErrorCode), so TypeScript tells failures apart by
// code, never by message text. EngineError subclasses map onto JS errors: RangeErrorEx → RangeError
// and BusyError → Error, both with their code; any other std::exception → Error with HS_INTERNAL
// (std::invalid_argument: HS_INVALID_ARGUMENT).
#pragma once
#include <stdexcept>
#include <string>

namespace hs {

enum class ErrorCode { InvalidArgument, OutOfBlocks, UnknownSequence, Busy, Closed, PeerLost, Internal };

inline const char* ErrorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument:
      return "HS_INVALID_ARGUMENT";
    case ErrorCode::OutOfBlocks:
      return "HS_OUT_OF_BLOCKS";
    case ErrorCode::UnknownSequence:
      return "HS_UNKNOWN_SEQUENCE";
    case ErrorCode::Busy:
      return "HS_BUSY";
    case ErrorCode::Closed:
      return "HS_CLOSED";
    case ErrorCode::PeerLost:
      return "HS_PEER_LOST";
    case ErrorCode::Internal:
      return "HS_INTERNAL";
  }
  return "HS_INTERNAL";
}

struct EngineError : std::runtime_error {
  EngineError(const std::string& msg, ErrorCode c) : std::runtime_error(msg), code(c) {}
  ErrorCode code;
};

// A value out of range: bad token id, unknown sequence, out of cache blocks.
struct RangeErrorEx : EngineError {
  explicit RangeErrorEx(const std::string& msg, ErrorCode c = ErrorCode::InvalidArgument) : EngineError(msg, c) {}
};

struct BusyError : EngineError {
  BusyError() : EngineError("engine busy", ErrorCode::Busy) {}
};

// A rank of a pipeline over processes is gone (its process exited, its pod or node went away) or
// the transport to it was aborted for that reason. Fatal for the engine: the group must restart.
struct PeerLostError : EngineError {
  explicit PeerLostError(const std::string& msg) : EngineError(msg, ErrorCode::PeerLost) {}
};

// The code of any exception the engine or a backend may throw.
inline ErrorCode CodeOf(const std::exception& e) {
  if (auto* ee = dynamic_cast<const EngineError*>(&e)) return ee->code;
  if (dynamic_cast<const std::invalid_argument*>(&e)) return ErrorCode::InvalidArgument;
  return ErrorCode::Internal;
}

}  // namespace hs
