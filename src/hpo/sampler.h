#pragma once
// Samplers propose the next configuration from the history of trials. Pure and
// deterministic given the random generator.
#include <memory>
#include <random>

#include "hpo/space.h"

namespace kiln::hpo {

enum class Direction { kMinimize, kMaximize };
enum class TrialState { kRunning, kCompleted, kFailed, kStopped };

struct Trial {
  std::vector<double> u;  // unit-cube coordinates of its configuration
  TrialState state = TrialState::kRunning;
  double objective = 0;  // final (Completed) or last reported (Stopped) value
};

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Unit-cube coordinates of the next trial. `history` holds every trial so far,
  // running ones included (their configurations are taken, not their results).
  virtual std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction dir,
                                      std::mt19937_64& rng) = 0;
  // For Grid: how many distinct configurations exist (0 = unbounded).
  virtual size_t Capacity(const SearchSpace& space) const { return 0; }
};

std::unique_ptr<Sampler> MakeRandomSampler();
// Every combination of categorical values and integers (continuous ranges split
// into `continuous_points`), in a fixed order; wraps around when exhausted.
std::unique_ptr<Sampler> MakeGridSampler(int continuous_points = 5);

struct TpeOptions {
  int startup_trials = 10;  // random until this many trials have results
  int candidates = 48;      // drawn from the "good" density per suggestion
  double prior_weight = 0.5;
  // One joint density over the continuous dimensions, so interactions between
  // them count (integer and categorical dimensions always get one density each);
  // false: one density per dimension (Optuna's default).
  bool multivariate = true;
  double bandwidth = 0.2;  // multivariate: Scott's-rule factor on the observations' spread
  // The "good" trials: the best ceil(gamma * n), at most max_good.
  double gamma = 0.2;
  int max_good = 40;
};
// Tree-structured Parzen Estimator in the unit cube (Bergstra et al. 2011): ranks
// the trials with results into good and bad, fits a Parzen density to each and
// proposes, among candidates drawn from the good density l, the one with the
// highest l / g. Stopped trials count with their last reported value. The
// defaults were tuned on bench/hpo_bench.py's workloads (Branin, Hartmann6,
// Rosenbrock, scikit-learn) with seeds other than the ones it reports.
std::unique_ptr<Sampler> MakeTpeSampler(TpeOptions opts = {});

}  // namespace kiln::hpo
