// OIDC bearer tokens against keys made here (no network): RS256 and ES256
// accepted; every way a token can be wrong refused with its reason (expired,
// early, another issuer or audience, tampered, alg none, HMAC with the public
// key, a key of the other type, an unknown kid, no team, two teams, a bad
// role, too long); key rotation through the JWKS file; the config's errors.
#include "auth/oidc.h"

#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include <filesystem>
#include <fstream>

#include "common/clock.h"

namespace kiln {
namespace {

using nlohmann::json;

std::string B64Url(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

std::string Bn(EVP_PKEY* k, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(k, name, &bn);
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

struct TestKey {
  EVP_PKEY* pkey = nullptr;
  std::string kid, alg;
  ~TestKey() { EVP_PKEY_free(pkey); }
  json Jwk() const {
    if (alg == "RS256")
      return {{"kty", "RSA"}, {"kid", kid}, {"use", "sig"}, {"n", B64Url(Bn(pkey, "n"))}, {"e", B64Url(Bn(pkey, "e"))}};
    unsigned char pub[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub), &len);
    std::string p(reinterpret_cast<char*>(pub), len);
    return {
        {"kty", "EC"}, {"kid", kid}, {"crv", "P-256"}, {"x", B64Url(p.substr(1, 32))}, {"y", B64Url(p.substr(33, 32))}};
  }
  std::string Sign(const std::string& data) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(data.data()), data.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    if (alg == "RS256") return sig;
    // DER -> r||s
    const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(es);
    return raw;
  }
};

class OidcTest : public ::testing::Test {
 protected:
  OidcTest() {
    dir_ = std::filesystem::temp_directory_path() / ("kiln-oidc-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    rsa_.pkey = EVP_RSA_gen(2048);
    rsa_.kid = "rsa-1";
    rsa_.alg = "RS256";
    ec_.pkey = EVP_EC_gen("P-256");
    ec_.kid = "ec-1";
    ec_.alg = "ES256";
    WriteJwks({&rsa_, &ec_});
    clock_.Set(1'800'000'000'000);
    opts_.issuer = "https://idp.example.com";
    opts_.audience = "kiln";
    opts_.jwks_file = (dir_ / "jwks.json").string();
    opts_.team_prefix = "kiln-";
    opts_.role_claim = "kiln_role";
    auto v = OidcVerifier::Create(opts_, clock_);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    verifier_ = std::move(*v);
  }
  ~OidcTest() override { std::filesystem::remove_all(dir_); }

  void WriteJwks(const std::vector<const TestKey*>& keys) {
    json j = {{"keys", json::array({{{"kty", "oct"}, {"k", "c2VjcmV0"}}})}};  // skipped
    for (const auto* k : keys) j["keys"].push_back(k->Jwk());
    std::ofstream(dir_ / "jwks.json") << j.dump();
  }
  json Claims() const {
    const int64_t now = clock_.NowMs() / 1000;
    return {{"iss", "https://idp.example.com"}, {"aud", "kiln"},    {"sub", "u-123"},
            {"email", "ada@example.com"},       {"exp", now + 600}, {"iat", now},
            {"groups", {"staff", "kiln-ads"}}};
  }
  static std::string Jwt(const TestKey& k, const json& claims, json header = json::object()) {
    if (!header.contains("alg")) header["alg"] = k.alg;
    if (!header.contains("kid")) header["kid"] = k.kid;
    const std::string signed_part = B64Url(header.dump()) + "." + B64Url(claims.dump());
    return signed_part + "." + B64Url(k.Sign(signed_part));
  }
  std::string Refusal(const std::string& token) {
    auto p = verifier_->Authenticate(token);
    if (p.ok()) return "accepted";
    EXPECT_EQ(p.status().code(), Code::kUnauthenticated) << p.status().ToString();
    return p.status().message();
  }

  std::filesystem::path dir_;
  TestKey rsa_, ec_;
  FakeClock clock_;
  OidcOptions opts_;
  std::unique_ptr<OidcVerifier> verifier_;
};

TEST_F(OidcTest, Rs256AndEs256TokensMapToTheirTeamRoleAndName) {
  for (const TestKey* k : {&rsa_, &ec_}) {
    auto p = verifier_->Authenticate(Jwt(*k, Claims()));
    ASSERT_TRUE(p.ok()) << k->alg << ": " << p.status().ToString();
    EXPECT_EQ(p->id, "oidc:u-123");
    EXPECT_EQ(p->name, "ada@example.com");
    EXPECT_EQ(p->team, "ads");
    EXPECT_EQ(p->role, Role::kMember);
    EXPECT_EQ(p->via, Credential::kOidcToken);
  }
  json c = Claims();
  c["kiln_role"] = "viewer";
  c["aud"] = {"other", "kiln"};
  auto p = verifier_->Authenticate(Jwt(rsa_, c));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->role, Role::kViewer);
  EXPECT_TRUE(OidcVerifier::LooksLikeJwt(Jwt(rsa_, c)));
  EXPECT_FALSE(OidcVerifier::LooksLikeJwt("kiln_AAAAAAAAAAAAAAAA_b.c.d"));
}

TEST_F(OidcTest, EveryWrongTokenIsRefusedWithItsReason) {
  const int64_t now = clock_.NowMs() / 1000;
  auto with = [&](const char* k, json v) {
    json c = Claims();
    if (v.is_null()) {
      c.erase(k);
    } else {
      c[k] = v;
    }
    return Jwt(rsa_, c);
  };
  EXPECT_EQ(Refusal(with("exp", now - 61)), "JWT has expired");
  EXPECT_EQ(Refusal(with("exp", nullptr)), "JWT has no exp");
  EXPECT_EQ(Refusal(with("nbf", now + 600)), "JWT nbf is in the future");
  EXPECT_EQ(Refusal(with("iss", "https://evil.example.com")), "JWT issuer is not https://idp.example.com");
  EXPECT_EQ(Refusal(with("aud", "other")), "JWT audience does not include kiln");
  EXPECT_EQ(Refusal(with("sub", nullptr)), "JWT has no sub");
  EXPECT_EQ(Refusal(with("groups", {"staff"})), "JWT claim groups must name exactly one team (prefix kiln-)");
  EXPECT_EQ(Refusal(with("groups", {"kiln-ads", "kiln-web"})),
            "JWT claim groups must name exactly one team (prefix kiln-)");
  EXPECT_EQ(Refusal(with("groups", "kiln-../etc")), "JWT claim groups must name exactly one team (prefix kiln-)");
  EXPECT_EQ(Refusal(with("kiln_role", "superuser")), "JWT claim kiln_role is not a role");
  // Tampered: a valid token with another team swapped into its claims.
  std::string good = Jwt(rsa_, Claims());
  json evil = Claims();
  evil["groups"] = {"kiln-web"};
  const size_t a = good.find('.'), b = good.rfind('.');
  EXPECT_EQ(Refusal(good.substr(0, a + 1) + B64Url(evil.dump()) + good.substr(b)), "JWT signature is invalid");
  // alg none, and HS256 keyed with the public key (the classic confusion).
  const std::string none = B64Url(R"({"alg":"none","kid":"rsa-1"})") + "." + B64Url(Claims().dump()) + ".";
  EXPECT_EQ(Refusal(none), "JWT alg \"none\" is not accepted (RS256 or ES256)");
  const std::string hs_part = B64Url(R"({"alg":"HS256","kid":"rsa-1"})") + "." + B64Url(Claims().dump());
  const std::string n = Bn(rsa_.pkey, "n");
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), n.data(), static_cast<int>(n.size()), reinterpret_cast<const unsigned char*>(hs_part.data()),
       hs_part.size(), mac, &mac_len);
  EXPECT_EQ(Refusal(hs_part + "." + B64Url(std::string(reinterpret_cast<char*>(mac), mac_len))),
            "JWT alg \"HS256\" is not accepted (RS256 or ES256)");
  // An RS256 header naming the EC key, and an unknown kid.
  EXPECT_EQ(Refusal(Jwt(rsa_, Claims(), {{"kid", "ec-1"}})), "JWT alg \"RS256\" does not match its key's (ES256)");
  EXPECT_EQ(Refusal(Jwt(rsa_, Claims(), {{"kid", "nope"}})), "JWT is signed with an unknown key (kid \"nope\")");
  EXPECT_EQ(Refusal(Jwt(rsa_, Claims(), {{"crit", {"exp"}}})),
            "JWT has critical header parameters kilnd does not know");
  // Shape.
  EXPECT_EQ(Refusal("a.b"), "malformed JWT: expected header.payload.signature");
  EXPECT_EQ(Refusal("a+b.c.d"), "malformed JWT: not base64url");
  EXPECT_EQ(Refusal(B64Url("[1]") + "." + B64Url("{}") + ".AA"),
            "malformed JWT: header and claims must be JSON objects");
  EXPECT_EQ(Refusal(std::string(9000, 'a')), "token is over 8 KiB");
  std::string deep = std::string(100, '[') + std::string(100, ']');
  EXPECT_EQ(Refusal(B64Url(R"({"alg":"RS256"})") + "." + B64Url(deep) + ".AA"),
            "malformed JWT: header and claims must be JSON objects");
}

TEST_F(OidcTest, ARotatedKeyIsPickedUpFromTheJwksFileAtMostOnceAMinute) {
  TestKey next;
  next.pkey = EVP_RSA_gen(2048);
  next.kid = "rsa-2";
  next.alg = "RS256";
  WriteJwks({&next});
  const std::string token = Jwt(next, Claims());
  // Loaded less than a minute ago: the file is not read again yet.
  EXPECT_EQ(Refusal(token), "JWT is signed with an unknown key (kid \"rsa-2\")");
  clock_.Advance(61 * 1000);
  json c = Claims();
  auto p = verifier_->Authenticate(Jwt(next, c));
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  // The old keys are gone with the file.
  EXPECT_EQ(Refusal(Jwt(rsa_, c)), "JWT is signed with an unknown key (kid \"rsa-1\")");
}

TEST(OidcOptions, TheConfigIsCheckedFieldByField) {
  auto ok = OidcOptionsFromJson(
      json::parse(R"({"issuer": "https://i", "audience": "kiln", "jwks_file": "/k.json", "default_role": "viewer"})"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->default_role, Role::kViewer);
  EXPECT_EQ(ok->team_claim, "groups");
  struct Bad {
    const char* json;
    const char* field;
  };
  for (const Bad& b :
       {Bad{R"({"audience": "kiln", "jwks_file": "/k"})", "auth.oidc.issuer"},
        Bad{R"({"issuer": "i", "audience": "kiln", "jwks_file": "/k", "default_role": "admin"})",
            "auth.oidc.default_role"},
        Bad{R"({"issuer": "i", "audience": "kiln", "jwks_file": "/k", "algs": "none"})", "auth.oidc.algs"},
        Bad{R"({"issuer": 3})", "auth.oidc.issuer"}, Bad{R"([])", "auth.oidc"}, Bad{"null", "auth.oidc"}}) {
    auto r = OidcOptionsFromJson(json::parse(b.json));
    ASSERT_FALSE(r.ok()) << b.json;
    EXPECT_EQ(r.status().field(), b.field) << b.json << ": " << r.status().ToString();
  }
  OidcOptions missing = *ok;
  missing.jwks_file = "/nonexistent/jwks.json";
  FakeClock clock;
  auto v = OidcVerifier::Create(missing, clock);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().field(), "auth.oidc.jwks_file");
}

}  // namespace
}  // namespace kiln
