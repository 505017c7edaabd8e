#include "common/ids.h"

#include <mutex>
#include <random>

namespace kiln {
namespace {
std::string RandomHex(size_t bytes) {
  static std::mutex mu;
  static std::random_device rd;
  static std::mt19937_64 gen(((uint64_t)rd() << 32) ^ rd());
  static const char* kHex = "0123456789abcdef";
  std::string out;
  std::lock_guard<std::mutex> l(mu);
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t v = gen();
    for (size_t j = 0; j < 8 && i + j < bytes; ++j) {
      out.push_back(kHex[(v >> (j * 8)) & 0xf]);
      out.push_back(kHex[(v >> (j * 8 + 4)) & 0xf]);
    }
  }
  return out;
}
}  // namespace

std::string NewId(const std::string& prefix) {
  return prefix + "-" + RandomHex(8);
}
std::string NewToken() {
  std::random_device rd;  // kernel entropy for secrets
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 8; ++i) {
    uint32_t v = rd();
    for (int j = 0; j < 4; ++j) {
      out.push_back(kHex[(v >> (j * 8)) & 0xf]);
      out.push_back(kHex[(v >> (j * 8 + 4)) & 0xf]);
    }
  }
  return out;
}
}  // namespace kiln
