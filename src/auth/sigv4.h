#pragma once
// AWS Signature Version 4 (header-signed requests): the canonical request, the
// string to sign, the signature, and verification of a received request.
// Pure apart from the clock value passed in; no I/O.
//
// Reference: AWS's "Create a signed AWS API request" and the aws-sig-v4-test-suite
// (tests/data/sigv4), which the tests run in full.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace kiln {

// A request as received: path and query already percent-decoded (as HTTP servers
// hand them over), headers in arrival order with their original case.
struct SigV4Request {
  std::string method;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct SigV4Authorization {
  std::string access_key_id;
  std::string date;  // yyyymmdd from the credential scope
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lower case, as listed
  std::string signature;                    // hex
  std::string Scope() const { return date + "/" + region + "/" + service + "/aws4_request"; }
};

// Why a request is refused, as AWS names it.
enum class SigV4Error {
  kMissingAuthenticationToken,  // no Authorization header
  kIncompleteSignature,         // malformed Authorization or missing X-Amz-Date
  kUnrecognizedClient,          // unknown access key id
  kSignatureDoesNotMatch,       // wrong secret, altered request or body
  kRequestExpired,              // X-Amz-Date more than the allowed skew from now
};
const char* AwsErrorCode(SigV4Error e);

struct SigV4Failure {
  SigV4Error error;
  std::string message;
};

Result<SigV4Authorization> ParseAuthorization(const std::string& header);

// Lower-case hex SHA-256.
std::string Sha256HexOf(const std::string& data);
// AWS's URI encoding: every byte except A-Z a-z 0-9 - _ . ~ becomes %XX
// (upper-case hex); '/' is kept when `keep_slash`.
std::string AwsUriEncode(const std::string& s, bool keep_slash);
// The path after RFC 3986 dot-segment removal with empty segments collapsed
// (what AWS signs for every service but S3).
std::string NormalizePath(const std::string& path);

std::string CanonicalRequest(const SigV4Request& r, const std::vector<std::string>& signed_headers,
                             const std::string& payload_hash);
std::string StringToSign(const std::string& amz_date, const std::string& scope, const std::string& canonical_request);
std::string SignatureHex(const std::string& secret, const std::string& date, const std::string& region,
                         const std::string& service, const std::string& string_to_sign);

// Looks up the secret of an access key id; false if the key is unknown.
using SecretLookup = std::function<bool(const std::string& access_key_id, std::string* secret)>;

inline constexpr int64_t kMaxClockSkewMs = 15 * 60 * 1000;

// Verifies a request. On success returns the access key id that signed it.
// The body always counts: its SHA-256 is recomputed and must match both the
// signature and, if present, X-Amz-Content-Sha256.
struct SigV4Result {
  bool ok = false;
  std::string access_key_id;
  SigV4Failure failure{SigV4Error::kMissingAuthenticationToken, ""};
};
SigV4Result VerifySigV4(const SigV4Request& r, const SecretLookup& lookup, TimeMs now,
                        int64_t max_skew_ms = kMaxClockSkewMs);

// Parses "20150830T123600Z"; -1 if malformed.
TimeMs ParseAmzDate(const std::string& s);
std::string FormatAmzDate(TimeMs t);

}  // namespace kiln
