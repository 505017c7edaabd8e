#pragma once
// The tuning service: keeps tuning jobs moving. One thread wakes on every
// controller change (trials are jobs, so their progress is a change) and every
// tick_ms (new log lines of running trials feed early stopping), folds each live
// tuning job through Decide and applies the decision: state first (early stops,
// status), then the actions (stop trials, create trials). Every action is
// idempotent and trial names are deterministic, so a crash at any point and a
// restart resume without launching a trial twice.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "controller/controller.h"
#include "store/store.h"
#include "tuning/tuning.h"

namespace kiln::tuning {

struct ServiceOptions {
  // The log file of an instance (to read objective values from its lines).
  std::function<std::string(const std::string& instance_id)> log_path;
  int tick_ms = 1000;  // early-stopping checks while trials run
};

class TuningService {
 public:
  TuningService(Store& store, Controller& ctl, Clock& clock, ServiceOptions opts)
      : store_(store), ctl_(ctl), clock_(clock), opts_(std::move(opts)) {}
  ~TuningService() { Shutdown(); }
  void Start();
  void Shutdown();

  // Validates parents (exist, same objective) and persists; kAlreadyExists on a taken name.
  Result<TuningJob> Create(const TuningSpec& spec);
  Result<TuningJob> Get(const std::string& name);
  Status Stop(const std::string& name);
  // Trials of a tuning job, by index, with their curves.
  Result<std::vector<TrialView>> Trials(const TuningJob& job);
  // The trials with an objective of a warm-start parent, read once and cached (an
  // ended tuning job's trials never change); empty while it is missing or running.
  std::vector<TrialView> FinishedParentTrials(const std::string& parent);
  // One pass over `name` (the thread calls it; tests call it directly).
  Status Tick(const std::string& name);

 private:
  void Loop();
  std::vector<double> Curve(const Job& trial, const std::string& regex);
  std::vector<double> StatsdCurve(const Job& trial, const std::string& metric);
  Status Save(const std::string& name, const TuningState& st);

  Store& store_;
  Controller& ctl_;
  Clock& clock_;
  ServiceOptions opts_;
  // One Tick of a tuning job at a time; ticks of different tuning jobs (a GP
  // proposal can take a few hundred ms) do not wait for each other.
  std::shared_ptr<std::mutex> JobLock(const std::string& name);
  std::mutex locks_mu_;
  std::map<std::string, std::shared_ptr<std::mutex>> job_locks_;  // GUARDED_BY(locks_mu_)
  std::atomic<bool> stop_{false};
  std::thread thread_;
  struct LogCursor {
    std::string path;
    size_t offset = 0;
    std::string partial;
    std::vector<double> values;
  };
  // One trial's read position, with a lock of its own: reading a log and
  // matching its lines holds no lock that other tuning calls need.
  struct CursorSlot {
    std::mutex mu;
    LogCursor cursor;  // GUARDED_BY(mu)
  };
  std::mutex cursors_mu_;  // Trials() is called by API handlers and by Tick; guards the map only
  std::map<std::string, std::shared_ptr<CursorSlot>> cursors_;  // GUARDED_BY(cursors_mu_): trial job id -> slot
  // StatsD curves of ended trials: their metrics were stored before they ended.
  std::map<std::string, std::vector<double>> statsd_final_;  // GUARDED_BY(cursors_mu_)
  // Finished trials of warm-start parents; a parent has ended, so they never change.
  std::mutex parents_mu_;
  std::map<std::string, std::vector<TrialView>> parent_trials_;  // GUARDED_BY(parents_mu_)
};

Result<TuningJob> LoadTuningJob(const TuningRecord& r);

// A trial's objective curve from its stored StatsD series of one metric: gauge
// points ("value") at or after `since` (the current attempt's start). With a
// `step` (or `epoch`) tag, one value per step in step order, the last one sent for
// that step; without, one value per flush interval in which the gauge was set.
std::vector<double> StatsdObjectiveCurve(const std::vector<MetricPoint>& points, TimeMs since);

// Whether `child` may warm start from `parent` (a finished tuning job with the
// same objective): the number of static plus tuned hyperparameters is the
// parent's, and IdenticalDataAndAlgorithm also needs the parent's image and inputs.
Status CheckWarmStartParent(const TuningSpec& child, const TuningSpec& parent);

}  // namespace kiln::tuning
