#include "controller/controller.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "common/check.h"
#include "common/ids.h"

namespace kiln {

TimeMs RequeueDelayMs(int failures) {
  TimeMs d = kRequeueBaseMs;
  for (int i = 1; i < failures && d < kRequeueMaxMs; ++i) d *= 2;
  return std::min(d, kRequeueMaxMs);
}

Result<WarmPoolOptions> WarmPoolOptionsFromJson(const nlohmann::json& j) {
  WarmPoolOptions o;
  if (j.is_null()) return o;
  if (!j.is_object())
    return InvalidArgument("warm_pools", "must be a mapping (max_keep_alive_seconds, max_retained_instances_per_team)");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string field = "warm_pools." + it.key();
    if (!it->is_number_integer()) return InvalidArgument(field, "must be an integer");
    const int64_t v = it->get<int64_t>();
    if (it.key() == "max_keep_alive_seconds") {
      if (v < 0 || v > kMaxKeepAliveSeconds)
        return InvalidArgument(field, "must be 0.." + std::to_string(kMaxKeepAliveSeconds));
      o.max_keep_alive_seconds = v;
    } else if (it.key() == "max_retained_instances_per_team") {
      if (v < -1 || v > 100000) return InvalidArgument(field, "must be -1 (no cap) .. 100000");
      o.max_retained_instances_per_team = static_cast<int>(v);
    } else {
      return InvalidArgument(field, "unknown field (max_keep_alive_seconds, max_retained_instances_per_team)");
    }
  }
  return o;
}

bool IsRetryable(Code code) {
  switch (code) {
    case Code::kUnavailable:
    case Code::kInternal:
      return true;
    default:
      return false;
  }
}

Controller::Controller(Store& store, Clock& clock, TimerService& timers, const Catalog& catalog, ControllerOptions opts)
    : store_(store), clock_(clock), timers_(timers), catalog_(catalog), opts_(std::move(opts)), fair_(opts_.quotas) {}

Controller::~Controller() {
  Shutdown();
}

Status Controller::Start() {
  auto ids = store_.JobsNeedingAttention();
  if (!ids.ok()) return ids.status();
  std::vector<Job> warm_pools;  // Available: their instances are charged to their teams again
  {
    MutexLock l(mu_);
    for (const auto& id : *ids) {
      resync_.insert(id);
      recovering_.insert(id);
      // What runs is charged to its team again before anything new starts.
      auto job = store_.GetJob(id);
      if (!job.ok()) continue;
      if (job->warm_pool.status == WarmPoolStatus::kAvailable) warm_pools.push_back(*job);
      for (const auto& in : job->instances)
        if (in.attempt == job->attempt && in.state == InstanceState::kRunning) {
          fair_.Charge(in.id, job->spec.team, UsageOf(job->spec, catalog_.FindType(job->spec.instance_type), in.index));
          fair_.Served(job->spec.team);  // the latest turns were these teams'
        }
    }
    hold_ = !recovering_.empty();
  }
  for (const auto& job : warm_pools) SyncWarmCharges(job);
  for (const auto& id : *ids) Enqueue(id);
  if (opts_.threading == Threading::kThreaded) {
    worker_ = std::thread([this] { WorkerLoop(); });
    for (int i = 0; i < std::max(1, opts_.launch_threads); ++i) launchers_.emplace_back([this] { LauncherLoop(); });
  }
  return Status::Ok();
}

void Controller::Shutdown() {
  {
    MutexLock l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  launch_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // A launch in flight finishes (Launch returns quickly or within its own bound)
  // and posts its result; queued ones are left: a restart re-issues them.
  for (auto& t : launchers_)
    if (t.joinable()) t.join();
  launchers_.clear();
}

Status Controller::FitsTeamQuota(const JobSpec& spec) const {
  const TeamQuota& q = opts_.quotas.For(spec.team);
  const InstanceType* type = catalog_.FindType(spec.instance_type);
  const int n = std::max(1, spec.instance_count);
  auto over = [&](const char* field, const std::string& what, const std::string& key) {
    return InvalidArgument(field, "team " + spec.team + "'s quota allows at most " + what + " at once (quotas.teams." +
                                      spec.team + "." + key + "): this job could never start");
  };
  char buf[64];
  if (q.instances >= 0 && n > q.instances)
    return over("instance.count", std::to_string(q.instances) + " instances", "instances");
  if (type != nullptr && q.vcpus >= 0 && type->vcpus * n > q.vcpus + 1e-9) {
    snprintf(buf, sizeof(buf), "%g vCPUs", q.vcpus);
    return over("instance.type", buf, "vcpus");
  }
  if (type != nullptr && q.memory_mib >= 0 && type->memory_mib * n > q.memory_mib) {
    snprintf(buf, sizeof(buf), "%g GiB of memory", static_cast<double>(q.memory_mib) / 1024);
    return over("instance.type", buf, "memory_gib");
  }
  if (type != nullptr && q.gpus >= 0 && type->gpus * n > q.gpus)
    return over("instance.type", std::to_string(q.gpus) + " GPUs", "gpus");
  if (!spec.tuning_job.empty() && q.trials == 0) return over("team", "0 running tuning trials", "tuning_trials");
  return Status::Ok();
}

Result<Job> Controller::CreateJob(const JobSpec& spec) {
  // A job that its team's quota could never admit is refused now, not left Pending.
  KILN_RETURN_IF_ERROR(FitsTeamQuota(spec));
  if (spec.keep_alive_seconds > opts_.warm_pools.max_keep_alive_seconds)
    return InvalidArgument("instance.keep_alive_seconds",
                           "at most " + std::to_string(opts_.warm_pools.max_keep_alive_seconds) +
                               " seconds on this Kiln (warm_pools.max_keep_alive_seconds)");
  Job job;
  job.id = NewId("j");
  job.spec = spec;
  job.created_at = clock_.NowMs();
  job.output_dir = (spec.output.empty() ? opts_.artifacts_dir : spec.output) + "/" + spec.name + "/output";
  Event created;
  created.type = EventType::kJobCreated;
  created.source = "api";
  created.time = job.created_at;
  if (spec.keep_alive_seconds <= 0) {
    KILN_RETURN_IF_ERROR(store_.CreateJob(job, created));
  } else {
    // The claim is durable before the job exists; a job that then cannot be
    // created gives the pool back.
    MutexLock warm(warm_mu_);
    const std::string claimed = ClaimWarmPool(job);
    Status st = store_.CreateJob(job, created);
    if (!st.ok()) {
      if (!claimed.empty()) {
        Event back;
        back.job_id = claimed;
        back.type = EventType::kWarmPoolReturned;
        back.source = "api";
        back.payload = {{"by", job.id}};
        PostOrLog(std::move(back), "warm pool return");
      }
      return st;
    }
  }
  Enqueue(job.id);
  return job;
}

Result<Job> Controller::EffectiveJob(const std::string& id_or_name) {
  auto job = store_.GetJob(id_or_name);
  if (!job.ok()) return job;
  auto pending = store_.UnappliedEvents(job->id);
  if (!pending.ok()) return pending.status();
  for (const auto& e : *pending) Transition(*job, e);
  return job;
}

namespace {
// The fields SageMaker matches a warm pool on (image, hyperparameters, inputs
// and code may differ); the team is the query's.
bool WarmPoolMatches(const JobSpec& pool, const JobSpec& spec) {
  return pool.team == spec.team && pool.kind == spec.kind && pool.instance_type == spec.instance_type &&
         pool.instance_count == spec.instance_count && pool.volume_gb == spec.volume_gb &&
         pool.network_isolation == spec.network_isolation;
}
}  // namespace

std::string Controller::ClaimWarmPool(Job& job) {
  ListQuery q;
  q.warm_pool_status = WarmPoolStatus::kAvailable;
  q.team = job.spec.team;
  q.kind = job.spec.kind;
  q.order = ListOrder::kOldestFirst;
  q.limit = 100;
  const TimeMs now = clock_.NowMs();
  for (int pages = 0; pages < 100; ++pages) {
    auto page = store_.ListJobs(q);
    if (!page.ok()) return "";
    for (const auto& candidate : page->jobs) {
      if (!WarmPoolMatches(candidate.spec, job.spec)) continue;
      auto pool = EffectiveJob(candidate.id);
      if (!pool.ok() || pool->warm_pool.status != WarmPoolStatus::kAvailable || now >= pool->warm_pool.ExpiresAt())
        continue;
      Event e;
      e.job_id = pool->id;
      e.type = EventType::kWarmPoolEnded;
      e.source = "api";
      e.time = now;
      e.dedup_key = "warmclaim:" + pool->id + ":" + job.id;
      e.payload = {{"reason", "Reused"}, {"by", job.id}, {"by_name", job.spec.name}};
      if (!Post(std::move(e)).ok()) return "";
      job.warm_pool.chain = pool->warm_pool.chain;
      job.warm_pool.chain_started = pool->warm_pool.chain_started;
      job.warm_pool.reused_from = pool->id;
      return pool->id;
    }
    if (page->next_page_token.empty()) break;
    q.page_token = page->next_page_token;
  }
  return "";
}

void Controller::ExpireWarmPool(const std::string& job_id, const std::string& timer_key) {
  MutexLock warm(warm_mu_);
  auto job = EffectiveJob(job_id);
  const TimeMs now = clock_.NowMs();
  if (!job.ok() || job->warm_pool.status != WarmPoolStatus::kAvailable || now < job->warm_pool.ExpiresAt()) return;
  Event e;
  e.job_id = job_id;
  e.type = EventType::kWarmPoolEnded;
  e.source = "timer";
  e.time = now;
  e.dedup_key = timer_key;  // one per deadline (PendingTimers)
  e.payload = {{"reason", "Expired"}};
  PostOrLog(std::move(e), "warm pool expiry");
}

Result<Job> Controller::UpdateKeepAlive(const std::string& id_or_name, int64_t seconds) {
  if (seconds < 0 || seconds > opts_.warm_pools.max_keep_alive_seconds)
    return InvalidArgument("instance.keep_alive_seconds",
                           "must be 0.." + std::to_string(opts_.warm_pools.max_keep_alive_seconds) +
                               " seconds on this Kiln (warm_pools.max_keep_alive_seconds)");
  MutexLock warm(warm_mu_);
  auto job = EffectiveJob(id_or_name);
  if (!job.ok()) return job;
  if (IsTerminal(job->status) && job->warm_pool.status != WarmPoolStatus::kAvailable) {
    const char* status = ToString(job->warm_pool.status);
    return Status(Code::kFailedPrecondition, "job " + job->spec.name + " ended and its warm pool is " +
                                                 (*status ? status : "absent") + ": there is nothing to keep alive");
  }
  Event e;
  e.job_id = job->id;
  e.type = EventType::kKeepAliveUpdated;
  e.source = "api";
  e.time = clock_.NowMs();
  e.payload = {{"seconds", seconds}};
  KILN_RETURN_IF_ERROR(Post(e));
  Transition(*job, e);
  return job;
}

void Controller::SyncWarmCharges(const Job& job) {
  const bool available = job.warm_pool.status == WarmPoolStatus::kAvailable;
  bool over = false, released = false;
  const int cap = opts_.warm_pools.max_retained_instances_per_team;
  int retained = 0;
  {
    MutexLock l(mu_);
    auto it = warm_charged_.find(job.id);
    if (available && it == warm_charged_.end()) {
      const InstanceType* type = catalog_.FindType(job.spec.instance_type);
      const int n = std::max(1, job.spec.instance_count);
      for (int i = 0; i < n; ++i) {
        Usage u = UsageOf(job.spec, type, i);
        u.trials = 0;  // a kept instance runs no trial
        fair_.Charge("warm:" + job.id + "." + std::to_string(i), job.spec.team, u);
      }
      warm_charged_[job.id] = {job.spec.team, n};
      for (const auto& [id, charged] : warm_charged_)
        if (charged.first == job.spec.team) retained += charged.second;
      over = cap >= 0 && retained > cap;
    } else if (!available && it != warm_charged_.end()) {
      for (int i = 0; i < it->second.second; ++i) fair_.Release("warm:" + job.id + "." + std::to_string(i));
      warm_charged_.erase(it);
      released = true;
    }
  }
  if (released) RetryWaitingLaunches();
  if (!over) return;
  Event e;
  e.job_id = job.id;
  e.type = EventType::kWarmPoolEnded;
  e.source = "controller";
  e.time = clock_.NowMs();
  e.dedup_key = "warmcap:" + job.id;
  e.payload = {{"reason", "Terminated"},
               {"message", "team " + job.spec.team + " would retain " + std::to_string(retained) +
                               " instances, past its cap of " + std::to_string(cap) +
                               " (warm_pools.max_retained_instances_per_team)"}};
  MutexLock warm(warm_mu_);
  PostOrLog(std::move(e), "warm pool cap");
}

Result<Job> Controller::StopJob(const std::string& id_or_name) {
  auto job = store_.GetJob(id_or_name);
  if (!job.ok()) return job.status();
  if (job->status != JobStatus::kInProgress) return job;
  Event e;
  e.job_id = job->id;
  e.type = EventType::kStopRequested;
  e.source = "api";
  e.time = clock_.NowMs();
  e.dedup_key = "stop:" + job->id;
  KILN_RETURN_IF_ERROR(Post(e));
  // The event is durable and its effect deterministic: answer with the state it
  // leads to (Stopping) rather than the one the reconciler has not yet left.
  Job next = *job;
  Transition(next, e);
  return next;
}

Status Controller::Post(Event e) {
  if (e.time == 0) e.time = clock_.NowMs();
  if (e.type == EventType::kInstanceExited && opts_.before_instance_exit) {
    std::string instance_id = PayloadInstanceId(e.payload);
    if (!instance_id.empty()) opts_.before_instance_exit(instance_id);
  }
  auto r = store_.AppendEvent(std::move(e));
  if (!r.ok()) {
    if (r.status().code() == Code::kAlreadyExists) return Status::Ok();  // duplicate: harmless
    return r.status();
  }
  Enqueue(r->job_id);
  return Status::Ok();
}

void Controller::Enqueue(const std::string& job_id) {
  {
    MutexLock l(mu_);
    if (!queued_.insert(job_id).second) return;
    queue_.push_back(job_id);
  }
  cv_.notify_one();
}

bool Controller::RunOnce() {
  std::optional<PendingLaunch> launch;
  std::string id;
  {
    MutexLock l(mu_);
    if (!launches_.empty()) {
      launch = std::move(launches_.front());
      launches_.pop_front();
    } else if (!queue_.empty()) {
      id = queue_.front();
      queue_.pop_front();
      queued_.erase(id);
    } else {
      return false;
    }
  }
  if (launch) {
    if (RunLaunch(*launch) == LaunchOutcome::kWaiting) return true;
    MutexLock l(mu_);
    launching_.erase(launch->req.instance_id);
    return true;
  }
  Process(id);
  return true;
}

void Controller::Process(const std::string& id) {
  // A job recovered at start holds back the fair-share queue until its running
  // instances are re-adopted (and hold their capacity again); one whose recovery
  // waits for a pending event stays in recovering_ until then.
  const bool deferred = ProcessOne(id) == Processed::kRecoveryDeferred;
  bool recovered = false;
  {
    MutexLock l(mu_);
    if (!deferred && recovering_.erase(id) > 0 && recovering_.empty()) {
      hold_ = false;
      recovered = true;
    }
  }
  if (recovered) Pump();
}

Controller::Processed Controller::ProcessOne(const std::string& id) {
  Status st = Reconcile(id);
  if (!st.ok()) {
    int failures;
    {
      MutexLock l(mu_);
      failures = ++failures_[id];
      if (!IsRetryable(st.code())) failures_.erase(id);
    }
    if (!IsRetryable(st.code())) {
      dropped_keys_.fetch_add(1);
      fprintf(stderr, "kilnd: reconcile %s: %s (not retried until a new event arrives)\n", id.c_str(),
              st.ToString().c_str());
      return Processed::kDone;
    }
    TimeMs delay = RequeueDelayMs(failures);
    fprintf(stderr, "kilnd: reconcile %s: %s (retry %d in %lld ms)\n", id.c_str(), st.ToString().c_str(), failures,
            static_cast<long long>(delay));
    timers_.Schedule(clock_.NowMs() + delay, "requeue:" + id, [this, id] { Enqueue(id); });
    return Processed::kDone;
  }
  bool resync;
  {
    MutexLock l(mu_);
    failures_.erase(id);
    resync = resync_.erase(id) > 0;
  }
  if (!resync) return Processed::kDone;
  // Only on a fully folded job, so that a pending event (say a launch failure that
  // the fold's own actions just posted) is seen before re-launching anything.
  auto pending = store_.UnappliedEvents(id);
  if (pending.ok() && pending->empty()) {
    RecoverInstances(id);
    return Processed::kDone;
  }
  MutexLock l(mu_);
  resync_.insert(id);  // the posted event has queued the job again
  return Processed::kRecoveryDeferred;
}

void Controller::WorkerLoop() {
  for (;;) {
    std::string id;
    {
      MutexLock l(mu_);
      cv_.wait(l.native(), [&]() NO_THREAD_SAFETY_ANALYSIS { return stop_ || !queue_.empty(); });
      if (stop_) return;
      id = queue_.front();
      queue_.pop_front();
      queued_.erase(id);
    }
    Process(id);
  }
}

void Controller::LauncherLoop() {
  for (;;) {
    PendingLaunch launch;
    {
      MutexLock l(mu_);
      launch_cv_.wait(l.native(), [&]() NO_THREAD_SAFETY_ANALYSIS { return stop_ || !launches_.empty(); });
      if (stop_) return;
      launch = std::move(launches_.front());
      launches_.pop_front();
    }
    if (RunLaunch(launch) == LaunchOutcome::kWaiting) continue;
    MutexLock l(mu_);
    launching_.erase(launch.req.instance_id);
  }
}

Status Controller::Reconcile(const std::string& job_id) {
  auto job = store_.GetJob(job_id);
  if (!job.ok()) return job.status();
  auto events = store_.UnappliedEvents(job_id);
  if (!events.ok()) return events.status();
  if (events->empty()) {
    ScheduleTimers(*job);
    return Status::Ok();
  }
  std::vector<Action> actions;
  for (auto& e : *events) {
    auto r = Transition(*job, e);
    for (auto& a : r.actions) actions.push_back(a);
    job->last_job_seq = e.job_seq;
    e.status_after = ToString(job->status);
    e.secondary_after = ToString(job->secondary);
  }
  std::vector<std::string> ended;
  for (const auto& e : *events)
    if (e.type == EventType::kInstanceExited || e.type == EventType::kInstanceLaunchFailed)
      ended.push_back(PayloadInstanceId(e.payload));
  KILN_RETURN_IF_ERROR(store_.CommitTransition(*job, *events));
  if (!ended.empty() || IsTerminal(job->status)) {
    MutexLock l(mu_);
    for (const auto& id : ended) fair_.Release(id);
    if (IsTerminal(job->status))
      for (const auto& in : job->instances) fair_.Release(in.id);
  }
  if (!ended.empty()) RetryWaitingLaunches();
  if (job->status == JobStatus::kStopping || IsTerminal(job->status)) {
    // A stop reaches an instance still waiting for capacity here (the state
    // machine stops launched instances only): it never launches.
    for (const auto& in : job->instances)
      if (in.state == InstanceState::kLaunching) CancelLaunch(job->id, in.id);
  }
  version_.fetch_add(1);
  { std::lock_guard<std::mutex> l(change_mu_); }
  change_cv_.notify_all();
  if (opts_.on_job_changed) opts_.on_job_changed(job->id);
  SyncWarmCharges(*job);
  for (const auto& a : actions) Execute(*job, a);
  ScheduleTimers(*job);
  return Status::Ok();
}

void Controller::Execute(const Job& job, const Action& a) {
  if (!backend_) return;
  std::string handle;
  for (const auto& in : job.instances)
    if (in.id == a.instance_id) handle = in.handle;
  switch (a.type) {
    case ActionType::kLaunch: {
      const Instance* in = nullptr;
      for (const auto& i : job.instances)
        if (i.id == a.instance_id) in = &i;
      if (!in) return;
      LaunchRequest req;
      req.instance_id = in->id;
      req.job_id = job.id;
      req.index = in->index;
      req.attempt = in->attempt;
      req.spec = job.spec;
      if (auto* t = catalog_.FindType(job.spec.instance_type)) req.type = *t;
      const ImageEnv* img = catalog_.FindImage(job.spec.image);
      if (img) req.image = *img;
      req.output_dir = job.output_dir;
      req.api_url = opts_.api_url;
      req.token = opts_.token_for ? opts_.token_for(in->id) : "";
      req.warm_cache = job.warm_pool.chain;
      Status precondition;
      if (!img)
        precondition = Status(Code::kInvalidArgument, "ImageNotFound: image '" + job.spec.image +
                                                          "' is not in kilnd's image catalog (config: images)");
      StartLaunch(std::move(req), precondition, job.created_at);
      return;
    }
    case ActionType::kStop: {
      Status st = backend_->Stop(a.instance_id, handle, a.grace_ms);
      if (!st.ok()) fprintf(stderr, "kilnd: stop %s: %s\n", a.instance_id.c_str(), st.ToString().c_str());
      return;
    }
    case ActionType::kCleanup: {
      if (opts_.on_instance_released) opts_.on_instance_released(a.instance_id);
      Status st = backend_->Cleanup(a.instance_id, handle);
      if (!st.ok()) fprintf(stderr, "kilnd: cleanup %s: %s\n", a.instance_id.c_str(), st.ToString().c_str());
      return;
    }
    case ActionType::kDropWarmCache: {
      Status st = backend_->DeleteWarmCache(a.instance_id);
      if (!st.ok()) fprintf(stderr, "kilnd: warm cache %s: %s\n", a.instance_id.c_str(), st.ToString().c_str());
      return;
    }
  }
}

Usage Controller::UsageOf(const JobSpec& spec, const InstanceType* type, int index) {
  Usage u;
  u.instances = 1;
  if (type != nullptr) {
    u.vcpus = type->vcpus;
    u.memory_mib = type->memory_mib;
    u.gpus = type->gpus;
  }
  if (index == 0 && !spec.tuning_job.empty()) u.trials = 1;  // a trial counts once, on its first instance
  return u;
}

Usage Controller::UsageOf(const LaunchRequest& req) {
  return UsageOf(req.spec, &req.type, req.index);
}

void Controller::StartLaunch(LaunchRequest req, Status precondition, TimeMs created_ms) {
  const std::string id = req.instance_id, job_id = req.job_id;
  std::string reason;
  {
    MutexLock l(mu_);
    // One launch per instance at a time; the running one posts the result.
    if (!launching_.insert(id).second) return;
    if (!precondition.ok()) {
      launches_.push_back({std::move(req), std::move(precondition), Admission::kDirect, created_ms});
    } else {
      Waiter w{id, job_id, req.spec.team, req.spec.priority, created_ms, UsageOf(req)};
      reason = fair_.OverQuota(w);
      if (reason.empty() && capacity_blocked_)
        reason = "launches start in fair-share order across teams as instances end";
      fair_.Add(std::move(w));
      parked_[id] = {std::move(req), Status::Ok(), Admission::kQueued, created_ms};
    }
  }
  launch_cv_.notify_one();
  if (!reason.empty()) PostQueued(job_id, id, reason);
  Pump();
}

void Controller::PostQueued(const std::string& job_id, const std::string& instance_id, const std::string& reason) {
  Event e;
  e.job_id = job_id;
  e.source = "controller";
  e.time = clock_.NowMs();
  e.type = EventType::kInstanceQueued;
  // One event per reason: a launch that waits for its quota, then for capacity, says both.
  e.dedup_key = "queued:" + instance_id + (reason.rfind("team quota", 0) == 0 ? ":quota" : ":capacity");
  e.payload = ToJson(LaunchFailedReport{instance_id, reason});
  PostOrLog(std::move(e), "queued launch");
}

void Controller::Pump() {
  bool any = false;
  {
    MutexLock l(mu_);
    if (fair_.waiting() == 0) scarce_ = false;
    const int window = scarce_ ? 1 : std::max(1, opts_.launch_threads);
    while (!hold_ && !stop_ && !capacity_blocked_ && pumped_ < window) {
      auto w = fair_.PopNext();
      if (!w) break;
      auto it = parked_.find(w->instance_id);
      if (it == parked_.end()) continue;
      fair_.Charge(w->instance_id, w->team, w->need);
      launches_.push_back(std::move(it->second));
      parked_.erase(it);
      ++pumped_;
      any = true;
    }
  }
  if (any) launch_cv_.notify_all();
}

void Controller::RetryWaitingLaunches() {
  {
    MutexLock l(mu_);
    ++capacity_epoch_;
    capacity_blocked_ = false;
  }
  Pump();
}

void Controller::CancelLaunch(const std::string& job_id, const std::string& instance_id) {
  {
    MutexLock l(mu_);
    if (!fair_.Remove(instance_id)) {
      // Queued or in flight: it sees this before it starts or parks.
      if (launching_.count(instance_id)) cancelled_.insert(instance_id);
      return;
    }
    parked_.erase(instance_id);
    launching_.erase(instance_id);
  }
  PostStoppedBeforeLaunch(job_id, instance_id);
}

bool Controller::TakeCancelled(const std::string& instance_id) {
  MutexLock l(mu_);
  return cancelled_.erase(instance_id) > 0;
}

void Controller::PostStoppedBeforeLaunch(const std::string& job_id, const std::string& instance_id) {
  Event e;
  e.job_id = job_id;
  e.source = "backend";
  e.time = clock_.NowMs();
  e.type = EventType::kInstanceLaunchFailed;
  e.dedup_key = "launchfailed:" + instance_id;
  e.payload = ToJson(
      LaunchFailedReport{instance_id, "StoppedBeforeLaunch: stopped while waiting for its team quota or capacity"});
  PostOrLog(std::move(e), "cancelled launch");
}

Controller::LaunchOutcome Controller::RunLaunch(const PendingLaunch& launch) {
  const LaunchRequest& req = launch.req;
  const Status& precondition = launch.precondition;
  const bool queued = launch.admission == Admission::kQueued;
  // A launch from fair_ frees its launcher slot when it ends, and its team's
  // charge unless the instance runs (a launch that never happened also gives
  // its team's turn back).
  enum class End { kRuns, kFailed, kNotStarted };
  auto finish = [&](End end) {
    if (!queued) return;
    {
      MutexLock l(mu_);
      --pumped_;
      if (end == End::kRuns) fair_.Served(req.spec.team);
      if (end != End::kRuns) fair_.Release(req.instance_id);
    }
    Pump();
  };
  if (TakeCancelled(req.instance_id)) {
    PostStoppedBeforeLaunch(req.job_id, req.instance_id);
    finish(End::kNotStarted);
    return LaunchOutcome::kDone;
  }
  int64_t epoch = 0;
  {
    MutexLock l(mu_);
    epoch = capacity_epoch_;
  }
  KILN_CHECK(backend_ != nullptr, "a launch was queued without a backend");
  Result<std::string> h = precondition.ok() ? Result<std::string>(Status(Code::kUnavailable, "not tried"))
                                            : Result<std::string>(precondition);
  // Launch is idempotent, so an ambiguous failure is retried as is.
  TimeMs launch_started = 0;
  for (int tries = 0; precondition.ok() && tries < 3; ++tries) {
    launch_started = clock_.NowMs();
    h = backend_->Launch(req);
    if (h.ok() || h.status().code() != Code::kUnavailable) break;
  }
  if (!h.ok() && h.status().code() == Code::kResourceExhausted) {
    if (TakeCancelled(req.instance_id)) {  // stopped while the backend was refusing it
      PostStoppedBeforeLaunch(req.job_id, req.instance_id);
      finish(End::kNotStarted);
      return LaunchOutcome::kDone;
    }
    // Admission control: shown as Pending with the reason; back in fair_ in its
    // place, launched when capacity frees and its turn comes again.
    PostQueued(req.job_id, req.instance_id, h.status().message());
    {
      MutexLock l(mu_);
      if (queued) --pumped_;
      fair_.Release(req.instance_id);
      fair_.Add({req.instance_id, req.job_id, req.spec.team, req.spec.priority, launch.created_ms, UsageOf(req)});
      parked_[req.instance_id] = launch;
      parked_[req.instance_id].admission = Admission::kQueued;
      // Unless an instance ended meanwhile, nothing more fits until one does.
      if (capacity_epoch_ == epoch) capacity_blocked_ = true;
      scarce_ = true;
    }
    Pump();
    return LaunchOutcome::kWaiting;
  }
  Event e;
  e.job_id = req.job_id;
  e.source = "backend";
  e.time = clock_.NowMs();
  if (h.ok()) {
    TakeCancelled(req.instance_id);  // launched after all: the state machine stops it (launched while stopping)
    e.type = EventType::kInstanceLaunched;
    e.dedup_key = "launched:" + req.instance_id;
    e.payload = ToJson(LaunchedReport{req.instance_id, *h, e.time - launch_started});
  } else {
    e.type = EventType::kInstanceLaunchFailed;
    e.dedup_key = "launchfailed:" + req.instance_id;
    e.payload = ToJson(LaunchFailedReport{req.instance_id, h.status().message()});
  }
  PostOrLog(std::move(e), "launch result");
  finish(h.ok() ? End::kRuns : End::kFailed);
  return LaunchOutcome::kDone;
}

void Controller::PostOrLog(Event e, const char* what) {
  Status st = Post(std::move(e));
  if (!st.ok()) fprintf(stderr, "kilnd: post %s: %s\n", what, st.ToString().c_str());
}

void Controller::ScheduleTimers(const Job& job) {
  for (const auto& t : PendingTimers(job)) {
    std::string job_id = job.id;
    EventType type = t.type;
    std::string key = t.dedup_key;
    if (type == EventType::kWarmPoolEnded) {
      timers_.Schedule(t.at, key, [this, job_id, key] { ExpireWarmPool(job_id, key); });
      continue;
    }
    timers_.Schedule(t.at, key, [this, job_id, type, key] {
      Event e;
      e.job_id = job_id;
      e.type = type;
      e.source = "timer";
      e.time = clock_.NowMs();
      e.dedup_key = key;
      PostOrLog(std::move(e), "timer");
    });
  }
}

void Controller::RecoverInstances(const std::string& job_id) {
  if (!backend_) return;
  auto job = store_.GetJob(job_id);
  if (!job.ok() || IsTerminal(job->status)) return;
  const auto caps = backend_->Capabilities();
  const bool survives_restart =
      std::find(caps.begin(), caps.end(), Capability::kSurvivesControllerRestart) != caps.end();
  for (const auto& in : job->instances) {
    if (in.attempt != job->attempt) continue;
    if (in.state == InstanceState::kLaunching) {
      // The launch may or may not have happened before the crash; Launch is idempotent.
      Execute(*job, {ActionType::kLaunch, in.id, 0});
    } else if (in.state == InstanceState::kRunning) {
      if (!survives_restart) {
        // The backend says its instances die with kilnd: nothing to re-attach to.
        PostOrLog(LostEvent(job->id, in.id, "the backend's instances do not survive a kilnd restart", clock_.NowMs()),
                  "lost instance");
        continue;
      }
      Status st = backend_->Recover(in.id, in.handle);
      if (st.code() == Code::kNotFound) {
        PostOrLog(LostEvent(job->id, in.id, "the instance disappeared while kilnd was down (" + st.message() + ")",
                            clock_.NowMs()),
                  "lost instance");
      } else if (!st.ok()) {
        fprintf(stderr, "kilnd: recover %s: %s\n", in.id.c_str(), st.ToString().c_str());
      }
      if (job->status == JobStatus::kStopping && in.stop_sent) {
        Status stop = backend_->Stop(in.id, in.handle, job->spec.stop_grace_seconds * 1000);
        if (!stop.ok()) fprintf(stderr, "kilnd: stop %s: %s\n", in.id.c_str(), stop.ToString().c_str());
      }
    }
  }
}

void Controller::Resync() {
  auto ids = store_.JobsNeedingAttention();
  if (!ids.ok()) return;
  for (const auto& id : *ids) {
    {
      MutexLock l(mu_);
      resync_.insert(id);
    }
    Enqueue(id);
  }
}

int64_t Controller::WaitForChange(int64_t seen, int timeout_ms) {
  std::unique_lock<std::mutex> l(change_mu_);
  change_cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return version_.load() != seen; });
  return version_.load();
}

}  // namespace kiln
