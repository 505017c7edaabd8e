// Kiln's HPO engine for bench/hpo_bench.py (issue 5, "ahead of Optuna").
//
//   kiln_hpo_bench study      one study over stdin/stdout, the objective evaluated by the caller
//   kiln_hpo_bench earlystop  early stopping on synthetic learning curves, results as JSON
//
// study: the first input line is JSON
//   {"space": [{"name": "x", "type": "float"|"int"|"cat", "min": 0, "max": 1,
//               "scaling": "linear"|"log"|"reverselog", "values": ["a", "b"]}, ...],
//    "sampler": "tpe"|"gp"|"gp-option"|"bayesian"|"random", "seed": 1, "direction": "minimize"|"maximize",
//    "tpe": {"candidates": 24, "startup_trials": 10, "multivariate": true, ...}}
// then one command a line:
//   ask          -> {"config": {"x": 0.25, ...}}   (the trial is pending until told)
//   peek         -> {"config": ...}   a proposal that does not join the history
//   tell VALUE      completes the pending trial with its objective
//   add {"config": {...}, "value": V}   a completed trial from elsewhere
//   fill N       -> {"filled": N}   N completed trials, random configurations and objectives
//   time REPS    -> {"median_s": ..., "min_s": ...}   seconds per Suggest on the current history
// The proposals are Kiln's; the caller only evaluates them.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "hpo/scheduler.h"

namespace {

using kiln::hpo::Config;
using kiln::hpo::Direction;
using kiln::hpo::Parameter;
using kiln::hpo::ParamType;
using kiln::hpo::Scaling;
using kiln::hpo::SearchSpace;
using kiln::hpo::Trial;
using kiln::hpo::TrialState;
using nlohmann::json;

kiln::Result<SearchSpace> ParseSpace(const json& j) {
  std::vector<Parameter> params;
  for (const auto& p : j) {
    Parameter q;
    q.name = p.at("name").get<std::string>();
    std::string type = p.value("type", "float");
    q.type = type == "int" ? ParamType::kInteger : type == "cat" ? ParamType::kCategorical : ParamType::kContinuous;
    if (q.type == ParamType::kCategorical) {
      q.categories = p.at("values").get<std::vector<std::string>>();
    } else {
      q.min = p.at("min").get<double>();
      q.max = p.at("max").get<double>();
    }
    std::string scaling = p.value("scaling", "linear");
    q.scaling = scaling == "log"          ? Scaling::kLogarithmic
                : scaling == "reverselog" ? Scaling::kReverseLogarithmic
                                          : Scaling::kLinear;
    params.push_back(std::move(q));
  }
  return SearchSpace::Create(std::move(params));
}

json ConfigJson(const Config& c) {
  json out = json::object();
  for (const auto& [name, v] : c) {
    if (const auto* s = std::get_if<std::string>(&v))
      out[name] = *s;
    else
      out[name] = std::get<double>(v);
  }
  return out;
}

kiln::hpo::TpeOptions ParseTpe(const json& j) {
  kiln::hpo::TpeOptions o;
  o.startup_trials = j.value("startup_trials", o.startup_trials);
  o.candidates = j.value("candidates", o.candidates);
  o.prior_weight = j.value("prior_weight", o.prior_weight);
  o.multivariate = j.value("multivariate", o.multivariate);
  o.bandwidth = j.value("bandwidth", o.bandwidth);
  o.gamma = j.value("gamma", o.gamma);
  o.max_good = j.value("max_good", o.max_good);
  return o;
}

kiln::hpo::GpOptions ParseGp(const json& j) {
  kiln::hpo::GpOptions o;
  o.startup_trials = j.value("startup_trials", o.startup_trials);
  o.max_points = j.value("max_points", o.max_points);
  o.random_candidates = j.value("random_candidates", o.random_candidates);
  o.local_candidates = j.value("local_candidates", o.local_candidates);
  o.fit_iterations = j.value("fit_iterations", o.fit_iterations);
  o.fit_points = j.value("fit_points", o.fit_points);
  const std::string warp = j.value("warp", "");
  if (warp == "auto") o.warp = kiln::hpo::GpOptions::Warp::kAuto;
  if (warp == "none") o.warp = kiln::hpo::GpOptions::Warp::kNone;
  if (warp == "log") o.warp = kiln::hpo::GpOptions::Warp::kLog;
  if (warp == "rank") o.warp = kiln::hpo::GpOptions::Warp::kRank;
  if (j.value("observed", false)) o.improvement = kiln::hpo::GpOptions::Improvement::kObserved;
  return o;
}

int Study() {
  std::string line;
  if (!std::getline(std::cin, line)) return 2;
  json setup = json::parse(line);
  auto space = ParseSpace(setup.at("space"));
  if (!space.ok()) {
    std::cerr << space.status().ToString() << "\n";
    return 2;
  }
  std::string kind = setup.value("sampler", "tpe");
  const auto tpe = ParseTpe(setup.value("tpe", json::object()));
  const auto gp = ParseGp(setup.value("gp", json::object()));
  std::unique_ptr<kiln::hpo::Sampler> sampler;
  if (kind == "random")
    sampler = kiln::hpo::MakeRandomSampler();
  else if (kind == "tpe")
    sampler = kiln::hpo::MakeTpeSampler(tpe);
  else if (kind == "gp" || kind == "gp-option")  // `algorithm: GP`
    sampler = kiln::hpo::MakeGpSampler(gp);
  else  // "bayesian": the tuning spec's default (`algorithm: Auto`)
    sampler = kiln::hpo::MakeBayesianSampler(setup.value("gp_until", 200), gp, tpe);
  Direction dir = setup.value("direction", "minimize") == "maximize" ? Direction::kMaximize : Direction::kMinimize;
  std::mt19937_64 rng(setup.value("seed", 1ULL));
  std::vector<Trial> history;
  while (std::getline(std::cin, line)) {
    if (line == "ask") {
      Trial t;
      t.u = sampler->Suggest(*space, history, dir, rng);
      std::cout << json{{"config", ConfigJson(space->DecodeAll(t.u))}}.dump() << std::endl;
      history.push_back(std::move(t));
    } else if (line == "peek") {  // a proposal that is not kept: for comparing proposal distributions
      std::cout << json{{"config", ConfigJson(space->DecodeAll(sampler->Suggest(*space, history, dir, rng)))}}.dump()
                << std::endl;
    } else if (line.rfind("tell ", 0) == 0) {
      if (history.empty() || history.back().state != TrialState::kRunning) return 2;
      history.back().objective = std::stod(line.substr(5));
      history.back().state = TrialState::kCompleted;
    } else if (line.rfind("add ", 0) == 0) {
      json a = json::parse(line.substr(4));
      Config c;
      for (const auto& [name, v] : a.at("config").items())
        c[name] = v.is_string() ? kiln::hpo::Value(v.get<std::string>()) : kiln::hpo::Value(v.get<double>());
      Trial t;
      t.u = space->EncodeAll(c);
      t.objective = a.at("value").get<double>();
      t.state = TrialState::kCompleted;
      history.push_back(std::move(t));
    } else if (line.rfind("fill ", 0) == 0) {
      int n = std::stoi(line.substr(5));
      std::uniform_real_distribution<double> u(0, 1);
      for (int i = 0; i < n; ++i) {
        Trial t;
        t.u.resize(space->size());
        for (auto& x : t.u) x = u(rng);
        t.objective = u(rng);
        t.state = TrialState::kCompleted;
        history.push_back(std::move(t));
      }
      std::cout << json{{"filled", n}}.dump() << std::endl;
    } else if (line.rfind("time ", 0) == 0) {
      int reps = std::max(1, std::stoi(line.substr(5)));
      std::vector<double> secs;
      for (int i = 0; i < reps; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        Config c = space->DecodeAll(sampler->Suggest(*space, history, dir, rng));
        secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(secs.begin(), secs.end());
      std::cout << json{{"median_s", secs[secs.size() / 2]}, {"min_s", secs.front()}, {"reps", reps}}.dump()
                << std::endl;
    } else if (!line.empty()) {
      std::cerr << "unknown command: " << line << "\n";
      return 2;
    }
  }
  return 0;
}

// ---- early stopping on synthetic learning curves ----

// A parametric learning-curve family: validation loss after epoch t is
//   final(theta) + scale(theta) * t^-rate(theta) + noise.
// The learning rate trades speed for the final value (a high rate converges fast
// to a worse loss), so early ranks are informative but not exact.
struct CurveModel {
  double floor, scale, rate;
};

SearchSpace CurveSpace() {
  return *SearchSpace::Create({{"learning_rate", ParamType::kContinuous, 1e-4, 1, {}, Scaling::kLogarithmic},
                               {"batch_size", ParamType::kInteger, 16, 512, {}, Scaling::kLogarithmic},
                               {"dropout", ParamType::kContinuous, 0, 0.7, {}, Scaling::kLinear},
                               {"optimizer", ParamType::kCategorical, 0, 0, {"sgd", "adam", "rmsprop"}}});
}

CurveModel ModelOf(const Config& c) {
  double lr = std::log10(std::get<double>(c.at("learning_rate")));
  double batch = std::log2(std::get<double>(c.at("batch_size")));
  double dropout = std::get<double>(c.at("dropout"));
  const std::string& opt = std::get<std::string>(c.at("optimizer"));
  double best_lr = opt == "sgd" ? -1.3 : opt == "adam" ? -2.5 : -2.8;
  double offset = opt == "sgd" ? 0.03 : opt == "adam" ? 0.0 : 0.01;
  CurveModel m;
  m.floor = 0.10 + offset + 0.05 * (lr - best_lr) * (lr - best_lr) + 0.4 * (dropout - 0.3) * (dropout - 0.3) +
            0.01 * (batch - 6) * (batch - 6);
  m.scale = 1.0 + dropout;
  m.rate = std::max(0.1, 0.25 + 0.15 * (lr + 4) - 0.03 * (batch - 6));
  return m;
}

struct EarlyStopResult {
  double epochs = 0;  // trial-epochs spent until the target was reached (or the whole budget)
  bool reached = false;
  int trials = 0;
  double best = INFINITY;           // best final value over the whole run
  double best_at_third = INFINITY;  // best final value within a third of the no-stopping budget
};

enum class Stopping { kNone, kMedian, kHyperband };

// Runs trials one after another over the configuration stream until `budget`
// trial-epochs are spent; a trial's objective is its value at the last epoch.
EarlyStopResult RunStopping(Stopping s, const std::vector<Config>& configs, int epochs, double target, double budget,
                            uint64_t seed) {
  EarlyStopResult r;
  std::normal_distribution<double> noise(0, 0.005);
  kiln::hpo::Hyperband hyperband(1, epochs, 3);
  std::vector<kiln::hpo::Curve> curves;
  curves.reserve(configs.size());
  double spent = 0, best = INFINITY;
  for (size_t i = 0; i < configs.size() && spent < budget; ++i) {
    CurveModel m = ModelOf(configs[i]);
    std::mt19937_64 noise_rng(seed * 1000003 + i);  // a trial's noise is the same under every strategy
    curves.emplace_back();
    kiln::hpo::Curve& curve = curves.back();
    std::vector<const kiln::hpo::Curve*> peers;
    for (size_t j = 0; j + 1 < curves.size(); ++j) peers.push_back(&curves[j]);
    ++r.trials;
    bool completed = true;
    for (int t = 1; t <= epochs; ++t) {
      double v = m.floor + m.scale * std::pow(t, -m.rate) + noise(noise_rng);
      curve.points.emplace_back(t, v);
      spent += 1;
      if (t == epochs) break;
      kiln::hpo::Decision d = kiln::hpo::Decision::kContinue;
      if (s == Stopping::kMedian) d = kiln::hpo::MedianRule(curve, peers, Direction::kMinimize);
      if (s == Stopping::kHyperband) d = hyperband.Report(static_cast<int>(i), t, v, Direction::kMinimize);
      if (d == kiln::hpo::Decision::kStop) {
        completed = false;
        break;
      }
    }
    if (completed) best = std::min(best, curve.points.back().second);
    if (spent <= budget / 3) r.best_at_third = std::min(r.best_at_third, best);
    if (!r.reached && best <= target) {
      r.reached = true;
      r.epochs = spent;
    }
  }
  if (!r.reached) r.epochs = spent;
  r.best = best;
  return r;
}

int EarlyStop(int argc, char** argv) {
  int seeds = 20, trials = 100, epochs = 81;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seeds") seeds = std::stoi(argv[i + 1]);
    if (a == "--trials") trials = std::stoi(argv[i + 1]);
    if (a == "--epochs") epochs = std::stoi(argv[i + 1]);
  }
  SearchSpace space = CurveSpace();
  auto random = kiln::hpo::MakeRandomSampler();
  json out = json::array();
  for (int seed = 1; seed <= seeds; ++seed) {
    // The same configuration stream for every strategy; no stopping runs the first `trials`.
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    std::vector<Config> configs;
    std::vector<Trial> no_history;
    for (int i = 0; i < 20 * trials; ++i)
      configs.push_back(space.DecodeAll(random->Suggest(space, no_history, {}, rng)));
    std::vector<Config> first(configs.begin(), configs.begin() + trials);
    double budget = static_cast<double>(trials) * epochs;
    EarlyStopResult none = RunStopping(Stopping::kNone, first, epochs, -INFINITY, budget, static_cast<uint64_t>(seed));
    json row{{"seed", seed}, {"none", {{"epochs", none.epochs}, {"best", none.best}, {"trials", none.trials}}}};
    for (auto [name, s] : {std::pair{"median", Stopping::kMedian}, std::pair{"hyperband", Stopping::kHyperband}}) {
      EarlyStopResult r = RunStopping(s, configs, epochs, none.best, budget, static_cast<uint64_t>(seed));
      row[name] = {{"epochs", r.epochs},
                   {"reached", r.reached},
                   {"trials", r.trials},
                   {"best", r.best},
                   {"best_at_third", r.best_at_third}};
    }
    out.push_back(row);
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "study") return Study();
  if (mode == "earlystop") return EarlyStop(argc, argv);
  std::fprintf(stderr, "usage: kiln_hpo_bench study|earlystop [--seeds N --trials N --epochs N]\n");
  return 2;
}
