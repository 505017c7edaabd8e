#include "hpo/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <utility>

#include "hpo/snap.h"

namespace kiln::hpo {
namespace {

constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kSqrt2Pi = 2.5066282746310002;

// The density loops below are written so the compiler vectorises them.
#if defined(__GNUC__) && !defined(__clang__)
// GCC's -O2 cost model vectorises no loop of unknown length, and its default
// trapping-math keeps the clamp in ExpNonPositive from becoming a vector max;
// the engine never reads floating-point exception flags.
#pragma GCC push_options
#pragma GCC optimize("vect-cost-model=dynamic", "no-trapping-math")
#if defined(__x86_64__)
#define KILN_HPO_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef KILN_HPO_VECTOR_CLONES
#define KILN_HPO_VECTOR_CLONES
#endif

// exp(x) for x <= 0, relative error below 2e-7: e^x = 2^n e^f with |f| <= ln2 / 2.
// No library call and no branch, so the density loops vectorise; TPE evaluates
// candidates x kernels of these (48,000 at 1,000 trials).
inline double ExpNonPositive(double x) {
  constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer in the low bits
  // Plain operators and memcpy only: library calls would not inline under the optimize pragma.
  x = x < -700.0 ? -700.0 : x;
  const double shifted = x * kLog2e + kShift;
  const double n = shifted - kShift;
  const double f = x - n * kLn2;
  double p = 1.0 / 720;  // Taylor series to f^6 / 6!
  p = p * f + 1.0 / 120;
  p = p * f + 1.0 / 24;
  p = p * f + 1.0 / 6;
  p = p * f + 0.5;
  p = p * f + 1.0;
  p = p * f + 1.0;
  // 2^n: the low bits of `shifted` hold 2^51 + n; move n + 1023 into the exponent field.
  uint64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// The two loops that dominate TPE's cost, written so the compiler vectorises
// them; with GCC on x86-64 also compiled for AVX2 (4 doubles a step), chosen at
// load time where the processor has it.
// a[i] = exp(a[i] - top) for a[i] <= top.
KILN_HPO_VECTOR_CLONES void ExpShifted(double* __restrict a, size_t n, double top) {
  for (size_t i = 0; i < n; ++i) a[i] = ExpNonPositive(a[i] - top);
}

// acc[k] -= ((x - mu[k]) * inv_sigma[k])^2 / 2: one dimension's Gaussian exponent for every kernel.
KILN_HPO_VECTOR_CLONES void SubtractHalfSquares(double* __restrict acc, const double* __restrict mu,
                                                const double* __restrict inv_sigma, size_t n, double x) {
  for (size_t k = 0; k < n; ++k) {
    const double z = (x - mu[k]) * inv_sigma[k];
    acc[k] -= 0.5 * z * z;
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// The standard normal CDF from a table with linear interpolation: absolute error
// below 4e-6, about ten times cheaper than std::erf. Building a density over 1,000
// trials needs it twice per kernel and dimension.
inline double NormalCdf(double z) {
  constexpr int kSteps = 1200;  // over [-6, 6]; beyond, 0 or 1 to within 1e-9
  constexpr double kStep = 12.0 / kSteps;
  static const std::vector<double> table = [] {
    std::vector<double> t(kSteps + 2);
    for (int i = 0; i <= kSteps + 1; ++i) t[i] = 0.5 * std::erfc(-(-6.0 + i * kStep) / kSqrt2);
    return t;
  }();
  const double pos = (std::clamp(z, -6.0, 6.0) + 6.0) / kStep;
  const auto i = static_cast<size_t>(pos);
  return table[i] + (pos - static_cast<double>(i)) * (table[i + 1] - table[i]);
}

class RandomSampler final : public Sampler {
 public:
  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>&, Direction,
                              std::mt19937_64& rng) override {
    std::uniform_real_distribution<double> u(0, 1);
    std::vector<double> x(space.size());
    for (auto& v : x) v = u(rng);
    return x;
  }
};

// Points per dimension: categories, integers, or `continuous_points`.
std::vector<size_t> GridShape(const SearchSpace& space, int continuous_points) {
  std::vector<size_t> shape;
  for (const auto& p : space.params()) {
    if (p.type == ParamType::kCategorical)
      shape.push_back(p.categories.size());
    else if (p.type == ParamType::kInteger)
      shape.push_back(static_cast<size_t>(p.max - p.min) + 1);
    else
      shape.push_back(static_cast<size_t>(continuous_points));
  }
  return shape;
}

class GridSampler final : public Sampler {
 public:
  explicit GridSampler(int points) : points_(points) {}
  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction,
                              std::mt19937_64&) override {
    auto shape = GridShape(space, points_);
    size_t index = history.size();
    size_t cap = Capacity(space);
    if (cap) index %= cap;
    std::vector<double> x(space.size());
    for (size_t d = 0; d < shape.size(); ++d) {
      size_t k = index % shape[d];
      index /= shape[d];
      const auto& p = space.params()[d];
      if (p.type == ParamType::kContinuous && shape[d] > 1) {
        // Grid points include both ends of the range.
        x[d] = std::min(static_cast<double>(k) / static_cast<double>(shape[d] - 1), std::nextafter(1.0, 0.0));
      } else {
        x[d] = (static_cast<double>(k) + 0.5) / static_cast<double>(shape[d]);
      }
    }
    return x;
  }
  size_t Capacity(const SearchSpace& space) const override {
    size_t c = 1;
    for (size_t s : GridShape(space, points_)) c = (c > SIZE_MAX / std::max<size_t>(s, 1)) ? SIZE_MAX : c * s;
    return c;
  }

 private:
  int points_;
};

// Parzen estimator over some dimensions of the unit cube: one kernel per
// observation plus a wide prior kernel (centre, sigma 1, uniform categories) that
// keeps every region reachable. A kernel is a product of Gaussians truncated to
// [0, 1] over the numeric dimensions and smoothed one-hot distributions over the
// categorical ones. TPE builds one estimator per group of dimensions it samples
// together (see TpeSampler::Suggest).
class Parzen {
 public:
  // `obs`: unit-cube points in trial order, `weights` theirs; `dims`: the
  // dimensions covered; `categories[d]`: dimension d's category count (0: numeric).
  Parzen(const std::vector<const std::vector<double>*>& obs, std::vector<double> weights,
         const std::vector<size_t>& dims, const std::vector<size_t>& categories, const TpeOptions& o)
      : kernels_(obs.size() + 1) {
    const size_t n = obs.size(), k_all = kernels_;
    weights.push_back(o.prior_weight);
    const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
    factor_.resize(k_all);
    for (size_t k = 0; k < k_all; ++k) factor_[k] = weights[k] / total;
    weights_ = std::move(weights);
    // Bergstra et al.'s "magic clip" (as in Optuna): no kernel narrower than 1 / min(100, kernels + 1).
    const double min_sigma = 1.0 / std::min(100.0, static_cast<double>(k_all) + 1.0);
    size_t numeric = 0;
    for (size_t d : dims) numeric += categories[d] == 0;
    std::vector<double> norm(k_all, 1.0);  // product over numeric dimensions of each kernel's normaliser
    for (size_t d : dims) {
      if (categories[d] > 0) {
        cats_.push_back(BuildCategorical(obs, d, categories[d], o.prior_weight));
        continue;
      }
      Num v{d, std::vector<double>(k_all), std::vector<double>(k_all), std::vector<double>(k_all)};
      for (size_t k = 0; k < n; ++k) v.mu[k] = (*obs[k])[d];
      v.mu[n] = 0.5;
      if (o.multivariate)
        ScottWidths(v, n, numeric, o.bandwidth, min_sigma);
      else
        NeighbourWidths(v, min_sigma);
      v.sigma[n] = 1.0;
      for (size_t k = 0; k < k_all; ++k) {
        v.inv_sigma[k] = 1.0 / v.sigma[k];
        const double mass = NormalCdf((1 - v.mu[k]) * v.inv_sigma[k]) - NormalCdf(-v.mu[k] * v.inv_sigma[k]);
        norm[k] *= v.sigma[k] * kSqrt2Pi * std::max(mass, 1e-12);
      }
      nums_.push_back(std::move(v));
    }
    for (size_t k = 0; k < k_all; ++k) factor_[k] /= norm[k];
    acc_.resize(k_all);
  }

  // Log density at x, a full unit-cube point of which only `dims` are read.
  double LogPdf(const std::vector<double>& x) {
    if (nums_.size() + cats_.size() != 1) return KernelLogSum(x);
    // One dimension: candidates repeat values (categories, snapped integers), so
    // each distinct value's density is computed once.
    const double key = nums_.empty() ? x[cats_[0].dim] : x[nums_[0].dim];
    for (const auto& [k, v] : memo_)
      if (k == key) return v;
    memo_.emplace_back(key, KernelLogSum(x));
    return memo_.back().second;
  }

 private:
  double KernelLogSum(const std::vector<double>& x) {
    const size_t k_all = kernels_;
    double* acc = acc_.data();
    std::fill(acc, acc + k_all, 0.0);
    for (const Num& v : nums_) SubtractHalfSquares(acc, v.mu.data(), v.inv_sigma.data(), k_all, x[v.dim]);
    for (const Cat& c : cats_) {
      const double* lp = c.log_prob.data() + CategoryOf(x[c.dim], c.count) * k_all;
      for (size_t k = 0; k < k_all; ++k) acc[k] += lp[k];
    }
    // log sum_k factor_k exp(acc_k), shifted by the largest exponent, with
    // independent partial results (no long dependency chain).
    double top4[4] = {acc[0], acc[0], acc[0], acc[0]};
    size_t k = 0;
    for (; k + 4 <= k_all; k += 4)
      for (size_t j = 0; j < 4; ++j) top4[j] = acc[k + j] > top4[j] ? acc[k + j] : top4[j];
    for (; k < k_all; ++k) top4[0] = acc[k] > top4[0] ? acc[k] : top4[0];
    const double top = std::max(std::max(top4[0], top4[1]), std::max(top4[2], top4[3]));
    ExpShifted(acc, k_all, top);
    const double* f = factor_.data();
    double sum4[4] = {0, 0, 0, 0};
    for (k = 0; k + 4 <= k_all; k += 4)
      for (size_t j = 0; j < 4; ++j) sum4[j] += f[k + j] * acc[k + j];
    for (; k < k_all; ++k) sum4[0] += f[k] * acc[k];
    return top + std::log((sum4[0] + sum4[1]) + (sum4[2] + sum4[3]));
  }

 public:
  // Draws the covered dimensions of x: a kernel by weight, then each dimension from it.
  void Sample(std::vector<double>& x, std::mt19937_64& rng) {
    if (pick_.probabilities().size() != kernels_)
      pick_ = std::discrete_distribution<size_t>(weights_.begin(), weights_.end());
    const size_t k = pick_(rng);
    for (const Num& v : nums_) x[v.dim] = TruncatedNormal(v.mu[k], v.sigma[k], rng);
    std::uniform_real_distribution<double> uniform(0, 1);
    for (const Cat& c : cats_) {
      double r = uniform(rng), cum = 0;
      size_t j = 0;
      for (; j + 1 < c.count; ++j) {
        cum += std::exp(c.log_prob[j * kernels_ + k]);
        if (r < cum) break;
      }
      x[c.dim] = (static_cast<double>(j) + 0.5) / static_cast<double>(c.count);
    }
  }

 private:
  struct Num {
    size_t dim;
    std::vector<double> mu, sigma, inv_sigma;  // per kernel, the prior last
  };
  struct Cat {
    size_t dim, count;
    std::vector<double> log_prob;  // [category * kernels + kernel]
  };

  // Each observation puts most of its mass on its own category (Optuna's smoothing:
  // prior_weight / kernels on every category, plus one); the prior is uniform.
  Cat BuildCategorical(const std::vector<const std::vector<double>*>& obs, size_t d, size_t m,
                       double prior_weight) const {
    const size_t n = obs.size(), k_all = kernels_;
    Cat c{d, m, std::vector<double>(m * k_all)};
    const double fill = prior_weight / static_cast<double>(k_all);
    const double row = 1 + fill * static_cast<double>(m);
    const double log_own = std::log((fill + 1) / row), log_other = std::log(fill / row);
    const double log_uniform = -std::log(static_cast<double>(m));
    for (size_t k = 0; k < k_all; ++k) {
      const size_t own = k < n ? CategoryOf((*obs[k])[d], m) : m;
      for (size_t j = 0; j < m; ++j) c.log_prob[j * k_all + k] = k == n ? log_uniform : j == own ? log_own : log_other;
    }
    return c;
  }

  // Multivariate: one width per dimension, Scott's rule on the observations' spread
  // (factor * stddev * n^(-1/(dims+4))), at least the magic clip. Narrow kernels
  // let the good density follow a curved valley (Rosenbrock) that independent
  // dimensions cannot.
  static void ScottWidths(Num& v, size_t n, size_t numeric, double factor, double min_sigma) {
    double s = 0;
    if (n >= 2) {
      double mean = 0, var = 0;
      for (size_t k = 0; k < n; ++k) mean += v.mu[k];
      mean /= static_cast<double>(n);
      for (size_t k = 0; k < n; ++k) var += (v.mu[k] - mean) * (v.mu[k] - mean);
      s = factor * std::sqrt(var / static_cast<double>(n - 1)) *
          std::pow(static_cast<double>(n), -1.0 / (static_cast<double>(numeric) + 4.0));
    }
    for (size_t k = 0; k < n; ++k) v.sigma[k] = std::clamp(s, min_sigma, 1.0);
  }

  // Univariate: the distance to the farther neighbour among the observations and
  // the prior's centre; the outermost kernels use their inner neighbour only
  // (Optuna's consider_endpoints=False).
  static void NeighbourWidths(Num& v, double min_sigma) {
    const size_t k_all = v.mu.size();
    std::vector<size_t> order(k_all);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v.mu[a] < v.mu[b]; });
    for (size_t i = 0; i < k_all; ++i) {
      const double left = i == 0 ? v.mu[order[i]] : v.mu[order[i]] - v.mu[order[i - 1]];
      const double right = i + 1 == k_all ? 1 - v.mu[order[i]] : v.mu[order[i + 1]] - v.mu[order[i]];
      double s = std::max(left, right);
      if (k_all >= 2 && i == 0) s = right;
      if (k_all >= 2 && i + 1 == k_all) s = left;
      v.sigma[order[i]] = std::clamp(s, min_sigma, 1.0);
    }
  }

  static double TruncatedNormal(double mu, double sigma, std::mt19937_64& rng) {
    std::normal_distribution<double> n(mu, sigma);
    for (int tries = 0; tries < 100; ++tries) {
      const double x = n(rng);
      if (x >= 0 && x < 1) return x;
    }
    return std::clamp(mu, 0.0, std::nextafter(1.0, 0.0));
  }

  size_t kernels_;
  std::vector<double> weights_;              // per kernel, the prior last
  std::vector<double> factor_;               // normalised weight over the numeric dimensions' normaliser, per kernel
  std::discrete_distribution<size_t> pick_;  // built on the first Sample (g is never sampled)
  std::vector<Num> nums_;
  std::vector<Cat> cats_;
  std::vector<double> acc_;                      // scratch for LogPdf
  std::vector<std::pair<double, double>> memo_;  // one dimension: (value, log density) seen so far
};

// Optuna's default weights: the latest 25 observations weigh 1, older ones ramp
// down linearly to 1/n.
std::vector<double> RecencyWeights(size_t n) {
  std::vector<double> w(n, 1.0);
  if (n < 25) return w;
  const size_t ramp = n - 25;
  const double lo = 1.0 / static_cast<double>(n);
  for (size_t i = 0; i < ramp; ++i)
    w[i] = ramp == 1 ? lo : lo + (1 - lo) * static_cast<double>(i) / static_cast<double>(ramp - 1);
  return w;
}

class TpeSampler final : public Sampler {
 public:
  explicit TpeSampler(TpeOptions o) : o_(o) {}
  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction dir,
                              std::mt19937_64& rng) override {
    std::vector<const Trial*> done;  // in trial order
    for (const auto& t : history)
      if (t.state == TrialState::kCompleted || t.state == TrialState::kStopped) done.push_back(&t);
    if (static_cast<int>(done.size()) < o_.startup_trials || space.size() == 0)
      return RandomSampler().Suggest(space, history, dir, rng);
    // The "good" trials: the best min(ceil(gamma * n), max_good), ties broken by trial order.
    size_t n_good = static_cast<size_t>(std::ceil(o_.gamma * static_cast<double>(done.size())));
    n_good = std::clamp<size_t>(n_good, 1, static_cast<size_t>(std::max(o_.max_good, 1)));
    n_good = std::min(n_good, done.size());
    const double sign = dir == Direction::kMinimize ? 1 : -1;
    std::vector<size_t> rank(done.size());
    std::iota(rank.begin(), rank.end(), 0);
    std::nth_element(rank.begin(), rank.begin() + static_cast<std::ptrdiff_t>(n_good - 1), rank.end(),
                     [&](size_t a, size_t b) {
                       const double va = sign * done[a]->objective, vb = sign * done[b]->objective;
                       return va < vb || (va == vb && a < b);
                     });
    std::vector<bool> is_good(done.size(), false);
    for (size_t i = 0; i < n_good; ++i) is_good[rank[i]] = true;
    // Integer dimensions: every point of an integer's slice of the unit cube is the
    // same configuration, so observations and candidates are moved to the integer's
    // own coordinate; otherwise where a value fell inside its slice would add noise
    // to the densities and to the choice among candidates.
    const Snapper snap(space);
    std::vector<std::vector<double>> snapped;
    if (!snap.empty()) {
      snapped.reserve(done.size());
      for (const Trial* t : done) {
        snapped.push_back(t->u);
        snap(snapped.back());
      }
    }
    std::vector<const std::vector<double>*> good, bad;
    for (size_t i = 0; i < done.size(); ++i)
      (is_good[i] ? good : bad).push_back(snap.empty() ? &done[i]->u : &snapped[i]);
    // A constant liar (Optuna's constant_liar): running trials count as bad results,
    // so parallel proposals do not pile onto a configuration already being tried.
    std::vector<std::vector<double>> running;
    if (o_.running == TpeOptions::Running::kAsBad)
      for (const auto& t : history)
        if (t.state == TrialState::kRunning && t.u.size() == space.size()) {
          running.push_back(t.u);
          snap(running.back());
        }
    for (const auto& u : running) bad.push_back(&u);

    const std::vector<size_t> categories = CategoryCounts(space);
    // Dimensions sampled together. Multivariate: one joint density over the
    // continuous dimensions, and one density per integer or categorical dimension.
    // Integers and categories take few values, so their marginal densities are well
    // estimated from few trials, while in a joint kernel each would split the good
    // trials into small groups (on the scikit-learn workload of bench/hpo_bench.py,
    // joint integer and categorical dimensions did worse than independent ones).
    std::vector<std::vector<size_t>> groups(1);
    for (size_t d = 0; d < space.size(); ++d) {
      if (o_.multivariate && space.params()[d].type == ParamType::kContinuous)
        groups[0].push_back(d);
      else
        groups.push_back({d});
    }
    if (groups[0].empty()) groups.erase(groups.begin());
    // Per group: candidates from the good density l, keep the one with the highest l / g.
    std::vector<double> best(space.size()), cand(space.size()), pick(space.size());
    for (const auto& dims : groups) {
      Parzen l(good, RecencyWeights(good.size()), dims, categories, o_);
      Parzen g(bad, RecencyWeights(bad.size()), dims, categories, o_);
      double best_score = -INFINITY;
      for (int c = 0; c < std::max(o_.candidates, 1); ++c) {
        l.Sample(cand, rng);
        snap(cand);
        const double score = l.LogPdf(cand) - g.LogPdf(cand);
        if (score > best_score) {
          best_score = score;
          pick = cand;
        }
      }
      for (size_t d : dims) best[d] = pick[d];
    }
    return best;
  }

 private:
  TpeOptions o_;
};

}  // namespace

std::unique_ptr<Sampler> MakeRandomSampler() {
  return std::make_unique<RandomSampler>();
}
std::unique_ptr<Sampler> MakeGridSampler(int continuous_points) {
  return std::make_unique<GridSampler>(continuous_points);
}
std::unique_ptr<Sampler> MakeTpeSampler(TpeOptions opts) {
  return std::make_unique<TpeSampler>(opts);
}

}  // namespace kiln::hpo
