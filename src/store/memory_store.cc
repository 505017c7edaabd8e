// In-memory fake of Store (see memory_store.h). Every method mirrors the SQL of
// sqlite_store.cc; where SQLite keeps a column apart from the job's JSON state
// (name, created_ms, kind, the instance's job_id) this fake keeps it apart too.
#include "store/memory_store.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/check.h"
#include "common/thread_annotations.h"
#include "store/page_token.h"

namespace kiln {
namespace {

// SQL LIMIT: negative means no limit.
size_t SqlLimit(int64_t limit) {
  return limit < 0 ? std::numeric_limits<size_t>::max() : static_cast<size_t>(limit);
}

class MemoryStore final : public Store {
 public:
  Status CreateJob(const Job& job, Event created) override {
    MutexLock l(mu_);
    if (jobs_.count(job.id) || id_by_name_.count(job.spec.name))
      return Status(Code::kAlreadyExists, "a job named '" + job.spec.name + "' already exists", "name");
    // The JobCreated event is part of the transaction: check it before writing.
    if (!created.dedup_key.empty() && dedup_keys_.count(created.dedup_key))
      return Status(Code::kAlreadyExists, "duplicate event " + created.dedup_key);
    JobRecord& rec = jobs_[job.id];
    rec.job = job;
    rec.name = job.spec.name;
    rec.created_ms = job.created_at;
    rec.kind = job.spec.kind;
    id_by_name_[rec.name] = job.id;
    by_created_[{rec.created_ms, job.id}] = &rec;
    created.job_id = job.id;
    auto appended = AppendLocked(std::move(created));
    KILN_CHECK(appended.ok(), "appending a checked JobCreated event to a new job cannot fail");
    return Status::Ok();
  }

  Result<Event> AppendEvent(Event e) override {
    MutexLock l(mu_);
    return AppendLocked(std::move(e));
  }

  Result<Job> GetJob(const std::string& id_or_name) override {
    MutexLock l(mu_);
    const JobRecord* rec = FindByIdOrName(id_or_name);
    if (rec == nullptr) return NotFound("job '" + id_or_name + "' not found");
    return rec->job;
  }

  Result<JobPage> ListJobs(const ListQuery& q) override {
    auto cursor = ParsePageToken(q);
    if (!cursor.ok()) return cursor.status();
    const bool keyset = cursor->keyset;
    const int64_t offset = cursor->offset;
    const TimeMs tok_ms = cursor->created_ms;
    const std::string& tok_id = cursor->id;
    const size_t limit = q.limit <= 0 ? 50 : static_cast<size_t>(std::min(q.limit, 1000));

    MutexLock l(mu_);
    std::vector<const JobRecord*> rows;  // up to limit + 1, in order
    if (keyset) {
      const std::pair<TimeMs, std::string> tok{tok_ms, tok_id};
      if (q.order == ListOrder::kNewestFirst) {
        auto it = q.page_token.empty() ? by_created_.end() : by_created_.lower_bound(tok);
        while (it != by_created_.begin() && rows.size() <= limit) {
          --it;
          if (Matches(*it->second, q)) rows.push_back(it->second);
        }
      } else {
        auto it = q.page_token.empty() ? by_created_.begin() : by_created_.upper_bound(tok);
        for (; it != by_created_.end() && rows.size() <= limit; ++it)
          if (Matches(*it->second, q)) rows.push_back(it->second);
      }
    } else {
      std::vector<const JobRecord*> all;
      for (const auto& [id, rec] : jobs_)
        if (Matches(rec, q)) all.push_back(&rec);
      SortRows(q.order, all);
      const size_t skip = std::min(static_cast<size_t>(offset), all.size());
      const size_t take = std::min(all.size() - skip, limit + 1);
      rows.assign(all.begin() + static_cast<std::ptrdiff_t>(skip),
                  all.begin() + static_cast<std::ptrdiff_t>(skip + take));
    }
    JobPage page;
    if (rows.size() > limit) {
      rows.pop_back();
      const JobRecord& last = *rows.back();
      page.next_page_token = keyset ? KeysetPageToken(last.created_ms, last.job.id)
                                    : OffsetPageToken(offset + static_cast<int64_t>(limit));
    }
    page.jobs.reserve(rows.size());
    for (const JobRecord* r : rows) page.jobs.push_back(r->job);
    return page;
  }

  Result<std::vector<Event>> UnappliedEvents(const std::string& job_id) override {
    MutexLock l(mu_);
    std::vector<Event> out;
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return out;
    out.reserve(it->second.unapplied.size());
    for (int64_t seq : it->second.unapplied) out.push_back(EventAt(seq).event);
    return out;
  }

  Status CommitTransition(const Job& job, const std::vector<Event>& applied) override {
    MutexLock l(mu_);
    // Like SQLite's UPDATE, an unknown job id saves no job state but the instances
    // and event marks below are still written.
    if (auto it = jobs_.find(job.id); it != jobs_.end()) {
      // Tags change through UpdateTags only: keep the stored ones.
      std::map<std::string, std::string> tags = std::move(it->second.job.spec.tags);
      it->second.job = job;
      it->second.job.spec.tags = std::move(tags);
    }
    for (const Instance& in : job.instances) {
      auto [pos, inserted] = instance_index_.try_emplace(in.id, instances_.size());
      if (inserted) {
        // The job_id column is written once, from the instance itself.
        instances_.push_back({in, in.job_id});
        instances_by_job_[in.job_id].push_back(pos->second);
      } else {
        instances_[pos->second].instance = in;
      }
    }
    for (const Event& e : applied) {
      if (e.seq < 1 || e.seq > static_cast<int64_t>(events_.size())) continue;  // no such row
      EventRecord& rec = EventAt(e.seq);
      rec.event.status_after = e.status_after;
      rec.event.secondary_after = e.secondary_after;
      if (!rec.applied) {
        rec.applied = true;
        unapplied_.erase(e.seq);
        jobs_.at(rec.event.job_id).unapplied.erase(e.seq);
      }
    }
    return Status::Ok();
  }

  Result<std::vector<Event>> EventsAfter(int64_t after_seq, int limit) override {
    MutexLock l(mu_);
    // Stops at the first unapplied event so the stream never skips one that a
    // later commit marks applied.
    std::vector<Event> out;
    const int64_t size = static_cast<int64_t>(events_.size());
    if (after_seq >= size) return out;
    auto first_unapplied = unapplied_.upper_bound(after_seq);
    const int64_t end = first_unapplied == unapplied_.end() ? size + 1 : *first_unapplied;
    const size_t max = SqlLimit(limit);
    for (int64_t seq = std::max<int64_t>(after_seq, 0) + 1; seq < end && out.size() < max; ++seq)
      if (!EventAt(seq).pruned) out.push_back(EventAt(seq).event);
    return out;
  }

  Result<std::vector<Event>> JobEventsAfter(const std::string& job_id, int64_t after_job_seq, int limit) override {
    MutexLock l(mu_);
    std::vector<Event> out;
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return out;
    const std::vector<int64_t>& seqs = it->second.seqs;  // index i holds job_seq i + 1
    const size_t max = SqlLimit(limit);
    for (size_t i = static_cast<size_t>(std::clamp<int64_t>(after_job_seq, 0, static_cast<int64_t>(seqs.size())));
         i < seqs.size() && out.size() < max; ++i) {
      const EventRecord& rec = EventAt(seqs[i]);
      if (rec.applied && !rec.pruned) out.push_back(rec.event);
    }
    return out;
  }

  Result<std::vector<std::string>> JobsNeedingAttention() override {
    MutexLock l(mu_);
    // Sorted by id and distinct, as SQLite's UNION returns them.
    std::vector<std::string> out;
    for (const auto& [id, rec] : jobs_)
      if (rec.job.status == JobStatus::kInProgress || rec.job.status == JobStatus::kStopping ||
          rec.job.warm_pool.status == WarmPoolStatus::kAvailable || !rec.unapplied.empty())
        out.push_back(id);
    return out;
  }

  Result<std::vector<Instance>> ListInstances(const std::string& job_id) override {
    MutexLock l(mu_);
    constexpr size_t kMax = 1000;
    std::vector<Instance> out;
    if (job_id.empty()) {
      for (auto it = instances_.rbegin(); it != instances_.rend() && out.size() < kMax; ++it)
        out.push_back(it->instance);
      return out;
    }
    auto it = instances_by_job_.find(job_id);
    if (it == instances_by_job_.end()) return out;
    for (auto i = it->second.rbegin(); i != it->second.rend() && out.size() < kMax; ++i)
      out.push_back(instances_[*i].instance);
    return out;
  }

  Result<Instance> GetInstance(const std::string& instance_id) override {
    MutexLock l(mu_);
    auto it = instance_index_.find(instance_id);
    if (it == instance_index_.end()) return NotFound("instance '" + instance_id + "' not found");
    return instances_[it->second].instance;
  }

  Status AppendMetricPoints(const std::vector<MetricPoint>& points) override {
    MutexLock l(mu_);
    // SQLite stores NaN as NULL, which the NOT NULL value column refuses: the whole
    // batch fails.
    for (const auto& p : points)
      if (std::isnan(p.value)) return Internal("metric point " + p.name + " of job " + p.job_id + " is NaN");
    for (const auto& p : points) metrics_[p.job_id].push_back(p);
    return Status::Ok();
  }

  Result<int64_t> PruneEvents(TimeMs before, int64_t max) override {
    MutexLock l(mu_);
    int64_t n = 0;
    for (int64_t seq = 1; seq <= static_cast<int64_t>(events_.size()) && n < max; ++seq) {
      EventRecord& rec = EventAt(seq);
      if (rec.pruned || !rec.applied || rec.event.time >= before) continue;
      auto job = jobs_.find(rec.event.job_id);
      if (job == jobs_.end() || !IsTerminal(job->second.job.status)) continue;
      if (!rec.event.dedup_key.empty()) dedup_keys_.erase(rec.event.dedup_key);
      rec.event = Event{};
      rec.pruned = true;
      ++n;
    }
    return n;
  }

  Result<int64_t> PruneMetricPoints(TimeMs before, int64_t max) override {
    MutexLock l(mu_);
    int64_t n = 0;
    for (auto& [job, points] : metrics_) {
      auto old = [&](const MetricPoint& p) {
        if (p.time >= before || n >= max) return false;
        ++n;
        return true;
      };
      points.erase(std::remove_if(points.begin(), points.end(), old), points.end());
    }
    return n;
  }

  Result<std::vector<MetricPoint>> JobMetrics(const std::string& job_id, const std::string& name) override {
    MutexLock l(mu_);
    std::vector<MetricPoint> out;
    auto it = metrics_.find(job_id);
    if (it == metrics_.end()) return out;
    for (const auto& p : it->second)
      if (name.empty() || p.name == name) out.push_back(p);
    std::stable_sort(out.begin(), out.end(), [](const MetricPoint& a, const MetricPoint& b) {
      return std::tie(a.name, a.tags, a.stat, a.time) < std::tie(b.name, b.tags, b.stat, b.time);
    });
    constexpr size_t kMax = 100000;
    if (out.size() > kMax) out.resize(kMax);
    return out;
  }

  Status UpdateTags(const std::string& job_id, const std::map<std::string, std::string>& add,
                    const std::vector<std::string>& remove) override {
    MutexLock l(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return NotFound("job '" + job_id + "' not found");
    auto& tags = it->second.job.spec.tags;
    for (const auto& k : remove) tags.erase(k);
    for (const auto& [k, v] : add) tags[k] = v;
    return Status::Ok();
  }

  Status CreateSchedule(const ScheduleRecord& r) override {
    MutexLock l(mu_);
    ScheduleRecord stored = r;
    stored.version = 0;
    if (!schedules_.try_emplace(r.name, stored).second)
      return Status(Code::kAlreadyExists, "a schedule named '" + r.name + "' already exists", "name");
    return Status::Ok();
  }

  Result<ScheduleRecord> GetSchedule(const std::string& name) override {
    MutexLock l(mu_);
    auto it = schedules_.find(name);
    if (it == schedules_.end()) return NotFound("schedule '" + name + "' not found");
    return it->second;
  }

  Result<std::vector<ScheduleRecord>> ListSchedules(const std::string& team) override {
    MutexLock l(mu_);
    std::vector<ScheduleRecord> out;
    for (const auto& [n, s] : schedules_)
      if (team.empty() || s.team == team) out.push_back(s);
    return out;
  }

  Status UpdateScheduleState(const std::string& name, int64_t version, const std::string& state) override {
    MutexLock l(mu_);
    auto it = schedules_.find(name);
    if (it == schedules_.end()) return NotFound("schedule '" + name + "' not found");
    if (it->second.version != version)
      return Status(Code::kFailedPrecondition, "schedule '" + name + "' changed meanwhile");
    it->second.state = state;
    ++it->second.version;
    return Status::Ok();
  }

  Status DeleteSchedule(const std::string& name) override {
    MutexLock l(mu_);
    if (schedules_.erase(name) == 0) return NotFound("schedule '" + name + "' not found");
    return Status::Ok();
  }

  Status CreateTuningJob(const TuningRecord& t) override {
    MutexLock l(mu_);
    if (!tuning_.try_emplace(t.name, t).second)
      return Status(Code::kAlreadyExists, "a tuning job named '" + t.name + "' already exists", "name");
    return Status::Ok();
  }

  Result<TuningRecord> GetTuningJob(const std::string& name) override {
    MutexLock l(mu_);
    auto it = tuning_.find(name);
    if (it == tuning_.end()) return NotFound("tuning job '" + name + "' not found");
    return it->second;
  }

  Status UpdateTuningJob(const std::string& name, const std::string& status, const std::string& state) override {
    MutexLock l(mu_);
    auto it = tuning_.find(name);
    if (it == tuning_.end()) return NotFound("tuning job '" + name + "' not found");
    it->second.status = status;
    it->second.state = state;
    return Status::Ok();
  }

  Status UpdateTuningTags(const std::string& name, const std::map<std::string, std::string>& add,
                          const std::vector<std::string>& remove) override {
    MutexLock l(mu_);
    auto it = tuning_.find(name);
    if (it == tuning_.end()) return NotFound("tuning job '" + name + "' not found");
    // The spec is a JSON document owned by the tuning service: edit it as SQLite does.
    auto spec = nlohmann::json::parse(it->second.spec, nullptr, false);
    if (!spec.is_object()) return Internal("stored tuning job spec is not a JSON object");
    auto& tags = spec["tags"];
    if (!tags.is_object()) tags = nlohmann::json::object();
    for (const auto& k : remove) tags.erase(k);
    for (const auto& [k, v] : add) tags[k] = v;
    it->second.spec = spec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return Status::Ok();
  }

  Result<std::vector<TuningRecord>> ListTuningJobs(const std::string& name_contains, const std::string& status,
                                                   int limit, int offset) override {
    MutexLock l(mu_);
    std::vector<const TuningRecord*> rows;
    for (const auto& [n, t] : tuning_)
      if ((name_contains.empty() || n.find(name_contains) != std::string::npos) &&
          (status.empty() || t.status == status))
        rows.push_back(&t);
    std::sort(rows.begin(), rows.end(), [](const TuningRecord* a, const TuningRecord* b) {
      return std::tie(b->created, b->name) < std::tie(a->created, a->name);  // newest first
    });
    std::vector<TuningRecord> out;
    const size_t max = SqlLimit(limit);
    for (size_t i = static_cast<size_t>(std::max(offset, 0)); i < rows.size() && out.size() < max; ++i)
      out.push_back(*rows[i]);
    return out;
  }

  Status PutAccessKey(const AccessKeyRecord& k) override {
    MutexLock l(mu_);
    if (!access_keys_.try_emplace(k.id, k).second)
      return Status(Code::kAlreadyExists, "access key '" + k.id + "' exists", "id");
    return Status::Ok();
  }

  Result<AccessKeyRecord> GetAccessKey(const std::string& id) override {
    MutexLock l(mu_);
    auto it = access_keys_.find(id);
    if (it == access_keys_.end()) return NotFound("access key '" + id + "' not found");
    return it->second;
  }

  Result<std::vector<AccessKeyRecord>> ListAccessKeys(const std::string& team) override {
    MutexLock l(mu_);
    std::vector<AccessKeyRecord> out;
    for (const auto& [id, k] : access_keys_)  // by id
      if (team.empty() || k.team == team) out.push_back(k);
    std::stable_sort(out.begin(), out.end(),
                     [](const AccessKeyRecord& a, const AccessKeyRecord& b) { return a.created < b.created; });
    return out;
  }

  Status DeleteAccessKey(const std::string& id) override {
    MutexLock l(mu_);
    if (access_keys_.erase(id) == 0) return NotFound("access key '" + id + "' not found");
    return Status::Ok();
  }

  Status PutApiToken(const ApiTokenRecord& t) override {
    MutexLock l(mu_);
    if (!tokens_.try_emplace(t.id, t).second) return Status(Code::kAlreadyExists, "token '" + t.id + "' exists", "id");
    return Status::Ok();
  }

  Result<ApiTokenRecord> GetApiToken(const std::string& id) override {
    MutexLock l(mu_);
    auto it = tokens_.find(id);
    if (it == tokens_.end()) return NotFound("token '" + id + "' not found");
    return it->second;
  }

  Result<std::vector<ApiTokenRecord>> ListApiTokens(const std::string& team) override {
    MutexLock l(mu_);
    std::vector<ApiTokenRecord> out;
    for (const auto& [id, t] : tokens_)  // by id
      if (team.empty() || t.team == team) out.push_back(t);
    std::stable_sort(out.begin(), out.end(),
                     [](const ApiTokenRecord& a, const ApiTokenRecord& b) { return a.created < b.created; });
    return out;
  }

  Status RevokeApiToken(const std::string& id, TimeMs now) override {
    MutexLock l(mu_);
    auto it = tokens_.find(id);
    if (it == tokens_.end()) return NotFound("token '" + id + "' not found");
    if (it->second.revoked == 0) it->second.revoked = now;
    return Status::Ok();
  }

  Result<int64_t> AppendAudit(const AuditRecord& r) override {
    MutexLock l(mu_);
    audit_.push_back(r);
    audit_.back().seq = static_cast<int64_t>(audit_.size());
    return audit_.back().seq;
  }

  Result<std::vector<AuditRecord>> ListAudit(int64_t after_seq, const std::string& team, int limit) override {
    MutexLock l(mu_);
    std::vector<AuditRecord> out;
    const size_t max = SqlLimit(limit);
    for (size_t i = static_cast<size_t>(std::max<int64_t>(after_seq, 0)); i < audit_.size() && out.size() < max; ++i)
      if (team.empty() || audit_[i].team == team) out.push_back(audit_[i]);
    return out;
  }

  Status PutSecret(const std::string& team, const std::string& name, const std::string& sealed, TimeMs now) override {
    MutexLock l(mu_);
    secrets_[{team, name}] = {sealed, now};
    return Status::Ok();
  }

  Result<std::string> GetSecret(const std::string& team, const std::string& name) override {
    MutexLock l(mu_);
    auto it = secrets_.find({team, name});
    if (it == secrets_.end()) return NotFound("secret " + name + " not found for team " + team);
    return it->second.sealed;
  }

  Result<std::vector<std::pair<std::string, TimeMs>>> ListSecrets(const std::string& team) override {
    MutexLock l(mu_);
    std::vector<std::pair<std::string, TimeMs>> out;
    for (auto it = secrets_.lower_bound({team, std::string()}); it != secrets_.end() && it->first.first == team; ++it)
      out.emplace_back(it->first.second, it->second.updated);
    return out;
  }

  Status DeleteSecret(const std::string& team, const std::string& name) override {
    MutexLock l(mu_);
    if (secrets_.erase({team, name}) == 0) return NotFound("secret " + name + " not found for team " + team);
    return Status::Ok();
  }

 private:
  struct JobRecord {
    Job job;  // as last saved; job.spec.tags are the live tags
    // SQLite's indexed columns, written by CreateJob only.
    std::string name;
    TimeMs created_ms = 0;
    JobKind kind = JobKind::kTraining;
    std::vector<int64_t> seqs;    // the job's events: seqs[i] has job_seq i + 1
    std::set<int64_t> unapplied;  // seqs of events not yet folded
  };
  struct EventRecord {
    Event event;  // status_after/secondary_after empty until applied
    bool applied = false;
    bool pruned = false;  // gone by retention: its seq stays taken, its content is dropped
  };
  struct InstanceRecord {
    Instance instance;   // as last saved
    std::string job_id;  // as first saved: ListInstances filters on it
  };
  struct SecretRecord {
    std::string sealed;
    TimeMs updated = 0;
  };

  Result<Event> AppendLocked(Event e) REQUIRES(mu_) {
    auto it = jobs_.find(e.job_id);
    if (it == jobs_.end()) return NotFound("job '" + e.job_id + "' not found");
    if (!e.dedup_key.empty() && !dedup_keys_.insert(e.dedup_key).second)
      return Status(Code::kAlreadyExists, "duplicate event " + e.dedup_key);
    JobRecord& rec = it->second;
    e.seq = static_cast<int64_t>(events_.size()) + 1;
    e.job_seq = static_cast<int64_t>(rec.seqs.size()) + 1;
    rec.seqs.push_back(e.seq);
    rec.unapplied.insert(e.seq);
    unapplied_.insert(e.seq);
    // The caller gets back its event as given, with the numbers; the stored copy
    // has no status until applied.
    EventRecord stored{e, false};
    stored.event.status_after.clear();
    stored.event.secondary_after.clear();
    events_.push_back(std::move(stored));
    return e;
  }

  EventRecord& EventAt(int64_t seq) REQUIRES(mu_) { return events_[static_cast<size_t>(seq - 1)]; }

  const JobRecord* FindByIdOrName(const std::string& id_or_name) REQUIRES(mu_) {
    auto it = jobs_.find(id_or_name);
    if (it != jobs_.end()) return &it->second;
    auto n = id_by_name_.find(id_or_name);
    return n == id_by_name_.end() ? nullptr : &jobs_.at(n->second);
  }

  static bool Matches(const JobRecord& rec, const ListQuery& q) {
    if (!q.tag_key.empty()) {
      auto t = rec.job.spec.tags.find(q.tag_key);
      if (t == rec.job.spec.tags.end() || t->second != q.tag_value) return false;
    }
    if (q.status && rec.job.status != *q.status) return false;
    if (q.warm_pool_status && rec.job.warm_pool.status != *q.warm_pool_status) return false;
    if (!q.name_contains.empty() && rec.name.find(q.name_contains) == std::string::npos) return false;
    if (q.kind && rec.kind != *q.kind) return false;
    if (q.created_after > 0 && !(rec.created_ms > q.created_after)) return false;
    if (q.created_before > 0 && !(rec.created_ms < q.created_before)) return false;
    if (!q.name_prefix.empty() && rec.name.compare(0, q.name_prefix.size(), q.name_prefix) != 0) return false;
    if (!q.team.empty() && rec.job.spec.team != q.team) return false;
    return true;
  }

  // The offset-paged orders; names are unique, statuses tie-break newest first.
  static void SortRows(ListOrder order, std::vector<const JobRecord*>& rows) {
    auto newest_first = [](const JobRecord* a, const JobRecord* b) {
      return std::tie(b->created_ms, b->job.id) < std::tie(a->created_ms, a->job.id);
    };
    auto status = [](const JobRecord* r) { return std::string_view(ToString(r->job.status)); };
    switch (order) {
      case ListOrder::kNameAsc:
        std::sort(rows.begin(), rows.end(), [](const JobRecord* a, const JobRecord* b) { return a->name < b->name; });
        return;
      case ListOrder::kNameDesc:
        std::sort(rows.begin(), rows.end(), [](const JobRecord* a, const JobRecord* b) { return b->name < a->name; });
        return;
      case ListOrder::kStatusAsc:
        std::sort(rows.begin(), rows.end(), [&](const JobRecord* a, const JobRecord* b) {
          if (status(a) != status(b)) return status(a) < status(b);
          return newest_first(a, b);
        });
        return;
      case ListOrder::kStatusDesc:
        std::sort(rows.begin(), rows.end(), [&](const JobRecord* a, const JobRecord* b) {
          if (status(a) != status(b)) return status(b) < status(a);
          return newest_first(a, b);
        });
        return;
      case ListOrder::kNewestFirst:
      case ListOrder::kOldestFirst:
        break;
    }
    KILN_CHECK(false, "keyset orders are not offset-paged");
  }

  Mutex mu_;
  std::map<std::string, JobRecord> jobs_ GUARDED_BY(mu_);  // by id; nodes never move
  std::unordered_map<std::string, std::string> id_by_name_ GUARDED_BY(mu_);
  std::map<std::pair<TimeMs, std::string>, const JobRecord*> by_created_ GUARDED_BY(mu_);  // (created_ms, id)
  std::vector<EventRecord> events_ GUARDED_BY(mu_);                                        // events_[i] has seq i + 1
  std::set<int64_t> unapplied_ GUARDED_BY(mu_);                                            // seqs, every job
  std::unordered_set<std::string> dedup_keys_ GUARDED_BY(mu_);
  std::vector<InstanceRecord> instances_ GUARDED_BY(mu_);                   // in first-insert order (SQLite's rowid)
  std::unordered_map<std::string, size_t> instance_index_ GUARDED_BY(mu_);  // id -> index
  std::unordered_map<std::string, std::vector<size_t>> instances_by_job_ GUARDED_BY(mu_);  // job_id column
  std::unordered_map<std::string, std::vector<MetricPoint>> metrics_ GUARDED_BY(mu_);      // by job, as appended
  std::map<std::string, TuningRecord> tuning_ GUARDED_BY(mu_);
  std::map<std::string, ScheduleRecord> schedules_ GUARDED_BY(mu_);
  std::map<std::string, AccessKeyRecord> access_keys_ GUARDED_BY(mu_);
  std::map<std::string, ApiTokenRecord> tokens_ GUARDED_BY(mu_);
  std::vector<AuditRecord> audit_ GUARDED_BY(mu_);                                       // audit_[i] has seq i + 1
  std::map<std::pair<std::string, std::string>, SecretRecord> secrets_ GUARDED_BY(mu_);  // (team, name)
};

}  // namespace

std::unique_ptr<Store> NewMemoryStore() {
  return std::make_unique<MemoryStore>();
}

}  // namespace kiln
