#include "api/tokens.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "common/ids.h"

namespace kiln {

std::string TokenIssuer::For(const std::string& instance_id) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(instance_id.data()), instance_id.size(), mac, &len);
  return instance_id + "." + HexEncode(mac, len);
}

bool TokenIssuer::Verify(const std::string& instance_id, const std::string& token) const {
  std::string want = For(instance_id);
  return want.size() == token.size() && CRYPTO_memcmp(want.data(), token.data(), want.size()) == 0;
}

}  // namespace kiln
