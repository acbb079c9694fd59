#pragma once
namespace hs {
inline constexpr const char* kVersion = "0.1.0";
}
