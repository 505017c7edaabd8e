#pragma once
// Bearer tokens from an identity provider (OIDC ID or access tokens: JWTs),
// verified against the provider's keys in a JWKS file, mapped to a principal.
//
// Exactly as a relying party must (RFC 7519, RFC 7515, RFC 8725):
//   - RS256 and ES256 only, and the key's own type must match the token's alg:
//     "none", HMAC algorithms and a public key used as an HMAC secret are refused;
//   - the key is the JWKS key with the token's "kid" (the only key if the token
//     has no kid and the file has one key); an unknown kid re-reads the file, at
//     most once a minute, so a provider's key rotation needs no restart;
//   - "iss" must equal the configured issuer, "aud" must be or contain the
//     configured audience, "exp" must be in the future and "nbf"/"iat" not in the
//     future (60 s of clock skew allowed);
//   - a token is at most 8 KiB, its JSON parts bounded in depth.
// Mapping: the team is the value of `team_claim` (a string, or a list holding
// exactly one entry that starts with `team_prefix`, the prefix removed); the role
// is the value of `role_claim` if configured and present, else `default_role`;
// the principal's id is "oidc:<sub>" and its name the `name_claim` value.
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "auth/principal.h"
#include "common/clock.h"
#include "common/status.h"

namespace kiln {

struct OidcOptions {
  std::string issuer;
  std::string audience;
  std::string jwks_file;
  std::string team_claim = "groups";
  std::string team_prefix;  // e.g. "kiln-": only groups with it name teams
  std::string role_claim;   // optional
  Role default_role = Role::kMember;
  std::string name_claim = "email";  // falls back to "sub"
};

// The config's "auth.oidc" section (present: issuer, audience and jwks_file are required).
Result<OidcOptions> OidcOptionsFromJson(const nlohmann::json& j);

class OidcVerifier {
 public:
  // Reads the JWKS file; an unreadable or invalid file is an error at start.
  static Result<std::unique_ptr<OidcVerifier>> Create(OidcOptions opts, Clock& clock);
  ~OidcVerifier();

  // Whether `token` looks like a JWT (three base64url parts) rather than an API token.
  static bool LooksLikeJwt(const std::string& token);
  // The principal of a valid token; kUnauthenticated with the reason otherwise.
  Result<Principal> Authenticate(const std::string& token) const;

  struct Key;  // a verification key from the JWKS (oidc.cc)

 private:
  OidcVerifier(OidcOptions opts, Clock& clock) : opts_(std::move(opts)), clock_(clock) {}
  Status Load() const;
  std::shared_ptr<const Key> KeyFor(const std::string& kid) const;

  OidcOptions opts_;
  Clock& clock_;
  mutable std::mutex mu_;
  mutable std::map<std::string, std::shared_ptr<const Key>> keys_;  // kid -> key ("" for a key without kid)
  mutable TimeMs loaded_ms_ = 0;
};

}  // namespace kiln
