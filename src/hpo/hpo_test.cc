#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "hpo/scheduler.h"

namespace kiln::hpo {
namespace {

SearchSpace Branin() {
  return *SearchSpace::Create({{"x1", ParamType::kContinuous, -5, 10, {}, Scaling::kLinear},
                               {"x2", ParamType::kContinuous, 0, 15, {}, Scaling::kLinear}});
}

double BraninF(const Config& c) {
  double x1 = std::get<double>(c.at("x1")), x2 = std::get<double>(c.at("x2"));
  const double pi = 3.141592653589793;
  double a = x2 - 5.1 / (4 * pi * pi) * x1 * x1 + 5 / pi * x1 - 6;
  return a * a + 10 * (1 - 1 / (8 * pi)) * std::cos(x1) + 10;
}

TEST(Space, ValidatesSageMakerRules) {
  EXPECT_EQ(SearchSpace::Create({{"a", ParamType::kContinuous, 1, 1}}).status().field(), "ranges[0].min");
  EXPECT_EQ(SearchSpace::Create({{"a", ParamType::kContinuous, 0, 1, {}, Scaling::kLogarithmic}}).status().field(),
            "ranges[0].scaling");
  EXPECT_EQ(
      SearchSpace::Create({{"a", ParamType::kContinuous, 0, 1}, {"a", ParamType::kInteger, 0, 3}}).status().field(),
      "ranges[1].name");
  EXPECT_EQ(SearchSpace::Create({{"c", ParamType::kCategorical, 0, 0, {}}}).status().field(), "ranges[0].values");
  std::vector<Parameter> many;
  for (int i = 0; i < 31; ++i) many.push_back({"p" + std::to_string(i), ParamType::kInteger, 0, 5});
  EXPECT_EQ(SearchSpace::Create(many).status().field(), "ranges[30]");
}

TEST(Space, EncodeDecodeRoundTrips) {
  auto sp = *SearchSpace::Create({{"lr", ParamType::kContinuous, 1e-5, 1e-1, {}, Scaling::kLogarithmic},
                                  {"depth", ParamType::kInteger, 1, 10, {}, Scaling::kLinear},
                                  {"units", ParamType::kInteger, 1, 1024, {}, Scaling::kLogarithmic},
                                  {"beta", ParamType::kContinuous, 0.9, 0.999, {}, Scaling::kReverseLogarithmic},
                                  {"opt", ParamType::kCategorical, 0, 0, {"sgd", "adam", "rmsprop"}}});
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::set<double> depths;
  for (int i = 0; i < 2000; ++i) {
    std::vector<double> x(sp.size());
    for (auto& v : x) v = u(rng);
    Config c = sp.DecodeAll(x);
    double lr = std::get<double>(c["lr"]), depth = std::get<double>(c["depth"]);
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-1);
    EXPECT_EQ(depth, std::round(depth));
    depths.insert(depth);
    EXPECT_GE(std::get<double>(c["beta"]), 0.9);
    EXPECT_LE(std::get<double>(c["beta"]), 0.999);
    // Decode(Encode(v)) == v
    Config again = sp.DecodeAll(sp.EncodeAll(c));
    EXPECT_EQ(ToString(again["depth"]), ToString(c["depth"]));
    EXPECT_EQ(ToString(again["opt"]), ToString(c["opt"]));
    EXPECT_NEAR(std::log(std::get<double>(again["lr"])), std::log(lr), 1e-9);
  }
  EXPECT_EQ(depths.size(), 10u);  // every integer reachable
  // Log scaling spreads samples across orders of magnitude.
  int small = 0;
  for (int i = 0; i < 1000; ++i) small += std::get<double>(sp.Decode(0, u(rng))) < 1e-3;
  EXPECT_GT(small, 350);
}

TEST(Grid, EnumeratesEveryCombinationOnce) {
  auto sp = *SearchSpace::Create(
      {{"opt", ParamType::kCategorical, 0, 0, {"a", "b", "c"}}, {"depth", ParamType::kInteger, 2, 5}});
  auto grid = MakeGridSampler();
  ASSERT_EQ(grid->Capacity(sp), 12u);
  std::vector<Trial> hist;
  std::set<std::string> seen;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 12; ++i) {
    Trial t;
    t.u = grid->Suggest(sp, hist, Direction::kMinimize, rng);
    Config c = sp.DecodeAll(t.u);
    seen.insert(ToString(c["opt"]) + "/" + ToString(c["depth"]));
    hist.push_back(t);
  }
  EXPECT_EQ(seen.size(), 12u);
}

double RunBranin(Sampler& s, int trials, uint64_t seed) {
  SearchSpace sp = Branin();
  std::mt19937_64 rng(seed);
  std::vector<Trial> hist;
  double best = INFINITY;
  for (int i = 0; i < trials; ++i) {
    Trial t;
    t.u = s.Suggest(sp, hist, Direction::kMinimize, rng);
    t.objective = BraninF(sp.DecodeAll(t.u));
    t.state = TrialState::kCompleted;
    best = std::min(best, t.objective);
    hist.push_back(t);
  }
  return best;
}

// Completed trials at uniform random points of Branin's space.
std::vector<Trial> RandomBraninHistory(int n, uint64_t seed) {
  SearchSpace sp = Branin();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<Trial> hist;
  for (int i = 0; i < n; ++i) {
    Trial t;
    t.u = {u(rng), u(rng)};
    t.objective = BraninF(sp.DecodeAll(t.u));
    t.state = TrialState::kCompleted;
    hist.push_back(t);
  }
  return hist;
}

// A categorical, an integer and a log-scaled continuous parameter; the best is
// adam, depth 5, lr 10^-2.5.
SearchSpace MixedSpace() {
  return *SearchSpace::Create({{"opt", ParamType::kCategorical, 0, 0, {"sgd", "adam", "rmsprop"}},
                               {"depth", ParamType::kInteger, 1, 8, {}, Scaling::kLinear},
                               {"lr", ParamType::kContinuous, 1e-4, 1, {}, Scaling::kLogarithmic}});
}

struct MixedRun {
  int adam = 0, depth5 = 0;  // among the last `tail` trials: adam; depth within 1 of 5
  int unsnapped = 0;         // trials after the 10th whose integer coordinate is not its own
  double best = INFINITY;
};

MixedRun RunMixed(Sampler& s, int trials, int tail) {
  SearchSpace sp = MixedSpace();
  std::mt19937_64 rng(11);
  std::vector<Trial> hist;
  MixedRun r;
  for (int i = 0; i < trials; ++i) {
    Trial t;
    t.u = s.Suggest(sp, hist, Direction::kMinimize, rng);
    Config c = sp.DecodeAll(t.u);
    const double depth = std::get<double>(c["depth"]), lr = std::log10(std::get<double>(c["lr"]));
    const bool adam = std::get<std::string>(c["opt"]) == "adam";
    t.objective = (adam ? 0 : 1) + 0.1 * (depth - 5) * (depth - 5) + 0.2 * (lr + 2.5) * (lr + 2.5);
    t.state = TrialState::kCompleted;
    r.best = std::min(r.best, t.objective);
    if (i >= 10 && t.u[1] != sp.Encode(1, c["depth"])) ++r.unsnapped;
    if (i >= trials - tail) {
      r.adam += adam;
      r.depth5 += std::fabs(depth - 5) <= 1;
    }
    hist.push_back(t);
  }
  return r;
}

// Failed and running trials, duplicates, trials on the range ends, in a space
// with an integer and a one-value categorical; `constant`: every result equal.
SearchSpace AwkwardSpace() {
  return *SearchSpace::Create({{"a", ParamType::kContinuous, 0, 1},
                               {"b", ParamType::kInteger, 1, 3, {}, Scaling::kLinear},
                               {"c", ParamType::kCategorical, 0, 0, {"x"}}});
}

std::vector<Trial> AwkwardHistory(int n, bool constant) {
  const TrialState states[] = {TrialState::kCompleted, TrialState::kRunning, TrialState::kFailed, TrialState::kStopped};
  std::vector<Trial> hist;
  for (int i = 0; i < n; ++i) {
    Trial t;
    t.u = {i % 7 == 0 ? 0.0 : i % 11 == 0 ? std::nextafter(1.0, 0.0) : 0.5, (i % 3) / 3.0, 0.5};
    t.state = states[i % 4];
    t.objective = constant ? 1.0 : i % 5;
    hist.push_back(t);
  }
  return hist;
}

// Every proposal has one coordinate per dimension, each in [0, 1).
void ExpectProposalsInTheUnitCube(Sampler& s, const SearchSpace& sp, const std::vector<Trial>& hist, int proposals) {
  std::mt19937_64 rng(5);
  for (int i = 0; i < proposals; ++i) {
    auto u = s.Suggest(sp, hist, Direction::kMaximize, rng);
    ASSERT_EQ(u.size(), sp.size());
    for (double x : u) {
      EXPECT_GE(x, 0.0);
      EXPECT_LT(x, 1.0);
    }
  }
}

TEST(Tpe, BeatsRandomOnBranin) {
  // Median over seeds of the best value after 100 trials (global minimum 0.397887),
  // for the joint (default) and the per-dimension density.
  for (bool multivariate : {true, false}) {
    std::vector<double> tpe, rnd;
    for (uint64_t seed = 1; seed <= 15; ++seed) {
      TpeOptions o;
      o.multivariate = multivariate;
      auto t = MakeTpeSampler(o);
      auto r = MakeRandomSampler();
      tpe.push_back(RunBranin(*t, 100, seed));
      rnd.push_back(RunBranin(*r, 100, seed));
    }
    std::sort(tpe.begin(), tpe.end());
    std::sort(rnd.begin(), rnd.end());
    EXPECT_LT(tpe[7], rnd[7]) << "multivariate=" << multivariate;
    EXPECT_LT(tpe[7], 0.6) << "multivariate=" << multivariate;
  }
}

TEST(Tpe, MixedSpaceConvergesOnTheBestCategoryAndInteger) {
  for (bool multivariate : {true, false}) {
    TpeOptions o;
    o.multivariate = multivariate;
    auto tpe = MakeTpeSampler(o);
    const MixedRun r = RunMixed(*tpe, 100, 30);
    EXPECT_GE(r.adam, 24) << "multivariate=" << multivariate;    // of the last 30; random: 10
    EXPECT_GE(r.depth5, 24) << "multivariate=" << multivariate;  // random: 11
  }
}

TEST(Tpe, ProposalsStayInTheUnitCubeWhateverTheHistory) {
  // Running and failed trials carry no result; stopped ones count with their last
  // value; duplicates and trials on the range ends must not break the densities.
  const SearchSpace sp = AwkwardSpace();
  const std::vector<Trial> hist = AwkwardHistory(1000, false);
  for (bool multivariate : {true, false}) {
    TpeOptions o;
    o.multivariate = multivariate;
    auto tpe = MakeTpeSampler(o);
    ExpectProposalsInTheUnitCube(*tpe, sp, hist, 20);
  }
}

TEST(Tpe, MaximizeFlipsTheObjective) {
  SearchSpace sp = *SearchSpace::Create({{"x", ParamType::kContinuous, 0, 1}});
  auto tpe = MakeTpeSampler();
  std::mt19937_64 rng(3);
  std::vector<Trial> hist;
  for (int i = 0; i < 60; ++i) {
    Trial t;
    t.u = tpe->Suggest(sp, hist, Direction::kMaximize, rng);
    double x = std::get<double>(sp.Decode(0, t.u[0]));
    t.objective = -(x - 0.8) * (x - 0.8);
    t.state = TrialState::kCompleted;
    hist.push_back(t);
  }
  // The last suggestions concentrate near the maximum.
  int near = 0;
  for (int i = 40; i < 60; ++i) near += std::fabs(std::get<double>(sp.Decode(0, hist[i].u[0])) - 0.8) < 0.15;
  EXPECT_GE(near, 12);
}

// Proposals for `parallel` trials that all run at once after `hist`: the smallest
// distance between two of them in the unit cube, and the pairs within 0.01 of
// each other in every coordinate.
std::pair<double, int> ParallelSpread(Sampler& s, const SearchSpace& sp, std::vector<Trial> hist, int parallel,
                                      uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<double>> batch;
  for (int i = 0; i < parallel; ++i) {
    Trial t;
    t.u = s.Suggest(sp, hist, Direction::kMinimize, rng);
    batch.push_back(t.u);
    hist.push_back(std::move(t));  // kRunning
  }
  double least = INFINITY;
  int near = 0;
  for (size_t i = 0; i < batch.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      double d2 = 0, most = 0;
      for (size_t k = 0; k < batch[i].size(); ++k) {
        d2 += (batch[i][k] - batch[j][k]) * (batch[i][k] - batch[j][k]);
        most = std::max(most, std::fabs(batch[i][k] - batch[j][k]));
      }
      least = std::min(least, std::sqrt(d2));
      near += most <= 0.01;
    }
  return {least, near};
}

TEST(Tpe, RunningTrialsSpreadParallelProposals) {
  // 16 proposals while all 16 run: with running trials counted as bad results no
  // two are near-duplicates, and they lie farther apart than when ignored.
  TpeOptions ignore;
  ignore.running = TpeOptions::Running::kIgnore;
  double liar_least = 0, ignore_least = 0;
  int liar_near = 0;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto liar = MakeTpeSampler();
    auto blind = MakeTpeSampler(ignore);
    const auto a = ParallelSpread(*liar, Branin(), RandomBraninHistory(40, seed), 16, seed);
    const auto b = ParallelSpread(*blind, Branin(), RandomBraninHistory(40, seed), 16, seed);
    liar_least += a.first;
    liar_near += a.second;
    ignore_least += b.first;
  }
  EXPECT_EQ(liar_near, 0);
  EXPECT_GT(liar_least, 1.5 * ignore_least);
}

TEST(Bayesian, ParallelProposalsHaveNoNearDuplicates) {
  for (uint64_t seed = 1; seed <= 2; ++seed) {
    auto bayes = MakeBayesianSampler();
    const auto r = ParallelSpread(*bayes, Branin(), RandomBraninHistory(40, seed), 16, seed);
    EXPECT_EQ(r.second, 0) << "seed " << seed;
    EXPECT_GT(r.first, 0.01) << "seed " << seed;
  }
}

TEST(Gp, FindsBraninsMinimumFasterThanRandom) {
  // Median over seeds of the best value after 40 trials (global minimum 0.397887).
  std::vector<double> gp, rnd;
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto g = MakeGpSampler();
    auto r = MakeRandomSampler();
    gp.push_back(RunBranin(*g, 40, seed));
    rnd.push_back(RunBranin(*r, 40, seed));
  }
  std::sort(gp.begin(), gp.end());
  std::sort(rnd.begin(), rnd.end());
  EXPECT_LT(gp[2], 0.45);
  EXPECT_LT(gp[2], rnd[2]);
}

TEST(Gp, FittedOnASubsetItStillFindsBraninsMinimum) {
  // The kernel fitted on 12 of the trials (the best 6 and an even spread of the
  // rest), the posterior over all of them.
  GpOptions o;
  o.fit_points = 12;
  std::vector<double> best;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    auto g = MakeGpSampler(o);
    best.push_back(RunBranin(*g, 40, seed));
  }
  std::sort(best.begin(), best.end());
  EXPECT_LT(best[1], 0.45);
}

TEST(Gp, MixedSpaceConvergesOnTheBestCategoryAndInteger) {
  auto gp = MakeGpSampler();
  const MixedRun r = RunMixed(*gp, 50, 20);
  EXPECT_EQ(r.unsnapped, 0);  // after the random start, integer coordinates are the integer's own
  EXPECT_GE(r.adam, 14);      // of the last 20; random: 7
  EXPECT_GE(r.depth5, 14);    // random: 7
  EXPECT_LT(r.best, 0.01);
}

TEST(Gp, RunningTrialsPushTheNextProposalElsewhere) {
  SearchSpace sp = Branin();
  std::vector<Trial> hist = RandomBraninHistory(15, 4);
  auto gp = MakeGpSampler();
  std::mt19937_64 a(9), b(9), c(9);
  const auto first = gp->Suggest(sp, hist, Direction::kMinimize, a);
  EXPECT_EQ(gp->Suggest(sp, hist, Direction::kMinimize, b), first);  // deterministic given the generator
  Trial running;
  running.u = first;
  hist.push_back(running);  // kRunning: no result yet
  const auto second = gp->Suggest(sp, hist, Direction::kMinimize, c);
  EXPECT_GT(std::hypot(second[0] - first[0], second[1] - first[1]), 0.02);
}

TEST(Gp, ProposalsStayInTheUnitCubeWhateverTheHistory) {
  // The awkward history with results or all equal, and more trials than the model keeps (max_points).
  // fit_points 16: the kernel is fitted on a subset of the modelled trials.
  for (bool constant : {false, true})
    for (int fit_points : {64, 16}) {
      GpOptions o;
      o.max_points = 40;
      o.fit_points = fit_points;
      auto gp = MakeGpSampler(o);
      ExpectProposalsInTheUnitCube(*gp, AwkwardSpace(), AwkwardHistory(160, constant), 3);
    }
}

TEST(Bayesian, UsesTheGpUntilItsLimitThenTpe) {
  SearchSpace sp = Branin();
  const std::vector<Trial> hist = RandomBraninHistory(30, 2);
  auto suggest = [&](Sampler& s, size_t n) {
    std::mt19937_64 r(17);
    return s.Suggest(sp, std::vector<Trial>(hist.begin(), hist.begin() + static_cast<std::ptrdiff_t>(n)),
                     Direction::kMinimize, r);
  };
  auto bayes = MakeBayesianSampler(20);
  auto gp = MakeGpSampler();
  auto tpe = MakeTpeSampler();
  EXPECT_EQ(suggest(*bayes, 20), suggest(*gp, 20));
  EXPECT_EQ(suggest(*bayes, 21), suggest(*tpe, 21));
  EXPECT_NE(suggest(*gp, 21), suggest(*tpe, 21));
}

TEST(MedianRule, StopsTrialsWorseThanTheMedian) {
  Curve a{{{1, 1.0}, {2, 0.8}, {3, 0.6}}}, b{{{1, 1.1}, {2, 0.9}, {3, 0.7}}}, c{{{1, 0.9}, {2, 0.7}, {3, 0.5}}};
  std::vector<const Curve*> peers = {&a, &b, &c};
  // Running averages at step 2: a 0.9, b 1.0, c 0.8 -> median 0.9.
  EXPECT_EQ(MedianRule(Curve{{{1, 1.5}, {2, 0.95}}}, peers, Direction::kMinimize), Decision::kStop);
  EXPECT_EQ(MedianRule(Curve{{{1, 1.5}, {2, 0.85}}}, peers, Direction::kMinimize), Decision::kContinue);
  EXPECT_EQ(MedianRule(Curve{{{1, 0.5}, {2, 0.85}}}, peers, Direction::kMaximize), Decision::kStop);
  // Too few peers at that step: continue.
  EXPECT_EQ(MedianRule(Curve{{{4, 9.0}}}, peers, Direction::kMinimize), Decision::kContinue);
}

TEST(Asha, PromotesTheTopThird) {
  Asha asha(1, 27, 3);
  EXPECT_EQ(asha.rungs(), (std::vector<int64_t>{1, 3, 9}));
  // Minimize: first arrivals always continue (top 1/eta of what the rung has seen).
  EXPECT_EQ(asha.Report(0, 1, 0.5, Direction::kMinimize), Decision::kContinue);
  EXPECT_EQ(asha.Report(1, 1, 0.9, Direction::kMinimize), Decision::kStop);  // 2 seen, keep 1: 0.5 is better
  EXPECT_EQ(asha.Report(2, 1, 0.4, Direction::kMinimize), Decision::kContinue);
  EXPECT_EQ(asha.Report(3, 1, 0.7, Direction::kMinimize), Decision::kStop);      // 4 seen, keep 2: 0.4, 0.5
  EXPECT_EQ(asha.Report(0, 2, 0.1, Direction::kMinimize), Decision::kContinue);  // not a rung
  Hyperband hb(1, 27, 3);
  EXPECT_EQ(hb.brackets(), 3u);
}

}  // namespace
}  // namespace kiln::hpo
