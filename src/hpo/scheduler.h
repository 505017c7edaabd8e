#pragma once
// Early stopping: decisions from learning curves (objective per reported step,
// e.g. per epoch). Pure.
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

#include "hpo/sampler.h"

namespace kiln::hpo {

enum class Decision { kContinue, kStop };

struct Curve {
  std::vector<std::pair<int64_t, double>> points;  // (step, value), steps increasing
};

// SageMaker's "Auto" early stopping, the median rule: at step s a trial stops if
// its value at s is worse than the median of the other trials' running averages
// up to s (among those that reached s). Needs `min_peers` such trials.
Decision MedianRule(const Curve& trial, const std::vector<const Curve*>& others, Direction dir, int min_peers = 3);

// Asynchronous successive halving: rungs at min_resource * eta^k (< max_resource).
// A trial reaching a rung continues only if it is in the top 1/eta of the values
// recorded at that rung so far (ties continue).
class Asha {
 public:
  Asha(int64_t min_resource, int64_t max_resource, int eta);
  Decision Report(int trial_id, int64_t step, double value, Direction dir);
  const std::vector<int64_t>& rungs() const { return rungs_; }

 private:
  std::vector<int64_t> rungs_;
  int eta_;
  std::map<int64_t, std::map<int, double>> recorded_;  // rung -> trial -> value
};

// Hyperband as asynchronous brackets: bracket b runs ASHA with min resource
// min_resource * eta^b; trial i goes to bracket i mod brackets.
class Hyperband {
 public:
  Hyperband(int64_t min_resource, int64_t max_resource, int eta);
  Decision Report(int trial_id, int64_t step, double value, Direction dir);
  size_t brackets() const { return brackets_.size(); }

 private:
  std::vector<Asha> brackets_;
};

}  // namespace kiln::hpo
