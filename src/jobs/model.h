#pragma once
// The job and instance model, and events. A job's state is a fold over its events
// (see state_machine.h); these types serialize to the JSON that the store keeps
// and the API returns.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "jobs/spec.h"

namespace kiln {

enum class JobStatus { kInProgress, kCompleted, kFailed, kStopping, kStopped };
enum class SecondaryStatus {
  kStarting,
  kPending,
  kDownloading,
  kTraining,
  kUploading,
  kCompleted,
  kFailed,
  kStopping,
  kStopped,
  kMaxRuntimeExceeded,
  kRestarting,
  kInterrupted,
};
enum class InstanceState { kLaunching, kRunning, kExited };
// Why a job is stopping; decides its final secondary status.
enum class StopCause { kNone, kUser, kMaxRuntime };

const char* ToString(JobStatus s);
const char* ToString(SecondaryStatus s);
const char* ToString(InstanceState s);
std::optional<JobStatus> ParseJobStatus(const std::string& s);
bool IsTerminal(JobStatus s);

struct Instance {
  std::string id;  // "<job_id>.<attempt>.<index>"
  std::string job_id;
  int index = 0;
  int attempt = 1;
  InstanceState state = InstanceState::kLaunching;
  std::string handle;  // backend's opaque handle, persisted for recovery
  int exit_code = -1;
  int signal = 0;
  bool oom = false;
  std::string failure;  // reason recorded for this instance, if it failed
  TimeMs launched_at = 0;
  TimeMs exited_at = 0;
  bool stop_sent = false;
  int64_t acquire_ms = -1;  // how long the backend's Launch took (LaunchedReport), -1: not said
};

struct StatusTransition {
  SecondaryStatus status;
  TimeMs start = 0;
  TimeMs end = 0;  // 0 while current
  std::string message;
};

// A job's warm pool (SageMaker's managed warm pools): with a keep-alive, the
// job's instances are retained for that long after it ends, for a matching
// job of the same team to take over. kNone: no keep-alive (or never asked).
enum class WarmPoolStatus { kNone, kInUse, kAvailable, kReused, kTerminated };
const char* ToString(WarmPoolStatus s);
std::optional<WarmPoolStatus> ParseWarmPoolStatus(const std::string& s);

// The longest a chain of reuses may retain instances (SageMaker's 28 days).
inline constexpr TimeMs kMaxWarmChainMs = TimeMs{28} * 24 * 3600 * 1000;

struct WarmPool {
  WarmPoolStatus status = WarmPoolStatus::kNone;
  int64_t keep_alive_seconds = 0;  // from the spec; UpdateTrainingJob changes it
  // The cache directory's chain: the first job's id, handed on with each reuse.
  std::string chain;
  TimeMs chain_started = 0;  // when the chain's first pool became Available
  std::string reused_from;   // the job whose pool this job took (id)
  std::string reused_by;     // the job that took this job's pool (id)
  std::string reused_by_name;
  TimeMs available_at = 0;  // when it became Available
  TimeMs ended_at = 0;      // when it became Reused or Terminated
  std::string reason;       // why Terminated (or why no pool was kept)

  // When an Available pool ends: its keep-alive after it became Available,
  // never past the chain's 28 days.
  TimeMs ExpiresAt() const;
  // ResourceRetainedBillableTimeInSeconds: how long the instances were kept
  // while nobody used them.
  int64_t RetainedSeconds(TimeMs now) const;
};
nlohmann::json ToJson(const WarmPool& w, TimeMs now);

struct Job {
  std::string id;
  JobSpec spec;
  JobStatus status = JobStatus::kInProgress;
  SecondaryStatus secondary = SecondaryStatus::kStarting;
  std::string failure_reason;
  std::optional<int> exit_code;
  int attempt = 1;
  TimeMs created_at = 0;
  TimeMs ended_at = 0;
  StopCause stop_cause = StopCause::kNone;
  std::vector<StatusTransition> transitions;
  std::map<std::string, TimeMs> phase_times;  // phase -> first time reached this attempt
  // How this attempt's first instance started (its Training phase report): "cold",
  // "warm" or "warm-runtime", "" until said; and why a warm runtime was not used.
  std::string start;
  std::string start_note;
  std::vector<Instance> instances;  // all attempts, in launch order
  std::string model_artifact;       // path of model.tar.gz once uploaded
  std::string output_dir;           // resolved output location
  std::string exit_message;         // /opt/ml/output/message of the first instance (ExitMessage)
  WarmPool warm_pool;
  int64_t last_job_seq = 0;  // highest event job_seq folded in

  Instance* FindInstance(const std::string& id);
  std::vector<Instance*> CurrentInstances();
  // Per-phase durations (ms) derived from phase_times and transitions.
  nlohmann::json Timings() const;
};

enum class EventType {
  kJobCreated,
  kInstanceLaunched,
  kInstanceLaunchFailed,
  kPhaseReported,
  kInstanceExited,
  kStopRequested,
  kMaxRuntimeTimer,
  kInstanceQueued,   // the backend has no capacity for it yet (LaunchFailedReport: the reason)
  kInstanceWaiting,  // the backend took it and it waits in the backend's own queue (Slurm's; same payload)
  // Warm pools (payloads: state_machine.h). This job's Available pool ends:
  // Reused (by a new job), Expired or Terminated ...
  kWarmPoolEnded,
  // ... a claim that did not lead to a job (its creation failed) gives the pool back ...
  kWarmPoolReturned,
  // ... and the keep-alive changes (UpdateTrainingJob; 0 ends an Available pool).
  kKeepAliveUpdated,
};
const char* ToString(EventType t);
std::optional<EventType> ParseEventType(const std::string& s);

struct Event {
  int64_t seq = 0;      // global, assigned by the store
  int64_t job_seq = 0;  // per job, assigned by the store
  std::string job_id;
  EventType type = EventType::kJobCreated;
  nlohmann::json payload = nlohmann::json::object();
  std::string source;  // api | backend | entrypoint | timer | recovery
  TimeMs time = 0;
  std::string dedup_key;  // empty = never a duplicate
  // Filled once applied: the job's state right after this event.
  std::string status_after;
  std::string secondary_after;
};

nlohmann::json ToJson(const Job& j);
// Decodes a job record written by ToJson(const Job&). The spec is decoded with
// DecodeStoredSpec, never re-validated. A record that cannot be decoded (not an
// object, a missing or mistyped field) is kDataLoss.
Result<Job> JobFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const Instance& i);
Instance InstanceFromJson(const nlohmann::json& j);
nlohmann::json ToJson(const Event& e);

}  // namespace kiln
