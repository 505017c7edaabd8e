// SQLite implementation of Store. One connection guarded by a mutex: SQLite
// serializes writers anyway, and WAL lets this single connection commit without
// blocking on readers. Migrations are numbered; schema_version records the last.
#include <sqlite3.h>

#include <mutex>

#include "store/page_token.h"
#include "store/store.h"

namespace kiln {
namespace {

using nlohmann::json;

const char* kMigrations[] = {
    // 1: jobs, tags, events, instances
    R"sql(
CREATE TABLE jobs(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  event_count INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL);
CREATE INDEX jobs_created ON jobs(created_ms DESC, id DESC);
CREATE INDEX jobs_status ON jobs(status, created_ms DESC);
CREATE TABLE job_tags(job_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  PRIMARY KEY(job_id, key));
CREATE INDEX job_tags_kv ON job_tags(key, value);
CREATE TABLE events(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  job_seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  payload TEXT NOT NULL,
  source TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  dedup_key TEXT,
  applied INTEGER NOT NULL DEFAULT 0,
  status_after TEXT,
  secondary_after TEXT,
  UNIQUE(job_id, job_seq));
CREATE UNIQUE INDEX events_dedup ON events(dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX events_unapplied ON events(job_id, job_seq) WHERE applied = 0;
CREATE TABLE instances(
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  state TEXT NOT NULL,
  data TEXT NOT NULL);
CREATE INDEX instances_job ON instances(job_id);
)sql",
    // 2: metric series
    R"sql(
CREATE TABLE metric_points(
  job_id TEXT NOT NULL,
  name TEXT NOT NULL,
  tags TEXT NOT NULL,
  stat TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  value REAL NOT NULL);
CREATE INDEX metric_points_job ON metric_points(job_id, name, time_ms);
)sql",
    // 3: team secrets (sealed values)
    R"sql(
CREATE TABLE secrets(
  team TEXT NOT NULL,
  name TEXT NOT NULL,
  sealed BLOB NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY(team, name));
)sql",
    // 4: job kinds (training, processing) and API access keys (sealed secrets)
    R"sql(
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'training';
CREATE INDEX jobs_kind ON jobs(kind, created_ms DESC);
CREATE TABLE access_keys(
  id TEXT PRIMARY KEY,
  team TEXT NOT NULL,
  role TEXT NOT NULL,
  sealed BLOB NOT NULL,
  created_ms INTEGER NOT NULL);
)sql",
    // 5: hyperparameter tuning jobs (trials are jobs)
    R"sql(
CREATE TABLE tuning_jobs(
  name TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL);
CREATE INDEX tuning_jobs_created ON tuning_jobs(created_ms DESC);
)sql",
    // 6: API tokens (hashes only) and the audit log of mutating requests
    R"sql(
CREATE TABLE api_tokens(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  team TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  revoked_ms INTEGER NOT NULL);
CREATE TABLE audit(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  principal TEXT NOT NULL,
  name TEXT NOT NULL,
  team TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  source TEXT NOT NULL,
  status INTEGER NOT NULL);
CREATE INDEX audit_team ON audit(team, seq);
)sql",
    // 7: metric retention prunes by time
    R"sql(
CREATE INDEX metric_points_time ON metric_points(time_ms);
)sql",
    // 8: event retention prunes by time
    R"sql(
CREATE INDEX events_time ON events(time_ms);
)sql",
    // 9: warm pools: each job's warm pool status ('' = none), for the Available ones
    R"sql(
ALTER TABLE jobs ADD COLUMN warm TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_warm ON jobs(warm, created_ms);
)sql",
    // 10: schedules (cron-driven job submissions)
    R"sql(
CREATE TABLE schedules(
  name TEXT PRIMARY KEY,
  team TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  version INTEGER NOT NULL DEFAULT 0);
)sql",
};

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindDouble(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  double Double(int c) { return sqlite3_column_double(s_, c); }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  int Step() { return sqlite3_step(s_); }
  std::string Text(int c) {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, sqlite3_column_bytes(s_, c)) : std::string();
  }
  int64_t Int(int c) { return sqlite3_column_int64(s_, c); }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close(db_); }

  Status Init(Durability d) {
    KILN_RETURN_IF_ERROR(Exec("PRAGMA journal_mode=WAL"));
    KILN_RETURN_IF_ERROR(Exec(d == Durability::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
    KILN_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys=ON"));
    sqlite3_busy_timeout(db_, 5000);
    KILN_RETURN_IF_ERROR(Exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"));
    int64_t version = 0;
    {
      Stmt s(db_, "SELECT version FROM schema_version");
      if (s.Step() == SQLITE_ROW)
        version = s.Int(0);
      else
        KILN_RETURN_IF_ERROR(Exec("INSERT INTO schema_version VALUES(0)"));
    }
    const int64_t n = sizeof(kMigrations) / sizeof(kMigrations[0]);
    if (version > n)
      return Status(Code::kFailedPrecondition, "database schema version " + std::to_string(version) +
                                                   " is newer than this kilnd supports (" + std::to_string(n) +
                                                   "): upgrade kilnd");
    for (int64_t v = version; v < n; ++v) {
      KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
      Status st = Exec(kMigrations[v]);
      if (st.ok()) st = Exec(("UPDATE schema_version SET version=" + std::to_string(v + 1)).c_str());
      if (!st.ok()) {
        Rollback();
        return Internal("migration " + std::to_string(v + 1) + " failed: " + st.message());
      }
      KILN_RETURN_IF_ERROR(Exec("COMMIT"));
    }
    return Status::Ok();
  }

  Status CreateJob(const Job& job, Event created) override {
    std::lock_guard<std::mutex> l(mu_);
    return InTransaction([&]() -> Status {
      {
        Stmt s(db_, "INSERT INTO jobs(id,name,status,created_ms,event_count,state,kind,warm) VALUES(?,?,?,?,0,?,?,?)");
        s.Bind(1, job.id)
            .Bind(2, job.spec.name)
            .Bind(3, std::string(ToString(job.status)))
            .Bind(4, job.created_at)
            .Bind(5, ToJson(job).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
            .Bind(6, std::string(ToString(job.spec.kind)))
            .Bind(7, std::string(ToString(job.warm_pool.status)));
        int rc = s.Step();
        if (rc == SQLITE_CONSTRAINT)
          return Status(Code::kAlreadyExists, "a job named '" + job.spec.name + "' already exists", "name");
        if (rc != SQLITE_DONE) return Err("insert job");
      }
      for (const auto& [k, v] : job.spec.tags) {
        Stmt s(db_, "INSERT INTO job_tags(job_id,key,value) VALUES(?,?,?)");
        s.Bind(1, job.id).Bind(2, k).Bind(3, v);
        if (s.Step() != SQLITE_DONE) return Err("insert tag");
      }
      created.job_id = job.id;
      return AppendLocked(created).status();
    });
  }

  Result<Event> AppendEvent(Event e) override {
    std::lock_guard<std::mutex> l(mu_);
    KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    auto r = AppendLocked(e);
    if (!r.ok()) {
      Rollback();
      return r;
    }
    KILN_RETURN_IF_ERROR(Exec("COMMIT"));
    return r;
  }

  Result<Job> GetJob(const std::string& id_or_name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT state FROM jobs WHERE id=? UNION ALL SELECT state FROM jobs WHERE name=? LIMIT 1");
    s.Bind(1, id_or_name).Bind(2, id_or_name);
    if (s.Step() != SQLITE_ROW) return NotFound("job '" + id_or_name + "' not found");
    return ParseJob(s.Text(0));
  }

  Result<JobPage> ListJobs(const ListQuery& q) override {
    std::string sql = "SELECT j.state, j.created_ms, j.id FROM jobs j";
    sql += " WHERE 1=1";
    // EXISTS keeps the scan in created order on the index and stops at LIMIT.
    if (!q.tag_key.empty())
      sql += " AND EXISTS (SELECT 1 FROM job_tags t WHERE t.job_id=j.id AND t.key=?1 AND t.value=?2)";
    if (q.status) sql += " AND j.status=?3";
    if (!q.name_contains.empty()) sql += " AND instr(j.name, ?4) > 0";
    if (q.kind) sql += " AND j.kind=?8";
    if (q.created_after > 0) sql += " AND j.created_ms > ?9";
    if (q.created_before > 0) sql += " AND j.created_ms < ?10";
    if (!q.name_prefix.empty()) sql += " AND substr(j.name, 1, length(?11)) = ?11";
    if (!q.team.empty()) sql += " AND json_extract(j.state, '$.spec.team') = ?13";
    if (q.warm_pool_status) sql += " AND j.warm = ?14";
    auto cursor = ParsePageToken(q);
    if (!cursor.ok()) return cursor.status();
    const bool keyset = cursor->keyset;
    const int64_t offset = cursor->offset;
    const int64_t tok_ms = cursor->created_ms;
    const std::string tok_id = cursor->id;
    if (cursor->present && keyset)
      sql += q.order == ListOrder::kNewestFirst ? " AND (j.created_ms < ?5 OR (j.created_ms = ?5 AND j.id < ?6))"
                                                : " AND (j.created_ms > ?5 OR (j.created_ms = ?5 AND j.id > ?6))";
    switch (q.order) {
      case ListOrder::kNewestFirst:
        sql += " ORDER BY j.created_ms DESC, j.id DESC";
        break;
      case ListOrder::kOldestFirst:
        sql += " ORDER BY j.created_ms ASC, j.id ASC";
        break;
      case ListOrder::kNameAsc:
        sql += " ORDER BY j.name ASC";
        break;
      case ListOrder::kNameDesc:
        sql += " ORDER BY j.name DESC";
        break;
      case ListOrder::kStatusAsc:
        sql += " ORDER BY j.status ASC, j.created_ms DESC, j.id DESC";
        break;
      case ListOrder::kStatusDesc:
        sql += " ORDER BY j.status DESC, j.created_ms DESC, j.id DESC";
        break;
    }
    sql += " LIMIT ?7 OFFSET ?12";
    int limit = q.limit <= 0 ? 50 : std::min(q.limit, 1000);
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, sql.c_str());
    if (!s.ok()) return Err("list jobs");
    if (!q.tag_key.empty()) s.Bind(1, q.tag_key).Bind(2, q.tag_value);
    if (q.status) s.Bind(3, std::string(ToString(*q.status)));
    if (!q.name_contains.empty()) s.Bind(4, q.name_contains);
    if (keyset && !q.page_token.empty()) s.Bind(5, tok_ms).Bind(6, tok_id);
    if (q.kind) s.Bind(8, std::string(ToString(*q.kind)));
    if (q.created_after > 0) s.Bind(9, q.created_after);
    if (q.created_before > 0) s.Bind(10, q.created_before);
    if (!q.name_prefix.empty()) s.Bind(11, q.name_prefix);
    if (!q.team.empty()) s.Bind(13, q.team);
    if (q.warm_pool_status) s.Bind(14, std::string(ToString(*q.warm_pool_status)));
    s.Bind(7, int64_t{limit + 1}).Bind(12, offset);
    JobPage page;
    std::string last_tok;
    while (s.Step() == SQLITE_ROW) {
      if (static_cast<int>(page.jobs.size()) == limit) {
        page.next_page_token = keyset ? last_tok : OffsetPageToken(offset + limit);
        break;
      }
      auto j = ParseJob(s.Text(0));
      if (!j.ok()) return j.status();
      page.jobs.push_back(std::move(j.value()));
      last_tok = KeysetPageToken(s.Int(1), s.Text(2));
    }
    return page;
  }

  Status UpdateTags(const std::string& job_id, const std::map<std::string, std::string>& add,
                    const std::vector<std::string>& remove) override {
    std::lock_guard<std::mutex> l(mu_);
    return InTransaction([&]() -> Status {
      Stmt g(db_, "SELECT state FROM jobs WHERE id=?");
      g.Bind(1, job_id);
      if (g.Step() != SQLITE_ROW) return NotFound("job '" + job_id + "' not found");
      auto state = nlohmann::json::parse(g.Text(0), nullptr, false);
      if (state.is_discarded()) return Internal("stored job is not JSON");
      auto& tags = state["spec"]["tags"];
      if (!tags.is_object()) tags = nlohmann::json::object();
      for (const auto& k : remove) {
        tags.erase(k);
        Stmt d(db_, "DELETE FROM job_tags WHERE job_id=? AND key=?");
        d.Bind(1, job_id).Bind(2, k);
        if (d.Step() != SQLITE_DONE) return Err("delete tag");
      }
      for (const auto& [k, v] : add) {
        tags[k] = v;
        Stmt i(db_,
               "INSERT INTO job_tags(job_id,key,value) VALUES(?,?,?) ON CONFLICT(job_id,key) DO UPDATE SET "
               "value=excluded.value");
        i.Bind(1, job_id).Bind(2, k).Bind(3, v);
        if (i.Step() != SQLITE_DONE) return Err("upsert tag");
      }
      Stmt u(db_, "UPDATE jobs SET state=? WHERE id=?");
      u.Bind(1, state.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)).Bind(2, job_id);
      if (u.Step() != SQLITE_DONE) return Err("update job tags");
      return Status::Ok();
    });
  }

  Status CreateSchedule(const ScheduleRecord& r) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "INSERT INTO schedules(name,team,created_ms,spec,state,version) VALUES(?,?,?,?,?,0)");
    s.Bind(1, r.name).Bind(2, r.team).Bind(3, r.created).Bind(4, r.spec).Bind(5, r.state);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT)
      return Status(Code::kAlreadyExists, "a schedule named '" + r.name + "' already exists", "name");
    if (rc != SQLITE_DONE) return Err("insert schedule");
    return Status::Ok();
  }

  Result<ScheduleRecord> GetSchedule(const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT name,team,created_ms,spec,state,version FROM schedules WHERE name=?");
    s.Bind(1, name);
    if (s.Step() != SQLITE_ROW) return NotFound("schedule '" + name + "' not found");
    return ScheduleRecord{s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4), s.Int(5)};
  }

  Result<std::vector<ScheduleRecord>> ListSchedules(const std::string& team) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, team.empty()
                    ? "SELECT name,team,created_ms,spec,state,version FROM schedules ORDER BY name"
                    : "SELECT name,team,created_ms,spec,state,version FROM schedules WHERE team=? ORDER BY name");
    if (!team.empty()) s.Bind(1, team);
    std::vector<ScheduleRecord> out;
    while (s.Step() == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4), s.Int(5)});
    return out;
  }

  Status UpdateScheduleState(const std::string& name, int64_t version, const std::string& state) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "UPDATE schedules SET state=?, version=version+1 WHERE name=? AND version=?");
    s.Bind(1, state).Bind(2, name).Bind(3, version);
    if (s.Step() != SQLITE_DONE) return Err("update schedule");
    if (sqlite3_changes(db_) > 0) return Status::Ok();
    Stmt g(db_, "SELECT 1 FROM schedules WHERE name=?");
    g.Bind(1, name);
    if (g.Step() != SQLITE_ROW) return NotFound("schedule '" + name + "' not found");
    return Status(Code::kFailedPrecondition, "schedule '" + name + "' changed meanwhile");
  }

  Status DeleteSchedule(const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "DELETE FROM schedules WHERE name=?");
    s.Bind(1, name);
    if (s.Step() != SQLITE_DONE) return Err("delete schedule");
    if (sqlite3_changes(db_) == 0) return NotFound("schedule '" + name + "' not found");
    return Status::Ok();
  }

  Status CreateTuningJob(const TuningRecord& t) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "INSERT INTO tuning_jobs(name,status,created_ms,spec,state) VALUES(?,?,?,?,?)");
    s.Bind(1, t.name).Bind(2, t.status).Bind(3, t.created).Bind(4, t.spec).Bind(5, t.state);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT)
      return Status(Code::kAlreadyExists, "a tuning job named '" + t.name + "' already exists", "name");
    if (rc != SQLITE_DONE) return Err("insert tuning job");
    return Status::Ok();
  }

  Result<TuningRecord> GetTuningJob(const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT name,status,created_ms,spec,state FROM tuning_jobs WHERE name=?");
    s.Bind(1, name);
    if (s.Step() != SQLITE_ROW) return NotFound("tuning job '" + name + "' not found");
    return TuningRecord{s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4)};
  }

  Status UpdateTuningJob(const std::string& name, const std::string& status, const std::string& state) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "UPDATE tuning_jobs SET status=?, state=? WHERE name=?");
    s.Bind(1, status).Bind(2, state).Bind(3, name);
    if (s.Step() != SQLITE_DONE) return Err("update tuning job");
    if (sqlite3_changes(db_) == 0) return NotFound("tuning job '" + name + "' not found");
    return Status::Ok();
  }

  Status UpdateTuningTags(const std::string& name, const std::map<std::string, std::string>& add,
                          const std::vector<std::string>& remove) override {
    std::lock_guard<std::mutex> l(mu_);
    return InTransaction([&]() -> Status {
      Stmt g(db_, "SELECT spec FROM tuning_jobs WHERE name=?");
      g.Bind(1, name);
      if (g.Step() != SQLITE_ROW) return NotFound("tuning job '" + name + "' not found");
      auto spec = nlohmann::json::parse(g.Text(0), nullptr, false);
      if (!spec.is_object()) return Internal("stored tuning job spec is not a JSON object");
      auto& tags = spec["tags"];
      if (!tags.is_object()) tags = nlohmann::json::object();
      for (const auto& k : remove) tags.erase(k);
      for (const auto& [k, v] : add) tags[k] = v;
      Stmt u(db_, "UPDATE tuning_jobs SET spec=? WHERE name=?");
      u.Bind(1, spec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)).Bind(2, name);
      if (u.Step() != SQLITE_DONE) return Err("update tuning job tags");
      return Status::Ok();
    });
  }

  Result<std::vector<TuningRecord>> ListTuningJobs(const std::string& name_contains, const std::string& status,
                                                   int limit, int offset) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT name,status,created_ms,spec,state FROM tuning_jobs WHERE (?1='' OR instr(name,?1)>0) AND "
           "(?2='' OR status=?2) ORDER BY created_ms DESC, name DESC LIMIT ?3 OFFSET ?4");
    s.Bind(1, name_contains).Bind(2, status).Bind(3, int64_t{limit}).Bind(4, int64_t{offset});
    std::vector<TuningRecord> out;
    while (s.Step() == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Int(2), s.Text(3), s.Text(4)});
    return out;
  }

  Status PutAccessKey(const AccessKeyRecord& k) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "INSERT INTO access_keys(id,team,role,sealed,created_ms) VALUES(?,?,?,?,?)");
    s.Bind(1, k.id).Bind(2, k.team).Bind(3, k.role).BindBlob(4, k.sealed_secret).Bind(5, k.created);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return Status(Code::kAlreadyExists, "access key '" + k.id + "' exists", "id");
    if (rc != SQLITE_DONE) return Err("insert access key");
    return Status::Ok();
  }

  Result<AccessKeyRecord> GetAccessKey(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT id,team,role,sealed,created_ms FROM access_keys WHERE id=?");
    s.Bind(1, id);
    if (s.Step() != SQLITE_ROW) return NotFound("access key '" + id + "' not found");
    return AccessKeyRecord{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)};
  }

  Result<std::vector<AccessKeyRecord>> ListAccessKeys(const std::string& team) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT id,team,role,sealed,created_ms FROM access_keys WHERE ?1='' OR team=?1 ORDER BY created_ms, id");
    s.Bind(1, team);
    std::vector<AccessKeyRecord> out;
    while (s.Step() == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4)});
    return out;
  }

  Status PutApiToken(const ApiTokenRecord& t) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "INSERT INTO api_tokens(id,name,team,role,hash,created_ms,expires_ms,revoked_ms) VALUES(?,?,?,?,?,?,?,?)");
    s.Bind(1, t.id).Bind(2, t.name).Bind(3, t.team).Bind(4, t.role).Bind(5, t.hash);
    s.Bind(6, t.created).Bind(7, t.expires).Bind(8, t.revoked);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return Status(Code::kAlreadyExists, "token '" + t.id + "' exists", "id");
    if (rc != SQLITE_DONE) return Err("insert token");
    return Status::Ok();
  }

  static ApiTokenRecord TokenRow(Stmt& s) {
    return ApiTokenRecord{s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Text(4), s.Int(5), s.Int(6), s.Int(7)};
  }

  Result<ApiTokenRecord> GetApiToken(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT id,name,team,role,hash,created_ms,expires_ms,revoked_ms FROM api_tokens WHERE id=?");
    s.Bind(1, id);
    if (s.Step() != SQLITE_ROW) return NotFound("token '" + id + "' not found");
    return TokenRow(s);
  }

  Result<std::vector<ApiTokenRecord>> ListApiTokens(const std::string& team) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT id,name,team,role,hash,created_ms,expires_ms,revoked_ms FROM api_tokens WHERE ?1='' OR team=?1 "
           "ORDER BY created_ms, id");
    s.Bind(1, team);
    std::vector<ApiTokenRecord> out;
    while (s.Step() == SQLITE_ROW) out.push_back(TokenRow(s));
    return out;
  }

  Status RevokeApiToken(const std::string& id, TimeMs now) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "UPDATE api_tokens SET revoked_ms=CASE WHEN revoked_ms=0 THEN ? ELSE revoked_ms END WHERE id=?");
    s.Bind(1, now).Bind(2, id);
    if (s.Step() != SQLITE_DONE) return Err("revoke token");
    if (sqlite3_changes(db_) == 0) return NotFound("token '" + id + "' not found");
    return Status::Ok();
  }

  Result<int64_t> AppendAudit(const AuditRecord& r) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "INSERT INTO audit(time_ms,principal,name,team,method,path,source,status) VALUES(?,?,?,?,?,?,?,?)");
    s.Bind(1, r.time).Bind(2, r.principal).Bind(3, r.name).Bind(4, r.team).Bind(5, r.method).Bind(6, r.path);
    s.Bind(7, r.source).Bind(8, static_cast<int64_t>(r.status));
    if (s.Step() != SQLITE_DONE) return Err("append audit");
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  Result<std::vector<AuditRecord>> ListAudit(int64_t after_seq, const std::string& team, int limit) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT seq,time_ms,principal,name,team,method,path,source,status FROM audit WHERE seq>?1 AND "
           "(?2='' OR team=?2) ORDER BY seq LIMIT ?3");
    s.Bind(1, after_seq).Bind(2, team).Bind(3, static_cast<int64_t>(limit));
    std::vector<AuditRecord> out;
    while (s.Step() == SQLITE_ROW)
      out.push_back({s.Int(0), s.Int(1), s.Text(2), s.Text(3), s.Text(4), s.Text(5), s.Text(6), s.Text(7),
                     static_cast<int>(s.Int(8))});
    return out;
  }

  Status DeleteAccessKey(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "DELETE FROM access_keys WHERE id=?");
    s.Bind(1, id);
    if (s.Step() != SQLITE_DONE) return Err("delete access key");
    if (sqlite3_changes(db_) == 0) return NotFound("access key '" + id + "' not found");
    return Status::Ok();
  }

  Result<std::vector<Event>> UnappliedEvents(const std::string& job_id) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT seq,job_seq,job_id,type,payload,source,time_ms,dedup_key,status_after,secondary_after "
           "FROM events WHERE job_id=? AND applied=0 ORDER BY job_seq");
    s.Bind(1, job_id);
    return ReadEvents(s);
  }

  Status CommitTransition(const Job& job, const std::vector<Event>& applied) override {
    std::lock_guard<std::mutex> l(mu_);
    return InTransaction([&]() -> Status {
      {
        // Tags change through UpdateTags only: keep the stored ones.
        Stmt s(db_,
               "UPDATE jobs SET status=?, state=json_set(?, '$.spec.tags', json(json_extract(state, '$.spec.tags'))), "
               "warm=? WHERE id=?");
        s.Bind(1, std::string(ToString(job.status)))
            .Bind(2, ToJson(job).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
            .Bind(3, std::string(ToString(job.warm_pool.status)))
            .Bind(4, job.id);
        if (s.Step() != SQLITE_DONE) return Err("update job");
      }
      for (const auto& in : job.instances) {
        Stmt s(db_,
               "INSERT INTO instances(id,job_id,attempt,idx,state,data) VALUES(?,?,?,?,?,?) "
               "ON CONFLICT(id) DO UPDATE SET state=excluded.state, data=excluded.data");
        s.Bind(1, in.id)
            .Bind(2, in.job_id)
            .Bind(3, int64_t{in.attempt})
            .Bind(4, int64_t{in.index})
            .Bind(5, std::string(ToString(in.state)))
            .Bind(6, ToJson(in).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        if (s.Step() != SQLITE_DONE) return Err("upsert instance");
      }
      for (const auto& e : applied) {
        Stmt s(db_, "UPDATE events SET applied=1, status_after=?, secondary_after=? WHERE seq=?");
        s.Bind(1, e.status_after).Bind(2, e.secondary_after).Bind(3, e.seq);
        if (s.Step() != SQLITE_DONE) return Err("mark event");
      }
      return Status::Ok();
    });
  }

  Result<std::vector<Event>> EventsAfter(int64_t after_seq, int limit) override {
    std::lock_guard<std::mutex> l(mu_);
    // Stops at the first unapplied event so the stream never skips one that a
    // later commit marks applied.
    Stmt s(db_,
           "SELECT seq,job_seq,job_id,type,payload,source,time_ms,dedup_key,status_after,secondary_after "
           "FROM events WHERE seq>? AND seq < IFNULL((SELECT MIN(seq) FROM events WHERE applied=0 AND seq>?1), "
           "9223372036854775807) ORDER BY seq LIMIT ?");
    s.Bind(1, after_seq).Bind(2, int64_t{limit});
    return ReadEvents(s);
  }

  Result<std::vector<Event>> JobEventsAfter(const std::string& job_id, int64_t after, int limit) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT seq,job_seq,job_id,type,payload,source,time_ms,dedup_key,status_after,secondary_after "
           "FROM events WHERE job_id=? AND job_seq>? AND applied=1 ORDER BY job_seq LIMIT ?");
    s.Bind(1, job_id).Bind(2, after).Bind(3, int64_t{limit});
    return ReadEvents(s);
  }

  Result<std::vector<std::string>> JobsNeedingAttention() override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "SELECT id FROM jobs WHERE status IN ('InProgress','Stopping') "
           "UNION SELECT id FROM jobs WHERE warm='Available' "
           "UNION SELECT DISTINCT job_id FROM events WHERE applied=0");
    std::vector<std::string> out;
    while (s.Step() == SQLITE_ROW) out.push_back(s.Text(0));
    return out;
  }

  Result<std::vector<Instance>> ListInstances(const std::string& job_id) override {
    std::lock_guard<std::mutex> l(mu_);
    std::string sql = "SELECT data FROM instances";
    if (!job_id.empty()) sql += " WHERE job_id=?1";
    sql += " ORDER BY rowid DESC LIMIT 1000";
    Stmt s(db_, sql.c_str());
    if (!job_id.empty()) s.Bind(1, job_id);
    std::vector<Instance> out;
    while (s.Step() == SQLITE_ROW) out.push_back(InstanceFromJson(json::parse(s.Text(0))));
    return out;
  }

  Result<Instance> GetInstance(const std::string& id) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT data FROM instances WHERE id=?");
    s.Bind(1, id);
    if (s.Step() != SQLITE_ROW) return NotFound("instance '" + id + "' not found");
    return InstanceFromJson(json::parse(s.Text(0)));
  }

  Status AppendMetricPoints(const std::vector<MetricPoint>& points) override {
    std::lock_guard<std::mutex> l(mu_);
    return InTransaction([&]() -> Status {
      for (const auto& p : points) {
        Stmt s(db_, "INSERT INTO metric_points(job_id,name,tags,stat,time_ms,value) VALUES(?,?,?,?,?,?)");
        s.Bind(1, p.job_id).Bind(2, p.name).Bind(3, p.tags).Bind(4, p.stat).Bind(5, p.time);
        s.BindDouble(6, p.value);
        if (s.Step() != SQLITE_DONE) return Err("insert metric point");
      }
      return Status::Ok();
    });
  }

  Result<int64_t> PruneMetricPoints(TimeMs before, int64_t max) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "DELETE FROM metric_points WHERE rowid IN (SELECT rowid FROM metric_points WHERE time_ms < ? LIMIT ?)");
    s.Bind(1, before).Bind(2, max);
    if (s.Step() != SQLITE_DONE) return Err("prune metric points");
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Result<int64_t> PruneEvents(TimeMs before, int64_t max) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e JOIN jobs j ON j.id = e.job_id "
           "WHERE e.time_ms < ?1 AND e.applied = 1 AND j.status IN ('Completed', 'Failed', 'Stopped') LIMIT ?2)");
    s.Bind(1, before).Bind(2, max);
    if (s.Step() != SQLITE_DONE) return Err("prune events");
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Result<std::vector<MetricPoint>> JobMetrics(const std::string& job_id, const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, name.empty() ? "SELECT job_id,name,tags,stat,time_ms,value FROM metric_points WHERE job_id=?1 "
                               "ORDER BY name, tags, stat, time_ms LIMIT 100000"
                             : "SELECT job_id,name,tags,stat,time_ms,value FROM metric_points WHERE job_id=?1 "
                               "AND name=?2 ORDER BY name, tags, stat, time_ms LIMIT 100000");
    s.Bind(1, job_id);
    if (!name.empty()) s.Bind(2, name);
    std::vector<MetricPoint> out;
    while (s.Step() == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3), s.Int(4), s.Double(5)});
    return out;
  }

  Status PutSecret(const std::string& team, const std::string& name, const std::string& sealed, TimeMs now) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_,
           "INSERT INTO secrets(team,name,sealed,updated_ms) VALUES(?,?,?,?) "
           "ON CONFLICT(team,name) DO UPDATE SET sealed=excluded.sealed, updated_ms=excluded.updated_ms");
    s.Bind(1, team).Bind(2, name).BindBlob(3, sealed).Bind(4, now);
    return s.Step() == SQLITE_DONE ? Status::Ok() : Err("put secret");
  }

  Result<std::string> GetSecret(const std::string& team, const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT sealed FROM secrets WHERE team=? AND name=?");
    s.Bind(1, team).Bind(2, name);
    if (s.Step() != SQLITE_ROW) return NotFound("secret " + name + " not found for team " + team);
    return s.Text(0);
  }

  Result<std::vector<std::pair<std::string, TimeMs>>> ListSecrets(const std::string& team) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "SELECT name, updated_ms FROM secrets WHERE team=? ORDER BY name");
    s.Bind(1, team);
    std::vector<std::pair<std::string, TimeMs>> out;
    while (s.Step() == SQLITE_ROW) out.emplace_back(s.Text(0), s.Int(1));
    return out;
  }

  Status DeleteSecret(const std::string& team, const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    Stmt s(db_, "DELETE FROM secrets WHERE team=? AND name=?");
    s.Bind(1, team).Bind(2, name);
    if (s.Step() != SQLITE_DONE) return Err("delete secret");
    if (sqlite3_changes(db_) == 0) return NotFound("secret " + name + " not found for team " + team);
    return Status::Ok();
  }

 private:
  Result<Event> AppendLocked(Event e) {
    int64_t job_seq;
    {
      Stmt s(db_, "UPDATE jobs SET event_count=event_count+1 WHERE id=? RETURNING event_count");
      s.Bind(1, e.job_id);
      if (s.Step() != SQLITE_ROW) return NotFound("job '" + e.job_id + "' not found");
      job_seq = s.Int(0);
    }
    Stmt s(db_, "INSERT INTO events(job_id,job_seq,type,payload,source,time_ms,dedup_key) VALUES(?,?,?,?,?,?,?)");
    s.Bind(1, e.job_id)
        .Bind(2, job_seq)
        .Bind(3, std::string(ToString(e.type)))
        .Bind(4, e.payload.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
        .Bind(5, e.source)
        .Bind(6, e.time);
    if (e.dedup_key.empty())
      s.BindNull(7);
    else
      s.Bind(7, e.dedup_key);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) return Status(Code::kAlreadyExists, "duplicate event " + e.dedup_key);
    if (rc != SQLITE_DONE) return Err("insert event");
    e.seq = sqlite3_last_insert_rowid(db_);
    e.job_seq = job_seq;
    return e;
  }

  Result<std::vector<Event>> ReadEvents(Stmt& s) {
    std::vector<Event> out;
    while (s.Step() == SQLITE_ROW) {
      Event e;
      e.seq = s.Int(0);
      e.job_seq = s.Int(1);
      e.job_id = s.Text(2);
      auto t = ParseEventType(s.Text(3));
      if (!t) return Internal("unknown event type in store: " + s.Text(3));
      e.type = *t;
      e.payload = json::parse(s.Text(4), nullptr, false);
      e.source = s.Text(5);
      e.time = s.Int(6);
      e.dedup_key = s.Text(7);
      e.status_after = s.Text(8);
      e.secondary_after = s.Text(9);
      out.push_back(std::move(e));
    }
    return out;
  }

  Result<Job> ParseJob(const std::string& text) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return Internal("corrupt job row");
    return JobFromJson(j);
  }

  // Runs `body` in a write transaction: committed if it returns Ok, rolled back
  // otherwise. Callers hold mu_.
  template <typename Body>
  Status InTransaction(Body body) {
    KILN_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status st = body();
    if (!st.ok()) {
      Rollback();
      return st;
    }
    return Exec("COMMIT");
  }

  Status Exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "unknown";
      sqlite3_free(err);
      return Internal(std::string("sqlite: ") + m);
    }
    return Status::Ok();
  }
  // After a failed statement inside a transaction. The caller returns that
  // statement's error; a rollback that fails too is logged (SQLite then rolls the
  // transaction back itself when the connection next begins one or closes).
  void Rollback() {
    Status st = Exec("ROLLBACK");
    if (!st.ok()) fprintf(stderr, "kilnd: store: rollback: %s\n", st.ToString().c_str());
  }
  Status Err(const char* what) { return Internal(std::string("sqlite ") + what + ": " + sqlite3_errmsg(db_)); }

  std::mutex mu_;
  sqlite3* db_;  // GUARDED_BY(mu_)
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, Durability d) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Internal("open " + path + ": " + m);
  }
  auto s = std::make_unique<SqliteStore>(db);
  KILN_RETURN_IF_ERROR(s->Init(d));
  return std::unique_ptr<Store>(std::move(s));
}

}  // namespace kiln
