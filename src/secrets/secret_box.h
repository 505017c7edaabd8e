#pragma once
// Authenticated encryption of secret values. Thread-safe (immutable after load).
#include <string>

#include "common/status.h"

namespace kiln {

class SecretBox {
 public:
  // Reads the 32-byte master key at `path`, creating it (mode 0600) if missing.
  // kFailedPrecondition if the file exists with another size or is readable by
  // group or others.
  static Result<SecretBox> LoadOrCreate(const std::string& path);
  static SecretBox FromKey(const std::string& key32);

  // nonce(12) || tag(16) || ciphertext. `aad` binds the value to its identity.
  Result<std::string> Seal(const std::string& plaintext, const std::string& aad) const;
  // kInvalidArgument if the value was tampered with, or `aad` differs.
  Result<std::string> Open(const std::string& sealed, const std::string& aad) const;

 private:
  std::string key_;
};

}  // namespace kiln
