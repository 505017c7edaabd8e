#pragma once
// SlurmBackend: a Kiln job's instances as one Slurm job, through slurmrestd.
//
// A job with instance.count N (one attempt) is one Slurm batch job named
// "kiln.<job_id>.<attempt>" with N tasks on N nodes, so Slurm gang-schedules it:
// all instances start together or none does. Each task runs kiln-supervisor on
// its node for the instance whose index is its SLURM_PROCID, with the launch.json
// kilnd wrote into the directory that kilnd and the nodes share (the same sandbox
// as on the local backend; on the host network, so the instances reach kilnd's
// API and each other over the cluster's network). See README.md.
//
// Events, never a poll per job:
//  - the end of a Slurm job reaches kilnd through Slurm's EpilogSlurmctld hook
//    (scripts/slurm-epilog.sh, POST /v1/pools/{pool}/slurm-events): JobEnded
//    reads the job from slurmrestd and each instance's status.json;
//  - a safety net lists the pool's jobs every reconcile_interval_s (one call for
//    all of them) and repairs a missed end; while some wait in Slurm's queue it
//    asks for the jobs changed since its last look every queue_refresh_s, and
//    posts InstanceWaiting with Slurm's reason (Resources, Priority, ...).
// Launch is idempotent across kilnd restarts: before its first submit, and after
// any submit whose answer was lost, it looks the job up by name, so a job is
// never submitted twice.
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "compute/backend.h"
#include "compute/local/local_backend.h"
#include "compute/slurm/slurm_rest.h"

namespace kiln::slurm {

struct SlurmBackendOptions {
  std::string pool = "slurm";  // the pool's name, in reasons and logs
  RestOptions rest;
  std::string partition, account, qos;  // "": the cluster's defaults
  // kiln-supervisor as the nodes see it (same path on every node).
  std::string supervisor_path;
  // The instance directories kilnd writes (launch.json) and the nodes read: a
  // directory shared by kilnd and every node (NFS in production).
  std::string instances_dir;
  int reconcile_interval_s = 60;
  int queue_refresh_s = 10;
  // While slurmrestd does not answer, launches wait (Pending); after this long
  // they fail. 0: they wait as long as it takes.
  int submit_timeout_s = 0;
  // The token of another instance of the same job (each task's launch.json
  // carries its own instance's token).
  std::function<std::string(const std::string& instance_id)> token_for;
  // The token Slurm's end-of-job hook sends (POST /v1/pools/{pool}/slurm-events).
  std::string hook_token_file;
  // slurmrestd answers again after it did not: parked launches may retry.
  std::function<void()> on_capacity;
};

class SlurmBackend final : public ComputeBackend {
 public:
  // `client` talks to slurmrestd; `preparer` writes instance directories (a
  // LocalBackend over opts.instances_dir, on the host network).
  SlurmBackend(SlurmBackendOptions opts, std::unique_ptr<RestClient> client, std::unique_ptr<LocalBackend> preparer,
               EventSink& sink, Clock& clock);
  ~SlurmBackend() override;
  // Starts the safety-net thread.
  Status Init();

  std::string Name() const override { return "slurm"; }
  std::vector<Capability> Capabilities() const override;
  Result<std::string> Launch(const LaunchRequest& req) override;
  Status Stop(const std::string& id, const std::string& handle, int64_t grace_ms) override;
  Status Cleanup(const std::string& id, const std::string& handle) override;
  Status Recover(const std::string& id, const std::string& handle) override;
  std::string LogPath(const std::string& id) const override;
  BackendHealth Health() const override;
  // The caches lie in shared_dir, beside the instance directories.
  Status DeleteWarmCache(const std::string& chain) override { return preparer_->DeleteWarmCache(chain); }

  // Slurm's end-of-job hook: the Slurm job `slurm_id` ended (or changed). Reads
  // it from slurmrestd and posts the exits of its instances. Unknown ids: Ok.
  Status JobEnded(int64_t slurm_id);
  // One pass of the safety net (exposed for tests).
  Status Reconcile();

  // "slurm:<id>:<instance count>" <-> the Slurm job id and its task count.
  static std::string Handle(int64_t slurm_id, int count);
  static Result<std::pair<int64_t, int>> ParseHandle(const std::string& handle);

 private:
  struct Gang {
    std::string job_id;
    int attempt = 1;
    int count = 1;
    int64_t slurm_id = 0;
    JobState state = JobState::kPending;
    std::string reason;           // Slurm's, last seen
    bool stop_requested = false;  // Kiln asked Slurm to cancel it
    TimeMs kill_at_ms = 0;        // the grace period's end: cancel what is left
    TimeMs recheck_at_ms = 0;     // COMPLETING: ask Slurm for its final state again
    int64_t recheck_delay_ms = 0;
    bool finished = false;          // exits posted
    std::set<std::string> cleaned;  // instances cleaned up
  };
  enum class PassKind { kChanged, kFull };
  static std::string GangKey(const std::string& job_id, int attempt) { return job_id + "." + std::to_string(attempt); }
  static std::string JobName(const std::string& key) { return "kiln." + key; }
  // Looks for Kiln's jobs in Slurm (by name) and tracks them; once after start
  // and after an ambiguous submit.
  Status Adopt() EXCLUDES(mu_);
  Result<JobRequest> SlurmJobFor(const LaunchRequest& req) const;
  // A submit that slurmrestd did not take: kResourceExhausted (the launch waits,
  // Pending) until submit_timeout_s, then kFailedPrecondition.
  Result<std::string> Unreachable(const std::string& key, const Status& why) EXCLUDES(mu_);
  std::string QueueReason(int64_t slurm_id, const std::string& reason) const;
  // kChanged: the jobs changed since the last look; kFull: all of them, and
  // each tracked job that the list lacks on its own.
  Status Pass(PassKind kind) EXCLUDES(mu_);
  // The exits of a finished gang (status.json, else from Slurm's state), once.
  std::vector<Event> Finish(Gang& g, const JobInfo& info) REQUIRES(mu_);
  // A job seen ending (final, or COMPLETING): its exits when they are known.
  std::vector<Event> Ending(Gang& g, const JobInfo& info) REQUIRES(mu_);
  // Every instance of the gang has its status.json.
  bool AllRecorded(const Gang& g) const;
  ExitReport ExitFromSlurm(const Gang& g, const JobInfo& info, int index) const;
  void Post(std::vector<Event> events);
  void Loop();
  void SetHealth(const Status& st) EXCLUDES(mu_);

  SlurmBackendOptions opts_;
  std::unique_ptr<RestClient> client_;
  std::unique_ptr<LocalBackend> preparer_;
  EventSink& sink_;
  Clock& clock_;
  std::mutex launch_mu_;  // one submit decision at a time
  mutable Mutex mu_;
  std::map<std::string, Gang> gangs_ GUARDED_BY(mu_);                // by GangKey
  std::map<int64_t, std::string> by_slurm_ GUARDED_BY(mu_);          // Slurm id -> GangKey
  bool adopted_ GUARDED_BY(mu_) = false;                             // Adopt ran since start
  std::map<std::string, JobInfo> ended_ GUARDED_BY(mu_);             // GangKey -> Kiln's ended Slurm job, seen by Adopt
  bool recheck_soon_ GUARDED_BY(mu_) = false;                        // a full look is due now
  bool ambiguous_ GUARDED_BY(mu_) = false;                           // a submit's answer was lost
  std::map<std::string, TimeMs> unreachable_since_ GUARDED_BY(mu_);  // GangKey -> first failed submit
  Status health_ GUARDED_BY(mu_);
  int64_t last_update_s_ GUARDED_BY(mu_) = 0;  // slurmctld time of the last queue look
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread loop_;
};

}  // namespace kiln::slurm
