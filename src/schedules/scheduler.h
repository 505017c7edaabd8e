#pragma once
// Schedules: a job spec submitted on a cron schedule (kiln schedules, /v1/schedules).
//
// A schedule is {name, cron, overlap, job} and belongs to a team. Each slot's job
// is named "<schedule>-<slot as yyyymmddhhmmss, UTC>", so a slot runs at most
// once: a kilnd that crashed after creating the job and before recording the
// slot finds the job by name when it handles the slot again. Slots that passed
// while kilnd was down are recorded as Missed (one history entry) and only the
// latest of them runs; none is silently skipped.
//
// Overlap, when the previous run is still in progress at a slot:
//   skip    - the slot is recorded as Skipped;
//   queue   - the slot waits and runs when the previous run ends (slots that
//             pass meanwhile are recorded as Missed);
//   replace - the previous run is stopped and the slot's job starts.
//
// Each run is submitted through `submit` (the native API's own path: the same
// validation, team checks and quotas) as the schedule's owner with the member
// role in its team. The state (next slot, last run, waiting, the last 100
// history entries) is stored with the schedule and updated by version.
//
// Thread-safe. Timers run Fire; the controller's job-change hook calls JobEnded.
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "auth/principal.h"
#include "common/clock.h"
#include "common/thread_annotations.h"
#include "controller/timers.h"
#include "jobs/model.h"
#include "schedules/cron.h"
#include "store/store.h"

namespace kiln::schedules {

enum class Overlap { kSkip, kQueue, kReplace };
const char* ToString(Overlap o);

inline constexpr size_t kMaxScheduleName = 40;  // + "-" + 14 digits stays within a job name's 63
inline constexpr size_t kMaxHistory = 100;

struct Run {
  TimeMs slot = 0;
  std::string outcome;  // Started | Skipped | Missed | Failed
  std::string job_id, job_name;
  std::string message;
  TimeMs at = 0;  // when it was recorded
};

struct State {
  TimeMs next_slot = 0;
  std::string last_job_id;   // the latest run's job
  bool waiting = false;      // queue: next_slot waits for last_job_id to end
  std::vector<Run> history;  // newest last, at most kMaxHistory
};
nlohmann::json ToJson(const State& s);
State StateFromJson(const nlohmann::json& j);

struct Options {
  // Submits a job body (native spec JSON) as `who`: NativeApi::Submit.
  std::function<Result<Job>(const std::string& body, const Principal& who)> submit;
  // Stops a job (overlap: replace): Controller::StopJob.
  std::function<Result<Job>(const std::string& id)> stop;
  // Validates a run's job body (its name set) without submitting it: ParseSpec
  // against kilnd's catalog. Ok or kInvalidArgument naming the field.
  std::function<Status(const nlohmann::json& job)> validate;
  // Pre-warming: asks the backend for a warm sandbox for a job like `job` (the
  // run's spec), kept until `until_ms`, its runtime importing `preload`.
  // Unset: schedules' "prewarm" does nothing.
  std::function<void(const nlohmann::json& job, TimeMs until_ms, const std::vector<std::string>& preload)> prewarm;
};
// How long past its slot a pre-warmed sandbox waits for the run.
inline constexpr TimeMs kPrewarmHoldMs = 60000;

class Scheduler {
 public:
  Scheduler(Store& store, Clock& clock, TimerService& timers, Options opts);

  // Arms every stored schedule's next slot (a slot already due fires at once).
  Status Start();
  // Validates and stores a schedule: {"name", "cron", "overlap"?: skip|queue|replace,
  // "job": native spec without "name", "prewarm"?: {"seconds": 1..3600,
  // "preload"?: [module, ...]}}. With prewarm, each slot's sandbox is
  // asked for `seconds` before the slot (Options::prewarm). The job's team is the caller's unless
  // it names one the caller is a member of. kInvalidArgument naming the field.
  Result<ScheduleRecord> Create(const nlohmann::json& body, const Principal& who);
  Status Delete(const std::string& name);
  // Handles the schedule's due slot, if any, and arms the next one.
  void Fire(const std::string& name) EXCLUDES(mu_);
  // A job changed: a schedule queued behind it runs now.
  void JobChanged(const std::string& job_id) EXCLUDES(waiting_mu_);
  // The job name of a slot.
  static std::string RunName(const std::string& schedule, TimeMs slot);

 private:
  void Arm(const std::string& name, TimeMs at);
  // The slot's run; fills `state` (history, last job, next slot or waiting).
  void HandleSlot(const ScheduleRecord& rec, const nlohmann::json& spec, const Cron& cron, State& state, TimeMs now)
      REQUIRES(mu_);
  Store& store_;
  Clock& clock_;
  TimerService& timers_;
  Options opts_;
  Mutex mu_;  // one slot decision at a time
  // Apart from mu_: JobChanged runs on the controller's thread for every job
  // change and must not wait for a submission in progress.
  Mutex waiting_mu_;
  std::map<std::string, std::string> waiting_on_ GUARDED_BY(waiting_mu_);  // job id -> schedule queued behind it
};

}  // namespace kiln::schedules
