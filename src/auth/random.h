#pragma once
// Random strings for credentials, from OpenSSL's CSPRNG.
#include <string>

namespace kiln {
// `n` characters drawn uniformly from `alphabet` (rejection sampling).
std::string RandomChars(const std::string& alphabet, size_t n);
}  // namespace kiln
