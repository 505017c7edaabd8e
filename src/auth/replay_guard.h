#pragma once
// Refuses a signed request seen before: SigV4 lets a captured request be sent
// again for as long as its X-Amz-Date is within the clock skew (15 minutes),
// so a mutating operation (CreateTrainingJob, StopTrainingJob, ...) remembers
// each signature until it could no longer verify, and a second use is refused.
// Bounded: at `capacity` live signatures, new ones are refused (the caller
// answers "throttled") rather than old ones forgotten.
#include <cstddef>
#include <map>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/thread_annotations.h"

namespace kiln {

enum class Claim {
  kFirst,     // never seen: now remembered until `until`
  kReplayed,  // seen, and still remembered
  kFull,      // `capacity` live signatures: not remembered, refuse the request
};

class ReplayGuard {
 public:
  explicit ReplayGuard(size_t capacity = 200000) : capacity_(capacity) {}
  // Remembers `signature` until `until` (ms), forgetting the expired ones first.
  Claim Use(const std::string& signature, TimeMs until, TimeMs now) EXCLUDES(mu_);
  // Forgets `signature`: the request it signed was not carried out (a server
  // error), so the client's retry of it is no replay.
  void Forget(const std::string& signature) EXCLUDES(mu_);
  size_t size() const EXCLUDES(mu_);

 private:
  const size_t capacity_;
  mutable Mutex mu_;
  std::unordered_map<std::string, TimeMs> until_ GUARDED_BY(mu_);
  std::multimap<TimeMs, std::string> by_expiry_ GUARDED_BY(mu_);
};

}  // namespace kiln
