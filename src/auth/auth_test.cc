#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "auth/access_keys.h"
#include "auth/replay_guard.h"
#include "auth/sigv4.h"

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
  auto k = keys.Create("ads", KeyRole::kTeam);
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
