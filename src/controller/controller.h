#pragma once
// The controller: the only writer of job state.
//
// Threading: in kThreaded mode one worker thread reconciles job keys from a queue;
// Post/CreateJob/StopJob may be called from any thread. In kManual mode nothing
// runs until the caller calls RunOnce (the simulation harness does).
// A job key is reconciled by one thread at a time, and reconciling is idempotent:
// it folds only unapplied events and every action is idempotent.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/clock.h"
#include "compute/backend.h"
#include "controller/timers.h"
#include "jobs/catalog.h"
#include "jobs/state_machine.h"
#include "store/store.h"

namespace kiln {

enum class Threading { kThreaded, kManual };

struct ControllerOptions {
  Threading threading = Threading::kThreaded;
  std::string api_url;        // handed to instances
  std::string artifacts_dir;  // default output root
  // Computes the bearer token of an instance (kilnd derives it from its secret).
  std::function<std::string(const std::string& instance_id)> token_for;
  // Called when an instance is released (after its exit), e.g. to close its metrics port.
  std::function<void(const std::string& instance_id)> on_instance_released;
  // Called before an instance's exit is recorded, e.g. to store the metrics it
  // sent last: whoever sees the job end sees all of them.
  std::function<void(const std::string& instance_id)> before_instance_exit;
};

class Controller final : public EventSink {
 public:
  Controller(Store& store, Clock& clock, TimerService& timers, const Catalog& catalog, ControllerOptions opts);
  ~Controller() override;

  void SetBackend(ComputeBackend* backend) { backend_ = backend; }
  // Recovery: reconciles every job with pending events or a live state, re-attaches
  // running instances and re-issues launches that may not have happened. Then
  // starts the worker (kThreaded).
  Status Start();
  void Shutdown();

  // `spec` must already be validated. kAlreadyExists on a duplicate name.
  Result<Job> CreateJob(const JobSpec& spec);
  Result<Job> StopJob(const std::string& id_or_name);
  // Persists `e` (dropping duplicates by dedup_key) and queues its job.
  Status Post(Event e) override;

  // kManual: reconciles the next queued job. False when the queue is empty.
  bool RunOnce();
  // Safety net: asks the backend to confirm every live instance.
  void Resync();

  // Incremented after every committed transition; streams wait on it.
  int64_t version() const { return version_.load(); }
  // Blocks until version() != seen or timeout; returns the current version.
  int64_t WaitForChange(int64_t seen, int timeout_ms);

 private:
  void Enqueue(const std::string& job_id);
  void Process(const std::string& job_id);
  void WorkerLoop();
  Status Reconcile(const std::string& job_id);
  void Execute(const Job& job, const Action& a);
  void ScheduleTimers(const Job& job);
  void RecoverInstances(const std::string& job_id);

  Store& store_;
  Clock& clock_;
  TimerService& timers_;
  const Catalog& catalog_;
  ControllerOptions opts_;
  ComputeBackend* backend_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // GUARDED_BY(mu_)
  std::set<std::string> queued_;   // GUARDED_BY(mu_)
  std::set<std::string> resync_;   // GUARDED_BY(mu_): jobs whose instances to re-check
  bool stop_ = false;              // GUARDED_BY(mu_)
  std::thread worker_;

  std::atomic<int64_t> version_{0};
  std::mutex change_mu_;
  std::condition_variable change_cv_;
};

}  // namespace kiln
