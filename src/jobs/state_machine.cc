#include "jobs/state_machine.h"

#include <csignal>
#include <cstring>
#include <string_view>

#include "common/fsutil.h"
#include "jobs/events.h"

namespace kiln {
namespace {

using nlohmann::json;

int PhaseRank(SecondaryStatus s) {
  switch (s) {
    case SecondaryStatus::kStarting:
    case SecondaryStatus::kRestarting:
    case SecondaryStatus::kPending:
      return 0;
    case SecondaryStatus::kDownloading:
      return 1;
    case SecondaryStatus::kTraining:
      return 2;
    case SecondaryStatus::kUploading:
      return 3;
    default:
      return 4;
  }
}

// The message of a Pending job that waits in its backend's own queue.
constexpr std::string_view kBackendQueuePrefix = "Queued in ";

bool QueuedInBackend(const Job& job) {
  return job.secondary == SecondaryStatus::kPending && !job.transitions.empty() &&
         job.transitions.back().message.rfind(kBackendQueuePrefix, 0) == 0;
}

void SetSecondary(Job& job, SecondaryStatus s, TimeMs now, const std::string& msg) {
  if (!job.transitions.empty()) {
    auto& last = job.transitions.back();
    if (last.status == s) return;
    if (!last.end) last.end = now;
  }
  job.secondary = s;
  job.transitions.push_back({s, now, 0, msg});
}

// Ends a warm pool chain that this job carried: its cache goes.
void DropChain(const Job& job, TransitionResult& r) {
  if (!job.warm_pool.chain.empty()) r.actions.push_back({ActionType::kDropWarmCache, job.warm_pool.chain, 0});
}

void EndWarmPool(Job& job, TimeMs now, const std::string& reason, TransitionResult& r) {
  WarmPool& w = job.warm_pool;
  w.status = WarmPoolStatus::kTerminated;
  w.ended_at = now;
  w.reason = reason;
  DropChain(job, r);
}

// The job ended: its warm pool becomes Available, or ends.
void SettleWarmPool(Job& job, TimeMs now, TransitionResult& r) {
  WarmPool& w = job.warm_pool;
  if (w.keep_alive_seconds <= 0) {
    if (w.status != WarmPoolStatus::kNone) EndWarmPool(job, now, "the keep-alive period was set to 0", r);
    return;
  }
  const std::string refusal = WarmPoolRefusal(job);
  if (!refusal.empty()) {
    EndWarmPool(job, now, refusal, r);
    return;
  }
  w.status = WarmPoolStatus::kAvailable;
  w.available_at = now;
  if (w.chain.empty()) w.chain = job.id;
  if (w.chain_started == 0) w.chain_started = now;
  if (now >= w.ExpiresAt()) EndWarmPool(job, now, "the warm pool chain reached its 28-day limit", r);
}

void Finish(Job& job, JobStatus status, SecondaryStatus sec, TimeMs now, const std::string& msg, TransitionResult& r) {
  job.status = status;
  SetSecondary(job, sec, now, msg);
  job.transitions.back().end = now;
  job.ended_at = now;
  SettleWarmPool(job, now, r);
}

void LaunchAttempt(Job& job, TimeMs now, TransitionResult& r) {
  for (int i = 0; i < job.spec.instance_count; ++i) {
    Instance in;
    in.id = InstanceId(job.id, job.attempt, i);
    in.job_id = job.id;
    in.index = i;
    in.attempt = job.attempt;
    in.launched_at = now;
    job.instances.push_back(in);
    r.actions.push_back({ActionType::kLaunch, in.id, 0});
  }
}

std::string SignalName(int sig) {
  const char* d = sigabbrev_np(sig);
  return d ? std::string("SIG") + d : "signal " + std::to_string(sig);
}

std::string InstanceFailure(const Job& job, const Instance& in) {
  std::string where = job.spec.instance_count > 1 ? " (algo-" + std::to_string(in.index + 1) + ")" : "";
  if (in.oom)
    return "OutOfMemory: the job exceeded the memory limit of its instance type " + job.spec.instance_type + where;
  if (!in.failure.empty()) return in.failure;
  if (in.signal) return "AlgorithmError: killed by " + SignalName(in.signal) + where;
  return "AlgorithmError: exit code " + std::to_string(in.exit_code) + where;
}

bool Failed(const Instance& in) {
  return in.oom || in.signal != 0 || in.exit_code != 0;
}

void StopLive(Job& job, TransitionResult& r) {
  for (auto* in : job.CurrentInstances()) {
    // Launching instances get their stop once InstanceLaunched arrives.
    if (in->state == InstanceState::kRunning && !in->stop_sent) {
      in->stop_sent = true;
      r.actions.push_back({ActionType::kStop, in->id, job.spec.stop_grace_seconds * 1000});
    }
  }
}

bool AllExited(Job& job) {
  for (auto* in : job.CurrentInstances())
    if (in->state != InstanceState::kExited) return false;
  return true;
}

// Called when every instance of the current attempt has exited.
void SettleAttempt(Job& job, TimeMs now, TransitionResult& r) {
  if (job.status == JobStatus::kStopping) {
    if (job.stop_cause == StopCause::kMaxRuntime) {
      job.failure_reason = "MaxRuntimeExceeded: the job ran longer than max_runtime_seconds=" +
                           std::to_string(job.spec.max_runtime_seconds);
      Finish(job, JobStatus::kStopped, SecondaryStatus::kMaxRuntimeExceeded, now, job.failure_reason, r);
    } else {
      Finish(job, JobStatus::kStopped, SecondaryStatus::kStopped, now, "Stopped by request", r);
    }
    return;
  }
  const Instance* failed = nullptr;
  for (auto* in : job.CurrentInstances())
    if (Failed(*in) && (!failed || in->exited_at < failed->exited_at)) failed = in;
  if (!failed) {
    job.exit_code = 0;
    job.failure_reason.clear();
    Finish(job, JobStatus::kCompleted, SecondaryStatus::kCompleted, now, "Training job completed", r);
    return;
  }
  job.exit_code = failed->exit_code;
  job.failure_reason = InstanceFailure(job, *failed);
  if (job.attempt <= job.spec.retry_attempts) {
    job.attempt++;
    job.phase_times.clear();
    job.start.clear();
    job.start_note.clear();
    SetSecondary(job, SecondaryStatus::kRestarting, now,
                 "Retrying (attempt " + std::to_string(job.attempt) + " of " +
                     std::to_string(job.spec.retry_attempts + 1) + ") after: " + job.failure_reason);
    LaunchAttempt(job, now, r);
    return;
  }
  Finish(job, JobStatus::kFailed, SecondaryStatus::kFailed, now, job.failure_reason, r);
}

void MarkExited(Job& job, Instance& in, const ExitReport& x, TimeMs now, TransitionResult& r) {
  in.state = InstanceState::kExited;
  in.exit_code = x.exit_code;
  in.signal = x.signal;
  in.oom = x.oom;
  in.failure = TruncateUtf8(x.failure, 1024);
  in.exited_at = now;
  if (!x.model_artifact.empty() && !Failed(in) && in.index == 0) job.model_artifact = x.model_artifact;
  if (!x.message.empty() && in.index == 0) job.exit_message = TruncateUtf8(x.message, 1024);
  r.actions.push_back({ActionType::kCleanup, in.id, 0});
}

TransitionResult Ignore(std::string why) {
  TransitionResult r;
  r.applied = false;
  r.note = std::move(why);
  return r;
}

// Admission control: the instance waits for capacity. Shown as Pending with
// the backend's reason until it launches (or the job is stopped).
TransitionResult ApplyQueued(Job& job, const Instance& in, const json& payload, TimeMs now) {
  if (in.state != InstanceState::kLaunching || in.attempt != job.attempt || IsTerminal(job.status) ||
      job.status == JobStatus::kStopping)
    return Ignore("queued report for an instance that is no longer waiting");
  // The reason is the backend's (capacity) or the controller's ("team quota: ...").
  auto queued = LaunchFailedReportFromJson(payload);
  const std::string reason = queued.ok() ? queued->reason : queued.status().message();
  SetSecondary(job, SecondaryStatus::kPending, now,
               (reason.rfind("team quota: ", 0) == 0 ? "Waiting for " : "Waiting for capacity: ") + reason);
  return {};
}

// InstanceWaiting: the backend took the instance and it waits in the backend's
// own queue (Slurm's): Pending with the backend's reason until it starts. A
// newer reason replaces the message.
TransitionResult ApplyWaiting(Job& job, const Instance& in, const json& payload, TimeMs now) {
  if (in.state == InstanceState::kExited || in.attempt != job.attempt || job.status != JobStatus::kInProgress ||
      PhaseRank(job.secondary) > 0 || job.phase_times.count(ToString(Phase::kDownloading)))
    return Ignore("waiting report for an instance that is no longer waiting");
  auto waiting = LaunchFailedReportFromJson(payload);
  const std::string message =
      std::string(kBackendQueuePrefix) + (waiting.ok() ? waiting->reason : waiting.status().message());
  if (job.secondary == SecondaryStatus::kPending && !job.transitions.empty())
    job.transitions.back().message = message;
  else
    SetSecondary(job, SecondaryStatus::kPending, now, message);
  return {};
}

// PhaseReported for a running instance of the current attempt: records the
// phase's first time and moves the secondary status forward (never back).
TransitionResult ApplyPhase(Job& job, const json& payload, TimeMs now) {
  TransitionResult r;
  auto report = PhaseReportFromJson(payload);
  if (!report.ok()) return Ignore("malformed phase report: " + report.status().message());
  TimeMs at = report->time_ms.value_or(now);
  job.phase_times.emplace(ToString(report->phase), at);  // the first time it was reached
  if (report->phase == Phase::kTraining && !report->start.empty() && job.start.empty() &&
      report->instance_id == InstanceId(job.id, job.attempt, 0)) {
    job.start = report->start;
    job.start_note = report->start_note;
  }
  SecondaryStatus target;
  switch (report->phase) {
    case Phase::kDownloading:
      target = SecondaryStatus::kDownloading;
      break;
    case Phase::kTraining:
      target = SecondaryStatus::kTraining;
      break;
    case Phase::kUploading:
      target = SecondaryStatus::kUploading;
      break;
    case Phase::kFirstLine:
    case Phase::kUploaded:
      return r;  // timings only
  }
  if (PhaseRank(target) > PhaseRank(job.secondary)) SetSecondary(job, target, at, "");
  return r;
}

// WarmPoolEnded on this job's pool.
TransitionResult ApplyWarmPoolEnded(Job& job, const json& p, TimeMs now) {
  WarmPool& w = job.warm_pool;
  if (w.status != WarmPoolStatus::kAvailable) return Ignore("the job's warm pool is not Available");
  const std::string reason = p.is_object() ? p.value("reason", "") : "";
  TransitionResult r;
  if (reason == "Reused") {
    w.status = WarmPoolStatus::kReused;
    w.reused_by = p.value("by", "");
    w.reused_by_name = p.value("by_name", "");
    w.ended_at = now;
  } else if (reason == "Expired") {
    if (now < w.ExpiresAt()) return Ignore("the keep-alive period has not ended");
    EndWarmPool(job, now, "the keep-alive period ended", r);
  } else if (reason == "Terminated") {
    EndWarmPool(job, now, p.value("message", "terminated"), r);
  } else {
    return Ignore("unknown warm pool end '" + reason + "'");
  }
  return r;
}

// A job taking over a pool arrives with its chain (Controller::CreateJob);
// one with a keep-alive starts its own.
void StartWarmPool(Job& job) {
  job.warm_pool.keep_alive_seconds = job.spec.keep_alive_seconds;
  if (job.spec.keep_alive_seconds > 0) {
    job.warm_pool.status = WarmPoolStatus::kInUse;
    if (job.warm_pool.chain.empty()) job.warm_pool.chain = job.id;
  }
}

// WarmPoolReturned: the claim of job `by` did not lead to a job.
TransitionResult ApplyWarmPoolReturned(Job& job, const json& p) {
  WarmPool& w = job.warm_pool;
  const std::string by = p.is_object() ? p.value("by", "") : "";
  if (w.status != WarmPoolStatus::kReused || by.empty() || w.reused_by != by)
    return Ignore("the pool was not taken by that job");
  w.status = WarmPoolStatus::kAvailable;
  w.reused_by.clear();
  w.reused_by_name.clear();
  w.ended_at = 0;
  return {};
}

TransitionResult ApplyKeepAlive(Job& job, const json& p, TimeMs now) {
  WarmPool& w = job.warm_pool;
  if (!p.is_object() || !p.contains("seconds") || !p["seconds"].is_number_integer())
    return Ignore("malformed keep-alive update");
  const int64_t seconds = p["seconds"];
  TransitionResult r;
  if (!IsTerminal(job.status)) {
    w.keep_alive_seconds = seconds;
    w.status = seconds > 0 ? WarmPoolStatus::kInUse : WarmPoolStatus::kNone;
    return r;
  }
  if (w.status != WarmPoolStatus::kAvailable) return Ignore("the job's warm pool is not Available");
  w.keep_alive_seconds = seconds;
  if (seconds == 0) {
    EndWarmPool(job, now, "the keep-alive period was set to 0", r);
  } else if (now >= w.ExpiresAt()) {
    EndWarmPool(job, now, "the keep-alive period ended", r);
  }
  return r;
}

}  // namespace

std::string WarmPoolRefusal(const Job& job) {
  switch (job.status) {
    case JobStatus::kCompleted:
      return "";
    case JobStatus::kStopped: {
      for (const auto& in : job.instances)
        if (in.attempt == job.attempt && !in.handle.empty()) return "";
      return "the job was stopped before its instances started";
    }
    case JobStatus::kFailed: {
      // Platform failures leave no pool; the job's own (its code's exit, a
      // signal, OOM, its failure file) do.
      for (const char* platform : {"LaunchFailed", "InstanceLost", "SandboxSetupFailed", "CheckpointSeedFailed",
                                   "OutputPublishFailed", "OutOfDisk", "UploadFailed", "InternalServerError"})
        if (job.failure_reason.rfind(platform, 0) == 0)
          return "the job's instance failed (" + std::string(platform) + "), not its code";
      return "";
    }
    default:
      return "the job has not ended";
  }
}

std::string InstanceId(const std::string& job_id, int attempt, int index) {
  return job_id + "." + std::to_string(attempt) + "." + std::to_string(index);
}

TransitionResult Transition(Job& job, const Event& e) {
  TransitionResult r;
  const TimeMs now = e.time;
  std::string iid = PayloadInstanceId(e.payload);
  Instance* in = iid.empty() ? nullptr : job.FindInstance(iid);

  switch (e.type) {
    case EventType::kJobCreated: {
      if (!job.instances.empty()) return Ignore("job already created");
      job.status = JobStatus::kInProgress;
      StartWarmPool(job);
      job.created_at = job.created_at ? job.created_at : now;
      SetSecondary(job, SecondaryStatus::kStarting, now, "Launching requested instances");
      LaunchAttempt(job, now, r);
      return r;
    }
    case EventType::kInstanceLaunched: {
      if (!in) return Ignore("unknown instance");
      if (in->state == InstanceState::kExited) {
        // Declared failed (e.g. an ambiguous launch that did start after all): make
        // sure the stray does not keep running.
        TransitionResult stray = Ignore("instance already ended");
        stray.actions.push_back({ActionType::kStop, in->id, 0});
        stray.actions.push_back({ActionType::kCleanup, in->id, 0});
        return stray;
      }
      if (in->state != InstanceState::kLaunching) return Ignore("instance already launched");
      auto launched = LaunchedReportFromJson(e.payload);
      if (!launched.ok()) return Ignore("malformed launch report: " + launched.status().message());
      in->state = InstanceState::kRunning;
      in->handle = launched->handle;
      if (launched->acquire_ms) in->acquire_ms = *launched->acquire_ms;
      if (job.secondary == SecondaryStatus::kPending && job.status == JobStatus::kInProgress && !QueuedInBackend(job))
        SetSecondary(job, SecondaryStatus::kStarting, now, "Launching requested instances");
      if (in->attempt == job.attempt && !job.phase_times.count("InstanceReady")) job.phase_times["InstanceReady"] = now;
      // A stop that arrived while launching applies now.
      bool peer_failed = false;
      for (auto* peer : job.CurrentInstances()) peer_failed |= peer->state == InstanceState::kExited && Failed(*peer);
      if (job.status == JobStatus::kStopping || in->attempt != job.attempt || IsTerminal(job.status) || peer_failed) {
        if (!in->stop_sent) {
          in->stop_sent = true;
          r.actions.push_back({ActionType::kStop, in->id, job.spec.stop_grace_seconds * 1000});
        }
      }
      return r;
    }
    case EventType::kInstanceLaunchFailed: {
      if (!in) return Ignore("unknown instance");
      if (in->state == InstanceState::kExited) return Ignore("instance already exited");
      auto failed = LaunchFailedReportFromJson(e.payload);
      ExitReport x;
      x.instance_id = in->id;
      x.failure = "LaunchFailed: " + (failed.ok() ? failed->reason : failed.status().message());
      MarkExited(job, *in, x, now, r);
      if (IsTerminal(job.status) || in->attempt != job.attempt) return r;
      StopLive(job, r);
      if (AllExited(job)) SettleAttempt(job, now, r);
      return r;
    }
    case EventType::kInstanceQueued:
      if (!in) return Ignore("unknown instance");
      return ApplyQueued(job, *in, e.payload, now);
    case EventType::kInstanceWaiting:
      if (!in) return Ignore("unknown instance");
      return ApplyWaiting(job, *in, e.payload, now);
    case EventType::kPhaseReported: {
      if (!in) return Ignore("unknown instance");
      if (in->attempt != job.attempt || job.status != JobStatus::kInProgress)
        return Ignore("phase report for a job or attempt that is no longer running");
      return ApplyPhase(job, e.payload, now);
    }
    case EventType::kInstanceExited: {
      if (!in) return Ignore("unknown instance");
      if (in->state == InstanceState::kExited) return Ignore("duplicate exit");
      auto exit = ExitReportFromJson(e.payload);
      if (!exit.ok()) {
        // Still an exit: the instance is gone. Record it as one whose status is unknown.
        ExitReport unknown;
        unknown.failure = "InstanceLost: unreadable exit report (" + exit.status().message() + ")";
        exit = unknown;
      }
      MarkExited(job, *in, *exit, now, r);
      if (IsTerminal(job.status) || in->attempt != job.attempt) return r;
      if (Failed(*in) && job.status == JobStatus::kInProgress) StopLive(job, r);
      if (AllExited(job)) SettleAttempt(job, now, r);
      return r;
    }
    case EventType::kStopRequested: {
      if (job.status != JobStatus::kInProgress) return Ignore("job is not in progress");
      job.status = JobStatus::kStopping;
      job.stop_cause = StopCause::kUser;
      SetSecondary(job, SecondaryStatus::kStopping, now, "Stop requested");
      StopLive(job, r);
      if (AllExited(job)) SettleAttempt(job, now, r);
      return r;
    }
    case EventType::kMaxRuntimeTimer: {
      if (job.status != JobStatus::kInProgress) return Ignore("job is not in progress");
      if (now < job.created_at + job.spec.max_runtime_seconds * 1000) return Ignore("timer fired early");
      job.status = JobStatus::kStopping;
      job.stop_cause = StopCause::kMaxRuntime;
      SetSecondary(job, SecondaryStatus::kStopping, now, "MaxRuntimeExceeded");
      StopLive(job, r);
      if (AllExited(job)) SettleAttempt(job, now, r);
      return r;
    }
    case EventType::kWarmPoolEnded:
      return ApplyWarmPoolEnded(job, e.payload, now);
    case EventType::kWarmPoolReturned:
      return ApplyWarmPoolReturned(job, e.payload);
    case EventType::kKeepAliveUpdated:
      return ApplyKeepAlive(job, e.payload, now);
  }
  return Ignore("unknown event type");
}

std::vector<TimerSpec> PendingTimers(const Job& job) {
  std::vector<TimerSpec> t;
  if (job.status == JobStatus::kInProgress)
    t.push_back({job.created_at + job.spec.max_runtime_seconds * 1000, EventType::kMaxRuntimeTimer, "maxrt:" + job.id});
  // Keyed by the deadline: a changed keep-alive schedules a new timer (the old
  // one's event is ignored as early).
  if (job.warm_pool.status == WarmPoolStatus::kAvailable) {
    const TimeMs at = job.warm_pool.ExpiresAt();
    t.push_back({at, EventType::kWarmPoolEnded, "warmexpire:" + job.id + ":" + std::to_string(at)});
  }
  return t;
}

}  // namespace kiln
