#pragma once
// The job state machine: Transition(job, event) -> actions. Pure and total: any
// event in any state gives a defined result. Events that no longer apply (late,
// duplicated, for an old attempt) change nothing and return no actions, so the
// reconciler may fold the same history twice and get the same job.
#include <string>
#include <vector>

#include "jobs/events.h"
#include "jobs/model.h"

namespace kiln {

enum class ActionType {
  kLaunch,   // start instance `instance_id` (idempotent per id)
  kStop,     // SIGTERM, SIGKILL after grace_ms (idempotent)
  kCleanup,  // release the instance's resources (idempotent)
  // A warm pool chain ended: delete its cache directories (instance_id holds
  // the chain; idempotent).
  kDropWarmCache,
};

struct Action {
  ActionType type;
  std::string instance_id;
  int64_t grace_ms = 0;
};

struct TransitionResult {
  std::vector<Action> actions;
  bool applied = true;  // false: the event was recorded but did not apply
  std::string note;     // why it did not apply
};

// Payloads by event type: the structs of jobs/events.h, decoded by their codecs
// (JobCreated, StopRequested and MaxRuntimeTimer carry none):
//   InstanceLaunched: LaunchedReport     InstanceLaunchFailed: LaunchFailedReport
//   PhaseReported: PhaseReport           InstanceExited: ExitReport
//   WarmPoolEnded: {"reason": "Reused" | "Expired" | "Terminated", "by": job id,
//                   "by_name": its name, "message": why Terminated}
//   WarmPoolReturned: {"by": job id}    KeepAliveUpdated: {"seconds": n}
// A payload that does not decode is recorded and ignored (an exit still ends its
// instance, as InstanceLost).
//
// Warm pools: a job with keep_alive_seconds > 0 is InUse while it runs. When it
// ends Completed, Stopped after an instance of its last attempt ran, or Failed
// in the job's own code (not LaunchFailed, InstanceLost, SandboxSetupFailed or
// another platform failure), its pool becomes Available until its keep-alive
// ends (never past 28 days of its chain); otherwise it is Terminated with the
// reason. WarmPoolEnded ends an Available pool (Reused, or Terminated); an
// Expired that comes before ExpiresAt() is ignored. Whenever a chain ends
// (Terminated, or a job that carried one keeps no pool) the fold emits
// kDropWarmCache.
TransitionResult Transition(Job& job, const Event& event);

// Whether a job that ended may keep its warm pool (the rule above); the reason
// when not.
std::string WarmPoolRefusal(const Job& job);

struct TimerSpec {
  TimeMs at;
  EventType type;
  std::string dedup_key;
};
// Timers the job needs now; derived from state so they survive a restart without
// being stored.
std::vector<TimerSpec> PendingTimers(const Job& job);

// Builds instance ids for an attempt: "<job>.<attempt>.<index>".
std::string InstanceId(const std::string& job_id, int attempt, int index);

}  // namespace kiln
