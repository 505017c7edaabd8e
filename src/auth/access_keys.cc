#include "auth/access_keys.h"

#include "auth/random.h"

namespace kiln {
namespace {

Result<AccessKey> FromRecord(const AccessKeyRecord& r) {
  AccessKey k;
  k.id = r.id;
  k.team = r.team;
  auto role = ParseRole(r.role);
  if (!role) return Internal("access key " + r.id + " has an unknown role '" + r.role + "'");
  k.role = *role;
  k.created = r.created;
  return k;
}

}  // namespace

Result<AccessKey> AccessKeys::Create(const std::string& team, Role role) {
  static const char kUpper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  static const char kSecret[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  AccessKey k;
  k.id = "AKIA" + RandomChars(kUpper, 16);
  k.secret = RandomChars(kSecret, 40);
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
  if (!k.ok()) return k.status();
  auto secret = box_.Open(r->sealed_secret, "access-key:" + id);
  if (!secret.ok()) return Internal("access key " + id + " cannot be opened with this master key");
  k->secret = *secret;
  return k;
}

Result<std::vector<AccessKey>> AccessKeys::List(const std::string& team) const {
  auto rs = store_.ListAccessKeys(team);
  if (!rs.ok()) return rs.status();
  std::vector<AccessKey> out;
  for (const auto& r : *rs) {
    auto k = FromRecord(r);
    if (k.ok()) out.push_back(std::move(*k));
  }
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

Principal PrincipalOf(const AccessKey& key) {
  return Principal{key.id, key.id, key.team, key.role, Credential::kAccessKey};
}

}  // namespace kiln
