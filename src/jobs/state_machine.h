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
// A payload that does not decode is recorded and ignored (an exit still ends its
// instance, as InstanceLost).
TransitionResult Transition(Job& job, const Event& event);

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
