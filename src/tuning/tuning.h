#pragma once
// Hyperparameter tuning jobs: the spec, the persisted state, and the tuner's
// decision as a pure function of the spec, the state and the trials (ordinary
// jobs). The service (service.h) applies decisions; because a decision depends
// only on what is stored, a restarted kilnd resumes with the same history, and
// because trial names are a function of (tuning job, index), no trial is ever
// created twice.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "hpo/sampler.h"
#include "hpo/space.h"
#include "jobs/catalog.h"
#include "jobs/model.h"

namespace kiln::tuning {

enum class Strategy { kRandom, kGrid, kBayesian, kHyperband };
enum class EarlyStopping { kOff, kAuto };
// How the Bayesian strategy models the objective: kAuto, the default
// (hpo::MakeBayesianSampler: a Gaussian process, TPE past 200 trials with
// results); kTpe (hpo::MakeTpeSampler); kGp, a Gaussian process throughout
// (hpo::MakeGpSampler).
enum class BayesianAlgorithm { kAuto, kTpe, kGp };
enum class TuningStatus { kInProgress, kCompleted, kFailed, kStopping, kStopped };
enum class WarmStartType { kNone, kIdenticalDataAndAlgorithm, kTransferLearning };
// Where a trial's objective values come from: kLog, the trial's log lines through
// the metric definition of that name (SageMaker's MetricDefinitions); kStatsd, the
// StatsD gauge of that name in the trial's stored series, one value per `step`
// (or `epoch`) tag value, or per flush interval in which it was set when untagged.
enum class ObjectiveSource { kLog, kStatsd };

const char* ToString(Strategy s);
const char* ToString(TuningStatus s);
const char* ToString(WarmStartType w);
const char* ToString(BayesianAlgorithm a);
std::optional<TuningStatus> ParseTuningStatus(const std::string& s);
inline bool IsTerminal(TuningStatus s) {
  return s == TuningStatus::kCompleted || s == TuningStatus::kFailed || s == TuningStatus::kStopped;
}

inline constexpr size_t kMaxTuningNameLength = 32;
inline constexpr int kMaxTrials = 10000;
inline constexpr int kMaxParallel = 100;

struct TuningSpec {
  std::string name;
  Strategy strategy = Strategy::kBayesian;
  BayesianAlgorithm algorithm = BayesianAlgorithm::kAuto;
  std::string objective_metric;
  ObjectiveSource objective_source = ObjectiveSource::kLog;
  hpo::Direction direction = hpo::Direction::kMinimize;
  int max_trials = 10;
  int max_parallel = 1;
  int64_t max_runtime_seconds = 0;  // 0 = no limit
  EarlyStopping early_stopping = EarlyStopping::kOff;
  std::optional<double> target;                // complete once a trial reaches it
  int max_not_improving = 0;                   // complete after this many trials without a >= 1% gain; 0 = off
  int64_t min_resource = 1, max_resource = 0;  // Hyperband, in reported steps (epochs); 0 = unset
  std::vector<hpo::Parameter> ranges;
  WarmStartType warm_start = WarmStartType::kNone;
  std::vector<std::string> parents;
  JobSpec trial;             // template: static hyperparameters; name set per trial
  nlohmann::json sagemaker;  // the CreateHyperParameterTuningJob request, if it came that way
  std::string team = "default";
  // The tuning job's own tags (SageMaker AddTags/ListTags/DeleteTags on its ARN);
  // trials carry trial.tags. Same rules as job tags, and no "aws:" prefix.
  std::map<std::string, std::string> tags;

  nlohmann::json ToJson() const;
};

// The native format (YAML/JSON): {name, strategy, algorithm (TPE|GP, Bayesian
// only), objective: {metric, type, source (Log|StatsD)},
// max_trials, max_parallel, max_runtime_seconds, early_stopping, target,
// max_not_improving, hyperband: {min_resource, max_resource}, parameters: {name:
// {type, min, max, scaling, values}}, warm_start: {type, parents}, tags: {key:
// value}, trial: <job spec without name>}. With `catalog` null it re-reads a
// stored spec (one without tags reads as having none).
Result<TuningSpec> ParseTuningSpec(const nlohmann::json& j, const Catalog* catalog);

struct TuningState {
  TuningStatus status = TuningStatus::kInProgress;
  TimeMs created = 0;
  TimeMs ended = 0;
  std::string reason;  // why it ended (completion criterion, failure, stop)
  bool stop_requested = false;
  std::vector<std::string> early_stopped;  // trials the tuner stopped
  // A random secret drawn when the tuning job is created: trial names derive
  // from it, so another team cannot predict (and take) the name of a trial
  // before the tuner launches it. "" for tuning jobs created before it existed.
  std::string trial_salt;

  nlohmann::json ToJson() const;
  static TuningState FromJson(const nlohmann::json& j);
};

struct TuningJob {
  TuningSpec spec;
  TuningState state;
};

// A trial as the tuner sees it.
struct TrialView {
  int index = 0;
  std::string name;
  JobStatus status = JobStatus::kInProgress;
  nlohmann::json hyperparameters;  // as launched (strings)
  std::vector<double> curve;       // objective values in report order
  TimeMs created = 0, ended = 0;
  bool early_stopped = false;
};

// The deterministic name of trial `index` (1-based): "<tuning>-<NNN>-<8 hex>".
std::string TrialName(const std::string& tuning, int index, const std::string& salt = "");
// Index of a trial name of `tuning`, or 0.
int TrialIndex(const std::string& tuning, const std::string& name);

// The objective of a finished trial: its last reported value (Completed, or
// Stopped early by the tuner); nullopt if it has none.
std::optional<double> Objective(const TrialView& t);
// Index into `trials` of the best trial, or -1.
int BestTrial(const TuningSpec& spec, const std::vector<TrialView>& trials);

struct TrialLaunch {
  int index = 0;
  std::string name;
  nlohmann::json tuned;  // tuned hyperparameters, as strings
};

struct Decision {
  std::vector<TrialLaunch> launch;
  std::vector<std::string> early_stop;  // running trials to stop and remember as early-stopped
  std::vector<std::string> stop;        // running trials to stop (the tuning job ends)
  std::optional<TuningStatus> status;   // new status, if it changes
  std::string reason;
};

// `warm` are the finished trials of the parent tuning jobs (warm start).
Decision Decide(const TuningJob& job, const std::vector<TrialView>& trials, const std::vector<TrialView>& warm,
                TimeMs now);

// The trial's full spec: the template with its name, the tuned values merged
// into the static hyperparameters, and the tuning job recorded.
JobSpec TrialSpec(const TuningSpec& spec, const TrialLaunch& t);

}  // namespace kiln::tuning
