// Gaussian-process Bayesian optimisation (MakeGpSampler) and the Bayesian
// strategy's default (MakeBayesianSampler). See sampler.h for the contract.
#include <Eigen/Cholesky>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "hpo/sampler.h"
#include "hpo/snap.h"

namespace kiln::hpo {
namespace {

using Eigen::MatrixXd;
using Eigen::VectorXd;

constexpr double kSqrt5 = 2.2360679774997896;
constexpr double kLog2Pi = 1.8378770664093453;

// Squared distance along one dimension: numeric, or 0/1 for categories (m > 0).
double Delta2(double a, double b, size_t m) {
  if (m == 0) return (a - b) * (a - b);
  return CategoryOf(a, m) == CategoryOf(b, m) ? 0.0 : 1.0;
}

// The kernel's hyperparameters, in logs: a length scale per dimension, the signal
// variance and the noise variance (of the standardised objective).
struct Hyper {
  std::vector<double> log_ls;
  double log_signal = 0, log_noise = std::log(1e-2);
  size_t size() const { return log_ls.size() + 2; }
  double& at(size_t i) { return i < log_ls.size() ? log_ls[i] : i == log_ls.size() ? log_signal : log_noise; }
};

// Bounds keep the fit away from degenerate kernels.
constexpr double kMinLogLs = -4.6, kMaxLogLs = 3.0;  // 0.01 .. 20
constexpr double kMinLogSignal = -3.0, kMaxLogSignal = 3.0;
constexpr double kMinLogNoise = -13.8, kMaxLogNoise = 0.0;  // 1e-6 .. 1

void Clamp(Hyper& h) {
  for (double& l : h.log_ls) l = std::clamp(l, kMinLogLs, kMaxLogLs);
  h.log_signal = std::clamp(h.log_signal, kMinLogSignal, kMaxLogSignal);
  h.log_noise = std::clamp(h.log_noise, kMinLogNoise, kMaxLogNoise);
}

// Matern 5/2 of the scaled distance r, given r^2.
inline double Matern52(double r2) {
  const double r = std::sqrt(r2);
  return (1 + kSqrt5 * r + 5.0 / 3.0 * r2) * std::exp(-kSqrt5 * r);
}

// The per-dimension squared distances between the training points, computed once
// and shared by every fit (one per objective transform).
class Model {
 public:
  Model(const std::vector<std::vector<double>>& x, std::vector<size_t> cats)
      : n_(static_cast<Eigen::Index>(x.size())), cats_(std::move(cats)) {
    const size_t n = x.size(), d = cats_.size();
    dist_.assign(d, MatrixXd::Zero(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n)));
    for (size_t k = 0; k < d; ++k)
      for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < i; ++j) {
          const double v = Delta2(x[i][k], x[j][k], cats_[k]);
          dist_[k](static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) = v;
          dist_[k](static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(i)) = v;
        }
  }

  // Log marginal likelihood plus the hyperparameters' log prior, and its gradient
  // in log space. Priors as in BoTorch's classic GP: length scale ~ Gamma(3, 6),
  // signal ~ Gamma(2, 0.15), noise ~ Gamma(1.1, 0.05). -inf when K is not positive definite.
  double LogPosterior(const Hyper& h, const VectorXd& y, std::vector<double>* grad) const {
    const Eigen::Index n = n_;
    const size_t d = cats_.size();
    const double signal = std::exp(h.log_signal), noise = std::exp(h.log_noise);
    std::vector<double> inv_ls2(d);
    for (size_t k = 0; k < d; ++k) inv_ls2[k] = std::exp(-2 * h.log_ls[k]);
    MatrixXd r2 = MatrixXd::Zero(n, n);
    for (size_t k = 0; k < d; ++k) r2.noalias() += inv_ls2[k] * dist_[k];
    MatrixXd kf(n, n), g(n, n);  // g: the length-scale gradient's common factor
    for (Eigen::Index j = 0; j < n; ++j)
      for (Eigen::Index i = 0; i < n; ++i) {
        const double rr = r2(i, j), r = std::sqrt(rr), e = std::exp(-kSqrt5 * r);
        kf(i, j) = signal * (1 + kSqrt5 * r + 5.0 / 3.0 * rr) * e;
        g(i, j) = signal * 5.0 / 3.0 * (1 + kSqrt5 * r) * e;
      }
    MatrixXd k = kf;
    k.diagonal().array() += noise + 1e-8;
    Eigen::LLT<MatrixXd> llt(k);
    if (llt.info() != Eigen::Success) return -INFINITY;
    const VectorXd alpha = llt.solve(y);
    const double log_det = 2 * llt.matrixLLT().diagonal().array().log().sum();
    double lp = -0.5 * y.dot(alpha) - 0.5 * log_det - 0.5 * static_cast<double>(n) * kLog2Pi;
    for (size_t k2 = 0; k2 < d; ++k2) lp += 2 * h.log_ls[k2] - 6 * std::exp(h.log_ls[k2]);
    lp += h.log_signal - 0.15 * signal;
    lp += 0.1 * h.log_noise - 0.05 * noise;
    if (!grad) return lp;
    // d lml / d theta = tr((alpha alpha^T - K^-1) dK/dtheta) / 2.
    MatrixXd w = alpha * alpha.transpose();
    w.noalias() -= llt.solve(MatrixXd::Identity(n, n));
    grad->assign(h.size(), 0);
    const MatrixXd wg = w.cwiseProduct(g);
    for (size_t k2 = 0; k2 < d; ++k2)
      (*grad)[k2] = 0.5 * inv_ls2[k2] * wg.cwiseProduct(dist_[k2]).sum() + 2 - 6 * std::exp(h.log_ls[k2]);
    (*grad)[d] = 0.5 * w.cwiseProduct(kf).sum() + 1 - 0.15 * signal;
    (*grad)[d + 1] = 0.5 * noise * w.trace() + 0.1 - 0.05 * noise;
    return lp;
  }

  // Maximum a posteriori by Adam in log space from a fixed start (deterministic),
  // keeping the best point visited.
  Hyper Fit(const VectorXd& y, int iterations, double* best_lp_out = nullptr) const {
    Hyper h;
    h.log_ls.assign(cats_.size(), std::log(0.5));
    Hyper best = h;
    double best_lp = -INFINITY;
    std::vector<double> grad, m(h.size(), 0), v(h.size(), 0);
    constexpr double kRate = 0.1, kB1 = 0.9, kB2 = 0.999;
    for (int it = 1; it <= iterations; ++it) {
      const double lp = LogPosterior(h, y, &grad);
      if (!std::isfinite(lp)) {
        h.log_noise = std::min(kMaxLogNoise, h.log_noise + 1);  // more noise restores definiteness
        continue;
      }
      if (lp > best_lp) {
        best_lp = lp;
        best = h;
      }
      for (size_t i = 0; i < h.size(); ++i) {
        m[i] = kB1 * m[i] + (1 - kB1) * grad[i];
        v[i] = kB2 * v[i] + (1 - kB2) * grad[i] * grad[i];
        const double mh = m[i] / (1 - std::pow(kB1, it)), vh = v[i] / (1 - std::pow(kB2, it));
        h.at(i) += kRate * mh / (std::sqrt(vh) + 1e-8);
      }
      Clamp(h);
    }
    if (best_lp_out) *best_lp_out = best_lp;
    return best;
  }

 private:
  Eigen::Index n_;
  std::vector<size_t> cats_;
  std::vector<MatrixXd> dist_;  // per dimension, n x n
};

// The posterior given fitted hyperparameters (noise-free predictions).
class Posterior {
 public:
  Posterior(std::vector<std::vector<double>> x, const VectorXd& y, std::vector<size_t> cats, const Hyper& h)
      : x_(std::move(x)), cats_(std::move(cats)), signal_(std::exp(h.log_signal)) {
    inv_ls2_.resize(cats_.size());
    for (size_t k = 0; k < cats_.size(); ++k) inv_ls2_[k] = std::exp(-2 * h.log_ls[k]);
    const auto n = static_cast<Eigen::Index>(x_.size());
    MatrixXd k(n, n);
    for (Eigen::Index i = 0; i < n; ++i)
      for (Eigen::Index j = 0; j <= i; ++j) k(i, j) = k(j, i) = Kernel(x_[i], x_[j]);
    for (double jitter = std::exp(h.log_noise) + 1e-8;; jitter *= 10) {
      MatrixXd kn = k;
      kn.diagonal().array() += jitter;
      llt_.compute(kn);
      if (llt_.info() == Eigen::Success || jitter > 1) break;
    }
    alpha_ = llt_.solve(y);
  }

  double Kernel(const std::vector<double>& a, const std::vector<double>& b) const {
    double r2 = 0;
    for (size_t k = 0; k < cats_.size(); ++k) r2 += inv_ls2_[k] * Delta2(a[k], b[k], cats_[k]);
    return signal_ * Matern52(r2);
  }

  // Mean and variance at each of `pts`.
  void Predict(const std::vector<std::vector<double>>& pts, VectorXd& mean, VectorXd& var) const {
    MatrixXd ks = Cross(pts);
    mean = ks.transpose() * alpha_;
    llt_.matrixL().solveInPlace(ks);
    var = (signal_ - ks.colwise().squaredNorm().array()).max(1e-12).matrix().transpose();
  }
  // The mean alone (no O(n^2) solve per point).
  VectorXd PredictMean(const std::vector<std::vector<double>>& pts) const { return Cross(pts).transpose() * alpha_; }

 private:
  // The kernel between every training point (rows) and every point of `pts` (columns).
  MatrixXd Cross(const std::vector<std::vector<double>>& pts) const {
    const auto n = static_cast<Eigen::Index>(x_.size()), c = static_cast<Eigen::Index>(pts.size());
    MatrixXd ks(n, c);
    for (Eigen::Index j = 0; j < c; ++j)
      for (Eigen::Index i = 0; i < n; ++i) ks(i, j) = Kernel(x_[static_cast<size_t>(i)], pts[static_cast<size_t>(j)]);
    return ks;
  }

  std::vector<std::vector<double>> x_;
  std::vector<size_t> cats_;
  double signal_;
  std::vector<double> inv_ls2_;
  Eigen::LLT<MatrixXd> llt_;
  VectorXd alpha_;
};

// log of the expected improvement below `best` for a normal (mean, var); stays
// finite and ordered far in the tail, where EI itself underflows.
double LogEi(double best, double mean, double var) {
  const double sigma = std::sqrt(var), z = (best - mean) / sigma;
  const double log_phi = -0.5 * z * z - 0.5 * kLog2Pi;
  if (z > -6) {
    const double cdf = 0.5 * std::erfc(-z / std::sqrt(2.0));
    return std::log(sigma) + std::log(std::max(z * cdf + std::exp(log_phi), 1e-300));
  }
  // z Phi(z) + phi(z) ~ phi(z) / z^2 (1 - 3 / z^2) as z -> -inf.
  return std::log(sigma) + log_phi - 2 * std::log(-z) + std::log1p(-3 / (z * z));
}

// The standard normal quantile (Acklam's rational approximation, relative error
// below 1.2e-9), for 0 < p < 1.
double NormalQuantile(double p) {
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                                 1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771972e+01, -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  if (p < 0.02425) {
    const double q = std::sqrt(-2 * std::log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - 0.02425) return -NormalQuantile(1 - p);
  const double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

// A uniform point of the unit cube.
std::vector<double> RandomPoint(size_t dims, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<double> u(dims);
  for (double& v : u) v = uniform(rng);
  return u;
}

std::vector<std::vector<double>> SnappedPoints(const std::vector<const Trial*>& trials, const Snapper& snap) {
  std::vector<std::vector<double>> out;
  out.reserve(trials.size());
  for (const Trial* t : trials) {
    out.push_back(t->u);
    snap(out.back());
  }
  return out;
}

// Log expected improvement over the incumbent, under the posterior given the
// observations and, as constant liars, the running trials.
class Acquisition {
 public:
  // `x`, `y`: the observations (y as the model sees it); `pending`: the running trials' points.
  Acquisition(const std::vector<std::vector<double>>& x, const VectorXd& y, const std::vector<size_t>& cats,
              const Hyper& h, const std::vector<std::vector<double>>& pending, GpOptions::Improvement improvement)
      : post_(x, y, cats, h) {
    mu_obs_ = post_.PredictMean(x);
    const bool observed = improvement == GpOptions::Improvement::kObserved;
    best_ = observed ? y.minCoeff() : mu_obs_.minCoeff();
    extra_var_ = observed ? std::exp(h.log_noise) : 0.0;
    if (pending.empty()) return;
    // A constant liar: a running trial counts as an average result (the
    // observations' mean, 0 after standardising), or at the model's prediction
    // where that is worse. Believing an optimistic prediction would leave the
    // mean's slope beside the running trial, and the next proposal next to it.
    VectorXd mu_p, var_p;
    post_.Predict(pending, mu_p, var_p);
    mu_p = mu_p.cwiseMax(0.0);
    VectorXd y2(y.size() + mu_p.size());
    y2 << y, mu_p;
    std::vector<std::vector<double>> x2 = x;
    x2.insert(x2.end(), pending.begin(), pending.end());
    post_ = Posterior(std::move(x2), y2, cats, h);
  }

  // The posterior mean at each observation (before the liars joined).
  const VectorXd& observed_mean() const { return mu_obs_; }

  std::vector<double> Score(const std::vector<std::vector<double>>& pts) const {
    VectorXd m, v;
    post_.Predict(pts, m, v);
    std::vector<double> s(pts.size());
    for (size_t i = 0; i < pts.size(); ++i)
      s[i] = LogEi(best_, m(static_cast<Eigen::Index>(i)), v(static_cast<Eigen::Index>(i)) + extra_var_);
    return s;
  }

 private:
  Posterior post_;
  VectorXd mu_obs_;
  double best_ = 0;
  double extra_var_ = 0;
};

// Maximises the acquisition: uniform candidates and perturbations of the best
// observations, then a local search from the five best candidates. It draws
// from `rng` in a fixed order, so a seed gives one proposal.
class CandidateSearch {
 public:
  CandidateSearch(const Acquisition& acq, const Snapper& snap, const std::vector<size_t>& cats, const Hyper& h,
                  std::mt19937_64& rng)
      : acq_(acq), snap_(snap), cats_(cats), h_(h), rng_(rng) {}

  // `x`: the observations' points.
  std::vector<double> Run(const std::vector<std::vector<double>>& x, int random_candidates, int local_candidates) {
    const std::vector<std::vector<double>> cand = Candidates(x, random_candidates, local_candidates);
    return LocalSearch(cand, acq_.Score(cand));
  }

 private:
  // Candidates: uniform points, and perturbations of the best observations
  // scaled by each dimension's length scale.
  std::vector<std::vector<double>> Candidates(const std::vector<std::vector<double>>& x, int random_candidates,
                                              int local_candidates) {
    const VectorXd& mu_obs = acq_.observed_mean();
    std::vector<size_t> order(x.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return mu_obs(static_cast<Eigen::Index>(a)) < mu_obs(static_cast<Eigen::Index>(b));
    });
    const size_t top = std::min<size_t>(order.size(), 10);
    std::vector<std::vector<double>> cand;
    cand.reserve(static_cast<size_t>(random_candidates) + static_cast<size_t>(local_candidates));
    for (int i = 0; i < random_candidates; ++i) {
      cand.push_back(RandomPoint(cats_.size(), rng_));
      snap_(cand.back());
    }
    for (int i = 0; i < local_candidates; ++i) cand.push_back(Perturb(x[order[static_cast<size_t>(i) % top]], 0.2));
    return cand;
  }

  // Local search from the five best candidates (scores `s`): perturbations with
  // a shrinking step, kept when they improve.
  std::vector<double> LocalSearch(const std::vector<std::vector<double>>& cand, const std::vector<double>& s) {
    std::vector<size_t> idx(cand.size());
    std::iota(idx.begin(), idx.end(), 0);
    const size_t starts = std::min<size_t>(5, idx.size());
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(starts), idx.end(),
                      [&](size_t a, size_t b) { return s[a] > s[b]; });
    std::vector<double> best_u = cand[idx[0]];
    double best_s = s[idx[0]];
    for (size_t k = 0; k < starts; ++k) {
      std::vector<double> cur = cand[idx[k]];
      double cur_s = s[idx[k]];
      for (double scale : {0.1, 0.03, 0.01}) {
        std::vector<std::vector<double>> batch(16);
        for (auto& b : batch) b = Perturb(cur, scale);
        std::vector<double> bs = acq_.Score(batch);
        for (size_t i = 0; i < batch.size(); ++i)
          if (bs[i] > cur_s) {
            cur_s = bs[i];
            cur = batch[i];
          }
      }
      if (cur_s > best_s) {
        best_s = cur_s;
        best_u = cur;
      }
    }
    return best_u;
  }

  // `from` moved by `scale` times each dimension's length scale; a category
  // changes with probability 1/dims.
  std::vector<double> Perturb(const std::vector<double>& from, double scale) {
    std::vector<double> u = from;
    for (size_t d = 0; d < u.size(); ++d) {
      if (cats_[d] > 0) {
        if (uniform_(rng_) < 1.0 / static_cast<double>(u.size())) u[d] = uniform_(rng_);
        continue;
      }
      const double step = std::clamp(scale * std::exp(h_.log_ls[d]), 0.005, 0.3);
      // Reflected at the ends: clamping would pile candidates onto the bounds.
      double v = u[d] + step * std::normal_distribution<double>(0, 1)(rng_);
      v = v < 0 ? -v : v >= 1 ? 2 - v : v;
      u[d] = std::clamp(v, 0.0, std::nextafter(1.0, 0.0));
    }
    snap_(u);
    return u;
  }

  const Acquisition& acq_;
  const Snapper& snap_;
  const std::vector<size_t>& cats_;
  const Hyper& h_;
  std::mt19937_64& rng_;
  std::uniform_real_distribution<double> uniform_{0, 1};
};

class GpSampler final : public Sampler {
 public:
  explicit GpSampler(GpOptions o) : o_(o) {}

  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction dir,
                              std::mt19937_64& rng) override {
    std::vector<const Trial*> done, pending;
    for (const auto& t : history) {
      if (t.u.size() != space.size()) continue;
      if (t.state == TrialState::kCompleted || t.state == TrialState::kStopped)
        done.push_back(&t);
      else if (t.state == TrialState::kRunning)
        pending.push_back(&t);
    }
    const int startup =
        o_.startup_trials > 0 ? o_.startup_trials : std::clamp(2 * static_cast<int>(space.size()), 10, 20);
    if (static_cast<int>(done.size()) < std::max(startup, 2) || space.size() == 0)
      return RandomPoint(space.size(), rng);
    const double sign = dir == Direction::kMinimize ? 1 : -1;
    done = Subset(done, sign);

    const Snapper snap(space);
    const std::vector<size_t> cats = CategoryCounts(space);
    const std::vector<std::vector<double>> x = SnappedPoints(done, snap);
    VectorXd y(static_cast<Eigen::Index>(done.size()));
    for (size_t i = 0; i < done.size(); ++i) y(static_cast<Eigen::Index>(i)) = sign * done[i]->objective;
    const FittedObjective fit = FitObjective(x, cats, y);
    if (fit.h.log_ls.empty()) return RandomPoint(space.size(), rng);
    const Acquisition acq(x, fit.y, cats, fit.h, SnappedPoints(pending, snap), o_.improvement);
    return CandidateSearch(acq, snap, cats, fit.h, rng).Run(x, o_.random_candidates, o_.local_candidates);
  }

 private:
  struct FittedObjective {
    Hyper h;     // no length scales: no fit (the objective is constant)
    VectorXd y;  // the objective as the model sees it: transformed and standardised
  };

  // Transforms and standardises the objective `raw` at `x` and fits the kernel.
  // Auto: the untransformed or the log objective, whichever the model explains
  // better (marginal likelihood with the transform's Jacobian, so the two compare).
  // The kernel's hyperparameters are fitted on at most fit_points of the points
  // (FitSubset): a fit costs O(n^3) per step, the posterior after it O(n^3) once.
  FittedObjective FitObjective(const std::vector<std::vector<double>>& x, const std::vector<size_t>& cats,
                               const VectorXd& raw) const {
    const Eigen::Index n = raw.size();
    std::vector<GpOptions::Warp> warps = {o_.warp};
    if (o_.warp == GpOptions::Warp::kAuto) warps = {GpOptions::Warp::kNone, GpOptions::Warp::kLog};
    const std::vector<size_t> sub = FitSubset(raw);
    std::vector<std::vector<double>> xs;
    xs.reserve(sub.size());
    for (size_t i : sub) xs.push_back(x[i]);
    const Model model(xs, cats);
    FittedObjective fit{{}, raw};
    double best_score = -INFINITY;
    for (GpOptions::Warp w : warps) {
      VectorXd yw = raw;
      Warp(yw, w);
      const double mean = yw.mean();
      const double sd =
          std::sqrt((yw.array() - mean).square().sum() / static_cast<double>(std::max<Eigen::Index>(n - 1, 1)));
      // A constant objective gives no direction.
      if (!(sd > 0) || !std::isfinite(sd)) continue;
      yw = (yw.array() - mean) / sd;
      // The fitted points' values and the log of the transform's Jacobian at them
      // (the log transform's derivative is 1 / (y - lo + delta) = exp(-warped)).
      VectorXd ys(static_cast<Eigen::Index>(sub.size()));
      double jacobian = -static_cast<double>(sub.size()) * std::log(sd);
      for (size_t i = 0; i < sub.size(); ++i) {
        const auto k = static_cast<Eigen::Index>(sub[i]);
        ys(static_cast<Eigen::Index>(i)) = yw(k);
        if (w == GpOptions::Warp::kLog) jacobian -= yw(k) * sd + mean;
      }
      if (!std::isfinite(jacobian)) continue;
      double lp = -INFINITY;
      Hyper fitted = model.Fit(ys, o_.fit_iterations, &lp);
      if (lp + jacobian > best_score || warps.size() == 1) {
        best_score = lp + jacobian;
        fit.h = fitted;
        fit.y = yw;
      }
    }
    return fit;
  }

  // The points the hyperparameters are fitted on: all, or at most fit_points of
  // them: the best half (where the next proposal will look) and the rest spread
  // evenly over the others in trial order (the function's shape elsewhere).
  std::vector<size_t> FitSubset(const VectorXd& y) const {
    const auto n = static_cast<size_t>(y.size());
    const auto cap = static_cast<size_t>(std::max(o_.fit_points, 8));
    std::vector<size_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    if (n <= cap) return all;
    std::vector<size_t> order = all;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return y(static_cast<Eigen::Index>(a)) < y(static_cast<Eigen::Index>(b));
    });
    std::vector<bool> keep(n, false);
    for (size_t i = 0; i < cap / 2; ++i) keep[order[i]] = true;
    std::vector<size_t> rest;
    for (size_t i = 0; i < n; ++i)
      if (!keep[i]) rest.push_back(i);
    const size_t more = cap - cap / 2;
    for (size_t j = 0; j < more; ++j) keep[rest[j * rest.size() / more]] = true;
    std::vector<size_t> out;
    for (size_t i = 0; i < n; ++i)
      if (keep[i]) out.push_back(i);
    return out;
  }

  // Transforms y in place.
  static void Warp(VectorXd& y, GpOptions::Warp warp) {
    const auto n = y.size();
    if (warp == GpOptions::Warp::kLog) {
      std::vector<double> v(y.data(), y.data() + n);
      std::nth_element(v.begin(), v.begin() + n / 2, v.end());
      const double lo = y.minCoeff(), med = v[static_cast<size_t>(n / 2)];
      const double delta = std::max(0.1 * (med - lo), 1e-12 * (1 + std::fabs(lo)));
      y = (y.array() - lo + delta).log();
      return;
    }
    if (warp == GpOptions::Warp::kRank) {
      std::vector<Eigen::Index> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::sort(order.begin(), order.end(), [&](auto a, auto b) { return y(a) < y(b); });
      VectorXd out(n);
      for (Eigen::Index i = 0; i < n;) {
        Eigen::Index j = i;  // ties share their mean rank
        while (j + 1 < n && y(order[static_cast<size_t>(j + 1)]) == y(order[static_cast<size_t>(i)])) ++j;
        const double q = (0.5 * static_cast<double>(i + j) + 0.5) / static_cast<double>(n);
        for (Eigen::Index k = i; k <= j; ++k) out(order[static_cast<size_t>(k)]) = NormalQuantile(q);
        i = j + 1;
      }
      y = out;
    }
  }

  // At most max_points trials: the best half, then the latest.
  std::vector<const Trial*> Subset(const std::vector<const Trial*>& done, double sign) const {
    const auto cap = static_cast<size_t>(std::max(o_.max_points, 4));
    if (done.size() <= cap) return done;
    std::vector<size_t> order(done.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return sign * done[a]->objective < sign * done[b]->objective; });
    std::vector<bool> keep(done.size(), false);
    for (size_t i = 0; i < cap / 2; ++i) keep[order[i]] = true;
    size_t kept = cap / 2;
    for (size_t i = done.size(); i-- > 0 && kept < cap;)
      if (!keep[i]) {
        keep[i] = true;
        ++kept;
      }
    std::vector<const Trial*> out;
    out.reserve(cap);
    for (size_t i = 0; i < done.size(); ++i)
      if (keep[i]) out.push_back(done[i]);
    return out;
  }

  GpOptions o_;
};

class BayesianSampler final : public Sampler {
 public:
  BayesianSampler(int gp_until, GpOptions gp, TpeOptions tpe)
      : gp_until_(gp_until), gp_(MakeGpSampler(gp)), tpe_(MakeTpeSampler(tpe)) {}
  std::vector<double> Suggest(const SearchSpace& space, const std::vector<Trial>& history, Direction dir,
                              std::mt19937_64& rng) override {
    const auto with_results = std::count_if(history.begin(), history.end(), [](const Trial& t) {
      return t.state == TrialState::kCompleted || t.state == TrialState::kStopped;
    });
    return (with_results <= gp_until_ ? gp_ : tpe_)->Suggest(space, history, dir, rng);
  }

 private:
  int gp_until_;
  std::unique_ptr<Sampler> gp_, tpe_;
};

}  // namespace

std::unique_ptr<Sampler> MakeGpSampler(GpOptions opts) {
  return std::make_unique<GpSampler>(opts);
}

std::unique_ptr<Sampler> MakeBayesianSampler(int gp_until, GpOptions gp, TpeOptions tpe) {
  return std::make_unique<BayesianSampler>(gp_until, gp, tpe);
}

}  // namespace kiln::hpo
