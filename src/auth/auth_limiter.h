#pragma once
// Rate limits for the HTTP front, pure (the caller passes the time), thread-safe
// and bounded: failed authentications per source address (a brute-force or
// credential-stuffing client is refused before its guesses are checked) and
// requests per principal (one team's script cannot starve the others).
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace kiln {

struct AuthLimits {
  int failures_per_minute = 20;    // per source address; 0 = unlimited
  double requests_per_second = 0;  // per principal, sustained; 0 = unlimited
  double burst = 200;              // per principal
  size_t max_tracked = 100000;     // addresses or principals remembered at once
};

class AuthLimiter {
 public:
  explicit AuthLimiter(AuthLimits limits = {}) : limits_(limits) {}
  // Whether `addr` may try to authenticate now (false: too many recent failures).
  bool MayTry(const std::string& addr, TimeMs now);
  void RecordFailure(const std::string& addr, TimeMs now);
  // Takes one request from `principal`'s bucket; false when it is empty.
  bool TakeRequest(const std::string& principal, TimeMs now);
  const AuthLimits& limits() const { return limits_; }

 private:
  struct Window {
    TimeMs start = 0;
    int failures = 0;
  };
  struct Bucket {
    double tokens = 0;
    TimeMs at = 0;
  };
  // Drops what no longer limits anyone when a map is full: windows over a minute
  // old, buckets that have refilled. If every entry is live, the new one is not
  // tracked (allowed: a full map must not lock everyone out).
  void Prune(TimeMs now);

  AuthLimits limits_;
  std::mutex mu_;
  std::unordered_map<std::string, Window> failures_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace kiln
