#include "jobs/model.h"

#include <algorithm>
#include <utility>

namespace kiln {

using nlohmann::json;

const char* ToString(JobStatus s) {
  switch (s) {
    case JobStatus::kInProgress:
      return "InProgress";
    case JobStatus::kCompleted:
      return "Completed";
    case JobStatus::kFailed:
      return "Failed";
    case JobStatus::kStopping:
      return "Stopping";
    case JobStatus::kStopped:
      return "Stopped";
  }
  return "?";
}

const char* ToString(SecondaryStatus s) {
  switch (s) {
    case SecondaryStatus::kStarting:
      return "Starting";
    case SecondaryStatus::kPending:
      return "Pending";
    case SecondaryStatus::kDownloading:
      return "Downloading";
    case SecondaryStatus::kTraining:
      return "Training";
    case SecondaryStatus::kUploading:
      return "Uploading";
    case SecondaryStatus::kCompleted:
      return "Completed";
    case SecondaryStatus::kFailed:
      return "Failed";
    case SecondaryStatus::kStopping:
      return "Stopping";
    case SecondaryStatus::kStopped:
      return "Stopped";
    case SecondaryStatus::kMaxRuntimeExceeded:
      return "MaxRuntimeExceeded";
    case SecondaryStatus::kRestarting:
      return "Restarting";
    case SecondaryStatus::kInterrupted:
      return "Interrupted";
  }
  return "?";
}

const char* ToString(InstanceState s) {
  switch (s) {
    case InstanceState::kLaunching:
      return "Launching";
    case InstanceState::kRunning:
      return "Running";
    case InstanceState::kExited:
      return "Exited";
  }
  return "?";
}

std::optional<JobStatus> ParseJobStatus(const std::string& s) {
  for (auto v :
       {JobStatus::kInProgress, JobStatus::kCompleted, JobStatus::kFailed, JobStatus::kStopping, JobStatus::kStopped})
    if (s == ToString(v)) return v;
  return std::nullopt;
}

static std::optional<SecondaryStatus> ParseSecondary(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(SecondaryStatus::kInterrupted); ++i) {
    auto v = static_cast<SecondaryStatus>(i);
    if (s == ToString(v)) return v;
  }
  return std::nullopt;
}

bool IsTerminal(JobStatus s) {
  return s == JobStatus::kCompleted || s == JobStatus::kFailed || s == JobStatus::kStopped;
}

const char* ToString(EventType t) {
  switch (t) {
    case EventType::kJobCreated:
      return "JobCreated";
    case EventType::kInstanceLaunched:
      return "InstanceLaunched";
    case EventType::kInstanceLaunchFailed:
      return "InstanceLaunchFailed";
    case EventType::kPhaseReported:
      return "PhaseReported";
    case EventType::kInstanceExited:
      return "InstanceExited";
    case EventType::kStopRequested:
      return "StopRequested";
    case EventType::kMaxRuntimeTimer:
      return "MaxRuntimeTimer";
    case EventType::kInstanceQueued:
      return "InstanceQueued";
    case EventType::kInstanceWaiting:
      return "InstanceWaiting";
    case EventType::kWarmPoolEnded:
      return "WarmPoolEnded";
    case EventType::kWarmPoolReturned:
      return "WarmPoolReturned";
    case EventType::kKeepAliveUpdated:
      return "KeepAliveUpdated";
  }
  return "?";
}

std::optional<EventType> ParseEventType(const std::string& s) {
  for (int i = 0; i <= static_cast<int>(EventType::kKeepAliveUpdated); ++i) {
    auto v = static_cast<EventType>(i);
    if (s == ToString(v)) return v;
  }
  return std::nullopt;
}

Instance* Job::FindInstance(const std::string& iid) {
  for (auto& i : instances)
    if (i.id == iid) return &i;
  return nullptr;
}

std::vector<Instance*> Job::CurrentInstances() {
  std::vector<Instance*> out;
  for (auto& i : instances)
    if (i.attempt == attempt) out.push_back(&i);
  return out;
}

json Job::Timings() const {
  json t = json::object();
  auto get = [&](const char* k) -> TimeMs {
    auto it = phase_times.find(k);
    return it == phase_times.end() ? 0 : it->second;
  };
  TimeMs ready = get("InstanceReady"), first = get("FirstLine"), training = get("Training"),
         uploading = get("Uploading"), end = ended_at ? ended_at : 0;
  if (ready) t["queued"] = ready - created_at;
  if (ready) t["instance_ready"] = ready - created_at;
  // Slurm's queue (a Pending stretch "Queued in ..."), then the start: from the
  // backend taking the instance to the entrypoint's first report.
  TimeMs backend_queue = 0;
  for (const auto& tr : transitions)
    if (tr.status == SecondaryStatus::kPending && tr.message.rfind("Queued in ", 0) == 0)
      backend_queue += (tr.end ? tr.end : (end ? end : tr.start)) - tr.start;
  if (backend_queue) t["backend_queue"] = backend_queue;
  // Acquiring the first instance: how long the backend's Launch took to hand it
  // over (a sandbox made cold, or a warm one taken), as the backend measured it.
  for (const auto& in : instances)
    if (in.attempt == attempt && in.index == 0 && in.acquire_ms >= 0) t["acquire"] = in.acquire_ms;
  if (const TimeMs downloading = get("Downloading"); ready && downloading >= ready) t["start"] = downloading - ready;
  if (first && training) t["first_user_line"] = first - training;
  if (training) t["training"] = (uploading ? uploading : (end ? end : training)) - training;
  if (uploading && end) t["uploading"] = end - uploading;
  if (end) t["total"] = end - created_at;
  return t;
}

json ToJson(const Instance& i) {
  json j = {{"id", i.id},
            {"job_id", i.job_id},
            {"index", i.index},
            {"attempt", i.attempt},
            {"state", ToString(i.state)},
            {"handle", i.handle},
            {"exit_code", i.exit_code},
            {"signal", i.signal},
            {"oom", i.oom},
            {"failure", i.failure},
            {"launched_at", i.launched_at},
            {"exited_at", i.exited_at},
            {"stop_sent", i.stop_sent}};
  if (i.acquire_ms >= 0) j["acquire_ms"] = i.acquire_ms;
  return j;
}

Instance InstanceFromJson(const json& j) {
  Instance i;
  i.id = j.value("id", "");
  i.job_id = j.value("job_id", "");
  i.index = j.value("index", 0);
  i.attempt = j.value("attempt", 1);
  std::string st = j.value("state", "Launching");
  i.state = st == "Running"  ? InstanceState::kRunning
            : st == "Exited" ? InstanceState::kExited
                             : InstanceState::kLaunching;
  i.handle = j.value("handle", "");
  i.exit_code = j.value("exit_code", -1);
  i.signal = j.value("signal", 0);
  i.oom = j.value("oom", false);
  i.failure = j.value("failure", "");
  i.launched_at = j.value("launched_at", TimeMs{0});
  i.exited_at = j.value("exited_at", TimeMs{0});
  i.stop_sent = j.value("stop_sent", false);
  i.acquire_ms = j.value("acquire_ms", int64_t{-1});
  return i;
}

json ToJson(const Job& job) {
  json tr = json::array();
  for (const auto& t : job.transitions) {
    json x = {{"status", ToString(t.status)},
              {"start_time", FormatTime(t.start)},
              {"start_ms", t.start},
              {"message", t.message}};
    if (t.end) {
      x["end_time"] = FormatTime(t.end);
      x["end_ms"] = t.end;
    }
    tr.push_back(x);
  }
  json inst = json::array();
  for (const auto& i : job.instances) inst.push_back(ToJson(i));
  json j = {{"id", job.id},
            {"name", job.spec.name},
            {"status", ToString(job.status)},
            {"secondary_status", ToString(job.secondary)},
            {"failure_reason", job.failure_reason},
            {"attempt", job.attempt},
            {"created_at", FormatTime(job.created_at)},
            {"created_ms", job.created_at},
            {"transitions", tr},
            {"timings_ms", job.Timings()},
            {"phase_times", job.phase_times},
            {"instances", inst},
            {"tags", job.spec.tags},
            {"spec", job.spec.ToJson()},
            {"output_dir", job.output_dir},
            {"stop_cause", static_cast<int>(job.stop_cause)},
            {"last_job_seq", job.last_job_seq}};
  j["exit_code"] = job.exit_code ? json(*job.exit_code) : json(nullptr);
  j["ended_at"] = job.ended_at ? json(FormatTime(job.ended_at)) : json(nullptr);
  j["ended_ms"] = job.ended_at;
  j["model_artifact"] = job.model_artifact.empty() ? json(nullptr) : json(job.model_artifact);
  if (!job.exit_message.empty()) j["exit_message"] = job.exit_message;
  if (!job.start.empty()) j["start"] = job.start;
  if (!job.start_note.empty()) j["start_note"] = job.start_note;
  if (job.warm_pool.status != WarmPoolStatus::kNone || job.warm_pool.keep_alive_seconds != 0 ||
      !job.warm_pool.chain.empty()) {
    const WarmPool& w = job.warm_pool;
    j["warm_pool_state"] = {{"status", ToString(w.status)},
                            {"keep_alive_seconds", w.keep_alive_seconds},
                            {"chain", w.chain},
                            {"chain_started", w.chain_started},
                            {"reused_from", w.reused_from},
                            {"reused_by", w.reused_by},
                            {"reused_by_name", w.reused_by_name},
                            {"available_at", w.available_at},
                            {"ended_at", w.ended_at},
                            {"reason", w.reason}};
  }
  return j;
}

const char* ToString(WarmPoolStatus s) {
  switch (s) {
    case WarmPoolStatus::kNone:
      return "";
    case WarmPoolStatus::kInUse:
      return "InUse";
    case WarmPoolStatus::kAvailable:
      return "Available";
    case WarmPoolStatus::kReused:
      return "Reused";
    case WarmPoolStatus::kTerminated:
      return "Terminated";
  }
  return "?";
}

std::optional<WarmPoolStatus> ParseWarmPoolStatus(const std::string& s) {
  for (auto v :
       {WarmPoolStatus::kInUse, WarmPoolStatus::kAvailable, WarmPoolStatus::kReused, WarmPoolStatus::kTerminated})
    if (s == ToString(v)) return v;
  return std::nullopt;
}

TimeMs WarmPool::ExpiresAt() const {
  const TimeMs keep = available_at + keep_alive_seconds * 1000;
  return chain_started > 0 ? std::min(keep, chain_started + kMaxWarmChainMs) : keep;
}

int64_t WarmPool::RetainedSeconds(TimeMs now) const {
  if (available_at == 0) return 0;
  const TimeMs end = status == WarmPoolStatus::kAvailable ? std::min(now, ExpiresAt()) : ended_at;
  return std::max<TimeMs>(0, end - available_at) / 1000;
}

json ToJson(const WarmPool& w, TimeMs now) {
  json j = {{"status", ToString(w.status)},
            {"keep_alive_seconds", w.keep_alive_seconds},
            {"retained_billable_seconds", w.RetainedSeconds(now)}};
  if (w.status == WarmPoolStatus::kAvailable) j["expires_at"] = FormatTime(w.ExpiresAt());
  if (!w.reused_from.empty()) j["reused_from"] = w.reused_from;
  if (!w.reused_by.empty()) {
    j["reused_by"] = w.reused_by;
    j["reused_by_name"] = w.reused_by_name;
  }
  if (!w.reason.empty()) j["reason"] = w.reason;
  return j;
}

Result<Job> JobFromJson(const json& j) {
  Job job;
  try {
    job.id = j.at("id");
    // The spec was validated when it came in; a stored one is only decoded, so a
    // rule tightened since then never makes an old job unreadable.
    auto spec = DecodeStoredSpec(j.at("spec"));
    if (!spec.ok()) return DataLoss("job " + job.id + ": " + spec.status().message());
    job.spec = std::move(spec).value();
    job.status = ParseJobStatus(j.at("status")).value_or(JobStatus::kFailed);
    job.secondary = ParseSecondary(j.at("secondary_status")).value_or(SecondaryStatus::kFailed);
    job.failure_reason = j.value("failure_reason", "");
    if (j.contains("exit_code") && !j["exit_code"].is_null()) job.exit_code = j["exit_code"].get<int>();
    job.attempt = j.value("attempt", 1);
    job.created_at = j.value("created_ms", TimeMs{0});
    job.ended_at = j.value("ended_ms", TimeMs{0});
    job.stop_cause = static_cast<StopCause>(j.value("stop_cause", 0));
    for (const auto& t : j.at("transitions")) {
      StatusTransition st;
      st.status = ParseSecondary(t.at("status")).value_or(SecondaryStatus::kFailed);
      st.start = t.value("start_ms", TimeMs{0});
      st.end = t.value("end_ms", TimeMs{0});
      st.message = t.value("message", "");
      job.transitions.push_back(st);
    }
    job.phase_times = j.value("phase_times", std::map<std::string, TimeMs>{});
    job.start = j.value("start", "");
    job.start_note = j.value("start_note", "");
    for (const auto& i : j.at("instances")) job.instances.push_back(InstanceFromJson(i));
    if (j.contains("model_artifact") && j["model_artifact"].is_string()) job.model_artifact = j["model_artifact"];
    job.output_dir = j.value("output_dir", "");
    job.exit_message = j.value("exit_message", "");
    job.last_job_seq = j.value("last_job_seq", int64_t{0});
    if (const auto it = j.find("warm_pool_state"); it != j.end() && it->is_object()) {
      WarmPool& w = job.warm_pool;
      w.status = ParseWarmPoolStatus(it->value("status", "")).value_or(WarmPoolStatus::kNone);
      w.keep_alive_seconds = it->value("keep_alive_seconds", int64_t{0});
      w.chain = it->value("chain", "");
      w.chain_started = it->value("chain_started", TimeMs{0});
      w.reused_from = it->value("reused_from", "");
      w.reused_by = it->value("reused_by", "");
      w.reused_by_name = it->value("reused_by_name", "");
      w.available_at = it->value("available_at", TimeMs{0});
      w.ended_at = it->value("ended_at", TimeMs{0});
      w.reason = it->value("reason", "");
    }
  } catch (const json::exception& e) {
    return DataLoss(std::string("corrupt job record: ") + e.what());
  }
  return job;
}

json ToJson(const Event& e) {
  json j = {{"seq", e.seq},       {"job_seq", e.job_seq},       {"job_id", e.job_id}, {"type", ToString(e.type)},
            {"source", e.source}, {"time", FormatTime(e.time)}, {"time_ms", e.time},  {"payload", e.payload}};
  if (!e.status_after.empty()) {
    j["status"] = e.status_after;
    j["secondary_status"] = e.secondary_after;
  }
  return j;
}

}  // namespace kiln
