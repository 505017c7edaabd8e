#include "schedules/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "common/status.h"

namespace kiln::schedules {

using nlohmann::json;

const char* ToString(Overlap o) {
  switch (o) {
    case Overlap::kSkip:
      return "skip";
    case Overlap::kQueue:
      return "queue";
    case Overlap::kReplace:
      return "replace";
  }
  return "?";
}

namespace {

std::optional<Overlap> ParseOverlap(const std::string& s) {
  for (auto o : {Overlap::kSkip, Overlap::kQueue, Overlap::kReplace})
    if (s == ToString(o)) return o;
  return std::nullopt;
}

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > kMaxScheduleName || n.front() == '-' || n.back() == '-') return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

void AddRun(State& s, Run r) {
  s.history.push_back(std::move(r));
  if (s.history.size() > kMaxHistory) s.history.erase(s.history.begin());
}

}  // namespace

json ToJson(const State& s) {
  json h = json::array();
  for (const auto& r : s.history) {
    json x = {{"slot_ms", r.slot}, {"slot", FormatTime(r.slot)}, {"outcome", r.outcome}, {"at_ms", r.at}};
    if (!r.job_id.empty()) {
      x["job_id"] = r.job_id;
      x["job_name"] = r.job_name;
    }
    if (!r.message.empty()) x["message"] = r.message;
    h.push_back(x);
  }
  return {{"next_slot_ms", s.next_slot}, {"last_job_id", s.last_job_id}, {"waiting", s.waiting}, {"history", h}};
}

State StateFromJson(const json& j) {
  State s;
  if (!j.is_object()) return s;
  s.next_slot = j.value("next_slot_ms", TimeMs{0});
  s.last_job_id = j.value("last_job_id", "");
  s.waiting = j.value("waiting", false);
  if (j.contains("history") && j["history"].is_array())
    for (const auto& x : j["history"]) {
      if (!x.is_object()) continue;
      s.history.push_back({x.value("slot_ms", TimeMs{0}), x.value("outcome", ""), x.value("job_id", ""),
                           x.value("job_name", ""), x.value("message", ""), x.value("at_ms", TimeMs{0})});
    }
  return s;
}

std::string Scheduler::RunName(const std::string& schedule, TimeMs slot) {
  const time_t secs = static_cast<time_t>(slot / 1000);
  struct tm t {};
  gmtime_r(&secs, &t);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y%m%d%H%M%S", &t);
  return schedule + "-" + buf;
}

Scheduler::Scheduler(Store& store, Clock& clock, TimerService& timers, Options opts)
    : store_(store), clock_(clock), timers_(timers), opts_(std::move(opts)) {}

Status Scheduler::Start() {
  auto all = store_.ListSchedules("");
  if (!all.ok()) return all.status();
  for (const auto& rec : *all) {
    auto state = json::parse(rec.state, nullptr, false);
    Arm(rec.name, StateFromJson(state).next_slot);  // a due one fires at once
  }
  return Status::Ok();
}

void Scheduler::Arm(const std::string& name, TimeMs at) {
  timers_.Schedule(at, StrCat("sched:", name, ":", std::to_string(at)), [this, name] { Fire(name); });
  if (!opts_.prewarm) return;
  auto rec = store_.GetSchedule(name);
  if (!rec.ok()) return;
  const json spec = json::parse(rec->spec, nullptr, false);
  const json prewarm = spec.is_object() ? spec.value("prewarm", json()) : json();
  if (!prewarm.is_object() || !prewarm.value("seconds", json(0)).is_number_integer()) return;
  const TimeMs lead = prewarm.value("seconds", int64_t{0}) * 1000;
  if (lead <= 0) return;
  const TimeMs when = std::max(clock_.NowMs(), at - lead);
  timers_.Schedule(when, StrCat("sched-prewarm:", name, ":", std::to_string(at)), [this, name, at] {
    auto now = store_.GetSchedule(name);  // deleted, or its slot moved on: nothing to warm
    if (!now.ok() || StateFromJson(json::parse(now->state, nullptr, false)).next_slot != at) return;
    const json s = json::parse(now->spec, nullptr, false);
    const json job = s.is_object() ? s.value("job", json::object()) : json::object();
    std::vector<std::string> preload;
    for (const auto& m : s.value("prewarm", json::object()).value("preload", json::array()))
      if (m.is_string()) preload.push_back(m.get<std::string>());
    opts_.prewarm(job, at + kPrewarmHoldMs, preload);
  });
}

namespace {

// A schedule's "prewarm": {"seconds": 1..3600, "preload"?: [module names]}.
Status CheckPrewarm(const json& p) {
  if (!p.is_object()) return InvalidArgument("prewarm", "an object: seconds, preload");
  for (auto it = p.begin(); it != p.end(); ++it)
    if (it.key() != "seconds" && it.key() != "preload")
      return InvalidArgument("prewarm." + it.key(), "unknown field (seconds, preload)");
  if (!p.contains("seconds") || !p["seconds"].is_number_integer() || p["seconds"].get<int64_t>() < 1 ||
      p["seconds"].get<int64_t>() > 3600)
    return InvalidArgument("prewarm.seconds", "required: how long before each slot to warm a sandbox, 1..3600");
  const json preload = p.value("preload", json::array());
  if (!preload.is_array() || preload.size() > 32)
    return InvalidArgument("prewarm.preload", "a list of up to 32 modules");
  for (const auto& m : preload) {
    const std::string name = m.is_string() ? m.get<std::string>() : "";
    if (name.empty() || name.size() > 128 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != std::string::npos)
      return InvalidArgument("prewarm.preload", "module names: letters, digits, _ and .");
  }
  return Status::Ok();
}

}  // namespace

Result<ScheduleRecord> Scheduler::Create(const json& body, const Principal& who) {
  if (!body.is_object()) return InvalidArgument("", "a schedule is an object: name, cron, overlap, job");
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "name" && it.key() != "cron" && it.key() != "overlap" && it.key() != "job" && it.key() != "prewarm")
      return InvalidArgument(it.key(), "unknown field (name, cron, overlap, job, prewarm)");
  if (body.contains("prewarm")) KILN_RETURN_IF_ERROR(CheckPrewarm(body["prewarm"]));
  if (!body.contains("name") || !body["name"].is_string() || !ValidName(body["name"].get<std::string>()))
    return InvalidArgument("name", "required: 1-40 letters, digits and inner hyphens");
  const std::string name = body["name"];
  if (!body.contains("cron") || !body["cron"].is_string())
    return InvalidArgument("cron", "required: a cron expression (\"*/15 * * * *\", \"@hourly\", \"@every 90s\")");
  auto cron = Cron::Parse(body["cron"].get<std::string>());
  if (!cron.ok()) return cron.status();
  Overlap overlap = Overlap::kSkip;
  if (body.contains("overlap")) {
    auto o = body["overlap"].is_string() ? ParseOverlap(body["overlap"].get<std::string>()) : std::nullopt;
    if (!o) return InvalidArgument("overlap", "must be skip, queue or replace");
    overlap = *o;
  }
  if (!body.contains("job") || !body["job"].is_object()) return InvalidArgument("job", "required: a job spec");
  json job = body["job"];
  if (job.contains("name")) return InvalidArgument("job.name", "set by the schedule: <schedule>-<slot time>");
  if (!job.contains("team")) job["team"] = who.team;
  if (!job["team"].is_string()) return InvalidArgument("job.team", "must be a string");
  const std::string team = job["team"];
  if (!who.May(Role::kMember, team))
    return Status(Code::kPermissionDenied, who.name + " may not schedule jobs for team " + team, "job.team");
  const TimeMs now = clock_.NowMs();
  const TimeMs next = cron->Next(now);
  if (next == 0) return InvalidArgument("cron", "names no time in the next five years");
  if (opts_.validate) {
    json probe = job;
    probe["name"] = RunName(name, next);
    Status st = opts_.validate(probe);
    if (!st.ok()) return Status(st.code(), st.message(), st.field().empty() ? "job" : "job." + st.field());
  }
  ScheduleRecord rec;
  rec.name = name;
  rec.team = team;
  rec.created = now;
  json stored = {
      {"name", name}, {"cron", cron->text()}, {"overlap", ToString(overlap)}, {"job", job}, {"owner", who.name}};
  if (body.contains("prewarm")) stored["prewarm"] = body["prewarm"];
  rec.spec = stored.dump();
  State state;
  state.next_slot = next;
  rec.state = ToJson(state).dump();
  KILN_RETURN_IF_ERROR(store_.CreateSchedule(rec));
  Arm(name, next);
  return rec;
}

Status Scheduler::Delete(const std::string& name) {
  return store_.DeleteSchedule(name);  // its armed timer finds nothing and ends
}

void Scheduler::JobChanged(const std::string& job_id) {
  std::string name;
  {
    MutexLock l(waiting_mu_);
    auto it = waiting_on_.find(job_id);
    if (it == waiting_on_.end()) return;
    name = it->second;
    waiting_on_.erase(it);
  }
  // Not on the caller's (the controller's) thread.
  timers_.Schedule(clock_.NowMs(), StrCat("sched-wake:", name, ":", job_id), [this, name] { Fire(name); });
}

void Scheduler::Fire(const std::string& name) {
  MutexLock l(mu_);
  for (int tries = 0; tries < 5; ++tries) {
    auto rec = store_.GetSchedule(name);
    if (!rec.ok()) return;  // deleted
    const json spec = json::parse(rec->spec, nullptr, false);
    auto cron = Cron::Parse(spec.is_object() ? spec.value("cron", "") : "");
    if (!cron.ok()) {
      fprintf(stderr, "kilnd: schedule %s: stored cron unreadable: %s\n", name.c_str(),
              cron.status().ToString().c_str());
      return;
    }
    State state = StateFromJson(json::parse(rec->state, nullptr, false));
    const TimeMs now = clock_.NowMs();
    if (state.next_slot > now) {
      Arm(name, state.next_slot);
      return;
    }
    HandleSlot(*rec, spec, *cron, state, now);
    Status st = store_.UpdateScheduleState(name, rec->version, ToJson(state).dump());
    if (st.ok()) {
      if (state.waiting) {
        {
          MutexLock w(waiting_mu_);
          waiting_on_[state.last_job_id] = name;
        }
        // It may have ended before it was in waiting_on_, unseen by JobChanged.
        if (auto prev = store_.GetJob(state.last_job_id); !prev.ok() || IsTerminal(prev->status))
          JobChanged(state.last_job_id);
      } else if (state.next_slot > 0) {
        Arm(name, state.next_slot);
      }
      return;
    }
    if (st.code() != Code::kFailedPrecondition) {
      fprintf(stderr, "kilnd: schedule %s: %s\n", name.c_str(), st.ToString().c_str());
      return;
    }
  }
}

void Scheduler::HandleSlot(const ScheduleRecord& rec, const json& spec, const Cron& cron, State& state, TimeMs now) {
  // Slots that passed unhandled: all but the latest are recorded as Missed.
  TimeMs slot = state.next_slot, first_missed = 0;
  int64_t missed = 0;
  for (TimeMs n = cron.Next(slot); n != 0 && n <= now && missed < 100000; n = cron.Next(slot)) {
    if (missed++ == 0) first_missed = slot;
    slot = n;
  }
  if (missed > 0)
    AddRun(state, {first_missed, "Missed", "", "",
                   StrCat(std::to_string(missed), " slot(s) from ", FormatTime(first_missed), " passed before ",
                          FormatTime(slot), " could run (kilnd was down or the schedule waited); only the latest runs"),
                   now});
  state.next_slot = slot;
  const std::string run = RunName(rec.name, slot);
  auto started = [&](const Job& job, const std::string& message) {
    AddRun(state, {slot, "Started", job.id, job.spec.name, message, now});
    state.last_job_id = job.id;
    state.waiting = false;
    state.next_slot = cron.Next(slot);
  };
  // A job for this slot exists already: kilnd stopped after creating it.
  if (auto existing = store_.GetJob(run); existing.ok() && existing->spec.name == run)
    return started(*existing, "recovered after a restart");
  const Overlap overlap = ParseOverlap(spec.value("overlap", "skip")).value_or(Overlap::kSkip);
  std::string message;
  if (!state.last_job_id.empty()) {
    auto prev = store_.GetJob(state.last_job_id);
    if (prev.ok() && !IsTerminal(prev->status)) {
      if (overlap == Overlap::kSkip) {
        AddRun(state, {slot, "Skipped", "", "",
                       StrCat("the previous run ", prev->spec.name, " is still ", ToString(prev->status)), now});
        state.next_slot = cron.Next(slot);
        return;
      }
      if (overlap == Overlap::kQueue) {
        state.waiting = true;  // this slot runs when the previous run ends
        return;
      }
      if (opts_.stop) (void)opts_.stop(prev->id);
      message = StrCat("stopped the previous run ", prev->spec.name, " (overlap: replace)");
    } else if (state.waiting) {
      message = "after the previous run ended (overlap: queue)";
    }
  }
  json job = spec.value("job", json::object());
  job["name"] = run;
  Principal who{"schedule:" + rec.name, spec.value("owner", ""), rec.team, Role::kMember, Credential::kApiToken};
  auto created = opts_.submit ? opts_.submit(job.dump(), who) : Result<Job>(Status(Code::kInternal, "no submit"));
  if (created.ok()) return started(*created, message);
  if (created.status().code() == Code::kAlreadyExists) {
    if (auto existing = store_.GetJob(run); existing.ok()) return started(*existing, message);
  }
  AddRun(state, {slot, "Failed", "", "", created.status().ToString(), now});
  state.waiting = false;
  state.next_slot = cron.Next(slot);
}

}  // namespace kiln::schedules
