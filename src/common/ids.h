#pragma once
#include <string>

namespace kiln {
// A random id with a prefix: "j-3f9c2a7b1e0d4c55". Uses /dev/urandom-seeded state; thread-safe.
std::string NewId(const std::string& prefix);
// 32 random bytes, hex-encoded: bearer tokens.
std::string NewToken();
// Lower-case hex of `n` bytes.
std::string HexEncode(const unsigned char* data, size_t n);
}  // namespace kiln
