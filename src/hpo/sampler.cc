#include "hpo/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace kiln::hpo {
namespace {

constexpr double kSqrt2 = 1.4142135623730951;

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

// A mixture of Gaussians truncated to [0, 1], one per observation plus a wide prior.
struct Parzen {
  std::vector<double> mu, sigma, weight;
  double LogPdf(double x) const {
    double total = 0;
    for (size_t i = 0; i < mu.size(); ++i) {
      double z = (x - mu[i]) / sigma[i];
      double mass = 0.5 * (std::erf((1 - mu[i]) / (sigma[i] * kSqrt2)) - std::erf((0 - mu[i]) / (sigma[i] * kSqrt2)));
      total += weight[i] * std::exp(-0.5 * z * z) / (sigma[i] * 2.5066282746310002 * std::max(mass, 1e-12));
    }
    return std::log(std::max(total, 1e-300));
  }
  double Sample(std::mt19937_64& rng) const {
    std::discrete_distribution<size_t> pick(weight.begin(), weight.end());
    size_t i = pick(rng);
    std::normal_distribution<double> n(mu[i], sigma[i]);
    for (int tries = 0; tries < 100; ++tries) {
      double x = n(rng);
      if (x >= 0 && x < 1) return x;
    }
    return std::clamp(mu[i], 0.0, std::nextafter(1.0, 0.0));
  }
};

Parzen BuildParzen(std::vector<double> obs, double prior_weight) {
  Parzen p;
  std::sort(obs.begin(), obs.end());
  const size_t n = obs.size();
  // Bandwidth: distance to the farther neighbour (with the range ends as
  // neighbours), clipped as in Bergstra et al. and Optuna.
  const double min_sigma = 1.0 / std::min<double>(100.0, 1.0 + static_cast<double>(n));
  for (size_t i = 0; i < n; ++i) {
    double left = i == 0 ? obs[i] - 0 : obs[i] - obs[i - 1];
    double right = i + 1 == n ? 1 - obs[i] : obs[i + 1] - obs[i];
    p.mu.push_back(obs[i]);
    p.sigma.push_back(std::clamp(std::max(left, right), min_sigma, 1.0));
    p.weight.push_back(1.0);
  }
  p.mu.push_back(0.5);
  p.sigma.push_back(1.0);
  p.weight.push_back(prior_weight);
  return p;
}

// Categorical dimension: smoothed counts over the categories.
struct Categorical {
  std::vector<double> prob;
  double LogPdf(double u) const {
    size_t k = std::min(prob.size() - 1, static_cast<size_t>(u * static_cast<double>(prob.size())));
    return std::log(prob[k]);
  }
  double Sample(std::mt19937_64& rng) const {
    std::discrete_distribution<size_t> pick(prob.begin(), prob.end());
    return (static_cast<double>(pick(rng)) + 0.5) / static_cast<double>(prob.size());
  }
};

Categorical BuildCategorical(const std::vector<double>& obs, size_t k, double prior_weight) {
  Categorical c;
  c.prob.assign(k, prior_weight / static_cast<double>(k));
  for (double u : obs) c.prob[std::min(k - 1, static_cast<size_t>(u * static_cast<double>(k)))] += 1;
  double total = std::accumulate(c.prob.begin(), c.prob.end(), 0.0);
  for (auto& p : c.prob) p /= total;
  return c;
}

class TpeSampler final : public Sampler {
 public:
  explicit TpeSampler(TpeOptions o) : o_(o) {}
  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction dir,
                              std::mt19937_64& rng) override {
    std::vector<const Trial*> done;
    for (const auto& t : history)
      if (t.state == TrialState::kCompleted || t.state == TrialState::kStopped) done.push_back(&t);
    if (static_cast<int>(done.size()) < o_.startup_trials) return RandomSampler().Suggest(space, history, dir, rng);
    const double sign = dir == Direction::kMinimize ? 1 : -1;
    std::sort(done.begin(), done.end(),
              [&](const Trial* a, const Trial* b) { return sign * a->objective < sign * b->objective; });
    // gamma(n) = min(ceil(0.1 n), 25): the "good" share.
    size_t n_good = std::min<size_t>(25, static_cast<size_t>(std::ceil(0.1 * static_cast<double>(done.size()))));
    n_good = std::max<size_t>(n_good, 1);
    std::vector<double> best(space.size());
    double best_score = -INFINITY;
    std::vector<std::vector<double>> cands(static_cast<size_t>(o_.candidates), std::vector<double>(space.size()));
    std::vector<double> score(cands.size(), 0.0);
    for (size_t d = 0; d < space.size(); ++d) {
      std::vector<double> good, bad;
      for (size_t i = 0; i < done.size(); ++i) (i < n_good ? good : bad).push_back(done[i]->u[d]);
      const auto& p = space.params()[d];
      if (p.type == ParamType::kCategorical) {
        auto l = BuildCategorical(good, p.categories.size(), o_.prior_weight);
        auto g = BuildCategorical(bad, p.categories.size(), o_.prior_weight);
        for (size_t c = 0; c < cands.size(); ++c) {
          cands[c][d] = l.Sample(rng);
          score[c] += l.LogPdf(cands[c][d]) - g.LogPdf(cands[c][d]);
        }
      } else {
        auto l = BuildParzen(good, o_.prior_weight);
        auto g = BuildParzen(bad, o_.prior_weight);
        for (size_t c = 0; c < cands.size(); ++c) {
          cands[c][d] = l.Sample(rng);
          score[c] += l.LogPdf(cands[c][d]) - g.LogPdf(cands[c][d]);
        }
      }
    }
    for (size_t c = 0; c < cands.size(); ++c)
      if (score[c] > best_score) {
        best_score = score[c];
        best = cands[c];
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
