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
  // Running trials: kAsBad counts each as a bad result (a constant liar), so the
  // proposals for parallel trials spread out; kIgnore leaves them out.
  enum class Running { kAsBad, kIgnore };
  Running running = Running::kAsBad;
};
// Tree-structured Parzen Estimator in the unit cube (Bergstra et al. 2011): ranks
// the trials with results into good and bad, fits a Parzen density to each and
// proposes, among candidates drawn from the good density l, the one with the
// highest l / g. Stopped trials count with their last reported value. The
// defaults were tuned on bench/hpo_bench.py's workloads (Branin, Hartmann6,
// Rosenbrock, scikit-learn) with seeds other than the ones it reports.
std::unique_ptr<Sampler> MakeTpeSampler(TpeOptions opts = {});

struct GpOptions {
  // Random until this many trials have results; 0: twice the dimensions, at
  // least 10 and at most 20 (a model of a wider space needs more to start from).
  int startup_trials = 0;
  // At most this many trials model the objective: the best half and the latest
  // half of them (fitting costs O(n^3)).
  int max_points = 300;
  int random_candidates = 1000;  // acquisition: uniform candidates ...
  int local_candidates = 500;    // ... and perturbations of the best trials, then a local search
  int fit_iterations = 60;       // Adam steps on the kernel's hyperparameters
  // The hyperparameters are fitted on at most this many of the modelled trials
  // (the best half and an even spread of the rest); the posterior uses them all.
  int fit_points = 64;
  // How objective values are transformed before they are standardised: kNone;
  // kLog: log(y - best + delta), which tames heavy tails; kRank: the normal
  // quantiles of the values' ranks, which keeps only their order; kAuto: kNone or
  // kLog, whichever has the higher marginal likelihood (Jacobian included).
  enum class Warp { kAuto, kNone, kLog, kRank };
  Warp warp = Warp::kAuto;
  // The improvement sought: kLatent, of the noise-free function over the best
  // predicted observation (standard expected improvement); kObserved, of a new
  // observation (noise included) over the best observed value.
  enum class Improvement { kLatent, kObserved };
  Improvement improvement = Improvement::kLatent;
};
// Gaussian-process Bayesian optimisation: a Matern-5/2 kernel with one length
// scale per dimension (Hamming distance for categories), signal and noise
// variances fitted by maximum a posteriori on the standardised objective, and
// the candidate with the highest expected improvement. Running trials count as
// average results (a constant liar), so parallel trials spread out.
std::unique_ptr<Sampler> MakeGpSampler(GpOptions opts = {});

// The Bayesian strategy's default: GP while at most `gp_until` trials have
// results (where a GP is most sample-efficient and still cheap), TPE after.
std::unique_ptr<Sampler> MakeBayesianSampler(int gp_until = 200, GpOptions gp = {}, TpeOptions tpe = {});

}  // namespace kiln::hpo
