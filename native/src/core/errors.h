// Exception types the addon maps onto JavaScript errors: RangeErrorEx (a value out of range: bad
// token id, unknown sequence, out of cache blocks) → RangeError; BusyError and every other
// std::exception (e.g. std::invalid_argument from weight loading) → Error with its message.
#pragma once
#include <stdexcept>

namespace hs {

struct RangeErrorEx : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct BusyError : std::runtime_error {
  BusyError() : std::runtime_error("engine busy") {}
};

}  // namespace hs
