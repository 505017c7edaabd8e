#include "common/ids.h"

#include <mutex>
#include <random>

namespace kiln {
namespace {
std::string RandomHex(size_t bytes) {
  static std::mutex mu;
  static std::random_device rd;
  static std::mt19937_64 gen(((uint64_t)rd() << 32) ^ rd());
  std::string raw(bytes, '\0');
  std::lock_guard<std::mutex> l(mu);
  for (size_t i = 0; i < bytes; ++i) raw[i] = static_cast<char>(gen() & 0xff);
  return HexEncode(reinterpret_cast<const unsigned char*>(raw.data()), bytes);
}
}  // namespace

std::string NewId(const std::string& prefix) {
  return prefix + "-" + RandomHex(8);
}
std::string NewToken() {
  std::random_device rd;  // kernel entropy for secrets
  unsigned char raw[32];
  for (size_t i = 0; i < sizeof(raw); i += 4) {
    uint32_t v = rd();
    for (size_t j = 0; j < 4; ++j) raw[i + j] = static_cast<unsigned char>(v >> (j * 8));
  }
  return HexEncode(raw, sizeof(raw));
}

std::string HexEncode(const unsigned char* data, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}
}  // namespace kiln
