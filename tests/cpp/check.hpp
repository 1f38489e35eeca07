// The C++ tests' checks: CHECK(condition) prints a failed condition with its line and counts it;
// main returns checks_exit_status() (0 when every check passed, 1 otherwise).
#pragma once

#include <cstdio>

namespace medrefine_test {

inline int failures = 0;

inline void check(bool ok, const char* what, int line) {
  if (ok) return;
  std::printf("FAILED line %d: %s\n", line, what);
  ++failures;
}

inline int checks_exit_status() {
  std::printf("%s: %d failed check(s)\n", failures == 0 ? "OK" : "FAILED", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace medrefine_test

#define CHECK(condition) ::medrefine_test::check((condition), #condition, __LINE__)
