#include "compute/slurm/slurm_backend.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>

#include "common/fsutil.h"
#include "compute/local/protocol.h"

namespace kiln::slurm {

namespace {

// Single-quoted for /bin/sh.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

constexpr size_t kMaxStatusBytes = 1 << 20;
constexpr int64_t kKillBackstopMs = 5000;  // after the grace period, Slurm's own cancel
constexpr int64_t kStrayGraceMs = 10000;   // every instance ended, but Slurm still runs the job

Event WaitingEvent(const std::string& job_id, const std::string& instance_id, const std::string& reason, TimeMs now) {
  Event e;
  e.job_id = job_id;
  e.type = EventType::kInstanceWaiting;
  e.source = "backend";
  e.time = now;
  e.dedup_key = "waiting:" + instance_id + ":" + reason;
  e.payload = ToJson(LaunchFailedReport{instance_id, reason});
  return e;
}

}  // namespace

SlurmBackend::SlurmBackend(SlurmBackendOptions opts, std::unique_ptr<RestClient> client,
                           std::unique_ptr<LocalBackend> preparer, EventSink& sink, Clock& clock)
    : opts_(std::move(opts)), client_(std::move(client)), preparer_(std::move(preparer)), sink_(sink), clock_(clock) {}

SlurmBackend::~SlurmBackend() {
  {
    MutexLock l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

Status SlurmBackend::Init() {
  loop_ = std::thread([this] { Loop(); });
  return Status::Ok();
}

std::vector<Capability> SlurmBackend::Capabilities() const {
  return {Capability::kSurvivesControllerRestart, Capability::kMemoryLimits, Capability::kCpuLimits,
          Capability::kPidNamespace};
}

std::string SlurmBackend::Handle(int64_t slurm_id, int count) {
  return "slurm:" + std::to_string(slurm_id) + ":" + std::to_string(count);
}

Result<std::pair<int64_t, int>> SlurmBackend::ParseHandle(const std::string& handle) {
  long long id = 0;
  int count = 0;
  char tail = 0;
  if (handle.rfind("slurm:", 0) != 0 || sscanf(handle.c_str() + 6, "%lld:%d%c", &id, &count, &tail) != 2 || id <= 0 ||
      count <= 0)
    return InvalidArgument("handle", "not a Slurm handle: " + handle);
  return std::make_pair(static_cast<int64_t>(id), count);
}

Result<std::string> SlurmBackend::Unreachable(const std::string& key, const Status& why) {
  const TimeMs now = clock_.NowMs();
  const TimeMs since = [&] {
    MutexLock l(mu_);
    return unreachable_since_.emplace(key, now).first->second;
  }();
  SetHealth(why);
  if (opts_.submit_timeout_s > 0 && now - since >= int64_t{opts_.submit_timeout_s} * 1000)
    return Status(Code::kFailedPrecondition, "pool " + opts_.pool + ": Slurm did not take the job for " +
                                                 std::to_string((now - since) / 1000) +
                                                 " s (submit_timeout_s): " + why.message());
  // Pending with the reason; launched again when slurmrestd answers (on_capacity).
  return Status(Code::kResourceExhausted, "pool " + opts_.pool + " cannot reach Slurm: " + why.message());
}

Result<std::string> SlurmBackend::Launch(const LaunchRequest& req) {
  std::lock_guard<std::mutex> launch_lock(launch_mu_);
  const std::string key = GangKey(req.job_id, req.attempt);
  auto known = [&]() -> std::optional<std::string> {
    MutexLock l(mu_);
    auto it = gangs_.find(key);
    if (it == gangs_.end()) return std::nullopt;
    return Handle(it->second.slurm_id, it->second.count);
  };
  if (auto h = known()) return *h;
  bool look = false;
  {
    MutexLock l(mu_);
    look = !adopted_ || ambiguous_;
  }
  if (look) {
    if (Status st = Adopt(); !st.ok()) return Unreachable(key, st);
    if (auto h = known()) return *h;
    MutexLock l(mu_);
    if (auto it = ended_.find(key); it != ended_.end()) {
      // It ran and ended while kilnd was down, before kilnd recorded the launch:
      // its end is posted by the next look (never run again).
      const JobInfo info = it->second;
      ended_.erase(it);
      Gang& g = gangs_[key];
      g.job_id = req.job_id;
      g.attempt = req.attempt;
      g.count = std::max(1, info.tasks);
      g.slurm_id = info.id;
      g.state = JobState::kOther;
      by_slurm_[info.id] = key;
      recheck_soon_ = true;
      cv_.notify_all();
      return Handle(info.id, g.count);
    }
  }
  auto job = SlurmJobFor(req);
  if (!job.ok()) return job.status();
  auto id = client_->Submit(*job);
  if (!id.ok()) {
    const Code code = id.status().code();
    if (code == Code::kUnavailable) {
      MutexLock l(mu_);
      ambiguous_ = true;  // it may have reached slurmctld: look it up by name before the next submit
    }
    if (code == Code::kUnavailable || code == Code::kUnauthenticated) return Unreachable(key, id.status());
    return id.status();  // Slurm refused it (a bad partition, too many nodes): its message
  }
  const int count = std::max(1, req.spec.instance_count);
  {
    MutexLock l(mu_);
    Gang& g = gangs_[key];
    g.job_id = req.job_id;
    g.attempt = req.attempt;
    g.count = count;
    g.slurm_id = *id;
    by_slurm_[*id] = key;
    unreachable_since_.erase(key);
  }
  SetHealth(Status::Ok());
  Post({WaitingEvent(req.job_id, key + ".0", QueueReason(*id, ""), clock_.NowMs())});
  return Handle(*id, count);
}

std::string SlurmBackend::QueueReason(int64_t slurm_id, const std::string& reason) const {
  std::string out = "Slurm (pool " + opts_.pool + ", job " + std::to_string(slurm_id) + ")";
  if (!reason.empty() && reason != "None") out += ": " + reason;
  return out;
}

Result<JobRequest> SlurmBackend::SlurmJobFor(const LaunchRequest& req) const {
  const int n = std::max(1, req.spec.instance_count);
  const std::string key = GangKey(req.job_id, req.attempt);
  if (n > 1 && !opts_.token_for) return Internal("the Slurm backend needs token_for for multi-instance jobs");
  for (int i = 0; i < n; ++i) {
    LaunchRequest r = req;
    r.index = i;
    r.instance_id = key + "." + std::to_string(i);
    if (r.instance_id != req.instance_id) r.token = opts_.token_for(r.instance_id);
    // The supervisor reports the end itself, before Slurm's hook can.
    if (opts_.token_for) r.exit_report_token = opts_.token_for(r.instance_id + kExitTokenSuffix);
    KILN_RETURN_IF_ERROR(preparer_->Prepare(r));
  }
  JobRequest j;
  j.name = JobName(key);
  j.partition = opts_.partition;
  j.account = opts_.account;
  j.qos = opts_.qos;
  j.working_directory = opts_.instances_dir;
  j.standard_output = opts_.instances_dir + "/" + key + ".slurm.log";
  j.environment = {{"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}};
  j.nodes = n;
  j.tasks = n;
  j.cpus_per_task = std::max(1, static_cast<int>(req.type.vcpus + 0.999));
  j.memory_per_node_mib = req.type.memory_mib;
  // A backstop behind Kiln's own max-runtime timer and its stop grace period.
  const int64_t limit_s = req.spec.max_runtime_seconds + req.spec.stop_grace_seconds;
  j.time_limit_minutes = static_cast<int>(std::min<int64_t>((limit_s + 59) / 60 + 1, 365LL * 24 * 60));
  const std::string prefix = opts_.instances_dir + "/" + key + ".";
  // Each task runs the supervisor of the instance whose index is its
  // SLURM_PROCID, in a session of its own. Kiln's stop is a SIGTERM to this batch
  // script's process group only (slurmrestd's signal): its trap asks each
  // supervisor to stop (kiln-supervisor --stop: SIGTERM to that process alone),
  // which gives its sandbox the grace period, as on the local backend. (Slurm's
  // own signal to a step reaches every process in it, the sandbox's init too;
  // srun takes a SIGTERM as "kill the step now".)
  const std::string sup = Quote(opts_.supervisor_path), pre = Quote(prefix);
  const std::string tasks = "--nodes=" + std::to_string(n) + " --ntasks=" + std::to_string(n) + " --ntasks-per-node=1";
  std::string run, stop, hosts;
  if (n == 1) {
    run = "setsid " + sup + " --dir " + Quote(prefix + "0");
    stop = sup + " --stop --dir " + Quote(prefix + "0");
  } else {
    run = "setsid srun --kill-on-bad-exit=1 " + tasks + " " + sup + " --slurm-prefix " + pre;
    stop = "srun --overlap " + tasks + " " + sup + " --stop --slurm-prefix " + pre;
    // algo-<i> is task i-1's node (block distribution, one task per node): each
    // instance's /etc/hosts gets the nodes' addresses as Slurm knows them
    // (NodeAddr). On a one-host test cluster (loopback addresses) kilnd's
    // per-instance loopback addresses stay, so instances can share a port.
    hosts =
        "addrs() {\n  i=1\n  for h in $(scontrol show hostnames \"$SLURM_JOB_NODELIST\"); do\n"
        "    a=$(scontrol show node \"$h\" | sed -n 's/.*NodeAddr=\\([^ ]*\\).*/\\1/p')\n"
        "    case \"$a\" in '' | 127.* | ::1) return 1 ;; esac\n"
        "    printf '%s\\talgo-%s\\n' \"$a\" \"$i\"\n    i=$((i + 1))\n  done\n}\n"
        "if m=$(addrs) && [ \"$(printf '%s\\n' \"$m\" | wc -l)\" = " +
        std::to_string(n) + " ]; then\n  j=0\n  while [ $j -lt " + std::to_string(n) +
        " ]; do\n    printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n%s\\n' \"$m\" > " +
        pre + "$j/hosts.new && mv " + pre + "$j/hosts.new " + pre + "$j/hosts\n    j=$((j + 1))\n  done\nfi\n";
  }
  j.script = "#!/bin/sh\nstop() { " + stop + "; }\ntrap stop TERM\n" + hosts + run +
             " &\npid=$!\nwhile kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done\nexit $rc\n";
  return j;
}

Status SlurmBackend::Adopt() {
  auto jobs = client_->ListJobs(0);
  if (!jobs.ok()) return jobs.status();
  MutexLock l(mu_);
  for (const JobInfo& info : *jobs) {
    if (info.name.rfind("kiln.", 0) != 0) continue;
    const std::string key = info.name.substr(5);
    const size_t dot = key.rfind('.');
    if (dot == std::string::npos || dot == 0) continue;
    if (by_slurm_.count(info.id)) continue;
    auto it = gangs_.find(key);
    // A newer submit of the same attempt cannot exist (Launch looks first); keep the oldest.
    if (it != gangs_.end() && it->second.slurm_id < info.id) continue;
    if (IsFinal(info.state)) {
      // Ended: tracked only if a launch asks for it (it ran; its end is then posted).
      auto [e, fresh] = ended_.emplace(key, info);
      if (!fresh && e->second.id > info.id) e->second = info;
      continue;
    }
    Gang& g = gangs_[key];
    g.job_id = key.substr(0, dot);
    g.attempt = atoi(key.c_str() + dot + 1);
    g.count = std::max(1, info.tasks);
    g.slurm_id = info.id;
    g.state = info.state;
    g.reason = info.reason;
    by_slurm_[info.id] = key;
  }
  adopted_ = true;
  ambiguous_ = false;
  return Status::Ok();
}

Status SlurmBackend::Stop(const std::string& id, const std::string& handle, int64_t grace_ms) {
  auto parsed = ParseHandle(handle);
  if (!parsed.ok()) return Status::Ok();  // never launched here
  const int64_t slurm_id = parsed->first;
  const std::string dir = opts_.instances_dir + "/" + id;
  // The supervisor reads the grace period here when SIGTERM comes (PROTOCOL.md).
  if (access(dir.c_str(), F_OK) == 0)
    (void)WriteFileAtomic(dir + "/" + supervisor::kStopFile, std::to_string(grace_ms), 0644, Sync::kNoSync);
  {
    MutexLock l(mu_);
    auto it = by_slurm_.find(slurm_id);
    if (it != by_slurm_.end()) {
      Gang& g = gangs_[it->second];
      if (g.finished || g.stop_requested) return Status::Ok();
      g.stop_requested = true;
      g.kill_at_ms = clock_.NowMs() + grace_ms + kKillBackstopMs;
    }
  }
  cv_.notify_all();
  // SIGTERM to the tasks, whose supervisors stop their sandboxes with the grace
  // period. Still in the queue: nothing runs to be told; it is cancelled, and
  // since no epilog runs for a job that never started, asked about soon.
  Status st = client_->Signal(slurm_id, "SIGTERM");
  if (st.code() == Code::kFailedPrecondition) {
    st = client_->Cancel(slurm_id);
    MutexLock l(mu_);
    if (auto it = by_slurm_.find(slurm_id); it != by_slurm_.end()) {
      gangs_[it->second].recheck_at_ms = clock_.NowMs() + 100;
      cv_.notify_all();
    }
  }
  if (!st.ok() && st.code() != Code::kNotFound) return st;
  return Status::Ok();
}

Status SlurmBackend::Cleanup(const std::string& id, const std::string& handle) {
  auto parsed = ParseHandle(handle);
  if (!parsed.ok()) return Status::Ok();
  const int64_t slurm_id = parsed->first;
  MutexLock l(mu_);
  auto it = by_slurm_.find(slurm_id);
  if (it == by_slurm_.end()) return Status::Ok();
  Gang& g = gangs_[it->second];
  g.cleaned.insert(id);
  if (static_cast<int>(g.cleaned.size()) < g.count) return Status::Ok();  // its peers may run on
  if (g.finished) {
    gangs_.erase(it->second);
    by_slurm_.erase(it);
    return Status::Ok();
  }
  // Every instance ended in Kiln's books (their supervisors said so) but Slurm
  // has not ended the job yet: it is finishing (its batch script exits), or a
  // stray. Given a moment to end by itself, then cancelled (Loop).
  if (!g.kill_at_ms) g.kill_at_ms = clock_.NowMs() + kStrayGraceMs;
  cv_.notify_all();
  return Status::Ok();
}

Status SlurmBackend::Recover(const std::string& id, const std::string& handle) {
  auto parsed = ParseHandle(handle);
  if (!parsed.ok()) return NotFound(parsed.status().message());
  const auto [slurm_id, count] = *parsed;
  const size_t last = id.rfind('.');
  if (last == std::string::npos) return NotFound("not an instance id: " + id);
  const std::string key = id.substr(0, last);
  const size_t dot = key.rfind('.');
  if (dot == std::string::npos) return NotFound("not an instance id: " + id);
  {
    MutexLock l(mu_);
    // Known already (the controller's periodic resync): this backend's own
    // safety net watches it; no call per job.
    if (by_slurm_.count(slurm_id)) return Status::Ok();
    {
      Gang& g = gangs_[key];
      g.job_id = key.substr(0, dot);
      g.attempt = atoi(key.c_str() + dot + 1);
      g.count = count;
      g.slurm_id = slurm_id;
      g.state = JobState::kOther;  // unknown until asked
      by_slurm_[slurm_id] = key;
    }
  }
  // Its end may have come while kilnd was down: ask now. If slurmrestd does not
  // answer, the safety net asks again; the instance is not lost for that.
  Status st = JobEnded(slurm_id);
  if (st.code() == Code::kNotFound) return NotFound("Slurm job " + std::to_string(slurm_id) + " is unknown to Slurm");
  return Status::Ok();
}

std::string SlurmBackend::LogPath(const std::string& id) const {
  return opts_.instances_dir + "/" + id + "/" + supervisor::kLogFile;
}

BackendHealth SlurmBackend::Health() const {
  BackendHealth h;
  MutexLock l(mu_);
  if (!health_.ok()) {
    h.state = BackendHealth::State::kUnhealthy;
    h.message = health_.message();
  }
  for (const auto& [key, g] : gangs_) {
    if (g.finished || IsFinal(g.state)) continue;
    if (g.state == JobState::kPending)
      h.queued += g.count;
    else
      h.running += g.count;
  }
  h.queued += static_cast<int>(unreachable_since_.size());
  return h;
}

void SlurmBackend::SetHealth(const Status& st) {
  bool recovered = false;
  {
    MutexLock l(mu_);
    recovered = !health_.ok() && st.ok();
    health_ = st;
    if (st.ok()) unreachable_since_.clear();
  }
  if (recovered && opts_.on_capacity) opts_.on_capacity();
}

Status SlurmBackend::JobEnded(int64_t slurm_id) {
  {
    MutexLock l(mu_);
    if (!by_slurm_.count(slurm_id)) return Status::Ok();  // not Kiln's, or already cleaned up
  }
  auto info = client_->GetJob(slurm_id);
  if (!info.ok() && info.status().code() != Code::kNotFound) {
    SetHealth(info.status());
    return info.status();
  }
  SetHealth(Status::Ok());
  std::vector<Event> events;
  {
    MutexLock l(mu_);
    auto it = by_slurm_.find(slurm_id);
    if (it == by_slurm_.end()) return Status::Ok();
    Gang& g = gangs_[it->second];
    if (!info.ok()) {
      // Gone from slurmctld (ended longer ago than MinJobAge): only status.json tells.
      JobInfo gone;
      gone.id = slurm_id;
      gone.state = JobState::kOther;
      gone.state_text = "UNKNOWN";
      gone.reason = "the job is no longer known to slurmctld";
      bool any = false;
      for (int i = 0; i < g.count; ++i)
        any |= access((opts_.instances_dir + "/" + it->second + "." + std::to_string(i) + "/" + supervisor::kStatusFile)
                          .c_str(),
                      F_OK) == 0;
      if (!any && !g.finished) return info.status();
      events = Finish(g, gone);
    } else {
      g.state = info->state;
      g.reason = info->reason;
      events = Ending(g, *info);
    }
  }
  Post(std::move(events));
  cv_.notify_all();  // a recheck may be due
  return Status::Ok();
}

bool SlurmBackend::AllRecorded(const Gang& g) const {
  for (int i = 0; i < g.count; ++i)
    if (access((opts_.instances_dir + "/" + GangKey(g.job_id, g.attempt) + "." + std::to_string(i) + "/" +
                supervisor::kStatusFile)
                   .c_str(),
               F_OK) != 0)
      return false;
  return true;
}

std::vector<Event> SlurmBackend::Ending(Gang& g, const JobInfo& info) {
  if (IsFinal(info.state)) return Finish(g, info);
  if (info.state != JobState::kCompleting) return {};
  // Its processes have ended and Slurm runs its epilog (this hook among them).
  // Every supervisor recorded how its instance ended: that is the answer. One
  // that did not was killed by Slurm (time limit, cancel, node failure): its
  // reason is Slurm's final state, known once the epilog is done; ask again soon.
  if (AllRecorded(g)) return Finish(g, info);
  g.recheck_delay_ms = g.recheck_delay_ms ? std::min<int64_t>(g.recheck_delay_ms * 2, 5000) : 100;
  g.recheck_at_ms = clock_.NowMs() + g.recheck_delay_ms;
  return {};
}

std::vector<Event> SlurmBackend::Finish(Gang& g, const JobInfo& info) {
  std::vector<Event> events;
  if (g.finished) return events;
  g.finished = true;
  const std::string key = GangKey(g.job_id, g.attempt);
  for (int i = 0; i < g.count; ++i) {
    const std::string iid = key + "." + std::to_string(i);
    auto text = ReadFileBeneath(opts_.instances_dir, iid + "/" + supervisor::kStatusFile, kMaxStatusBytes);
    auto status = text.ok() ? supervisor::DecodeStatusFile(*text) : Result<supervisor::StatusFile>(text.status());
    if (status.ok()) {
      status->exit.instance_id = iid;
      events.push_back(ExitEvent(g.job_id, status->exit, status->ended_ms ? status->ended_ms : clock_.NowMs()));
    } else {
      events.push_back(ExitEvent(g.job_id, ExitFromSlurm(g, info, i), clock_.NowMs()));
    }
  }
  return events;
}

ExitReport SlurmBackend::ExitFromSlurm(const Gang& g, const JobInfo& info, int index) const {
  ExitReport x;
  x.instance_id = GangKey(g.job_id, g.attempt) + "." + std::to_string(index);
  x.exit_code = info.exit_code;
  x.signal = info.signal;
  const std::string where = " (Slurm job " + std::to_string(info.id) + ", pool " + opts_.pool + ")";
  switch (info.state) {
    case JobState::kCancelled:
      if (g.stop_requested) {
        x.signal = SIGTERM;
        x.exit_code = 128 + SIGTERM;
      } else {
        x.failure = "SlurmCancelled: the job was cancelled in Slurm, outside Kiln" + where;
      }
      break;
    case JobState::kTimeout:
    case JobState::kDeadline:
      x.failure = "MaxRuntimeExceeded: the Slurm job reached its time limit" + where;
      break;
    case JobState::kNodeFail:
      x.failure = "InstanceLost: Slurm reports a node failure on " + info.nodes + where;
      break;
    case JobState::kBootFail:
      x.failure = "InstanceLost: Slurm could not boot the job's nodes" + where;
      break;
    case JobState::kOutOfMemory:
      x.oom = true;
      break;
    case JobState::kPreempted:
      x.failure = "Preempted: Slurm preempted the job" + where;
      break;
    default:
      x.failure = "InstanceLost: the Slurm job ended as " + info.state_text +
                  (info.reason.empty() || info.reason == "None" ? "" : " (" + info.reason + ")") +
                  " without the instance's status; see " + opts_.instances_dir + "/" + GangKey(g.job_id, g.attempt) +
                  ".slurm.log" + where;
      break;
  }
  if (!x.Failed() && !x.failure.empty()) x.exit_code = -1;
  return x;
}

void SlurmBackend::Post(std::vector<Event> events) {
  for (auto& e : events) {
    Status st = sink_.Post(std::move(e));
    if (!st.ok()) fprintf(stderr, "kilnd: slurm pool %s: post: %s\n", opts_.pool.c_str(), st.ToString().c_str());
  }
}

Status SlurmBackend::Reconcile() {
  return Pass(PassKind::kFull);
}

Status SlurmBackend::Pass(PassKind kind) {
  int64_t since = 0;
  {
    MutexLock l(mu_);
    if (kind == PassKind::kChanged) since = last_update_s_;
  }
  const int64_t asked_at = clock_.NowMs() / 1000;
  auto jobs = client_->ListJobs(since);
  SetHealth(jobs.ok() ? Status::Ok() : jobs.status());
  if (!jobs.ok()) return jobs.status();
  std::vector<Event> events;
  std::vector<int64_t> missing;
  {
    MutexLock l(mu_);
    last_update_s_ = asked_at > 1 ? asked_at - 1 : 0;  // one second of overlap: update times are whole seconds
    std::set<int64_t> seen;
    for (const JobInfo& info : *jobs) {
      auto it = by_slurm_.find(info.id);
      if (it == by_slurm_.end()) continue;
      seen.insert(info.id);
      Gang& g = gangs_[it->second];
      if (g.finished) continue;
      const bool reason_changed = info.reason != g.reason;
      g.state = info.state;
      g.reason = info.reason;
      if (IsFinal(info.state) || info.state == JobState::kCompleting) {
        auto done = Ending(g, info);
        events.insert(events.end(), done.begin(), done.end());
      } else if (info.state == JobState::kPending && reason_changed) {
        events.push_back(WaitingEvent(g.job_id, it->second + ".0", QueueReason(info.id, info.reason), clock_.NowMs()));
      }
    }
    if (kind == PassKind::kFull) {
      for (auto it = by_slurm_.begin(); it != by_slurm_.end();) {
        Gang& g = gangs_[it->second];
        if (g.finished && static_cast<int>(g.cleaned.size()) >= g.count) {  // ended and cleaned up
          gangs_.erase(it->second);
          it = by_slurm_.erase(it);
          continue;
        }
        if (!seen.count(it->first) && !g.finished) missing.push_back(it->first);
        ++it;
      }
    }
  }
  Post(std::move(events));
  for (int64_t id : missing) (void)JobEnded(id);  // gone from the list: ask for it alone
  return Status::Ok();
}

void SlurmBackend::Loop() {
  TimeMs next_full = clock_.NowMs() + int64_t{opts_.reconcile_interval_s} * 1000;
  for (;;) {
    std::vector<int64_t> kill, recheck;
    PassKind kind = PassKind::kChanged;
    bool pass = false;
    {
      MutexLock l(mu_);
      const TimeMs now = clock_.NowMs();
      bool waiting = !health_.ok();
      TimeMs wake = next_full;
      for (const auto& [key, g] : gangs_) {
        if (g.finished) continue;
        waiting |= g.state == JobState::kPending;
        if (g.kill_at_ms) wake = std::min(wake, g.kill_at_ms);
        if (g.recheck_at_ms) wake = std::min(wake, g.recheck_at_ms);
      }
      if (waiting) wake = std::min(wake, now + int64_t{opts_.queue_refresh_s} * 1000);
      if (recheck_soon_) wake = now;
      if (stop_) return;
      if (wake > now) cv_.wait_for(l.native(), std::chrono::milliseconds(wake - now));
      if (stop_) return;
      const TimeMs after = clock_.NowMs();
      for (auto& [key, g] : gangs_)
        if (!g.finished && g.kill_at_ms && g.kill_at_ms <= after) {
          g.kill_at_ms = 0;
          kill.push_back(g.slurm_id);
        }
      for (auto& [key, g] : gangs_)
        if (!g.finished && g.recheck_at_ms && g.recheck_at_ms <= after) {
          g.recheck_at_ms = 0;
          recheck.push_back(g.slurm_id);
        }
      if (after >= next_full || recheck_soon_) {
        recheck_soon_ = false;
        kind = PassKind::kFull;
        next_full = after + int64_t{opts_.reconcile_interval_s} * 1000;
      }
      pass = kind == PassKind::kFull || waiting;  // woken early for a stop: nothing to look at yet
    }
    for (int64_t id : kill) {
      Status st = client_->Cancel(id);  // the grace period is over: Slurm kills what is left
      if (!st.ok())
        fprintf(stderr, "kilnd: slurm pool %s: cancel %lld: %s\n", opts_.pool.c_str(), static_cast<long long>(id),
                st.ToString().c_str());
    }
    for (int64_t id : recheck) (void)JobEnded(id);
    if (!pass) continue;
    Status st = Pass(kind);
    if (!st.ok()) fprintf(stderr, "kilnd: slurm pool %s: reconcile: %s\n", opts_.pool.c_str(), st.ToString().c_str());
  }
}

}  // namespace kiln::slurm
