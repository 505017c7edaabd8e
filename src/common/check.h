#pragma once
// KILN_CHECK(cond, msg): an invariant that cannot fail unless Kiln has a bug. When it
// does, the process says where and why on stderr and aborts (in every build type),
// rather than go on with corrupt state. Expected failures are Status values, never
// CHECKs.
#include <cstdio>
#include <cstdlib>

#define KILN_CHECK(cond, msg)                                                                       \
  do {                                                                                              \
    if (!(cond)) [[unlikely]] {                                                                     \
      std::fprintf(stderr, "%s:%d: KILN_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond, (msg)); \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (0)
