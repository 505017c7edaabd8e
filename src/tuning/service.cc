#include "tuning/service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string_view>

#include "common/ids.h"
#include "common/user_regex.h"

namespace kiln::tuning {

using nlohmann::json;

namespace {

// A stop that fails is logged, not returned: the decision is already saved, and
// while the tuning job is live the next tick stops its running trials again
// (Decide repeats the stop of every trial it has early-stopped or is ending).
void StopTrial(Controller& ctl, const std::string& tuning, const std::string& trial) {
  auto stopped = ctl.StopJob(trial);
  if (!stopped.ok())
    fprintf(stderr, "kilnd: tuning %s: stopping trial %s: %s\n", tuning.c_str(), trial.c_str(),
            stopped.status().ToString().c_str());
}

}  // namespace

Result<TuningJob> LoadTuningJob(const TuningRecord& r) {
  json spec = json::parse(r.spec, nullptr, false);
  json state = json::parse(r.state, nullptr, false);
  if (spec.is_discarded() || state.is_discarded()) return Internal("tuning job " + r.name + " is not valid JSON");
  auto s = ParseTuningSpec(spec, nullptr);
  if (!s.ok()) return Internal("stored tuning job " + r.name + ": " + s.status().ToString());
  return TuningJob{*s, TuningState::FromJson(state)};
}

void TuningService::Start() {
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void TuningService::Shutdown() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Status CheckWarmStartParent(const TuningSpec& child, const TuningSpec& parent) {
  // SageMaker's rules: hyperparameters may move between static and tuned, but
  // their total stays the parents'; IdenticalDataAndAlgorithm also keeps the
  // parents' training image and input data (TransferLearning may change both).
  auto total = [](const TuningSpec& s) {
    return s.ranges.size() + (s.trial.hyperparameters.is_object() ? s.trial.hyperparameters.size() : 0);
  };
  if (total(child) != total(parent))
    return InvalidArgument("warm_start.parents",
                           StrCat("warm_start.parents: '", parent.name, "' has ", std::to_string(total(parent)),
                                  " static plus tuned hyperparameters and this job ", std::to_string(total(child)),
                                  "; warm start keeps their number"));
  if (child.warm_start != WarmStartType::kIdenticalDataAndAlgorithm) return Status::Ok();
  if (child.trial.image != parent.trial.image)
    return InvalidArgument("warm_start.type",
                           StrCat("warm_start.type: IdenticalDataAndAlgorithm needs the parents' training image; '",
                                  parent.name, "' ran '", parent.trial.image, "' (use TransferLearning)"));
  if (child.trial.inputs != parent.trial.inputs)
    return InvalidArgument("warm_start.type",
                           StrCat("warm_start.type: IdenticalDataAndAlgorithm needs the parents' input data; '",
                                  parent.name, "' read other channels or paths (use TransferLearning)"));
  return Status::Ok();
}

Result<TuningJob> TuningService::Create(const TuningSpec& spec) {
  for (const auto& p : spec.parents) {
    auto parent = Get(p);
    // Another team's tuning job is one that does not exist: its trials (and their
    // hyperparameters and objective values) are not this team's to start from.
    if (!parent.ok() || parent->spec.team != spec.team)
      return InvalidArgument("warm_start.parents", "warm_start.parents: tuning job '" + p + "' not found");
    if (parent->spec.objective_metric != spec.objective_metric || parent->spec.direction != spec.direction)
      return InvalidArgument("warm_start.parents", "warm_start.parents: '" + p + "' optimizes another objective");
    if (!IsTerminal(parent->state.status))
      return InvalidArgument("warm_start.parents", "warm_start.parents: '" + p + "' has not finished");
    KILN_RETURN_IF_ERROR(CheckWarmStartParent(spec, parent->spec));
  }
  TuningJob job{spec, {}};
  job.state.created = clock_.NowMs();
  job.state.trial_salt = NewToken().substr(0, 16);  // 64 random bits
  KILN_RETURN_IF_ERROR(store_.CreateTuningJob(
      {spec.name, ToString(job.state.status), job.state.created, spec.ToJson().dump(), job.state.ToJson().dump()}));
  Status st = Tick(spec.name);  // first trials at once
  if (!st.ok()) fprintf(stderr, "kilnd: tuning %s: %s\n", spec.name.c_str(), st.ToString().c_str());
  return Get(spec.name);
}

Result<TuningJob> TuningService::Get(const std::string& name) {
  auto r = store_.GetTuningJob(name);
  if (!r.ok()) return r.status();
  return LoadTuningJob(*r);
}

Status TuningService::Stop(const std::string& name) {
  {
    auto lock = JobLock(name);
    std::lock_guard<std::mutex> l(*lock);
    auto job = Get(name);
    if (!job.ok()) return job.status();
    if (IsTerminal(job->state.status))
      return Status(Code::kFailedPrecondition,
                    "tuning job " + name + " has already ended (" + ToString(job->state.status) + ")");
    job->state.stop_requested = true;
    KILN_RETURN_IF_ERROR(Save(name, job->state));
  }
  return Tick(name);
}

Status TuningService::Save(const std::string& name, const TuningState& st) {
  return store_.UpdateTuningJob(name, ToString(st.status), st.ToJson().dump());
}

std::vector<double> TuningService::Curve(const Job& trial, const std::string& regex) {
  std::string path;
  for (const auto& in : trial.instances)
    if (in.index == 0 && in.attempt == trial.attempt && opts_.log_path) path = opts_.log_path(in.id);
  std::shared_ptr<CursorSlot> slot;
  {
    std::lock_guard<std::mutex> l(cursors_mu_);
    auto& s = cursors_[trial.id];
    if (!s) s = std::make_shared<CursorSlot>();
    slot = s;
  }
  std::lock_guard<std::mutex> l(slot->mu);
  LogCursor& c = slot->cursor;
  if (path.empty()) return c.values;
  if (c.path != path) c = LogCursor{path, 0, "", {}};  // a new attempt starts its curve again
  auto re = UserRegex::Compile(regex);                 // linear time in the line, whatever the pattern
  if (!re.ok()) return c.values;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return c.values;
  char buf[65536];
  ssize_t n;
  while ((n = pread(fd, buf, sizeof buf, static_cast<off_t>(c.offset))) > 0) {
    c.offset += static_cast<size_t>(n);
    c.partial.append(buf, static_cast<size_t>(n));
    size_t pos;
    while ((pos = c.partial.find('\n')) != std::string::npos) {
      std::string line = c.partial.substr(0, pos);
      c.partial.erase(0, pos + 1);
      auto value = line.size() <= 4096 ? re->FirstGroup(line) : std::nullopt;
      if (value) {
        char* end = nullptr;
        double d = strtod(value->c_str(), &end);
        if (end != value->c_str() && std::isfinite(d)) c.values.push_back(d);
      }
    }
    if (c.partial.size() > (1u << 20)) c.partial.clear();  // a runaway line is not a metric
  }
  close(fd);
  return c.values;
}

std::vector<double> StatsdObjectiveCurve(const std::vector<MetricPoint>& points, TimeMs since) {
  std::map<double, std::pair<TimeMs, double>> by_step;
  std::vector<std::pair<TimeMs, double>> untagged;
  for (const auto& p : points) {
    if (p.stat != "value" || p.time < since || !std::isfinite(p.value)) continue;
    std::optional<double> step;
    size_t pos = 0;
    while (pos <= p.tags.size()) {
      size_t end = p.tags.find(',', pos);
      if (end == std::string::npos) end = p.tags.size();
      std::string_view tag(p.tags.data() + pos, end - pos);
      for (std::string_view key : {"step:", "epoch:"}) {
        if (tag.substr(0, key.size()) != key) continue;
        std::string v(tag.substr(key.size()));
        char* stop = nullptr;
        double d = strtod(v.c_str(), &stop);
        if (!v.empty() && stop == v.c_str() + v.size() && std::isfinite(d)) step = d;
      }
      pos = end + 1;
    }
    if (!step) {
      untagged.emplace_back(p.time, p.value);
      continue;
    }
    auto [it, inserted] = by_step.try_emplace(*step, p.time, p.value);
    if (!inserted && p.time >= it->second.first) it->second = {p.time, p.value};
  }
  std::vector<double> curve;
  if (!by_step.empty()) {
    curve.reserve(by_step.size());
    for (const auto& [step, tv] : by_step) curve.push_back(tv.second);
    return curve;
  }
  std::stable_sort(untagged.begin(), untagged.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  curve.reserve(untagged.size());
  for (const auto& tv : untagged) curve.push_back(tv.second);
  return curve;
}

std::vector<double> TuningService::StatsdCurve(const Job& trial, const std::string& metric) {
  {
    std::lock_guard<std::mutex> l(cursors_mu_);
    auto done = statsd_final_.find(trial.id);
    if (done != statsd_final_.end()) return done->second;
  }
  // A retry starts its curve again: only points since its first instance launched.
  TimeMs since = 0;
  if (trial.attempt > 1)
    for (const auto& in : trial.instances)
      if (in.index == 0 && in.attempt == trial.attempt) since = in.launched_at;
  auto points = store_.JobMetrics(trial.id, metric);
  if (!points.ok()) return {};
  auto curve = StatsdObjectiveCurve(*points, since);
  // The gateway stores an instance's metrics before its exit is recorded, so an
  // ended trial's curve is final.
  if (IsTerminal(trial.status)) {
    std::lock_guard<std::mutex> l(cursors_mu_);
    statsd_final_[trial.id] = curve;
  }
  return curve;
}

Result<std::vector<TrialView>> TuningService::Trials(const TuningJob& job) {
  std::string regex;
  for (const auto& [n, re] : job.spec.trial.metric_definitions)
    if (n == job.spec.objective_metric) regex = re;
  std::vector<TrialView> out;
  ListQuery q;
  q.name_prefix = job.spec.name + "-";
  q.limit = 1000;
  q.order = ListOrder::kOldestFirst;
  for (;;) {
    auto page = store_.ListJobs(q);
    if (!page.ok()) return page.status();
    for (const auto& j : page->jobs) {
      if (j.spec.tuning_job != job.spec.name) continue;
      TrialView t;
      t.name = j.spec.name;
      t.index = TrialIndex(job.spec.name, t.name);
      t.status = j.status;
      t.hyperparameters = j.spec.hyperparameters;
      t.created = j.created_at;
      t.ended = j.ended_at;
      t.curve = job.spec.objective_source == ObjectiveSource::kStatsd ? StatsdCurve(j, job.spec.objective_metric)
                                                                      : Curve(j, regex);
      t.early_stopped = std::find(job.state.early_stopped.begin(), job.state.early_stopped.end(), t.name) !=
                        job.state.early_stopped.end();
      out.push_back(std::move(t));
    }
    if (page->next_page_token.empty()) break;
    q.page_token = page->next_page_token;
  }
  std::sort(out.begin(), out.end(), [](const TrialView& a, const TrialView& b) { return a.index < b.index; });
  return out;
}

std::vector<TrialView> TuningService::FinishedParentTrials(const std::string& parent) {
  std::lock_guard<std::mutex> l(parents_mu_);
  auto cached = parent_trials_.find(parent);
  if (cached != parent_trials_.end()) return cached->second;
  auto job = Get(parent);
  if (!job.ok() || !IsTerminal(job->state.status)) return {};
  auto trials = Trials(*job);
  if (!trials.ok()) return {};
  std::vector<TrialView> finished;
  for (auto& t : *trials)
    if (Objective(t)) finished.push_back(std::move(t));
  return parent_trials_.emplace(parent, std::move(finished)).first->second;
}

std::shared_ptr<std::mutex> TuningService::JobLock(const std::string& name) {
  std::lock_guard<std::mutex> l(locks_mu_);
  auto& m = job_locks_[name];
  if (!m) m = std::make_shared<std::mutex>();
  return m;
}

Status TuningService::Tick(const std::string& name) {
  auto lock = JobLock(name);
  std::lock_guard<std::mutex> l(*lock);
  auto job = Get(name);
  if (!job.ok()) return job.status();
  if (IsTerminal(job->state.status)) return Status::Ok();
  auto trials = Trials(*job);
  if (!trials.ok()) return trials.status();
  std::vector<TrialView> warm;
  for (const auto& p : job->spec.parents) {
    auto finished = FinishedParentTrials(p);
    warm.insert(warm.end(), finished.begin(), finished.end());
  }
  Decision d = Decide(*job, *trials, warm, clock_.NowMs());
  // State first: an early stop is remembered before the trial is stopped, so
  // its last value counts even if kilnd dies in between.
  TuningState st = job->state;
  for (const auto& n : d.early_stop) st.early_stopped.push_back(n);
  if (d.status) {
    st.status = *d.status;
    if (!d.reason.empty()) st.reason = d.reason;
    if (IsTerminal(st.status)) st.ended = clock_.NowMs();
  }
  if (!d.early_stop.empty() || d.status) KILN_RETURN_IF_ERROR(Save(name, st));
  for (const auto& n : d.early_stop) StopTrial(ctl_, name, n);
  for (const auto& n : d.stop) StopTrial(ctl_, name, n);
  if (IsTerminal(st.status)) return Status::Ok();
  for (const auto& launch : d.launch) {
    auto created = ctl_.CreateJob(TrialSpec(job->spec, launch));
    if (created.ok()) continue;
    if (created.status().code() != Code::kAlreadyExists) return created.status();
    // Created before a crash: fine. Taken by a job that is not this tuning
    // job's trial: the search cannot go on under its deterministic names.
    auto other = store_.GetJob(launch.name);
    if (other.ok() && other->spec.name == launch.name && other->spec.tuning_job != name) {
      st.status = TuningStatus::kFailed;
      st.reason = "trial name " + launch.name + " is taken by a job that is not a trial of this tuning job";
      st.ended = clock_.NowMs();
      for (const auto& t : *trials)
        if (!IsTerminal(t.status)) StopTrial(ctl_, name, t.name);
      return Save(name, st);
    }
  }
  return Status::Ok();
}

void TuningService::Loop() {
  int64_t seen = ctl_.version();
  while (!stop_) {
    seen = ctl_.WaitForChange(seen, opts_.tick_ms);
    if (stop_) break;
    for (int offset = 0;; offset += 100) {
      auto live = store_.ListTuningJobs("", "", 100, offset);
      if (!live.ok() || live->empty()) break;
      for (const auto& r : *live) {
        if (r.status != ToString(TuningStatus::kInProgress) && r.status != ToString(TuningStatus::kStopping)) continue;
        Status st = Tick(r.name);
        if (!st.ok()) fprintf(stderr, "kilnd: tuning %s: %s\n", r.name.c_str(), st.ToString().c_str());
      }
      if (live->size() < 100) break;
    }
  }
}

}  // namespace kiln::tuning
