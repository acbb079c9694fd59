// A tiny self-made test runner for the native tests (no downloads, no framework).
// Usage in any native/test/*.cc:
//   #include "test.h"
//   HS_TEST(pools_no_leak) { HS_CHECK(a == b); HS_CHECK_NEAR(x, y, 1e-5); }
// Tests register themselves at static-init time; test_main.cc runs them all (or those whose name
// contains argv[1]) and ends by printing exactly "N passed, M failed".
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace hs::test {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};

std::vector<TestCase>& Registry();
// Failures of the currently running test (reset per test by the runner).
int& CurrentFailures();

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { Registry().push_back({name, std::move(fn)}); }
};

inline void Fail(const char* file, int line, const std::string& what) {
  ++CurrentFailures();
  std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
}

}  // namespace hs::test

#define HS_TEST_CAT2(a, b) a##b
#define HS_TEST_CAT(a, b) HS_TEST_CAT2(a, b)
#define HS_TEST(name)                                                                   \
  static void hs_test_##name();                                                         \
  static ::hs::test::Registrar HS_TEST_CAT(hs_registrar_, name)(#name, hs_test_##name); \
  static void hs_test_##name()

#define HS_CHECK(cond)                                                 \
  do {                                                                 \
    if (!(cond)) ::hs::test::Fail(__FILE__, __LINE__, "check " #cond); \
  } while (0)

#define HS_CHECK_EQ(a, b)                                             \
  do {                                                                \
    auto hs_a_ = (a);                                                 \
    auto hs_b_ = (b);                                                 \
    if (!(hs_a_ == hs_b_)) {                                          \
      std::ostringstream hs_os_;                                      \
      hs_os_ << #a " == " #b " (" << hs_a_ << " vs " << hs_b_ << ")"; \
      ::hs::test::Fail(__FILE__, __LINE__, hs_os_.str());             \
    }                                                                 \
  } while (0)

// |a - b| <= tol * max(1, |b|): relative for large values, absolute near zero.
#define HS_CHECK_NEAR(a, b, tol)                                                          \
  do {                                                                                    \
    double hs_a_ = (a), hs_b_ = (b);                                                      \
    if (!(std::fabs(hs_a_ - hs_b_) <= (tol)*std::fmax(1.0, std::fabs(hs_b_)))) {          \
      std::ostringstream hs_os_;                                                          \
      hs_os_ << #a " ~ " #b " (" << hs_a_ << " vs " << hs_b_ << ", tol " << (tol) << ")"; \
      ::hs::test::Fail(__FILE__, __LINE__, hs_os_.str());                                 \
    }                                                                                     \
  } while (0)

// Expects `stmt` to throw an exception of type `type`.
#define HS_CHECK_THROWS(stmt, type)                                                       \
  do {                                                                                    \
    bool hs_thrown_ = false;                                                              \
    try {                                                                                 \
      stmt;                                                                               \
    } catch (const type&) {                                                               \
      hs_thrown_ = true;                                                                  \
    } catch (...) {                                                                       \
    }                                                                                     \
    if (!hs_thrown_) ::hs::test::Fail(__FILE__, __LINE__, #stmt " did not throw " #type); \
  } while (0)
