#include "auth/replay_guard.h"

namespace kiln {

Claim ReplayGuard::Use(const std::string& signature, TimeMs until, TimeMs now) {
  MutexLock l(mu_);
  for (auto it = by_expiry_.begin(); it != by_expiry_.end() && it->first <= now;) {
    auto u = until_.find(it->second);
    if (u != until_.end() && u->second == it->first) until_.erase(u);
    it = by_expiry_.erase(it);
  }
  if (until_.count(signature)) return Claim::kReplayed;
  if (until_.size() >= capacity_) return Claim::kFull;
  until_[signature] = until;
  by_expiry_.emplace(until, signature);
  return Claim::kFirst;
}

void ReplayGuard::Forget(const std::string& signature) {
  MutexLock l(mu_);
  until_.erase(signature);  // its by_expiry_ entry goes when it expires
}

size_t ReplayGuard::size() const {
  MutexLock l(mu_);
  return until_.size();
}

}  // namespace kiln
