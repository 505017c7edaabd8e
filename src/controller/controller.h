#pragma once
// The controller: the only writer of job state.
//
// Threading: in kThreaded mode one worker thread reconciles job keys from a queue,
// and launches run on a pool of launcher threads (ControllerOptions::launch_threads),
// so a slow backend Launch never stalls the reconciler or other jobs. Post,
// CreateJob and StopJob may be called from any thread. In kManual mode nothing
// runs until the caller calls RunOnce (the simulation harness does): RunOnce runs
// one queued launch, or else reconciles one job key.
// A job key is reconciled by one thread at a time, and reconciling is idempotent:
// it folds only unapplied events and every action is idempotent.
//
// Errors: a reconcile that fails with a retryable code (kUnavailable, kInternal,
// kAborted-like store contention) is requeued with exponential backoff
// (kRequeueBaseMs doubling to kRequeueMaxMs); a terminal one (kNotFound: the job is
// gone; kDataLoss: its stored record cannot be decoded) is logged once and the key
// dropped until a new event arrives for it.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "compute/backend.h"
#include "controller/fair_share.h"
#include "controller/timers.h"
#include "jobs/catalog.h"
#include "jobs/state_machine.h"
#include "store/store.h"

namespace kiln {

enum class Threading { kThreaded, kManual };

// Warm pools (SageMaker's managed warm pools; docs/architecture.md).
struct WarmPoolOptions {
  // The largest keep-alive a job may ask for (SageMaker documents 3,600 s).
  int64_t max_keep_alive_seconds = 3600;
  // How many instances one team may retain in Available pools at once; a job
  // that would go past it keeps no pool (Terminated, with the reason). -1: no cap.
  int max_retained_instances_per_team = 16;
};

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
  // Called after a job's change is committed (its events are in the store), from
  // the controller's thread: wakes the streams that follow the job.
  std::function<void(const std::string& job_id)> on_job_changed;
  // Per-team quotas and fair-share weights (fair_share.h); none by default.
  QuotaConfig quotas;
  // kThreaded: how many launches may run at once.
  int launch_threads = 4;
  WarmPoolOptions warm_pools;
};

// The config's warm_pools section: {max_keep_alive_seconds: 0..21600,
// max_retained_instances_per_team: -1 (none) or more}; null: the defaults.
Result<WarmPoolOptions> WarmPoolOptionsFromJson(const nlohmann::json& j);

inline constexpr TimeMs kRequeueBaseMs = 500;
inline constexpr TimeMs kRequeueMaxMs = 60000;
// The delay before the `failures`-th consecutive retry of a job key (1-based).
TimeMs RequeueDelayMs(int failures);
// Whether a reconcile error is worth retrying.
bool IsRetryable(Code code);

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
  // kInvalidArgument naming the field when `spec` needs more at once than its
  // team's whole quota allows (it would wait forever).
  Status FitsTeamQuota(const JobSpec& spec) const;
  Result<Job> StopJob(const std::string& id_or_name);
  // Warm pools: changes a job's keep-alive (UpdateTrainingJob). On a running
  // job it applies when the job ends; on an Available pool it counts from when
  // the pool became Available, and 0 terminates the pool. kInvalidArgument
  // (instance.keep_alive_seconds) past the configured maximum;
  // kFailedPrecondition when the job ended without an Available pool. Returns
  // the job as the change leaves it.
  Result<Job> UpdateKeepAlive(const std::string& id_or_name, int64_t seconds);
  // Persists `e` (dropping duplicates by dedup_key) and queues its job.
  Status Post(Event e) override;

  // kManual: runs the next queued launch, or else reconciles the next queued job.
  // False when both queues are empty.
  bool RunOnce();
  // Jobs whose reconcile failed terminally and were dropped (tests, /metrics).
  int64_t dropped_keys() const { return dropped_keys_.load(); }
  // Safety net: asks the backend to confirm every live instance.
  void Resync();
  // A backend's capacity came back (a Slurm pool's slurmrestd answers again):
  // launches parked for capacity run again, in fair-share order.
  void CapacityChanged() EXCLUDES(mu_) { RetryWaitingLaunches(); }

  // Incremented after every committed transition; streams wait on it.
  int64_t version() const { return version_.load(); }
  // Blocks until version() != seen or timeout; returns the current version.
  int64_t WaitForChange(int64_t seen, int timeout_ms);

 private:
  enum class Admission {
    kDirect,  // a precondition failure, posted without the backend or a quota
    kQueued,  // its turn came in fair_, and its team is charged for it
  };
  struct PendingLaunch {
    LaunchRequest req;
    Status precondition;  // not ok: post a launch failure without calling the backend
    Admission admission = Admission::kDirect;
    TimeMs created_ms = 0;  // the job's: its place among its team's waiters
  };
  // What a launch of `req` holds while it runs.
  static Usage UsageOf(const LaunchRequest& req);
  static Usage UsageOf(const JobSpec& spec, const InstanceType* type, int index);

  void Enqueue(const std::string& job_id) EXCLUDES(mu_);
  void Process(const std::string& job_id) EXCLUDES(mu_);
  enum class Processed { kDone, kRecoveryDeferred };
  Processed ProcessOne(const std::string& job_id) EXCLUDES(mu_);
  void WorkerLoop() EXCLUDES(mu_);
  void LauncherLoop() EXCLUDES(mu_);
  Status Reconcile(const std::string& job_id);
  void Execute(const Job& job, const Action& a) EXCLUDES(mu_);
  // Queues a launch of `req` (once per instance id while one is in flight): it
  // waits in fair_ for its team's quota and its turn (created_ms: the job's).
  void StartLaunch(LaunchRequest req, Status precondition, TimeMs created_ms) EXCLUDES(mu_);
  // Moves the launches whose turn it is from fair_ to the launchers, charging
  // their team: at most launch_threads at once, none while the backend refuses
  // for capacity (until an instance ends) or before recovery at start is done.
  void Pump() EXCLUDES(mu_);
  // Runs a launch (retrying kUnavailable) and posts its result. kWaiting: the
  // backend had no capacity; the launch is parked in waiting_ (still in
  // launching_) until an instance ends.
  enum class LaunchOutcome { kDone, kWaiting };
  LaunchOutcome RunLaunch(const PendingLaunch& launch) EXCLUDES(mu_);
  // An InstanceQueued event: the instance is Pending, with `reason`.
  void PostQueued(const std::string& job_id, const std::string& instance_id, const std::string& reason);
  // An instance ended somewhere: capacity may have freed, so the parked
  // launches run again, in fair-share order.
  void RetryWaitingLaunches() EXCLUDES(mu_);
  // A stop for an instance not launched yet: parked, its launch fails now as
  // StoppedBeforeLaunch; queued or in flight, it is marked (cancelled_) to end
  // that way before it starts or parks.
  void CancelLaunch(const std::string& job_id, const std::string& instance_id) EXCLUDES(mu_);
  void ScheduleTimers(const Job& job);
  // Warm pools. Every decision that reads a pool's state and then changes it
  // (a claim, an expiry, a keep-alive change) runs under warm_mu_ against the
  // pool's effective state: its stored state with its unapplied events folded
  // in. So a pool goes to at most one job, even across a crash.
  Result<Job> EffectiveJob(const std::string& id_or_name);
  // Takes over an Available pool that matches `job` (same team, kind, instance
  // type and count, volume size, network isolation): posts WarmPoolEnded
  // (Reused) on it and gives `job` its chain. The pool's job id, or "".
  std::string ClaimWarmPool(Job& job) REQUIRES(warm_mu_);
  // The expiry timer `timer_key` of the job's pool fired: ends it if it is due.
  void ExpireWarmPool(const std::string& job_id, const std::string& timer_key) EXCLUDES(warm_mu_);
  // Charges an Available pool's instances to its team (they count against its
  // quota and its cap on retained instances) and releases them when it ends.
  void SyncWarmCharges(const Job& job) EXCLUDES(mu_, warm_mu_);
  void RecoverInstances(const std::string& job_id);
  void PostOrLog(Event e, const char* what);

  Store& store_;
  Clock& clock_;
  TimerService& timers_;
  const Catalog& catalog_;
  ControllerOptions opts_;
  ComputeBackend* backend_ = nullptr;

  Mutex warm_mu_;  // taken before mu_, never after
  Mutex mu_;
  std::condition_variable cv_;         // the worker: queue_ or stop_
  std::condition_variable launch_cv_;  // the launchers: launches_ or stop_
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::set<std::string> queued_ GUARDED_BY(mu_);
  std::set<std::string> resync_ GUARDED_BY(mu_);         // jobs whose instances to re-check
  std::map<std::string, int> failures_ GUARDED_BY(mu_);  // job -> consecutive reconcile failures
  std::deque<PendingLaunch> launches_ GUARDED_BY(mu_);
  std::set<std::string> launching_ GUARDED_BY(mu_);  // instance ids queued, in flight or waiting
  // Launches waiting for quota, capacity or their turn, in fair_'s order.
  FairShare fair_ GUARDED_BY(mu_);
  std::map<std::string, PendingLaunch> parked_ GUARDED_BY(mu_);  // instance -> its launch, while in fair_
  int pumped_ GUARDED_BY(mu_) = 0;                               // launches from fair_ running now
  bool capacity_blocked_ GUARDED_BY(mu_) = false;                // the backend refused one; until an instance ends
  // Once the backend has refused a launch for capacity, launches leave fair_ one
  // at a time (each in its turn) until none waits.
  bool scarce_ GUARDED_BY(mu_) = false;
  // Jobs left to recover at start: no launch leaves fair_ before they are, so
  // that after a restart the waiting launches start in fair-share order.
  std::set<std::string> recovering_ GUARDED_BY(mu_);
  bool hold_ GUARDED_BY(mu_) = false;
  int64_t capacity_epoch_ GUARDED_BY(mu_) = 0;  // RetryWaitingLaunches calls so far
  // Instances stopped while their launch was queued or in flight (not parked):
  // their launch ends as StoppedBeforeLaunch instead of starting or waiting.
  std::set<std::string> cancelled_ GUARDED_BY(mu_);
  // True (and forgets it) if `instance_id`'s launch was cancelled.
  bool TakeCancelled(const std::string& instance_id) EXCLUDES(mu_);
  void PostStoppedBeforeLaunch(const std::string& job_id, const std::string& instance_id);
  bool stop_ GUARDED_BY(mu_) = false;
  // Warm pools charged to their team: job id -> (team, instances).
  std::map<std::string, std::pair<std::string, int>> warm_charged_ GUARDED_BY(mu_);
  std::thread worker_;
  std::vector<std::thread> launchers_;
  std::atomic<int64_t> dropped_keys_{0};

  std::atomic<int64_t> version_{0};
  std::mutex change_mu_;
  std::condition_variable change_cv_;
};

}  // namespace kiln
