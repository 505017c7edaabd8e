#include "secrets/secret_box.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "common/fsutil.h"

namespace kiln {
namespace {
constexpr size_t kKey = 32, kNonce = 12, kTag = 16;
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;
}  // namespace

SecretBox SecretBox::FromKey(const std::string& key32) {
  SecretBox b;
  b.key_ = key32;
  return b;
}

Result<SecretBox> SecretBox::LoadOrCreate(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    std::string key(kKey, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), kKey) != 1)
      return Internal("no randomness for the master key");
    KILN_RETURN_IF_ERROR(WriteFileAtomic(path, key, 0600));
    return FromKey(key);
  }
  if (st.st_mode & 077)
    return Status(Code::kFailedPrecondition, "master key " + path + " is readable by group or others: chmod 600 it");
  auto key = ReadFile(path);
  if (!key.ok()) return key.status();
  if (key->size() != kKey)
    return Status(Code::kFailedPrecondition, "master key " + path + " must hold exactly 32 bytes");
  return FromKey(*key);
}

Result<std::string> SecretBox::Seal(const std::string& plaintext, const std::string& aad) const {
  std::string out(kNonce + kTag + plaintext.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  auto* tag = nonce + kNonce;
  auto* ct = tag + kTag;
  if (RAND_bytes(nonce, kNonce) != 1) return Internal("no randomness for a nonce");
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, tag) != 1)
    return Internal("encryption failed");
  return out;
}

Result<std::string> SecretBox::Open(const std::string& sealed, const std::string& aad) const {
  if (sealed.size() < kNonce + kTag) return InvalidArgument("secret", "sealed value too short");
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  const auto* tag = nonce + kNonce;
  const auto* ct = tag + kTag;
  const int ct_len = static_cast<int>(sealed.size() - kNonce - kTag);
  std::string out(static_cast<size_t>(ct_len), '\0');
  Ctx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  const auto* key = reinterpret_cast<const unsigned char*>(key_.data());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key, nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, ct, ct_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, const_cast<unsigned char*>(tag)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) != 1)
    return InvalidArgument("secret", "sealed value failed authentication (tampered, or sealed under another key)");
  return out;
}

}  // namespace kiln
