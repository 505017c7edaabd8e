#pragma once
// The native API's bearer tokens: "kiln_<id>_<secret>". The id (16 base32
// characters) names the stored record; of the secret (43 characters, 256 bits)
// only its SHA-256 is stored, compared in constant time. A token of a user or
// service account, of one team with one role; it may expire, and revocation takes
// effect on the next request (nothing is cached).
#include <string>
#include <vector>

#include "auth/principal.h"
#include "common/clock.h"
#include "common/status.h"
#include "store/store.h"

namespace kiln {

struct IssuedToken {
  ApiTokenRecord record;
  std::string token;  // shown once
};

struct TokenRequest {
  std::string name;  // user or service account: 1-63 letters, digits, '-', '_', '.', '@'
  std::string team;
  Role role = Role::kMember;
  int64_t ttl_seconds = 0;  // 0 = never expires
};

class ApiTokens {
 public:
  ApiTokens(Store& store, Clock& clock) : store_(store), clock_(clock) {}
  // kInvalidArgument with the field for a bad name, team or ttl.
  Result<IssuedToken> Create(const TokenRequest& t);
  // The principal of `token`, or kUnauthenticated with why (malformed, unknown,
  // revoked, expired). The message never depends on the secret.
  Result<Principal> Authenticate(const std::string& token) const;
  Result<std::vector<ApiTokenRecord>> List(const std::string& team) const { return store_.ListApiTokens(team); }
  Status Revoke(const std::string& id) { return store_.RevokeApiToken(id, clock_.NowMs()); }
  Result<ApiTokenRecord> Get(const std::string& id) const { return store_.GetApiToken(id); }

 private:
  Store& store_;
  Clock& clock_;
};

bool IsValidPrincipalName(const std::string& n);

// Ensures the bootstrap admin token exists: `path` (0600) holds a token of the
// "bootstrap" admin. Written on first start; kept while its token is valid, and
// replaced (a new token) when it was revoked or its file removed.
Status EnsureBootstrapToken(ApiTokens& tokens, const std::string& path);

}  // namespace kiln
