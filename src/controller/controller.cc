#include "controller/controller.h"

#include <cstdio>

#include "common/ids.h"

namespace kiln {

Controller::Controller(Store& store, Clock& clock, TimerService& timers, const Catalog& catalog, ControllerOptions opts)
    : store_(store), clock_(clock), timers_(timers), catalog_(catalog), opts_(std::move(opts)) {}

Controller::~Controller() {
  Shutdown();
}

Status Controller::Start() {
  auto ids = store_.JobsNeedingAttention();
  if (!ids.ok()) return ids.status();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& id : *ids) resync_.insert(id);
  }
  for (const auto& id : *ids) Enqueue(id);
  if (opts_.threading == Threading::kThreaded) worker_ = std::thread([this] { WorkerLoop(); });
  return Status::Ok();
}

void Controller::Shutdown() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Result<Job> Controller::CreateJob(const JobSpec& spec) {
  Job job;
  job.id = NewId("j");
  job.spec = spec;
  job.created_at = clock_.NowMs();
  job.output_dir = (spec.output.empty() ? opts_.artifacts_dir : spec.output) + "/" + spec.name + "/output";
  Event created;
  created.type = EventType::kJobCreated;
  created.source = "api";
  created.time = job.created_at;
  KILN_RETURN_IF_ERROR(store_.CreateJob(job, created));
  Enqueue(job.id);
  return job;
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
  if (e.type == EventType::kInstanceExited && opts_.before_instance_exit && e.payload.contains("instance_id") &&
      e.payload["instance_id"].is_string())
    opts_.before_instance_exit(e.payload["instance_id"].get<std::string>());
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
    std::lock_guard<std::mutex> l(mu_);
    if (!queued_.insert(job_id).second) return;
    queue_.push_back(job_id);
  }
  cv_.notify_one();
}

bool Controller::RunOnce() {
  std::string id;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (queue_.empty()) return false;
    id = queue_.front();
    queue_.pop_front();
    queued_.erase(id);
  }
  Process(id);
  return true;
}

void Controller::Process(const std::string& id) {
  Status st = Reconcile(id);
  if (!st.ok()) {
    fprintf(stderr, "kilnd: reconcile %s: %s (will retry)\n", id.c_str(), st.ToString().c_str());
    timers_.Schedule(clock_.NowMs() + 500, "requeue:" + id, [this, id] { Enqueue(id); });
    return;
  }
  bool resync;
  {
    std::lock_guard<std::mutex> l(mu_);
    resync = resync_.erase(id) > 0;
  }
  if (!resync) return;
  // Only on a fully folded job, so that a pending event (say a launch failure that
  // the fold's own actions just posted) is seen before re-launching anything.
  auto pending = store_.UnappliedEvents(id);
  if (pending.ok() && pending->empty()) {
    RecoverInstances(id);
  } else {
    std::lock_guard<std::mutex> l(mu_);
    resync_.insert(id);  // the posted event has queued the job again
  }
}

void Controller::WorkerLoop() {
  for (;;) {
    std::string id;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      id = queue_.front();
      queue_.pop_front();
      queued_.erase(id);
    }
    Process(id);
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
  KILN_RETURN_IF_ERROR(store_.CommitTransition(*job, *events));
  version_.fetch_add(1);
  { std::lock_guard<std::mutex> l(change_mu_); }
  change_cv_.notify_all();
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
      Result<std::string> h = Status(Code::kUnavailable, "not tried");
      if (!img)
        h = Status(Code::kInvalidArgument,
                   "ImageNotFound: image '" + job.spec.image + "' is not in kilnd's image catalog (config: images)");
      // Launch is idempotent, so an ambiguous failure is retried as is.
      for (int tries = 0; img && tries < 3; ++tries) {
        h = backend_->Launch(req);
        if (h.ok() || h.status().code() != Code::kUnavailable) break;
      }
      Event e;
      e.job_id = job.id;
      e.source = "backend";
      e.time = clock_.NowMs();
      if (h.ok()) {
        e.type = EventType::kInstanceLaunched;
        e.dedup_key = "launched:" + in->id;
        e.payload = {{"instance_id", in->id}, {"handle", *h}};
      } else {
        e.type = EventType::kInstanceLaunchFailed;
        e.dedup_key = "launchfailed:" + in->id;
        e.payload = {{"instance_id", in->id}, {"reason", h.status().message()}};
      }
      Status st = Post(e);
      if (!st.ok()) fprintf(stderr, "kilnd: post launch result: %s\n", st.ToString().c_str());
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
  }
}

void Controller::ScheduleTimers(const Job& job) {
  for (const auto& t : PendingTimers(job)) {
    std::string job_id = job.id;
    EventType type = t.type;
    std::string key = t.dedup_key;
    timers_.Schedule(t.at, key, [this, job_id, type, key] {
      Event e;
      e.job_id = job_id;
      e.type = type;
      e.source = "timer";
      e.time = clock_.NowMs();
      e.dedup_key = key;
      Post(e);
    });
  }
}

void Controller::RecoverInstances(const std::string& job_id) {
  if (!backend_) return;
  auto job = store_.GetJob(job_id);
  if (!job.ok() || IsTerminal(job->status)) return;
  for (const auto& in : job->instances) {
    if (in.attempt != job->attempt) continue;
    if (in.state == InstanceState::kLaunching) {
      // The launch may or may not have happened before the crash; Launch is idempotent.
      Execute(*job, {ActionType::kLaunch, in.id, 0});
    } else if (in.state == InstanceState::kRunning) {
      Status st = backend_->Recover(in.id, in.handle);
      if (st.code() == Code::kNotFound) {
        Post(ExitEvent(job->id, in.id, -1, 0, false,
                       "InstanceLost: the instance disappeared while kilnd was down (" + st.message() + ")", "",
                       clock_.NowMs()));
      }
      if (job->status == JobStatus::kStopping && in.stop_sent)
        backend_->Stop(in.id, in.handle, job->spec.stop_grace_seconds * 1000);
    }
  }
}

void Controller::Resync() {
  auto ids = store_.JobsNeedingAttention();
  if (!ids.ok()) return;
  for (const auto& id : *ids) {
    {
      std::lock_guard<std::mutex> l(mu_);
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
