#pragma once
// Per-instance bearer tokens: HMAC-SHA256(secret, instance_id), hex. Nothing is
// stored; kilnd recomputes and compares in constant time.
#include <string>

namespace kiln {
class TokenIssuer {
 public:
  explicit TokenIssuer(std::string secret) : secret_(std::move(secret)) {}
  std::string For(const std::string& instance_id) const;
  bool Verify(const std::string& instance_id, const std::string& token) const;

 private:
  std::string secret_;
};
}  // namespace kiln
