#include "tuning/tuning.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "compute/fake/fake_backend.h"
#include "controller/timers.h"
#include "store/memory_store.h"
#include "tuning/service.h"

namespace kiln::tuning {
namespace {

using nlohmann::json;

json NativeSpec() {
  return json::parse(R"JSON({
    "name": "tune-x",
    "strategy": "Bayesian",
    "objective": {"metric": "loss", "type": "Minimize"},
    "max_trials": 6,
    "max_parallel": 2,
    "parameters": {
      "lr": {"type": "Continuous", "min": 0.001, "max": 1, "scaling": "Logarithmic"},
      "depth": {"type": "Integer", "min": 1, "max": 8},
      "kind": {"type": "Categorical", "values": ["a", "b"]}
    },
    "trial": {"image": "host", "command": ["true"], "hyperparameters": {"epochs": "3"},
              "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}]}
  })JSON");
}

TuningJob Job(json spec = NativeSpec()) {
  static const Catalog cat = Catalog::Defaults();
  auto s = ParseTuningSpec(spec, &cat);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  TuningJob j{*s, {}};
  j.state.created = 1000;
  return j;
}

TrialView Finished(const TuningJob& j, int index, const json& tuned, std::vector<double> curve,
                   JobStatus st = JobStatus::kCompleted, TimeMs ended = 0) {
  TrialView t;
  t.index = index;
  t.name = TrialName(j.spec.name, index);
  t.status = st;
  t.hyperparameters = tuned;
  t.curve = std::move(curve);
  t.ended = ended ? ended : 2000 + index;
  return t;
}

TEST(TuningSpec, ParsesAndRoundTrips) {
  TuningJob j = Job();
  EXPECT_EQ(j.spec.ranges.size(), 3u);
  EXPECT_EQ(j.spec.max_parallel, 2);
  auto again = ParseTuningSpec(j.spec.ToJson(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->ToJson(), j.spec.ToJson());
}

TEST(TuningSpec, RefusesBadInputNamingTheField) {
  static const Catalog cat = Catalog::Defaults();
  auto refuse = [&](json s, const std::string& field) {
    auto r = ParseTuningSpec(s, &cat);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().field(), field) << r.status().ToString();
  };
  json s = NativeSpec();
  s["name"] = std::string(33, 'a');
  refuse(s, "name");
  s = NativeSpec();
  s["objective"]["metric"] = "accuracy";
  refuse(s, "objective.metric");
  s = NativeSpec();
  s["parameters"]["lr"]["min"] = 0;
  refuse(s, "parameters.lr.scaling");
  s = NativeSpec();
  s["parameters"]["depth"]["min"] = 9;
  refuse(s, "parameters.depth.min");
  s = NativeSpec();
  s["parameters"]["epochs"] = {{"type", "Integer"}, {"min", 1}, {"max", 3}};
  refuse(s, "parameters.epochs");
  s = NativeSpec();
  s["strategy"] = "Hyperband";
  refuse(s, "hyperband.max_resource");
  s = NativeSpec();
  s["max_parallel"] = 0;
  refuse(s, "max_parallel");
  s = NativeSpec();
  s["trial"]["instance"] = {{"type", "ml.nope"}};
  refuse(s, "trial.instance.type");
  s = NativeSpec();
  s["warm_start"] = {{"type", "IdenticalDataAndAlgorithm"}, {"parents", {"a", "b", "c", "d", "e", "f"}}};
  refuse(s, "warm_start.parents");
  s = NativeSpec();
  s["algorithm"] = "gp";
  refuse(s, "algorithm");
  s["algorithm"] = 3;
  refuse(s, "algorithm");
  s = NativeSpec();
  s["strategy"] = "Random";
  s["algorithm"] = "GP";
  refuse(s, "algorithm");
}

TEST(TuningSpec, TagsRoundTripAndOldSpecsHaveNone) {
  EXPECT_TRUE(Job().spec.tags.empty());
  json s = NativeSpec();
  s["tags"] = {{"project", "iris"}, {"owner", "ml-team"}, {"version", 2}};
  TuningJob j = Job(s);
  EXPECT_EQ(j.spec.tags,
            (std::map<std::string, std::string>{{"project", "iris"}, {"owner", "ml-team"}, {"version", "2"}}));
  EXPECT_TRUE(j.spec.trial.tags.empty());  // the trials' tags are trial.tags
  auto again = ParseTuningSpec(j.spec.ToJson(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->tags, j.spec.tags);
  EXPECT_EQ(again->ToJson(), j.spec.ToJson());
  // Specs stored before the field existed read as having no tags.
  json old = j.spec.ToJson();
  old.erase("tags");
  auto before = ParseTuningSpec(old, nullptr);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_TRUE(before->tags.empty());
}

TEST(TuningSpec, RefusesBadTagsNamingTheField) {
  static const Catalog cat = Catalog::Defaults();
  auto refuse = [&](const json& tags, const std::string& field) {
    json s = NativeSpec();
    s["tags"] = tags;
    auto r = ParseTuningSpec(s, &cat);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().field(), field) << r.status().ToString();
    EXPECT_EQ(r.status().message().rfind(field + ": ", 0), 0u) << r.status().message();
  };
  refuse(json::array({"a"}), "tags");
  json many = json::object();
  for (size_t i = 0; i <= kMaxTags; ++i) many["k" + std::to_string(i)] = "v";
  refuse(many, "tags");
  refuse({{std::string(kMaxTagKeyLength + 1, 'k'), "v"}}, "tags." + std::string(kMaxTagKeyLength + 1, 'k'));
  refuse({{"k", std::string(kMaxTagValueLength + 1, 'v')}}, "tags.k");
  refuse({{"k", json::array()}}, "tags.k");
  refuse({{"aws:owner", "me"}}, "tags.aws:owner");
  // At the limits is fine.
  json full = json::object();
  for (size_t i = 0; i < kMaxTags; ++i) full["k" + std::to_string(i)] = std::string(kMaxTagValueLength, 'v');
  full[std::string(kMaxTagKeyLength, 'k')] = "v";
  full.erase("k0");
  json s = NativeSpec();
  s["tags"] = full;
  auto r = ParseTuningSpec(s, &cat);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tags.size(), kMaxTags);
}

TEST(TuningSpec, AlgorithmDefaultsToAutoAndRoundTrips) {
  EXPECT_EQ(Job().spec.algorithm, BayesianAlgorithm::kAuto);
  EXPECT_EQ(Job().spec.ToJson()["algorithm"], "Auto");
  json s = NativeSpec();
  s["algorithm"] = "GP";
  TuningJob j = Job(s);
  EXPECT_EQ(j.spec.algorithm, BayesianAlgorithm::kGp);
  EXPECT_EQ(j.spec.ToJson()["algorithm"], "GP");
  auto again = ParseTuningSpec(j.spec.ToJson(), nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->algorithm, BayesianAlgorithm::kGp);
  for (const char* name : {"TPE", "Auto"}) {
    s["algorithm"] = name;
    EXPECT_EQ(Job(s).spec.ToJson()["algorithm"], name);
  }
  // Specs stored before the field existed read as the default; those stored
  // since keep the algorithm they named ("TPE" when TPE was the default).
  json old = Job().spec.ToJson();
  old.erase("algorithm");
  EXPECT_EQ(ParseTuningSpec(old, nullptr)->algorithm, BayesianAlgorithm::kAuto);
}

TEST(Decide, GpAlgorithmProposesFromTheModelDeterministically) {
  // A GP tuning job run to its end with parallel trials: every proposal is
  // reproducible from the stored trials (a restart re-proposes the same), no
  // configuration repeats, and the model moves toward the minimum.
  json s = NativeSpec();
  s["algorithm"] = "GP";
  s["max_trials"] = 30;
  s["max_parallel"] = 3;
  TuningJob j = Job(s);
  auto loss = [](const json& hp) {
    const double lr = std::log10(std::stod(hp["lr"].get<std::string>()));
    const double depth = std::stod(hp["depth"].get<std::string>());
    return (lr + 2) * (lr + 2) + 0.05 * (depth - 6) * (depth - 6) + (hp["kind"] == "b" ? 0.0 : 0.3);
  };
  std::vector<TrialView> trials;
  std::set<std::string> seen;
  TimeMs now = 2000;
  for (int round = 0; round < 40 && static_cast<int>(trials.size()) < 30; ++round) {
    Decision d = Decide(j, trials, {}, now);
    Decision again = Decide(j, trials, {}, now);
    ASSERT_EQ(d.launch.size(), again.launch.size());
    for (size_t i = 0; i < d.launch.size(); ++i) EXPECT_EQ(d.launch[i].tuned, again.launch[i].tuned);
    for (const auto& l : d.launch) {
      EXPECT_TRUE(seen.insert(l.tuned.dump()).second) << l.tuned.dump();
      trials.push_back(Finished(j, l.index, l.tuned, {}, JobStatus::kInProgress));
    }
    // The oldest running trial finishes.
    for (auto& t : trials)
      if (t.status == JobStatus::kInProgress) {
        t.status = JobStatus::kCompleted;
        t.curve = {loss(t.hyperparameters)};
        t.ended = ++now;
        break;
      }
  }
  ASSERT_EQ(trials.size(), 30u);
  double first = INFINITY, last = INFINITY;
  for (const auto& t : trials)
    if (!t.curve.empty()) (t.index <= 10 ? first : last) = std::min(t.index <= 10 ? first : last, t.curve[0]);
  EXPECT_LT(last, first);
  EXPECT_LT(last, 0.1);
}

TEST(TuningSpec, ObjectiveSourceStatsdNeedsNoMetricDefinition) {
  json j = NativeSpec();
  j["objective"] = {{"metric", "val_loss"}, {"type", "Minimize"}};
  auto log = ParseTuningSpec(j, nullptr);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().field(), "objective.metric");
  j["objective"]["source"] = "StatsD";
  auto s = ParseTuningSpec(j, nullptr);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->objective_source, ObjectiveSource::kStatsd);
  auto again = ParseTuningSpec(s->ToJson(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->objective_source, ObjectiveSource::kStatsd);
  EXPECT_EQ(Job().spec.objective_source, ObjectiveSource::kLog);  // a metric definition's name: its log lines
  j["objective"]["source"] = "Prometheus";
  EXPECT_EQ(ParseTuningSpec(j, nullptr).status().field(), "objective.source");
  j["objective"]["source"] = "Log";
  EXPECT_EQ(ParseTuningSpec(j, nullptr).status().field(), "objective.metric");
  j["objective"].erase("source");
  j["objective"]["regex"] = "x";
  EXPECT_EQ(ParseTuningSpec(j, nullptr).status().field(), "objective.regex");
}

MetricPoint Point(const std::string& tags, double v, TimeMs t, const std::string& stat = "value") {
  return {"j-1", "val_loss", tags, stat, t, v};
}

TEST(StatsdObjectiveCurve, OneValuePerStepInStepOrderLastSentWins) {
  // As the store returns them: by tags, then time. Step 10 sorts before 2 as text.
  std::vector<MetricPoint> pts = {
      Point("job_id:j-1,step:0,team:t", 0.9, 100),       Point("job_id:j-1,step:1,team:t", 0.7, 200),
      Point("job_id:j-1,step:10,team:t", 0.1, 900),      Point("job_id:j-1,step:2,team:t", 0.6, 300),
      Point("job_id:j-1,step:2,team:t", 0.5, 400),          // re-sent: the last one counts
      Point("job_id:j-1,step:2,team:t", 9.0, 400, "p99")};  // not a gauge value
  EXPECT_EQ(StatsdObjectiveCurve(pts, 0), (std::vector<double>{0.9, 0.7, 0.5, 0.1}));
  // `epoch` works like `step`; untagged points are ignored once steps are given.
  std::vector<MetricPoint> ep = {Point("epoch:1,job_id:j-1", 0.4, 50), Point("epoch:0,job_id:j-1", 0.8, 60),
                                 Point("job_id:j-1", 7.0, 70)};
  EXPECT_EQ(StatsdObjectiveCurve(ep, 0), (std::vector<double>{0.8, 0.4}));
}

TEST(StatsdObjectiveCurve, UntaggedIsOneValuePerFlushInTimeOrderSinceTheAttempt) {
  std::vector<MetricPoint> pts = {Point("env:a,job_id:j-1", 3, 300), Point("job_id:j-1", 1, 100),
                                  Point("job_id:j-1", 2, 200), Point("job_id:j-1,step:x", 5, 250)};
  EXPECT_EQ(StatsdObjectiveCurve(pts, 0), (std::vector<double>{1, 2, 5, 3}));  // a bad step is no step
  EXPECT_EQ(StatsdObjectiveCurve(pts, 250), (std::vector<double>{5, 3}));      // a retry starts again
  EXPECT_TRUE(StatsdObjectiveCurve({}, 0).empty());
}

// The tuning service over a real (in-memory SQLite) store, the controller and a
// fake backend. Trials report their objective as StatsD gauges with step tags; the
// "gateway" stores them in the controller's before_instance_exit hook, as kilnd's
// does, so a trial seen ending has all of its values.
// Drives a tuning job to its end (at most 200 rounds of 100 ms).
void RunTuning(Controller& ctl, FakeBackend& backend, TuningService& svc, FakeClock& clock, ManualTimerService& timers,
               const std::string& name) {
  for (int round = 0; round < 200; ++round) {
    while (ctl.RunOnce()) {
    }
    while (backend.DeliverOne(0, 0)) {
    }
    while (ctl.RunOnce()) {
    }
    ASSERT_TRUE(svc.Tick(name).ok());
    if (IsTerminal(svc.Get(name)->state.status)) break;
    clock.Advance(100);
    backend.AdvanceToNow();
    timers.FireDue();
  }
}

// A template with a keep-alive: each trial takes over the pool (and cache) of
// the one before it, so the imports and data a trial caches there are paid once.
TEST(TuningService, TrialsTakeOverEachOthersWarmPools) {
  FakeClock clock;
  auto store = NewMemoryStore();
  Catalog catalog = Catalog::Defaults();
  FakeBackend backend(clock, 7);
  ManualTimerService timers(clock);
  ControllerOptions opts;
  opts.threading = Threading::kManual;
  opts.artifacts_dir = "/artifacts";
  Controller ctl(*store, clock, timers, catalog, opts);
  backend.SetSink(&ctl);
  ctl.SetBackend(&backend);
  ASSERT_TRUE(ctl.Start().ok());
  TuningService svc(*store, ctl, clock, {});
  json spec = NativeSpec();
  spec["strategy"] = "Random";
  spec["max_trials"] = 3;
  spec["max_parallel"] = 1;
  spec["trial"]["instance"] = {{"keep_alive_seconds", 600}};
  auto parsed = ParseTuningSpec(spec, &catalog);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_TRUE(svc.Create(*parsed).ok());
  RunTuning(ctl, backend, svc, clock, timers, "tune-x");
  auto trials = svc.Trials(*svc.Get("tune-x"));
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 3u);
  std::vector<kiln::Job> jobs;  // (Job is this file's tuning-job helper)
  for (const auto& t : *trials) jobs.push_back(*store->GetJob(t.name));
  EXPECT_TRUE(jobs[0].warm_pool.reused_from.empty());
  EXPECT_EQ(jobs[1].warm_pool.reused_from, jobs[0].id);
  EXPECT_EQ(jobs[2].warm_pool.reused_from, jobs[1].id);
  EXPECT_EQ(jobs[2].warm_pool.chain, jobs[0].id);  // one cache for the whole search
  EXPECT_EQ(jobs[0].warm_pool.status, WarmPoolStatus::kReused);
  EXPECT_EQ(jobs[2].warm_pool.status, WarmPoolStatus::kAvailable);
}

TEST(TuningService, StatsdObjectiveFromStoredSeries) {
  FakeClock clock;
  auto store_r = OpenSqliteStore(":memory:");
  ASSERT_TRUE(store_r.ok());
  auto store = std::move(store_r.value());
  Catalog catalog = Catalog::Defaults();
  FakeBackend backend(clock, 7);
  backend.SetScript([](const LaunchRequest&) {
    FakeOutcome o;
    o.duration_ms = 500;
    return o;
  });
  auto loss = [](double x) { return (x - 0.3) * (x - 0.3); };
  auto x_of = [&](const std::string& job_id) {
    return std::stod(store->GetJob(job_id)->spec.hyperparameters["x"].get<std::string>());
  };
  ManualTimerService timers(clock);
  ControllerOptions opts;
  opts.threading = Threading::kManual;
  opts.artifacts_dir = "/artifacts";
  int drained = 0;
  opts.before_instance_exit = [&](const std::string& instance_id) {
    std::string job_id = instance_id.substr(0, instance_id.find('.'));
    double x = x_of(job_id);
    ASSERT_FALSE(IsTerminal(store->GetJob(job_id)->status));
    std::string tags = "job_id:" + job_id + ",step:";
    TimeMs now = clock.NowMs();
    ASSERT_TRUE(store
                    ->AppendMetricPoints({{job_id, "val_loss", tags + "2", "value", now, loss(x) + 0.5},
                                          {job_id, "val_loss", tags + "0", "value", now, loss(x) + 2},
                                          {job_id, "val_loss", tags + "1", "value", now, loss(x) + 1},
                                          {job_id, "val_loss", tags + "2", "value", now + 1, loss(x)}})
                    .ok());
    ++drained;
  };
  Controller ctl(*store, clock, timers, catalog, opts);
  backend.SetSink(&ctl);
  ctl.SetBackend(&backend);
  ASSERT_TRUE(ctl.Start().ok());
  TuningService svc(*store, ctl, clock, {});

  json spec = NativeSpec();
  spec["strategy"] = "Random";
  spec["max_trials"] = 5;
  spec["objective"] = {{"metric", "val_loss"}, {"type", "Minimize"}, {"source", "StatsD"}};
  spec["parameters"] = {{"x", {{"type", "Continuous"}, {"min", 0}, {"max", 1}}}};
  spec["trial"].erase("metric_definitions");
  auto parsed = ParseTuningSpec(spec, &catalog);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_TRUE(svc.Create(*parsed).ok());
  RunTuning(ctl, backend, svc, clock, timers, "tune-x");
  auto job = svc.Get("tune-x");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state.status, TuningStatus::kCompleted) << job->state.reason;
  auto trials = svc.Trials(*job);
  ASSERT_TRUE(trials.ok());
  ASSERT_EQ(trials->size(), 5u);
  EXPECT_EQ(drained, 5);
  int best = BestTrial(job->spec, *trials);
  ASSERT_GE(best, 0);
  double best_loss = 1e9;
  for (const auto& t : *trials) {
    double x = std::stod(t.hyperparameters["x"].get<std::string>());
    ASSERT_EQ(t.curve.size(), 3u) << t.name;
    EXPECT_DOUBLE_EQ(t.curve[0], loss(x) + 2);
    EXPECT_DOUBLE_EQ(t.curve[1], loss(x) + 1);
    EXPECT_DOUBLE_EQ(t.curve[2], loss(x));
    ASSERT_TRUE(Objective(t).has_value()) << t.name;
    best_loss = std::min(best_loss, loss(x));
  }
  EXPECT_DOUBLE_EQ(*Objective((*trials)[static_cast<size_t>(best)]), best_loss);
}

TEST(TrialNames, AreDeterministicAndRecognized) {
  std::string n = TrialName("tune-x", 7);
  EXPECT_EQ(n.rfind("tune-x-007-", 0), 0u);
  EXPECT_EQ(n.size(), 6u + 13u);
  EXPECT_EQ(n, TrialName("tune-x", 7));
  EXPECT_NE(n, TrialName("tune-y", 7));
  EXPECT_EQ(TrialIndex("tune-x", n), 7);
  // By shape (which jobs are trials is their kilnd-set tuning_job field).
  EXPECT_EQ(TrialIndex("tune-x", "tune-x-007-00000000"), 7);
  EXPECT_EQ(TrialIndex("tune-x", "tune-x-007-0000000g"), 0);
  EXPECT_EQ(TrialIndex("tune-x", "tune-x-x07-00000000"), 0);
  EXPECT_EQ(TrialIndex("tune", n), 0);
}

TEST(TrialNames, ASaltedNameCannotBePredictedFromTheTuningJobsName) {
  const std::string a = TrialName("tune-x", 7, "0123456789abcdef"), b = TrialName("tune-x", 7, "fedcba9876543210");
  EXPECT_NE(a, TrialName("tune-x", 7));  // not the name anyone can compute
  EXPECT_NE(a, b);
  EXPECT_EQ(a, TrialName("tune-x", 7, "0123456789abcdef"));  // a restart proposes the same
  EXPECT_EQ(TrialIndex("tune-x", a), 7);
  TuningJob j = Job();
  j.state.trial_salt = "0123456789abcdef";
  Decision d = Decide(j, {}, {}, 1000);
  ASSERT_FALSE(d.launch.empty());
  EXPECT_EQ(d.launch[0].name, TrialName(j.spec.name, d.launch[0].index, "0123456789abcdef"));
  EXPECT_EQ(TuningState::FromJson(j.state.ToJson()).trial_salt, "0123456789abcdef");
}

TEST(Decide, LaunchesUpToTheParallelLimitAndNeverReusesAnIndex) {
  TuningJob j = Job();
  Decision d = Decide(j, {}, {}, 1000);
  ASSERT_EQ(d.launch.size(), 2u);
  EXPECT_EQ(d.launch[0].index, 1);
  EXPECT_EQ(d.launch[1].index, 2);
  EXPECT_NE(d.launch[0].tuned, d.launch[1].tuned);
  for (const auto& l : d.launch) {
    EXPECT_TRUE(l.tuned.contains("lr") && l.tuned.contains("depth") && l.tuned.contains("kind"));
    JobSpec s = TrialSpec(j.spec, l);
    EXPECT_EQ(s.name, l.name);
    EXPECT_EQ(s.tuning_job, "tune-x");
    EXPECT_EQ(s.hyperparameters["epochs"], "3");
  }
  // Same inputs, same decision: a restart before the trials were created re-proposes them.
  EXPECT_EQ(Decide(j, {}, {}, 1000).launch[0].tuned, d.launch[0].tuned);
  // Trial 1 exists and runs, trial 2 was never created (crash): the next index is 2, then none.
  TrialView one = Finished(j, 1, d.launch[0].tuned, {}, JobStatus::kInProgress);
  Decision d2 = Decide(j, {one}, {}, 1000);
  ASSERT_EQ(d2.launch.size(), 1u);
  EXPECT_EQ(d2.launch[0].index, 2);
}

TEST(Decide, CompletesAfterMaxTrialsAndFailsWhenAllFailed) {
  TuningJob j = Job();
  std::vector<TrialView> trials;
  for (int i = 1; i <= 6; ++i)
    trials.push_back(Finished(j, i, {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}}, {1.0 / i}));
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_TRUE(d.launch.empty());
  ASSERT_TRUE(d.status);
  EXPECT_EQ(*d.status, TuningStatus::kCompleted);
  EXPECT_EQ(BestTrial(j.spec, trials), 5);
  for (auto& t : trials) {
    t.status = JobStatus::kFailed;
    t.curve.clear();
  }
  d = Decide(j, trials, {}, 5000);
  ASSERT_TRUE(d.status);
  EXPECT_EQ(*d.status, TuningStatus::kFailed);
  EXPECT_NE(d.reason.find("all 6 training jobs failed"), std::string::npos);
}

TEST(Decide, FailedTrialsCountButDoNotStopTheSearch) {
  TuningJob j = Job();
  std::vector<TrialView> trials = {
      Finished(j, 1, {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}}, {}, JobStatus::kFailed),
      Finished(j, 2, {{"lr", "0.2"}, {"depth", "3"}, {"kind", "a"}}, {0.5})};
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_FALSE(d.status);
  ASSERT_EQ(d.launch.size(), 2u);
  EXPECT_EQ(d.launch[0].index, 3);
}

TEST(Decide, TargetReachedStopsRunningTrialsThenCompletes) {
  json s = NativeSpec();
  s["target"] = 0.2;
  TuningJob j = Job(s);
  std::vector<TrialView> trials = {
      Finished(j, 1, {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}}, {0.15}),
      Finished(j, 2, {{"lr", "0.2"}, {"depth", "3"}, {"kind", "a"}}, {0.9}, JobStatus::kInProgress)};
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_TRUE(d.launch.empty());
  EXPECT_EQ(d.stop, std::vector<std::string>{trials[1].name});
  ASSERT_TRUE(d.status);
  EXPECT_EQ(*d.status, TuningStatus::kStopping);
  j.state.status = TuningStatus::kStopping;
  j.state.reason = d.reason;
  trials[1].status = JobStatus::kStopped;
  d = Decide(j, trials, {}, 6000);
  ASSERT_TRUE(d.status);
  EXPECT_EQ(*d.status, TuningStatus::kCompleted);
}

TEST(Decide, StopRequestStopsEverything) {
  TuningJob j = Job();
  j.state.stop_requested = true;
  std::vector<TrialView> trials = {
      Finished(j, 1, {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}}, {}, JobStatus::kInProgress)};
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_TRUE(d.launch.empty());
  EXPECT_EQ(d.stop.size(), 1u);
  EXPECT_EQ(*d.status, TuningStatus::kStopping);
  j.state.status = TuningStatus::kStopping;
  trials[0].status = JobStatus::kStopped;
  EXPECT_EQ(*Decide(j, trials, {}, 5000).status, TuningStatus::kStopped);
}

TEST(Decide, MedianRuleStopsABadRunningTrial) {
  json s = NativeSpec();
  s["early_stopping"] = "Auto";
  s["max_parallel"] = 1;
  TuningJob j = Job(s);
  json hp = {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}};
  std::vector<TrialView> trials = {Finished(j, 1, hp, {1.0, 0.5, 0.3}), Finished(j, 2, hp, {1.0, 0.6, 0.35}),
                                   Finished(j, 3, hp, {0.9, 0.5, 0.3}),
                                   Finished(j, 4, hp, {5.0, 4.9}, JobStatus::kInProgress)};
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_EQ(d.early_stop, std::vector<std::string>{trials[3].name});
  // A good running trial continues.
  trials[3].curve = {0.8, 0.4};
  EXPECT_TRUE(Decide(j, trials, {}, 5000).early_stop.empty());
  // An early-stopped trial's last value is its objective.
  trials[3].status = JobStatus::kStopped;
  trials[3].early_stopped = true;
  EXPECT_EQ(Objective(trials[3]), 0.4);
  trials[3].early_stopped = false;  // stopped by someone else: no objective
  EXPECT_FALSE(Objective(trials[3]));
}

TEST(Decide, NotImprovingCompletes) {
  json s = NativeSpec();
  s["max_not_improving"] = 3;
  s["max_trials"] = 50;
  TuningJob j = Job(s);
  json hp = {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}};
  std::vector<TrialView> trials = {Finished(j, 1, hp, {0.5}), Finished(j, 2, hp, {0.4}), Finished(j, 3, hp, {0.6}),
                                   Finished(j, 4, hp, {0.7})};
  EXPECT_FALSE(Decide(j, trials, {}, 5000).status);
  trials.push_back(Finished(j, 5, hp, {0.398}));  // < 1% better: does not count as improving
  Decision d = Decide(j, trials, {}, 5000);
  ASSERT_TRUE(d.status);
  EXPECT_EQ(*d.status, TuningStatus::kCompleted);
  EXPECT_NE(d.reason.find("NotImproving"), std::string::npos);
}

TEST(Decide, HyperbandStopsTrialsBelowTheirRung) {
  json s = NativeSpec();
  s["strategy"] = "Hyperband";
  s["hyperband"] = {{"min_resource", 1}, {"max_resource", 9}};
  s["max_parallel"] = 1;
  TuningJob j = Job(s);
  json hp = {{"lr", "0.1"}, {"depth", "3"}, {"kind", "a"}};
  std::vector<TrialView> trials;
  // Bracket 0 (indexes 3, 6, ... with 3 brackets? whichever): many good trials, then a bad one in each bracket.
  for (int i = 1; i <= 9; ++i) trials.push_back(Finished(j, i, hp, {0.1, 0.1, 0.1, 0.1}));
  for (int i = 10; i <= 12; ++i) trials.push_back(Finished(j, i, hp, {9, 9, 9, 9}, JobStatus::kInProgress));
  Decision d = Decide(j, trials, {}, 5000);
  EXPECT_EQ(d.early_stop.size(), 3u);
}

TEST(WarmStart, IdenticalDataKeepsImageAndInputsTransferLearningMayChangeThem) {
  json parent_spec = NativeSpec();
  parent_spec["name"] = "parent";
  parent_spec["trial"]["inputs"] = {{"train", "/data/a"}};
  const TuningSpec parent = Job(parent_spec).spec;
  auto child = [&](const std::string& type) {
    json c = parent_spec;
    c["name"] = "child";
    c["warm_start"] = {{"type", type}, {"parents", {"parent"}}};
    return c;
  };
  auto check = [&](const json& c) { return CheckWarmStartParent(Job(c).spec, parent); };
  json same = child("IdenticalDataAndAlgorithm");
  EXPECT_TRUE(check(same).ok());
  // Ranges may change, and a hyperparameter may move from tuned to static.
  same["parameters"]["lr"]["max"] = 0.5;
  same["parameters"].erase("depth");
  same["trial"]["hyperparameters"]["depth"] = "4";
  EXPECT_TRUE(check(same).ok()) << check(same).ToString();
  for (const std::string type : {"IdenticalDataAndAlgorithm", "TransferLearning"}) {
    json other_data = child(type);
    other_data["trial"]["inputs"]["train"] = "/data/b";
    json other_image = child(type);
    other_image["trial"]["image"] = "sagemaker-scikit-learn";
    json more = child(type);
    more["trial"]["hyperparameters"]["extra"] = "1";
    const bool identical = type == "IdenticalDataAndAlgorithm";
    EXPECT_EQ(check(other_data).ok(), !identical) << type;
    EXPECT_EQ(check(other_image).ok(), !identical) << type;
    if (identical) {
      EXPECT_EQ(check(other_data).field(), "warm_start.type");
      EXPECT_NE(check(other_image).message().find("training image"), std::string::npos);
    }
    EXPECT_EQ(check(more).field(), "warm_start.parents") << type;  // 5 hyperparameters where the parent had 4
  }
}

TEST(Decide, WarmStartHistoryGuidesTheSampler) {
  TuningJob j = Job();
  json hp = {{"lr", "0.01"}, {"depth", "2"}, {"kind", "b"}};
  std::vector<TrialView> warm;
  for (int i = 1; i <= 12; ++i) warm.push_back(Finished(j, i, hp, {0.1 * i}));
  Decision cold = Decide(j, {}, {}, 1000), hot = Decide(j, {}, warm, 1000);
  ASSERT_EQ(hot.launch.size(), 2u);
  EXPECT_NE(cold.launch[0].tuned, hot.launch[0].tuned);  // TPE is past its random start-up
}

}  // namespace
}  // namespace kiln::tuning

namespace kiln::tuning {
namespace {

// Simulation: random tuning specs driven to the end against simulated trials,
// with "crashes" that drop the rest of a decision's actions (the state written
// before them survives, as in the service). Invariants: no trial index or name is
// used twice, never more than max_parallel trials run, never more than
// max_trials are created, and every tuning job ends.
TEST(TuningSimulation, RandomSpecsWithCrashesKeepInvariants) {
  const int histories = getenv("KILN_SIM_HISTORIES") ? atoi(getenv("KILN_SIM_HISTORIES")) : 1000;
  int total_trials = 0, total_early = 0, total_crashes = 0;
  std::map<std::string, int> endings;
  for (int seed = 1; seed <= histories; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    json s = NativeSpec();
    s["name"] = "sim-" + std::to_string(seed);
    const char* strategies[] = {"Random", "Grid", "Bayesian", "Hyperband"};
    s["strategy"] = strategies[uni(0, 3)];
    s["max_trials"] = uni(1, 14);
    s["max_parallel"] = uni(1, 4);
    if (s["strategy"] == "Hyperband") {
      s["hyperband"] = {{"min_resource", 1}, {"max_resource", 9}};
    } else if (uni(0, 1)) {
      s["early_stopping"] = "Auto";
    }
    if (uni(0, 3) == 0) s["target"] = 0.2;
    if (uni(0, 3) == 0) s["max_not_improving"] = 3;
    TuningJob job = Job(s);
    std::vector<TrialView> trials;
    std::set<std::string> names;
    const int epochs = 9;
    TimeMs now = 1000;
    bool stop_sent = false;
    int step = 0;
    for (; step < 5000 && !IsTerminal(job.state.status); ++step) {
      now += 100;
      if (!stop_sent && uni(0, 400) == 0) {
        job.state.stop_requested = true;  // StopHyperParameterTuningJob
        stop_sent = true;
      }
      if (uni(0, 2) == 0) {
        Decision d = Decide(job, trials, {}, now);
        for (const auto& n : d.early_stop) job.state.early_stopped.push_back(n);
        if (d.status) {
          job.state.status = *d.status;
          if (!d.reason.empty()) job.state.reason = d.reason;
        }
        bool crash = uni(0, 9) == 0;
        total_crashes += crash;
        size_t k = 0;
        for (const auto& n : d.early_stop) {
          if (crash && uni(0, 1)) break;
          for (auto& t : trials)
            if (t.name == n && !IsTerminal(t.status)) t.status = JobStatus::kStopped, t.ended = now;
        }
        for (const auto& n : d.stop)
          for (auto& t : trials)
            if (t.name == n && !IsTerminal(t.status)) t.status = JobStatus::kStopped, t.ended = now;
        for (const auto& l : d.launch) {
          if (crash && k++ > 0) break;  // the rest of the decision is lost
          ASSERT_TRUE(names.insert(l.name).second) << "trial created twice: " << l.name;
          ASSERT_EQ(TrialIndex(job.spec.name, l.name), l.index);
          TrialView t;
          t.index = l.index;
          t.name = l.name;
          t.hyperparameters = l.tuned;
          t.created = now;
          trials.push_back(t);
        }
        int running = 0;
        for (const auto& t : trials) running += !IsTerminal(t.status);
        ASSERT_LE(running, job.spec.max_parallel);
        ASSERT_LE(static_cast<int>(trials.size()), job.spec.max_trials);
        for (auto& t : trials)
          t.early_stopped = std::find(job.state.early_stopped.begin(), job.state.early_stopped.end(), t.name) !=
                            job.state.early_stopped.end();
      } else {
        // Progress one running trial by an epoch; some fail.
        std::vector<TrialView*> live;
        for (auto& t : trials)
          if (!IsTerminal(t.status)) live.push_back(&t);
        if (live.empty()) continue;
        TrialView* t = live[static_cast<size_t>(uni(0, static_cast<int>(live.size()) - 1))];
        if (uni(0, 30) == 0) {
          t->status = JobStatus::kFailed;
          t->ended = now;
          continue;
        }
        double x = std::stod(t->hyperparameters["lr"].get<std::string>());
        t->curve.push_back(std::fabs(std::log10(x) + 1.5) + 1.0 / static_cast<double>(t->curve.size() + 1));
        if (static_cast<int>(t->curve.size()) == epochs) {
          t->status = JobStatus::kCompleted;
          t->ended = now;
        }
      }
    }
    ASSERT_TRUE(IsTerminal(job.state.status)) << "did not end: " << ToString(job.state.status);
    total_trials += static_cast<int>(trials.size());
    total_early += static_cast<int>(job.state.early_stopped.size());
    std::string why = job.state.reason.substr(0, job.state.reason.find_first_of(":0123456789"));
    endings[why.substr(0, why.find(" by "))]++;
    for (const auto& t : trials) ASSERT_TRUE(IsTerminal(t.status)) << t.name;
    if (job.state.status == TuningStatus::kCompleted) {
      EXPECT_GE(BestTrial(job.spec, trials), 0);
    }
    if (job.state.status == TuningStatus::kStopped) {
      EXPECT_TRUE(stop_sent);
    }
  }
  // The histories exercised what they should.
  EXPECT_GT(total_trials, histories * 3);
  EXPECT_GT(total_early, histories / 10);
  EXPECT_GT(total_crashes, histories);
  EXPECT_GT(endings["MaxNumberOfTrainingJobs reached"], 0);
  EXPECT_GT(endings["TargetObjectiveMetricValue reached"], 0);
  EXPECT_GT(endings["all "], 0);
  EXPECT_GT(endings["Stopped"], 0);  // by request
  EXPECT_GT(endings["MaxNumberOfTrainingJobsNotImproving"], 0);
  for (const auto& [k, v] : endings) printf("  ending %-50s %d\n", k.c_str(), v);
  printf("  %d histories, %d trials, %d early stops, %d crashes\n", histories, total_trials, total_early,
         total_crashes);
}

}  // namespace
}  // namespace kiln::tuning
