#include "auth/api_tokens.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include "auth/random.h"
#include "auth/sigv4.h"
#include "common/fsutil.h"
#include "jobs/spec.h"

namespace kiln {
namespace {

constexpr char kPrefix[] = "kiln_";
constexpr size_t kIdChars = 16;
constexpr size_t kSecretChars = 43;
const std::string kIdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const std::string kSecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr int64_t kMaxTtlSeconds = int64_t{10} * 365 * 24 * 3600;

bool AllIn(const std::string& s, const std::string& alphabet) {
  for (char c : s)
    if (alphabet.find(c) == std::string::npos) return false;
  return true;
}

Status Unauthenticated(const std::string& why) {
  return Status(Code::kUnauthenticated, why);
}

}  // namespace

bool IsValidPrincipalName(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '@')) return false;
  return true;
}

Result<IssuedToken> ApiTokens::Create(const TokenRequest& t) {
  if (!IsValidPrincipalName(t.name)) return InvalidArgument("name", "must be 1-63 letters, digits, '-', '_', '.', '@'");
  if (!IsValidJobName(t.team)) return InvalidArgument("team", "must be 1-63 letters, digits or hyphens");
  if (t.ttl_seconds < 0 || t.ttl_seconds > kMaxTtlSeconds)
    return InvalidArgument("ttl_seconds", "must be 0 (never expires) to " + std::to_string(kMaxTtlSeconds));
  IssuedToken out;
  const std::string secret = RandomChars(kSecretAlphabet, kSecretChars);
  out.record.id = RandomChars(kIdAlphabet, kIdChars);
  out.record.name = t.name;
  out.record.team = t.team;
  out.record.role = ToString(t.role);
  out.record.hash = Sha256HexOf(secret);
  out.record.created = clock_.NowMs();
  out.record.expires = t.ttl_seconds == 0 ? 0 : out.record.created + t.ttl_seconds * 1000;
  KILN_RETURN_IF_ERROR(store_.PutApiToken(out.record));
  out.token = std::string(kPrefix) + out.record.id + "_" + secret;
  return out;
}

Result<Principal> ApiTokens::Authenticate(const std::string& token) const {
  const size_t prefix = sizeof(kPrefix) - 1;
  if (token.size() != prefix + kIdChars + 1 + kSecretChars || token.compare(0, prefix, kPrefix) != 0 ||
      token[prefix + kIdChars] != '_')
    return Unauthenticated("malformed token: expected kiln_<id>_<secret>");
  const std::string id = token.substr(prefix, kIdChars), secret = token.substr(prefix + kIdChars + 1);
  if (!AllIn(id, kIdAlphabet) || !AllIn(secret, kSecretAlphabet))
    return Unauthenticated("malformed token: expected kiln_<id>_<secret>");
  auto rec = store_.GetApiToken(id);
  if (!rec.ok()) {
    if (rec.status().code() == Code::kNotFound) return Unauthenticated("unknown token");
    return rec.status();
  }
  const std::string hash = Sha256HexOf(secret);
  if (hash.size() != rec->hash.size() || CRYPTO_memcmp(hash.data(), rec->hash.data(), hash.size()) != 0)
    return Unauthenticated("unknown token");  // same answer as an unknown id
  if (rec->revoked != 0) return Unauthenticated("token " + id + " was revoked");
  if (rec->expires != 0 && clock_.NowMs() >= rec->expires) return Unauthenticated("token " + id + " has expired");
  auto role = ParseRole(rec->role);
  if (!role) return Internal("token " + id + " has an unknown role '" + rec->role + "'");
  return Principal{rec->id, rec->name, rec->team, *role, Credential::kApiToken};
}

Status EnsureBootstrapToken(ApiTokens& tokens, const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    auto text = ReadFile(path);
    std::string token = text.ok() ? *text : "";
    while (!token.empty() && isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    if (tokens.Authenticate(token).ok()) return Status::Ok();
  }
  auto issued = tokens.Create({"bootstrap", "default", Role::kAdmin, 0});
  if (!issued.ok()) return issued.status();
  return WriteFileAtomic(path, issued->token + "\n", 0600);
}

}  // namespace kiln
