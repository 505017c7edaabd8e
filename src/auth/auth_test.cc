#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "auth/access_keys.h"
#include "auth/api_tokens.h"
#include "auth/auth_limiter.h"
#include "auth/replay_guard.h"
#include "auth/sigv4.h"
#include "common/fsutil.h"

namespace kiln {
namespace {

const char* kKey = "AKIDEXAMPLE";
const char* kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

std::string PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Parses a test-suite .req file into what an HTTP server would hand over.
SigV4Request ParseRaw(const std::string& raw) {
  SigV4Request r;
  std::istringstream in(raw);
  std::string line;
  std::getline(in, line);
  r.method = line.substr(0, line.find(' '));
  std::string target = line.substr(r.method.size() + 1, line.rfind(" HTTP/") - r.method.size() - 1);
  std::string path = target, query;
  if (auto q = target.find('?'); q != std::string::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  r.path = PercentDecode(path);
  for (size_t i = 0; !query.empty() && i <= query.size();) {
    size_t e = query.find('&', i);
    if (e == std::string::npos) e = query.size();
    std::string kv = query.substr(i, e - i);
    size_t eq = kv.find('=');
    r.query.emplace_back(PercentDecode(kv.substr(0, eq)),
                         eq == std::string::npos ? "" : PercentDecode(kv.substr(eq + 1)));
    i = e + 1;
  }
  while (std::getline(in, line) && !line.empty()) {
    if ((line[0] == ' ' || line[0] == '\t') && !r.headers.empty()) {
      r.headers.emplace_back(r.headers.back().first, line);  // obsolete line folding: another value
      continue;
    }
    size_t colon = line.find(':');
    r.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  r.body = rest;
  return r;
}

nlohmann::json Vectors() {
  std::ifstream f(KILN_SIGV4_VECTORS);
  return nlohmann::json::parse(f);
}

TEST(SigV4, AwsTestSuite) {
  auto vectors = Vectors();
  ASSERT_GE(vectors.size(), 20u);
  const TimeMs when = ParseAmzDate("20150830T123600Z");
  ASSERT_GT(when, 0);
  for (const auto& v : vectors) {
    SCOPED_TRACE(v["name"].get<std::string>());
    SigV4Request r = ParseRaw(v["request"]);
    auto auth = ParseAuthorization(v["authorization"]);
    ASSERT_TRUE(auth.ok()) << auth.status().ToString();
    std::string creq = CanonicalRequest(r, auth->signed_headers, Sha256HexOf(r.body));
    EXPECT_EQ(creq, v["canonical_request"].get<std::string>());
    std::string sts = StringToSign("20150830T123600Z", auth->Scope(), creq);
    EXPECT_EQ(sts, v["string_to_sign"].get<std::string>());
    EXPECT_EQ(SignatureHex(kSecret, auth->date, auth->region, auth->service, sts), auth->signature);
    r.headers.emplace_back("Authorization", v["authorization"].get<std::string>());
    auto lookup = [](const std::string& id, std::string* s) {
      if (id != kKey) return false;
      *s = kSecret;
      return true;
    };
    auto res = VerifySigV4(r, lookup, when + 60'000);
    EXPECT_TRUE(res.ok) << res.failure.message;
    EXPECT_EQ(res.access_key_id, kKey);
  }
}

class SigV4Refusals : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const auto& v : Vectors())
      if (v["name"] == "post-x-www-form-urlencoded") {
        req_ = ParseRaw(v["request"]);
        req_.headers.emplace_back("Authorization", v["authorization"].get<std::string>());
      }
    ASSERT_FALSE(req_.method.empty());
    ASSERT_TRUE(Verify().ok);
  }
  SigV4Result Verify(TimeMs now = ParseAmzDate("20150830T123600Z")) {
    return VerifySigV4(
        req_,
        [](const std::string& id, std::string* s) {
          if (id != kKey) return false;
          *s = kSecret;
          return true;
        },
        now);
  }
  void SetHeader(const std::string& name, const std::string& value) {
    for (auto& [k, v] : req_.headers)
      if (k == name) v = value;
  }
  SigV4Request req_;
};

TEST_F(SigV4Refusals, TamperedBody) {
  req_.body += "x";
  auto r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failure.error, SigV4Error::kSignatureDoesNotMatch);
}

TEST_F(SigV4Refusals, WrongSignature) {
  std::string& a = req_.headers.back().second;
  a.back() = a.back() == '0' ? '1' : '0';
  EXPECT_EQ(Verify().failure.error, SigV4Error::kSignatureDoesNotMatch);
}

TEST_F(SigV4Refusals, TamperedSignedHeader) {
  SetHeader("Content-Type", "application/json");
  EXPECT_EQ(Verify().failure.error, SigV4Error::kSignatureDoesNotMatch);
}

TEST_F(SigV4Refusals, UnknownKey) {
  std::string& a = req_.headers.back().second;
  a.replace(a.find(kKey), strlen(kKey), "AKIDUNKNOWN");
  auto r = Verify();
  EXPECT_EQ(r.failure.error, SigV4Error::kUnrecognizedClient);
  EXPECT_STREQ(AwsErrorCode(r.failure.error), "UnrecognizedClientException");
}

TEST_F(SigV4Refusals, ClockSkew) {
  const TimeMs t = ParseAmzDate("20150830T123600Z");
  EXPECT_TRUE(Verify(t + 14 * 60'000).ok);
  EXPECT_TRUE(Verify(t - 14 * 60'000).ok);
  auto late = Verify(t + 16 * 60'000);
  EXPECT_EQ(late.failure.error, SigV4Error::kRequestExpired);
  EXPECT_NE(late.failure.message.find("Signature expired"), std::string::npos);
  EXPECT_EQ(Verify(t - 16 * 60'000).failure.error, SigV4Error::kRequestExpired);
}

TEST_F(SigV4Refusals, MissingOrMalformed) {
  req_.headers.pop_back();
  EXPECT_EQ(Verify().failure.error, SigV4Error::kMissingAuthenticationToken);
  req_.headers.emplace_back("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1");
  EXPECT_EQ(Verify().failure.error, SigV4Error::kIncompleteSignature);
  req_.headers.back().second = "Basic dXNlcjpwYXNz";
  EXPECT_EQ(Verify().failure.error, SigV4Error::kIncompleteSignature);
}

TEST_F(SigV4Refusals, ContentHashHeaderMustMatchBody) {
  req_.headers.emplace_back("X-Amz-Content-Sha256", Sha256HexOf("something else"));
  EXPECT_EQ(Verify().failure.error, SigV4Error::kSignatureDoesNotMatch);
}

TEST(SigV4, PathNormalization) {
  EXPECT_EQ(NormalizePath("/"), "/");
  EXPECT_EQ(NormalizePath("//"), "/");
  EXPECT_EQ(NormalizePath("/a/../b/./c//"), "/b/c/");
  EXPECT_EQ(NormalizePath("/../.."), "/");
  EXPECT_EQ(AwsUriEncode("a b/ሴ", true), "a%20b/%E1%88%B4");
  EXPECT_EQ(AwsUriEncode("a/b", false), "a%2Fb");
  EXPECT_EQ(FormatAmzDate(ParseAmzDate("20240229T235959Z")), "20240229T235959Z");
  EXPECT_EQ(ParseAmzDate("2024-02-29T23:59:59Z"), -1);
  EXPECT_EQ(ParseAmzDate("20241329T235959Z"), -1);
}

TEST(AccessKeys, CreateLookupDelete) {
  auto store = OpenSqliteStore(":memory:");
  ASSERT_TRUE(store.ok());
  FakeClock clock(1000);
  SecretBox box = SecretBox::FromKey(std::string(32, 'k'));
  AccessKeys keys(**store, box, clock);
  auto k = keys.Create("ads", Role::kMember);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(k->id.size(), 20u);
  EXPECT_EQ(k->id.rfind("AKIA", 0), 0u);
  EXPECT_EQ(k->secret.size(), 40u);
  auto got = keys.Lookup(k->id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->secret, k->secret);
  EXPECT_EQ(got->team, "ads");
  // The store holds only the sealed secret.
  auto rec = (*store)->GetAccessKey(k->id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->sealed_secret.find(k->secret), std::string::npos);
  // Another master key cannot open it.
  SecretBox other = SecretBox::FromKey(std::string(32, 'o'));
  EXPECT_EQ(AccessKeys(**store, other, clock).Lookup(k->id).status().code(), Code::kInternal);
  auto listed = keys.List("ads");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*listed)[0].secret.empty());
  EXPECT_TRUE(keys.Delete(k->id).ok());
  EXPECT_EQ(keys.Lookup(k->id).status().code(), Code::kNotFound);
  std::string file = CredentialsFile(*k);
  EXPECT_NE(file.find("aws_access_key_id = " + k->id), std::string::npos);
}

TEST(Roles, ParseAndOrder) {
  for (Role r : {Role::kViewer, Role::kMember, Role::kTeamAdmin, Role::kAdmin}) EXPECT_EQ(ParseRole(ToString(r)), r);
  EXPECT_EQ(ParseRole("team"), Role::kMember);  // access keys made before roles
  EXPECT_EQ(ParseRole("superuser"), std::nullopt);
  EXPECT_EQ(ParseRole(""), std::nullopt);
  Principal viewer{"T", "v", "ads", Role::kViewer, Credential::kApiToken};
  EXPECT_TRUE(viewer.May(Role::kViewer, "ads"));
  EXPECT_FALSE(viewer.May(Role::kMember, "ads"));
  EXPECT_FALSE(viewer.May(Role::kViewer, "web"));
  Principal admin{"T", "a", "default", Role::kAdmin, Credential::kApiToken};
  EXPECT_TRUE(admin.May(Role::kTeamAdmin, "web"));
}

class ApiTokensTest : public ::testing::Test {
 protected:
  ApiTokensTest() : store_(std::move(*OpenSqliteStore(":memory:"))), clock_(1000), tokens_(*store_, clock_) {}
  std::unique_ptr<Store> store_;
  FakeClock clock_;
  ApiTokens tokens_;
};

TEST_F(ApiTokensTest, ATokenAuthenticatesAsItsPrincipalAndOnlyItsHashIsStored) {
  auto t = tokens_.Create({"ana@ads", "ads", Role::kMember, 0});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->token.rfind("kiln_", 0), 0u);
  auto p = tokens_.Authenticate(t->token);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "ana@ads");
  EXPECT_EQ(p->team, "ads");
  EXPECT_EQ(p->role, Role::kMember);
  EXPECT_EQ(p->id, t->record.id);
  auto rec = store_->GetApiToken(t->record.id);
  ASSERT_TRUE(rec.ok());
  const std::string secret = t->token.substr(t->token.rfind('_') + 1);
  EXPECT_EQ(rec->hash.find(secret), std::string::npos);
  EXPECT_EQ(rec->hash.size(), 64u);
}

TEST_F(ApiTokensTest, WrongMalformedRevokedAndExpiredTokensAreUnauthenticated) {
  auto t = tokens_.Create({"bo", "web", Role::kViewer, 60});
  ASSERT_TRUE(t.ok());
  std::string wrong = t->token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  for (const std::string& bad :
       {wrong, std::string(""), std::string("kiln_"), t->token + "x", std::string("Bearer ") + t->token,
        t->token.substr(1), "kiln_" + t->record.id + "_" + std::string(43, '!')}) {
    auto p = tokens_.Authenticate(bad);
    EXPECT_EQ(p.status().code(), Code::kUnauthenticated) << bad;
  }
  EXPECT_EQ(tokens_.Authenticate(wrong).status().message(), "unknown token");
  clock_.Advance(60 * 1000);
  EXPECT_NE(tokens_.Authenticate(t->token).status().message().find("expired"), std::string::npos);
  auto u = tokens_.Create({"cy", "web", Role::kMember, 0});
  ASSERT_TRUE(tokens_.Authenticate(u->token).ok());
  ASSERT_TRUE(tokens_.Revoke(u->record.id).ok());
  EXPECT_NE(tokens_.Authenticate(u->token).status().message().find("revoked"), std::string::npos);
}

TEST_F(ApiTokensTest, BadNamesTeamsAndTtlsAreRefusedWithTheField) {
  EXPECT_EQ(tokens_.Create({"", "ads", Role::kMember, 0}).status().field(), "name");
  EXPECT_EQ(tokens_.Create({"a b", "ads", Role::kMember, 0}).status().field(), "name");
  EXPECT_EQ(tokens_.Create({"ana", "ads/x", Role::kMember, 0}).status().field(), "team");
  EXPECT_EQ(tokens_.Create({"ana", "ads", Role::kMember, -1}).status().field(), "ttl_seconds");
  EXPECT_EQ(store_->ListApiTokens("")->size(), 0u);  // nothing half-created
}

TEST_F(ApiTokensTest, TheBootstrapTokenIsWrittenOnceAndReplacedWhenRevoked) {
  char dir[] = "/tmp/kiln-boot-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/admin.token";
  ASSERT_TRUE(EnsureBootstrapToken(tokens_, path).ok());
  auto first = ReadFile(path);
  ASSERT_TRUE(first.ok());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string token = first->substr(0, first->size() - 1);
  auto p = tokens_.Authenticate(token);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->role, Role::kAdmin);
  ASSERT_TRUE(EnsureBootstrapToken(tokens_, path).ok());
  EXPECT_EQ(*ReadFile(path), *first);  // kept
  ASSERT_TRUE(tokens_.Revoke(p->id).ok());
  ASSERT_TRUE(EnsureBootstrapToken(tokens_, path).ok());
  EXPECT_NE(*ReadFile(path), *first);  // replaced
  unlink(path.c_str());
  rmdir(dir);
}

TEST(AuthLimiter, FailuresPerAddressAreLimitedForAMinute) {
  AuthLimiter l(AuthLimits{3, 0, 200, 100});
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(l.MayTry("10.0.0.1", 1000));
    l.RecordFailure("10.0.0.1", 1000);
  }
  EXPECT_FALSE(l.MayTry("10.0.0.1", 1000));
  EXPECT_TRUE(l.MayTry("10.0.0.2", 1000));  // another address is not affected
  EXPECT_FALSE(l.MayTry("10.0.0.1", 60999));
  EXPECT_TRUE(l.MayTry("10.0.0.1", 61000));  // a new window
}

TEST(AuthLimiter, RequestsPerPrincipalRefillAtTheirRate) {
  AuthLimiter l(AuthLimits{0, 10, 2, 100});
  EXPECT_TRUE(l.TakeRequest("T1", 0));
  EXPECT_TRUE(l.TakeRequest("T1", 0));
  EXPECT_FALSE(l.TakeRequest("T1", 0));  // burst spent
  EXPECT_TRUE(l.TakeRequest("T2", 0));   // another principal has its own bucket
  EXPECT_FALSE(l.TakeRequest("T1", 50));
  EXPECT_TRUE(l.TakeRequest("T1", 100));  // 10/s: one more after 100 ms
}

TEST(AuthLimiter, StaysBoundedAndNeverLocksEveryoneOut) {
  AuthLimiter l(AuthLimits{1, 0, 200, 2});
  l.RecordFailure("a", 0);
  l.RecordFailure("b", 0);
  l.RecordFailure("c", 0);  // full of live windows: not tracked
  EXPECT_FALSE(l.MayTry("a", 0));
  EXPECT_TRUE(l.MayTry("c", 0));
  l.RecordFailure("d", 60000);  // a and b expired and were pruned
  EXPECT_FALSE(l.MayTry("d", 60000));
}

TEST(ReplayGuard, ASignatureIsAcceptedOnceUntilItExpires) {
  ReplayGuard g;
  EXPECT_EQ(g.Use("sig-a", 1000, 0), Claim::kFirst);
  EXPECT_EQ(g.Use("sig-a", 1000, 500), Claim::kReplayed);
  EXPECT_EQ(g.Use("sig-b", 1000, 500), Claim::kFirst);
  // Expired: forgotten (it could no longer verify anyway).
  EXPECT_EQ(g.Use("sig-c", 3000, 1000), Claim::kFirst);
  EXPECT_EQ(g.size(), 1u);
  EXPECT_EQ(g.Use("sig-a", 4000, 1001), Claim::kFirst);
}

TEST(ReplayGuard, AForgottenSignatureMayBeRetried) {
  ReplayGuard g;
  ASSERT_EQ(g.Use("sig", 1000, 0), Claim::kFirst);
  g.Forget("sig");  // the request failed with a server error
  EXPECT_EQ(g.Use("sig", 1000, 10), Claim::kFirst);
  EXPECT_EQ(g.Use("sig", 1000, 20), Claim::kReplayed);
}

TEST(ReplayGuard, IsBoundedAndRefusesRatherThanForgets) {
  ReplayGuard g(2);
  EXPECT_EQ(g.Use("a", 1000, 0), Claim::kFirst);
  EXPECT_EQ(g.Use("b", 1000, 0), Claim::kFirst);
  EXPECT_EQ(g.Use("c", 1000, 0), Claim::kFull);
  EXPECT_EQ(g.Use("a", 1000, 0), Claim::kReplayed);  // still remembered
  EXPECT_EQ(g.Use("c", 2000, 1000), Claim::kFirst);  // a and b expired
}

}  // namespace
}  // namespace kiln
