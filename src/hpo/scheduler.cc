#include "hpo/scheduler.h"

#include <algorithm>

namespace kiln::hpo {

static bool Worse(double a, double b, Direction dir) {
  return dir == Direction::kMinimize ? a > b : a < b;
}

Decision MedianRule(const Curve& trial, const std::vector<const Curve*>& others, Direction dir, int min_peers) {
  if (trial.points.empty()) return Decision::kContinue;
  const auto [step, value] = trial.points.back();
  std::vector<double> averages;
  for (const Curve* c : others) {
    double sum = 0;
    int n = 0;
    bool reached = false;
    for (const auto& [s, v] : c->points) {
      if (s > step) break;
      sum += v;
      ++n;
      reached = reached || s == step;
    }
    if (reached && n > 0) averages.push_back(sum / n);
  }
  if (static_cast<int>(averages.size()) < min_peers) return Decision::kContinue;
  std::sort(averages.begin(), averages.end());
  size_t m = averages.size();
  double median = m % 2 ? averages[m / 2] : 0.5 * (averages[m / 2 - 1] + averages[m / 2]);
  return Worse(value, median, dir) ? Decision::kStop : Decision::kContinue;
}

Asha::Asha(int64_t min_resource, int64_t max_resource, int eta) : eta_(std::max(eta, 2)) {
  for (int64_t r = std::max<int64_t>(min_resource, 1); r < max_resource; r *= eta_) rungs_.push_back(r);
}

Decision Asha::Report(int trial_id, int64_t step, double value, Direction dir) {
  if (std::find(rungs_.begin(), rungs_.end(), step) == rungs_.end()) return Decision::kContinue;
  auto& rung = recorded_[step];
  rung[trial_id] = value;
  // Rank among what this rung has seen: continue if in the top ceil(n / eta).
  size_t better = 0;
  for (const auto& [id, v] : rung)
    if (id != trial_id && Worse(value, v, dir)) ++better;
  size_t keep = (rung.size() + static_cast<size_t>(eta_) - 1) / static_cast<size_t>(eta_);
  return better < keep ? Decision::kContinue : Decision::kStop;
}

Hyperband::Hyperband(int64_t min_resource, int64_t max_resource, int eta) {
  eta = std::max(eta, 2);
  for (int64_t r = std::max<int64_t>(min_resource, 1); r < max_resource; r *= eta)
    brackets_.emplace_back(r, max_resource, eta);
  if (brackets_.empty()) brackets_.emplace_back(max_resource, max_resource, eta);
}

Decision Hyperband::Report(int trial_id, int64_t step, double value, Direction dir) {
  return brackets_[static_cast<size_t>(trial_id) % brackets_.size()].Report(trial_id, step, value, dir);
}

}  // namespace kiln::hpo
