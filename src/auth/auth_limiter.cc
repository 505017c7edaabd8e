#include "auth/auth_limiter.h"

#include <algorithm>

namespace kiln {
namespace {
constexpr TimeMs kWindowMs = 60 * 1000;
}

bool AuthLimiter::MayTry(const std::string& addr, TimeMs now) {
  if (limits_.failures_per_minute <= 0) return true;
  std::lock_guard<std::mutex> l(mu_);
  auto it = failures_.find(addr);
  if (it == failures_.end()) return true;
  if (now - it->second.start >= kWindowMs) return true;
  return it->second.failures < limits_.failures_per_minute;
}

void AuthLimiter::RecordFailure(const std::string& addr, TimeMs now) {
  if (limits_.failures_per_minute <= 0) return;
  std::lock_guard<std::mutex> l(mu_);
  auto it = failures_.find(addr);
  if (it == failures_.end()) {
    if (failures_.size() >= limits_.max_tracked) Prune(now);
    if (failures_.size() >= limits_.max_tracked) return;
    it = failures_.emplace(addr, Window{now, 0}).first;
  }
  if (now - it->second.start >= kWindowMs) it->second = Window{now, 0};
  ++it->second.failures;
}

bool AuthLimiter::TakeRequest(const std::string& principal, TimeMs now) {
  if (limits_.requests_per_second <= 0) return true;
  std::lock_guard<std::mutex> l(mu_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) {
    if (buckets_.size() >= limits_.max_tracked) Prune(now);
    if (buckets_.size() >= limits_.max_tracked) return true;
    it = buckets_.emplace(principal, Bucket{limits_.burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(limits_.burst, b.tokens + static_cast<double>(now - b.at) * limits_.requests_per_second / 1000.0);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void AuthLimiter::Prune(TimeMs now) {
  for (auto it = failures_.begin(); it != failures_.end();)
    it = now - it->second.start >= kWindowMs ? failures_.erase(it) : std::next(it);
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const double refilled =
        it->second.tokens + static_cast<double>(now - it->second.at) * limits_.requests_per_second / 1000.0;
    it = refilled >= limits_.burst ? buckets_.erase(it) : std::next(it);
  }
}

}  // namespace kiln
