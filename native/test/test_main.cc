// Runs every registered test (optionally only those whose name contains argv[1]) and prints
// "N passed, M failed" as its last line; exits non-zero when anything failed.
#include <chrono>
#include <cstring>
#include <exception>

#include "test.h"

namespace hs::test {
std::vector<TestCase>& Registry() {
  static std::vector<TestCase> r;
  return r;
}
int& CurrentFailures() {
  static int n = 0;
  return n;
}
}  // namespace hs::test

// A test file written before this runner existed may expose `int RunGemmTests()` (failure count)
// instead of HS_TEST cases; it is run as one more test when linked in.
extern int RunGemmTests() __attribute__((weak));

int main(int argc, char** argv) {
  using namespace hs::test;
  const char* filter = argc > 1 ? argv[1] : nullptr;
  if (RunGemmTests) Registry().push_back({"gemm_suite", [] { CurrentFailures() += RunGemmTests(); }});
  int passed = 0, failed = 0;
  for (const auto& t : Registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    CurrentFailures() = 0;
    auto t0 = std::chrono::steady_clock::now();
    try {
      t.fn();
    } catch (const std::exception& e) {
      Fail(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    } catch (...) {
      Fail(__FILE__, __LINE__, "uncaught non-std exception");
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    bool ok = CurrentFailures() == 0;
    (ok ? passed : failed)++;
    std::fprintf(stderr, "%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", t.name, ms);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
