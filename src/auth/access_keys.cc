#include "auth/access_keys.h"

#include <openssl/rand.h>

namespace kiln {
namespace {

std::string RandomChars(const char* alphabet, size_t alphabet_size, size_t n) {
  std::string out;
  unsigned char buf[64];
  while (out.size() < n) {
    RAND_bytes(buf, sizeof buf);
    for (unsigned char b : buf) {
      // Rejection sampling keeps the distribution uniform.
      if (b >= 256 - 256 % alphabet_size) continue;
      out.push_back(alphabet[b % alphabet_size]);
      if (out.size() == n) break;
    }
  }
  return out;
}

Result<AccessKey> FromRecord(const AccessKeyRecord& r) {
  AccessKey k;
  k.id = r.id;
  k.team = r.team;
  k.role = r.role == "admin" ? KeyRole::kAdmin : KeyRole::kTeam;
  k.created = r.created;
  return k;
}

}  // namespace

const char* ToString(KeyRole r) {
  return r == KeyRole::kAdmin ? "admin" : "team";
}

Result<AccessKey> AccessKeys::Create(const std::string& team, KeyRole role) {
  static const char kUpper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  static const char kSecret[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  AccessKey k;
  k.id = "AKIA" + RandomChars(kUpper, 32, 16);
  k.secret = RandomChars(kSecret, 64, 40);
  k.team = team;
  k.role = role;
  k.created = clock_.NowMs();
  auto sealed = box_.Seal(k.secret, "access-key:" + k.id);
  if (!sealed.ok()) return sealed.status();
  KILN_RETURN_IF_ERROR(store_.PutAccessKey({k.id, team, ToString(role), *sealed, k.created}));
  return k;
}

Result<AccessKey> AccessKeys::Lookup(const std::string& id) const {
  auto r = store_.GetAccessKey(id);
  if (!r.ok()) return r.status();
  auto k = FromRecord(*r);
  auto secret = box_.Open(r->sealed_secret, "access-key:" + id);
  if (!secret.ok()) return Internal("access key " + id + " cannot be opened with this master key");
  k->secret = *secret;
  return k;
}

Result<std::vector<AccessKey>> AccessKeys::List(const std::string& team) const {
  auto rs = store_.ListAccessKeys(team);
  if (!rs.ok()) return rs.status();
  std::vector<AccessKey> out;
  for (const auto& r : *rs) out.push_back(*FromRecord(r));
  return out;
}

Status AccessKeys::Delete(const std::string& id) {
  return store_.DeleteAccessKey(id);
}

std::string CredentialsFile(const AccessKey& key) {
  return "# Written by kilnd: the admin key of this Kiln (team " + key.team +
         "). Use with\n#   AWS_SHARED_CREDENTIALS_FILE=<this file> aws sagemaker ... --endpoint-url <kilnd url>\n"
         "[default]\naws_access_key_id = " +
         key.id + "\naws_secret_access_key = " + key.secret + "\n";
}

}  // namespace kiln
