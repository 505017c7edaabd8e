#pragma once
// Durable state: jobs, their instances and the ordered event log.
//
// Contract (every implementation):
//  - Thread-safe; calls may come from any thread.
//  - A call that returns Ok has been committed (survives a process crash).
//  - Event sequence numbers are assigned here: `seq` is global and strictly
//    increasing, `job_seq` is per job and strictly increasing from 1.
//  - Writes that belong together are one transaction: CreateJob writes the job and
//    its JobCreated event; CommitTransition writes the new job state, its instances
//    and marks the folded events applied.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/model.h"
#include "metrics/aggregator.h"

namespace kiln {

enum class ListOrder { kNewestFirst, kOldestFirst, kNameAsc, kNameDesc, kStatusAsc, kStatusDesc };

struct ListQuery {
  std::optional<JobStatus> status;
  std::optional<JobKind> kind;
  std::string name_contains;
  std::string name_prefix;    // e.g. a tuning job's trials
  std::string team;           // empty = every team
  TimeMs created_after = 0;   // exclusive; 0 = unbounded
  TimeMs created_before = 0;  // exclusive; 0 = unbounded
  ListOrder order = ListOrder::kNewestFirst;
  std::string tag_key, tag_value;  // both set: tag filter
  std::optional<WarmPoolStatus> warm_pool_status;
  int limit = 50;
  std::string page_token;  // opaque, from a previous page
};

struct JobPage {
  std::vector<Job> jobs;
  std::string next_page_token;  // empty: last page
};

// An API access key; the secret is sealed by the caller (SecretBox).
struct AccessKeyRecord {
  std::string id;
  std::string team;
  std::string role;  // a Role (auth/principal.h); "team" in keys made before roles = member
  std::string sealed_secret;
  TimeMs created = 0;
};

// An API token (bearer credential of the native API). Only the SHA-256 of its
// secret part is stored.
struct ApiTokenRecord {
  std::string id;
  std::string name;  // the user or service account it belongs to
  std::string team;
  std::string role;  // a Role (auth/principal.h)
  std::string hash;  // hex SHA-256 of the secret part
  TimeMs created = 0;
  TimeMs expires = 0;  // 0 = never
  TimeMs revoked = 0;  // 0 = not revoked
};

// One mutating request, as the audit log keeps it.
struct AuditRecord {
  int64_t seq = 0;  // assigned by the store
  TimeMs time = 0;
  std::string principal;  // token or key id; "" when unauthenticated
  std::string name;       // its user or service account
  std::string team;
  std::string method;
  std::string path;
  std::string source;  // the client's address
  int status = 0;      // the HTTP status answered
};

// A hyperparameter tuning job: its spec and its mutable state, as JSON documents
// owned by the tuning service. Trials are ordinary jobs.
struct TuningRecord {
  std::string name;
  std::string status;
  TimeMs created = 0;
  std::string spec;   // JSON
  std::string state;  // JSON
};

// A schedule (src/schedules): its definition and its state, as JSON documents
// owned by the scheduler. `version` counts state updates.
struct ScheduleRecord {
  std::string name;
  std::string team;
  TimeMs created = 0;
  std::string spec;   // JSON
  std::string state;  // JSON
  int64_t version = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // kAlreadyExists if another job has the same name; nothing is written then.
  virtual Status CreateJob(const Job& job, Event created) = 0;
  // Appends an event for an existing job. kAlreadyExists if its dedup_key was seen
  // (the event is then dropped); kNotFound if the job does not exist.
  virtual Result<Event> AppendEvent(Event e) = 0;
  // By id, or by name if no id matches. kNotFound otherwise.
  virtual Result<Job> GetJob(const std::string& id_or_name) = 0;
  virtual Result<JobPage> ListJobs(const ListQuery& q) = 0;
  // Events of `job_id` not yet folded into its state, in job_seq order.
  virtual Result<std::vector<Event>> UnappliedEvents(const std::string& job_id) = 0;
  // Saves `job` (and its instances) and marks `applied` folded, each with the job's
  // status after it. One transaction.
  virtual Status CommitTransition(const Job& job, const std::vector<Event>& applied) = 0;
  // Applied events after `after_seq` (global seq), or of one job after `after_job_seq`.
  virtual Result<std::vector<Event>> EventsAfter(int64_t after_seq, int limit) = 0;
  virtual Result<std::vector<Event>> JobEventsAfter(const std::string& job_id, int64_t after_job_seq, int limit) = 0;
  // Ids of jobs not in a terminal state, of jobs with unapplied events, and of
  // ended jobs whose warm pool is Available (its expiry is a timer).
  virtual Result<std::vector<std::string>> JobsNeedingAttention() = 0;
  virtual Result<std::vector<Instance>> ListInstances(const std::string& job_id) = 0;
  virtual Result<Instance> GetInstance(const std::string& instance_id) = 0;
  // Metric series (StatsD gateway flushes, log regexes later). One transaction.
  virtual Status AppendMetricPoints(const std::vector<MetricPoint>& points) = 0;
  // Deletes at most `max` metric points older than `before` (retention); returns
  // how many went. Callers repeat until it returns fewer than `max`.
  virtual Result<int64_t> PruneMetricPoints(TimeMs before, int64_t max) = 0;
  // Deletes at most `max` events older than `before` of jobs that have ended
  // (event retention); the jobs themselves, their final state and instances stay.
  // Events of jobs not ended are never pruned: their state is folded from them.
  virtual Result<int64_t> PruneEvents(TimeMs before, int64_t max) = 0;
  // Points of one job, oldest first; `name` empty = all series.
  virtual Result<std::vector<MetricPoint>> JobMetrics(const std::string& job_id, const std::string& name) = 0;

  // Adds or replaces `add` and removes `remove` keys of a job's tags, atomically.
  // Later transitions keep them. kNotFound if the job does not exist.
  virtual Status UpdateTags(const std::string& job_id, const std::map<std::string, std::string>& add,
                            const std::vector<std::string>& remove) = 0;

  // kAlreadyExists if the name is taken.
  virtual Status CreateTuningJob(const TuningRecord& t) = 0;
  // kNotFound if absent.
  virtual Result<TuningRecord> GetTuningJob(const std::string& name) = 0;
  // Replaces status and state. kNotFound if absent.
  virtual Status UpdateTuningJob(const std::string& name, const std::string& status, const std::string& state) = 0;
  // Adds or replaces `add` and removes `remove` keys of the "tags" object of a
  // tuning job's stored spec, atomically (one transaction). kNotFound if absent.
  virtual Status UpdateTuningTags(const std::string& name, const std::map<std::string, std::string>& add,
                                  const std::vector<std::string>& remove) = 0;
  // Newest first; `name_contains`/`status` empty = any. `offset` pages.
  virtual Result<std::vector<TuningRecord>> ListTuningJobs(const std::string& name_contains, const std::string& status,
                                                           int limit, int offset) = 0;

  // kAlreadyExists if the id is taken.
  virtual Status PutAccessKey(const AccessKeyRecord& k) = 0;
  virtual Result<AccessKeyRecord> GetAccessKey(const std::string& id) = 0;
  // `team` empty = all teams.
  virtual Result<std::vector<AccessKeyRecord>> ListAccessKeys(const std::string& team) = 0;
  // kNotFound if absent.
  virtual Status DeleteAccessKey(const std::string& id) = 0;

  // kAlreadyExists if the id is taken.
  virtual Status PutApiToken(const ApiTokenRecord& t) = 0;
  // kNotFound if absent.
  virtual Result<ApiTokenRecord> GetApiToken(const std::string& id) = 0;
  // `team` empty = all teams; oldest first.
  virtual Result<std::vector<ApiTokenRecord>> ListApiTokens(const std::string& team) = 0;
  // Sets revoked (once; a second revoke keeps the first time). kNotFound if absent.
  virtual Status RevokeApiToken(const std::string& id, TimeMs now) = 0;

  // Appends to the audit log; returns the record's seq.
  virtual Result<int64_t> AppendAudit(const AuditRecord& r) = 0;
  // Records after `after_seq`, oldest first; `team` empty = all teams.
  virtual Result<std::vector<AuditRecord>> ListAudit(int64_t after_seq, const std::string& team, int limit) = 0;

  // kAlreadyExists if the name is taken.
  virtual Status CreateSchedule(const ScheduleRecord& s) = 0;
  // kNotFound if absent.
  virtual Result<ScheduleRecord> GetSchedule(const std::string& name) = 0;
  // By name; `team` empty = every team's.
  virtual Result<std::vector<ScheduleRecord>> ListSchedules(const std::string& team) = 0;
  // Replaces the state if the stored version is still `version` (then version + 1);
  // kFailedPrecondition if it moved on, kNotFound if absent.
  virtual Status UpdateScheduleState(const std::string& name, int64_t version, const std::string& state) = 0;
  // kNotFound if absent.
  virtual Status DeleteSchedule(const std::string& name) = 0;

  // Secrets hold sealed (encrypted) values only; the store never sees plaintext.
  virtual Status PutSecret(const std::string& team, const std::string& name, const std::string& sealed, TimeMs now) = 0;
  // kNotFound if absent.
  virtual Result<std::string> GetSecret(const std::string& team, const std::string& name) = 0;
  virtual Result<std::vector<std::pair<std::string, TimeMs>>> ListSecrets(const std::string& team) = 0;
  // kNotFound if absent.
  virtual Status DeleteSecret(const std::string& team, const std::string& name) = 0;
};

enum class Durability {
  kFull,    // fsync every commit (synchronous=FULL)
  kNormal,  // WAL synchronous=NORMAL: survives process crashes, may lose the last commits on power loss
};

// Opens (creating and migrating as needed) the SQLite database at `path`
// (":memory:" for tests).
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, Durability d = Durability::kNormal);

}  // namespace kiln
