#include "auth/oidc.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/fsutil.h"
#include "common/json_input.h"

namespace kiln {

using nlohmann::json;

namespace {

constexpr size_t kMaxTokenBytes = 8 * 1024;
constexpr size_t kMaxJwksBytes = 1 << 20;
constexpr int64_t kSkewSeconds = 60;
constexpr TimeMs kReloadEveryMs = 60 * 1000;

// RFC 4648 §5 without padding; nullopt on any other character.
std::optional<std::string> Base64UrlDecode(const std::string& in) {
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    if (c >= '0' && c <= '9') v = c - '0' + 52;
    if (c == '-') v = 62;
    if (c == '_') v = 63;
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) return std::nullopt;  // a dangling character
  return out;
}

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

PkeyPtr FromParams(const char* type, OSSL_PARAM_BLD* bld) {
  PkeyPtr none(nullptr, EVP_PKEY_free);
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  if (params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey != nullptr ? PkeyPtr(pkey, EVP_PKEY_free) : std::move(none);
}

}  // namespace

struct OidcVerifier::Key {
  std::string alg;  // "RS256" or "ES256": what this key verifies, nothing else
  PkeyPtr pkey{nullptr, EVP_PKEY_free};
};

namespace {

// One JWKS entry; an entry of another type or use is skipped (nullptr, Ok).
Result<std::shared_ptr<OidcVerifier::Key>> KeyFromJwk(const json& k) {
  auto key = std::make_shared<OidcVerifier::Key>();
  const std::string kty = k.value("kty", "");
  if (k.contains("use") && k["use"] != "sig") return std::shared_ptr<OidcVerifier::Key>();
  auto field = [&](const char* f) -> std::optional<std::string> {
    if (!k.contains(f) || !k[f].is_string()) return std::nullopt;
    return Base64UrlDecode(k[f].get<std::string>());
  };
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (kty == "RSA") {
    const std::optional<std::string> n = field("n"), e = field("e");
    if (!n || !e || n->size() < 256) return InvalidArgument("jwks", "an RSA key needs n (2048 bits or more) and e");
    const std::string& nb = *n;
    const std::string& eb = *e;
    BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(nb.data()), static_cast<int>(nb.size()), nullptr);
    BIGNUM* be = BN_bin2bn(reinterpret_cast<const unsigned char*>(eb.data()), static_cast<int>(eb.size()), nullptr);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, be);
    key->pkey = FromParams("RSA", bld.get());
    BN_free(bn);
    BN_free(be);
    key->alg = "RS256";
  } else if (kty == "EC") {
    auto x = field("x"), y = field("y");
    if (k.value("crv", "") != "P-256" || !x || !y || x->size() != 32 || y->size() != 32)
      return InvalidArgument("jwks", "an EC key must be P-256 with 32-byte x and y");
    const std::string point = std::string(1, '\x04') + *x + *y;
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    key->pkey = FromParams("EC", bld.get());
    key->alg = "ES256";
  } else {
    return std::shared_ptr<OidcVerifier::Key>();  // oct and others: never used to verify
  }
  if (!key->pkey) return InvalidArgument("jwks", "a " + kty + " key could not be loaded");
  if (k.contains("alg") && k["alg"] != key->alg)
    return InvalidArgument("jwks", "a " + kty + " key may not declare alg " + k["alg"].dump());
  return key;
}

// ES256 signatures are r||s (64 bytes); OpenSSL verifies DER.
std::optional<std::string> EcdsaRawToDer(const std::string& raw) {
  if (raw.size() != 64) return std::nullopt;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  ECDSA_SIG_set0(sig, r, s);
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (len <= 0) return std::nullopt;
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

bool VerifySha256(EVP_PKEY* pkey, const std::string& signed_part, const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
                  EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                   reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

Status Unauthenticated(const std::string& why) {
  return Status(Code::kUnauthenticated, why);
}

bool IsTeamName(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return isalnum(static_cast<unsigned char>(c)) || c == '-'; });
}

}  // namespace

Result<OidcOptions> OidcOptionsFromJson(const json& j) {
  OidcOptions o;
  if (!j.is_object())
    return InvalidArgument("auth.oidc", "auth.oidc must be a mapping of issuer, audience, jwks_file, ...");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string f = "auth.oidc." + it.key();
    static const char* const kKnown[] = {"issuer",      "audience",   "jwks_file",    "team_claim",
                                         "team_prefix", "role_claim", "default_role", "name_claim"};
    if (std::find(std::begin(kKnown), std::end(kKnown), it.key()) == std::end(kKnown))
      return InvalidArgument(f, "unknown key " + f);
    if (!it.value().is_string()) return InvalidArgument(f, f + " must be a string");
  }
  o.issuer = j.value("issuer", "");
  o.audience = j.value("audience", "");
  o.jwks_file = j.value("jwks_file", "");
  o.team_claim = j.value("team_claim", o.team_claim);
  o.team_prefix = j.value("team_prefix", "");
  o.role_claim = j.value("role_claim", "");
  o.name_claim = j.value("name_claim", o.name_claim);
  for (auto [key, v] : {std::pair{"issuer", &o.issuer}, std::pair{"audience", &o.audience},
                        std::pair{"jwks_file", &o.jwks_file}, std::pair{"team_claim", &o.team_claim}})
    if (v->empty())
      return InvalidArgument(std::string("auth.oidc.") + key, std::string("auth.oidc.") + key + " is required");
  if (j.contains("default_role")) {
    auto r = ParseRole(j["default_role"].get<std::string>());
    if (!r || *r == Role::kAdmin)
      return InvalidArgument("auth.oidc.default_role", "auth.oidc.default_role: viewer, member or team-admin");
    o.default_role = *r;
  }
  return o;
}

Result<std::unique_ptr<OidcVerifier>> OidcVerifier::Create(OidcOptions opts, Clock& clock) {
  std::unique_ptr<OidcVerifier> v(new OidcVerifier(std::move(opts), clock));
  KILN_RETURN_IF_ERROR(v->Load());
  return v;
}

OidcVerifier::~OidcVerifier() = default;

Status OidcVerifier::Load() const {
  auto text = ReadFile(opts_.jwks_file);
  if (!text.ok()) return InvalidArgument("auth.oidc.jwks_file", "cannot read " + opts_.jwks_file);
  if (text->size() > kMaxJwksBytes) return InvalidArgument("auth.oidc.jwks_file", opts_.jwks_file + " is over 1 MiB");
  auto j = ParseUntrustedJson(*text, "JWKS file");
  if (!j.ok() || !j->is_object() || !j->contains("keys") || !(*j)["keys"].is_array())
    return InvalidArgument("auth.oidc.jwks_file", opts_.jwks_file + " is not a JWKS ({\"keys\": [...]})");
  std::map<std::string, std::shared_ptr<const Key>> keys;
  for (const auto& k : (*j)["keys"]) {
    if (!k.is_object()) continue;
    auto key = KeyFromJwk(k);
    if (!key.ok()) return InvalidArgument("auth.oidc.jwks_file", opts_.jwks_file + ": " + key.status().message());
    if (*key) keys[k.value("kid", "")] = *key;
  }
  if (keys.empty()) return InvalidArgument("auth.oidc.jwks_file", opts_.jwks_file + " has no RSA or P-256 signing key");
  std::lock_guard<std::mutex> l(mu_);
  keys_ = std::move(keys);
  loaded_ms_ = clock_.NowMs();
  return Status::Ok();
}

std::shared_ptr<const OidcVerifier::Key> OidcVerifier::KeyFor(const std::string& kid) const {
  for (int pass = 0; pass < 2; ++pass) {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = keys_.find(kid);
      if (it != keys_.end()) return it->second;
      if (kid.empty() && keys_.size() == 1) return keys_.begin()->second;
      if (pass == 1 || clock_.NowMs() - loaded_ms_ < kReloadEveryMs) return nullptr;
    }
    // An unknown kid: the provider may have rotated its keys.
    if (Status st = Load(); !st.ok()) {
      fprintf(stderr, "kilnd: reloading %s: %s\n", opts_.jwks_file.c_str(), st.ToString().c_str());
      std::lock_guard<std::mutex> l(mu_);
      loaded_ms_ = clock_.NowMs();  // not again for a minute
      return nullptr;
    }
  }
  return nullptr;
}

bool OidcVerifier::LooksLikeJwt(const std::string& token) {
  return std::count(token.begin(), token.end(), '.') == 2 && token.rfind("kiln_", 0) != 0;
}

Result<Principal> OidcVerifier::Authenticate(const std::string& token) const {
  if (token.size() > kMaxTokenBytes) return Unauthenticated("token is over 8 KiB");
  const size_t a = token.find('.'), b = token.find('.', a + 1);
  if (a == std::string::npos || b == std::string::npos || token.find('.', b + 1) != std::string::npos)
    return Unauthenticated("malformed JWT: expected header.payload.signature");
  auto header_text = Base64UrlDecode(token.substr(0, a));
  auto payload_text = Base64UrlDecode(token.substr(a + 1, b - a - 1));
  auto sig = Base64UrlDecode(token.substr(b + 1));
  if (!header_text || !payload_text || !sig) return Unauthenticated("malformed JWT: not base64url");
  auto header = ParseUntrustedJson(*header_text, "JWT header", 8);
  auto claims = ParseUntrustedJson(*payload_text, "JWT claims", 16);
  if (!header.ok() || !header->is_object() || !claims.ok() || !claims->is_object())
    return Unauthenticated("malformed JWT: header and claims must be JSON objects");
  const json alg = header->value("alg", json());
  if (alg != "RS256" && alg != "ES256")
    return Unauthenticated("JWT alg " + alg.dump() + " is not accepted (RS256 or ES256)");
  if (header->contains("crit")) return Unauthenticated("JWT has critical header parameters kilnd does not know");
  const json kid = header->value("kid", json(""));
  if (!kid.is_string()) return Unauthenticated("JWT kid must be a string");
  auto key = KeyFor(kid.get<std::string>());
  if (!key) return Unauthenticated("JWT is signed with an unknown key (kid " + kid.dump() + ")");
  if (key->alg != alg) return Unauthenticated("JWT alg " + alg.dump() + " does not match its key's (" + key->alg + ")");
  std::optional<std::string> der = alg == "ES256" ? EcdsaRawToDer(*sig) : sig;
  if (!der || !VerifySha256(key->pkey.get(), token.substr(0, b), *der))
    return Unauthenticated("JWT signature is invalid");

  // The signature holds: now the claims.
  const json& c = *claims;
  if (c.value("iss", json()) != opts_.issuer) return Unauthenticated("JWT issuer is not " + opts_.issuer);
  const json aud = c.value("aud", json());
  const bool aud_ok =
      aud == opts_.audience || (aud.is_array() && std::find(aud.begin(), aud.end(), opts_.audience) != aud.end());
  if (!aud_ok) return Unauthenticated("JWT audience does not include " + opts_.audience);
  const int64_t now = clock_.NowMs() / 1000;
  const json exp = c.value("exp", json());
  if (!exp.is_number()) return Unauthenticated("JWT has no exp");
  if (exp.get<double>() + kSkewSeconds <= static_cast<double>(now)) return Unauthenticated("JWT has expired");
  for (const char* f : {"nbf", "iat"}) {
    const json t = c.value(f, json());
    if (!t.is_null() && (!t.is_number() || t.get<double>() > static_cast<double>(now + kSkewSeconds)))
      return Unauthenticated(std::string("JWT ") + f + " is in the future");
  }
  const json sub = c.value("sub", json());
  if (!sub.is_string() || sub.get<std::string>().empty() || sub.get<std::string>().size() > 255)
    return Unauthenticated("JWT has no sub");

  // Team: a string claim, or the one group with the prefix.
  std::string team;
  const json tc = c.value(opts_.team_claim, json());
  auto from = [&](const std::string& v) -> std::optional<std::string> {
    if (v.size() <= opts_.team_prefix.size() || v.compare(0, opts_.team_prefix.size(), opts_.team_prefix) != 0)
      return std::nullopt;
    return v.substr(opts_.team_prefix.size());
  };
  int teams = 0;
  if (tc.is_string()) {
    if (auto t = from(tc.get<std::string>())) {
      team = *t;
      teams = 1;
    }
  } else if (tc.is_array()) {
    for (const auto& v : tc)
      if (v.is_string())
        if (auto t = from(v.get<std::string>())) {
          team = *t;
          ++teams;
        }
  }
  if (teams != 1 || !IsTeamName(team))
    return Unauthenticated("JWT claim " + opts_.team_claim + " must name exactly one team" +
                           (opts_.team_prefix.empty() ? "" : " (prefix " + opts_.team_prefix + ")"));
  Role role = opts_.default_role;
  if (!opts_.role_claim.empty() && c.contains(opts_.role_claim)) {
    const json rc = c[opts_.role_claim];
    auto r = rc.is_string() ? ParseRole(rc.get<std::string>()) : std::nullopt;
    if (!r) return Unauthenticated("JWT claim " + opts_.role_claim + " is not a role");
    role = *r;
  }
  const json name = c.value(opts_.name_claim, json());
  Principal p;
  p.id = "oidc:" + sub.get<std::string>();
  p.name = name.is_string() && !name.get<std::string>().empty() ? name.get<std::string>().substr(0, 255)
                                                                : sub.get<std::string>();
  p.team = team;
  p.role = role;
  p.via = Credential::kOidcToken;
  return p;
}

}  // namespace kiln
