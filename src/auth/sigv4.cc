#include "auth/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <map>

#include "common/ids.h"

namespace kiln {
namespace {

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Trims and turns every run of spaces into one space.
std::string CanonicalValue(const std::string& v) {
  std::string t = Trim(v), out;
  out.reserve(t.size());
  for (char c : t) {
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out.push_back(c);
  }
  return out;
}

std::string Hmac(const std::string& key, const std::string& data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac, &len);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string HeaderValue(const SigV4Request& r, const std::string& lower_name) {
  for (const auto& [k, v] : r.headers)
    if (Lower(k) == lower_name) return v;
  return "";
}

bool HasHeader(const SigV4Request& r, const std::string& lower_name) {
  return std::any_of(r.headers.begin(), r.headers.end(), [&](const auto& h) { return Lower(h.first) == lower_name; });
}

SigV4Result Fail(SigV4Error e, std::string msg) {
  SigV4Result r;
  r.failure = {e, std::move(msg)};
  return r;
}

}  // namespace

const char* AwsErrorCode(SigV4Error e) {
  switch (e) {
    case SigV4Error::kMissingAuthenticationToken:
      return "MissingAuthenticationTokenException";
    case SigV4Error::kIncompleteSignature:
      return "IncompleteSignatureException";
    case SigV4Error::kUnrecognizedClient:
      return "UnrecognizedClientException";
    case SigV4Error::kSignatureDoesNotMatch:
      return "InvalidSignatureException";
    case SigV4Error::kRequestExpired:
      return "InvalidSignatureException";
  }
  return "InvalidSignatureException";
}

std::string Sha256HexOf(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return HexEncode(md, sizeof md);
}

std::string AwsUriEncode(const std::string& s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string NormalizePath(const std::string& path) {
  std::vector<std::string> segs;
  size_t i = 0;
  bool trailing = false;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string seg = path.substr(i, j - i);
    trailing = seg.empty() || seg == "." || seg == "..";
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segs.push_back(seg);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& s : segs) out += "/" + s;
  if (out.empty()) return "/";
  if (trailing) out += "/";
  return out;
}

std::string CanonicalRequest(const SigV4Request& r, const std::vector<std::string>& signed_headers,
                             const std::string& payload_hash) {
  std::string out = r.method + "\n" + AwsUriEncode(NormalizePath(r.path), true) + "\n";
  std::vector<std::pair<std::string, std::string>> q;
  for (const auto& [k, v] : r.query) q.emplace_back(AwsUriEncode(k, false), AwsUriEncode(v, false));
  std::sort(q.begin(), q.end());
  for (size_t i = 0; i < q.size(); ++i) out += (i ? "&" : "") + q[i].first + "=" + q[i].second;
  out += "\n";
  std::map<std::string, std::string> headers;
  for (const auto& [k, v] : r.headers) {
    std::string name = Lower(k);
    auto it = headers.find(name);
    if (it == headers.end())
      headers[name] = CanonicalValue(v);
    else
      it->second += "," + CanonicalValue(v);
  }
  for (const auto& h : signed_headers) out += h + ":" + headers[h] + "\n";
  out += "\n";
  for (size_t i = 0; i < signed_headers.size(); ++i) out += (i ? ";" : "") + signed_headers[i];
  out += "\n" + payload_hash;
  return out;
}

std::string StringToSign(const std::string& amz_date, const std::string& scope, const std::string& canonical_request) {
  return "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + Sha256HexOf(canonical_request);
}

std::string SignatureHex(const std::string& secret, const std::string& date, const std::string& region,
                         const std::string& service, const std::string& string_to_sign) {
  std::string k = Hmac("AWS4" + secret, date);
  k = Hmac(k, region);
  k = Hmac(k, service);
  k = Hmac(k, "aws4_request");
  std::string sig = Hmac(k, string_to_sign);
  return HexEncode(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

Result<SigV4Authorization> ParseAuthorization(const std::string& header) {
  const std::string kAlg = "AWS4-HMAC-SHA256";
  if (header.compare(0, kAlg.size(), kAlg) != 0 || header.size() == kAlg.size() || header[kAlg.size()] != ' ')
    return InvalidArgument("Authorization", "Authorization header requires the AWS4-HMAC-SHA256 algorithm");
  std::map<std::string, std::string> parts;
  std::string rest = header.substr(kAlg.size() + 1);
  size_t i = 0;
  while (i < rest.size()) {
    size_t j = rest.find(',', i);
    if (j == std::string::npos) j = rest.size();
    std::string item = Trim(rest.substr(i, j - i));
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      return InvalidArgument("Authorization",
                             "Authorization header requires 'Credential', 'SignedHeaders' and "
                             "'Signature' parameters; got '" +
                                 item + "'");
    parts[item.substr(0, eq)] = item.substr(eq + 1);
    i = j + 1;
  }
  for (const char* p : {"Credential", "SignedHeaders", "Signature"})
    if (!parts.count(p))
      return InvalidArgument("Authorization", std::string("Authorization header requires '") + p + "' parameter");
  SigV4Authorization a;
  std::vector<std::string> cred;
  std::string c = parts["Credential"];
  for (size_t s = 0;;) {
    size_t e = c.find('/', s);
    cred.push_back(c.substr(s, e == std::string::npos ? std::string::npos : e - s));
    if (e == std::string::npos) break;
    s = e + 1;
  }
  if (cred.size() != 5 || cred[4] != "aws4_request" || cred[0].empty() || cred[1].size() != 8)
    return InvalidArgument("Authorization",
                           "Credential should be scoped to a valid region and service: "
                           "<key>/<yyyymmdd>/<region>/<service>/aws4_request, got '" +
                               c + "'");
  a.access_key_id = cred[0];
  a.date = cred[1];
  a.region = cred[2];
  a.service = cred[3];
  std::string sh = parts["SignedHeaders"];
  for (size_t s = 0; s <= sh.size();) {
    size_t e = sh.find(';', s);
    if (e == std::string::npos) e = sh.size();
    if (e > s) a.signed_headers.push_back(sh.substr(s, e - s));
    s = e + 1;
  }
  a.signature = parts["Signature"];
  if (a.signed_headers.empty() || a.signature.size() != 64)
    return InvalidArgument("Authorization", "SignedHeaders must be non-empty and Signature 64 hex digits");
  return a;
}

TimeMs ParseAmzDate(const std::string& s) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return -1;
  for (int i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return -1;
  std::tm tm{};
  tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(s.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(s.substr(6, 2));
  tm.tm_hour = std::stoi(s.substr(9, 2));
  tm.tm_min = std::stoi(s.substr(11, 2));
  tm.tm_sec = std::stoi(s.substr(13, 2));
  if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
    return -1;
  return static_cast<TimeMs>(timegm(&tm)) * 1000;
}

std::string FormatAmzDate(TimeMs t) {
  time_t secs = static_cast<time_t>(t / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

SigV4Result VerifySigV4(const SigV4Request& r, const SecretLookup& lookup, TimeMs now, int64_t max_skew_ms) {
  if (!HasHeader(r, "authorization"))
    return Fail(SigV4Error::kMissingAuthenticationToken, "Missing Authentication Token");
  auto auth = ParseAuthorization(HeaderValue(r, "authorization"));
  if (!auth.ok()) return Fail(SigV4Error::kIncompleteSignature, auth.status().message());
  std::string amz_date = HeaderValue(r, "x-amz-date");
  if (amz_date.empty())
    return Fail(SigV4Error::kIncompleteSignature,
                "Authorization header requires existence of either a 'X-Amz-Date' "
                "or a 'Date' header");
  TimeMs t = ParseAmzDate(amz_date);
  if (t < 0) return Fail(SigV4Error::kIncompleteSignature, "X-Amz-Date '" + amz_date + "' is not yyyymmddThhmmssZ");
  if (auth->date != amz_date.substr(0, 8))
    return Fail(SigV4Error::kSignatureDoesNotMatch,
                "Credential should be scoped to a valid date: " + auth->date + " does not match " + amz_date);
  const auto& sh = auth->signed_headers;
  if (std::find(sh.begin(), sh.end(), "host") == sh.end())
    return Fail(SigV4Error::kIncompleteSignature, "'Host' must be a signed header");
  if (!std::is_sorted(sh.begin(), sh.end()))
    return Fail(SigV4Error::kIncompleteSignature, "SignedHeaders must be sorted");
  for (const auto& h : sh)
    if (!HasHeader(r, h)) return Fail(SigV4Error::kIncompleteSignature, "signed header '" + h + "' is missing");
  std::string secret;
  if (!lookup(auth->access_key_id, &secret))
    return Fail(SigV4Error::kUnrecognizedClient, "The security token included in the request is invalid.");
  if (t < now - max_skew_ms || t > now + max_skew_ms)
    return Fail(SigV4Error::kRequestExpired, "Signature expired: " + amz_date + " is now earlier than " +
                                                 FormatAmzDate(now - max_skew_ms) + " (" + FormatAmzDate(now) +
                                                 " - 15 min.)");
  std::string payload_hash = Sha256HexOf(r.body);
  std::string claimed = HeaderValue(r, "x-amz-content-sha256");
  if (!claimed.empty() && Lower(claimed) != payload_hash && claimed != "UNSIGNED-PAYLOAD")
    return Fail(SigV4Error::kSignatureDoesNotMatch,
                "The provided 'x-amz-content-sha256' header does not match "
                "what was computed.");
  std::string creq = CanonicalRequest(r, sh, payload_hash);
  std::string expect =
      SignatureHex(secret, auth->date, auth->region, auth->service, StringToSign(amz_date, auth->Scope(), creq));
  std::string got = Lower(auth->signature);
  if (got.size() != expect.size() || CRYPTO_memcmp(got.data(), expect.data(), expect.size()) != 0)
    return Fail(SigV4Error::kSignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.");
  SigV4Result ok;
  ok.ok = true;
  ok.access_key_id = auth->access_key_id;
  return ok;
}

}  // namespace kiln
