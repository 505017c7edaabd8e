// The native API's shared helpers, job submission, and the route groups for
// health, jobs (with stop), instances, metrics and secrets. Logs and events are in
// stream_routes.cc, the in-job runtime in runtime_routes.cc, tuning in tuning_routes.cc.
#include "api/native_api.h"

#include <filesystem>

#include "api/http_helpers.h"
#include "auth/sigv4.h"
#include "common/fsutil.h"
#include "common/ids.h"
#include "common/json_input.h"

namespace kiln {

namespace api_internal {

void SendJson(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

bool BoolParam(const httplib::Request& req, const char* name, bool def) {
  if (!req.has_param(name)) return def;
  std::string v = req.get_param_value(name);
  return v == "1" || v == "true" || v == "yes";
}

}  // namespace api_internal

namespace {

using api_internal::SendJson;
using nlohmann::json;

void SendError(httplib::Response& res, const Status& st) {
  json e = {{"code", CodeName(st.code())}, {"message", st.message()}};
  e["field"] = st.field().empty() ? json(nullptr) : json(st.field());
  res.status = HttpStatusFor(st.code());
  res.set_content(json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

// The public view of a job: internal bookkeeping and instance handles stay inside.
json PublicJob(const Job& job) {
  json j = ToJson(job);
  for (const char* k : {"created_ms", "ended_ms", "stop_cause", "last_job_seq", "phase_times", "warm_pool_state"})
    j.erase(k);
  if (job.warm_pool.status != WarmPoolStatus::kNone) j["warm_pool"] = ToJson(job.warm_pool, RealClock::Get().NowMs());
  for (auto& in : j["instances"]) {
    in.erase("handle");
    in.erase("stop_sent");
  }
  return j;
}

// GET /v1/jobs query parameters: status, name, tag=key=value, limit, page_token.
Result<ListQuery> ParseListQuery(const httplib::Request& req) {
  ListQuery q;
  if (req.has_param("status")) {
    auto st = ParseJobStatus(req.get_param_value("status"));
    if (!st) return InvalidArgument("status", "must be one of InProgress, Completed, Failed, Stopping, Stopped");
    q.status = st;
  }
  q.name_contains = req.get_param_value("name");
  if (req.has_param("tag")) {
    // Read from the raw target: "tag=team=a" is split at its second '=' by the parser.
    std::string t = req.get_param_value("tag");
    if (auto pos = req.target.find("tag="); pos != std::string::npos) {
      auto end = req.target.find('&', pos);
      t = httplib::detail::decode_url(req.target.substr(pos + 4, end == std::string::npos ? end : end - pos - 4), true);
    }
    auto eq = t.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgument("tag", "must be key=value");
    q.tag_key = t.substr(0, eq);
    q.tag_value = t.substr(eq + 1);
  }
  if (req.has_param("limit")) {
    try {
      q.limit = std::stoi(req.get_param_value("limit"));
    } catch (...) {
      q.limit = -1;
    }
    if (q.limit < 1 || q.limit > 1000) return InvalidArgument("limit", "must be 1..1000");
  }
  q.page_token = req.get_param_value("page_token");
  if (req.has_param("warm_pool_status")) {
    q.warm_pool_status = ParseWarmPoolStatus(req.get_param_value("warm_pool_status"));
    if (!q.warm_pool_status)
      return InvalidArgument("warm_pool_status", "must be one of InUse, Available, Reused, Terminated");
  }
  q.team = req.get_param_value("team");  // an admin's filter; others see their team's only
  return q;
}

// Points (sorted by name, tags, stat) grouped into series: name + tags + stat.
json GroupSeries(const std::vector<MetricPoint>& points) {
  json series = json::array();
  std::string last;
  for (const auto& p : points) {
    std::string key = p.name + "\x1f" + p.tags + "\x1f" + p.stat;
    if (key != last) {
      series.push_back({{"name", p.name}, {"tags", p.tags}, {"stat", p.stat}, {"points", json::array()}});
      last = key;
    }
    series.back()["points"].push_back({p.time, p.value});
  }
  return series;
}

}  // namespace

void SendApiError(httplib::Response& res, const Status& st) {  // declared in router.h
  SendError(res, st);
}

bool IsValidSecretName(const std::string& n) {
  if (n.empty() || n.size() > 512 || !(isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_')) return false;
  for (char c : n)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

int HttpStatusFor(Code c) {
  switch (c) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
      return 409;
    case Code::kPayloadTooLarge:
      return 413;
    case Code::kUnauthenticated:
      return 401;
    case Code::kFailedPrecondition:
      return 409;
    case Code::kUnavailable:
      return 503;
    case Code::kInternal:
    case Code::kDataLoss:
      return 500;
    case Code::kResourceExhausted:
      return 429;
    case Code::kPermissionDenied:
      return 403;
    case Code::kUnsupportedMediaType:
      return 415;
  }
  return 500;
}

Result<Job> NativeApi::Submit(const std::string& body, const Principal& who) {
  if (body.size() > opts_.max_body_bytes)
    return Status(Code::kPayloadTooLarge, "request body exceeds " + std::to_string(opts_.max_body_bytes) + " bytes");
  auto j = ParseUntrustedJson(body);
  if (!j.ok()) return j.status();
  if (j->is_object() && !j->contains("team")) (*j)["team"] = who.team;  // the caller's own team by default
  auto spec = ParseSpec(*j, catalog_);
  if (!spec.ok()) return spec.status();
  if (!who.May(Role::kMember, spec->team))
    return Status(Code::kPermissionDenied, who.name + " may not submit jobs for team " + spec->team, "team");
  // Existence checks belong here, before anything is written.
  namespace fs = std::filesystem;
  for (const auto& [ch, p] : spec->inputs)
    if (!fs::exists(p)) return InvalidArgument("inputs." + ch, "input path " + p + " does not exist");
  if (!spec->code_dir.empty() && !fs::is_directory(spec->code_dir))
    return InvalidArgument("code_dir", spec->code_dir + " is not a directory");
  if (!opts_.staging_dir.empty()) {
    std::string hps = spec->hyperparameters.dump();
    if (hps.size() > opts_.inline_hyperparameters_bytes) {
      // Staged before the job exists; a failed create leaves only an unreferenced,
      // content-addressed file behind (same content, same name).
      std::string path = opts_.staging_dir + "/" + Sha256HexOf(hps) + ".json";
      KILN_RETURN_IF_ERROR(MakeDirs(opts_.staging_dir));
      if (!fs::exists(path)) KILN_RETURN_IF_ERROR(WriteFileAtomic(path, hps, 0600));
      spec->hyperparameters = json::object();
      spec->hyperparameters_file = path;
    }
  }
  return ctl_.CreateJob(*spec);
}

Result<Job> NativeApi::VisibleJob(const std::string& ref, const Principal& who) {
  auto job = store_.GetJob(ref);
  if (job.ok() && !who.Sees(job->spec.team)) return NotFound("job '" + ref + "' not found");
  return job;
}

std::string NativeApi::TeamOfJob(const std::string& job_id, std::map<std::string, std::string>& cache) {
  auto it = cache.find(job_id);
  if (it != cache.end()) return it->second;
  auto job = store_.GetJob(job_id);
  std::string team = job.ok() ? job->spec.team : "";
  if (cache.size() > 100000) cache.clear();  // bounded
  cache[job_id] = team;
  return team;
}

void NativeApi::Register(http::RouteTable& s) {
  router_ = std::make_unique<Router>(s, opts_.api_tokens, opts_.router);
  Router& r = *router_;
  if (opts_.tuning) RegisterTuning(r);
  if (opts_.schedules) RegisterSchedules(r);
  RegisterHealthAndCatalog(r);
  RegisterJobs(r);
  RegisterMetrics(r);
  RegisterSecrets(r);
  RegisterInstances(r);
  RegisterLogsAndEvents(r);
  RegisterRuntime(r);
  RegisterAccounts(r);
}

// GET /v1/health (open), GET /v1/instance-types.
void NativeApi::RegisterHealthAndCatalog(Router& r) {
  r.Get("/v1/health", Access::kOpen, [this](const httplib::Request&, httplib::Response& res, const Principal&) {
    SendJson(res, 200, {{"status", "ok"}, {"version", opts_.version}});
  });

  r.Get("/v1/instance-types", Access::kViewer,
        [this](const httplib::Request&, httplib::Response& res, const Principal&) {
          json arr = json::array();
          for (const auto& [n, t] : catalog_.types())
            arr.push_back({{"name", n}, {"vcpus", t.vcpus}, {"memory_mib", t.memory_mib}, {"gpus", t.gpus}});
          SendJson(res, 200, {{"instance_types", arr}});
        });

  r.Get("/v1/pools", Access::kViewer, [this](const httplib::Request&, httplib::Response& res, const Principal&) {
    SendJson(res, 200, {{"pools", opts_.pools ? opts_.pools() : json::array()}});
  });

  // Slurm's end-of-job hook (scripts/slurm-epilog.sh): authenticated by the
  // pool's hook token, not an API token; it only makes kilnd ask slurmrestd.
  r.Post("/v1/pools/([a-zA-Z0-9_-]{1,63})/slurm-events", Access::kInstance, Body::kJson,
         [this](const httplib::Request& req, httplib::Response& res, const Principal&) {
           const std::string auth = req.get_header_value("Authorization");
           const std::string token = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : "";
           if (token.empty()) return SendApiError(res, Status(Code::kUnauthenticated, "missing bearer token"));
           if (!opts_.pool_event) return SendApiError(res, NotFound("no Slurm pool " + req.matches[1].str()));
           auto body = ParseUntrustedJson(req.body, "body");
           if (!body.ok()) return SendApiError(res, body.status());
           if (!body->is_object() || !body->contains("job_id") || !(*body)["job_id"].is_number_integer() ||
               (*body)["job_id"].get<int64_t>() <= 0)
             return SendApiError(res, InvalidArgument("job_id", "job_id must be a Slurm job id"));
           Status st = opts_.pool_event(req.matches[1].str(), token, (*body)["job_id"].get<int64_t>());
           if (!st.ok()) return SendApiError(res, st);
           SendJson(res, 202, {{"ack", true}});
         });
}

// POST /v1/jobs, GET /v1/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/stop.
void NativeApi::RegisterJobs(Router& r) {
  r.Post("/v1/jobs", Access::kMember, Body::kJson,
         [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
           auto job = Submit(req.body, who);
           if (!job.ok()) return SendError(res, job.status());
           res.set_header("Location", "/v1/jobs/" + job->id);
           // Re-read so the response shows the state the reconciler may already have reached.
           auto fresh = store_.GetJob(job->id);
           SendJson(res, 201, PublicJob(fresh.ok() ? *fresh : *job));
         });

  r.Get("/v1/jobs", Access::kViewer, [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
    auto q = ParseListQuery(req);
    if (!q.ok()) return SendError(res, q.status());
    if (who.role != Role::kAdmin) q->team = who.team;  // only its own team's
    auto page = store_.ListJobs(*q);
    if (!page.ok()) return SendError(res, page.status());
    json arr = json::array();
    for (const auto& j : page->jobs) arr.push_back(PublicJob(j));
    SendJson(res, 200,
             {{"jobs", arr},
              {"next_page_token", page->next_page_token.empty() ? json(nullptr) : json(page->next_page_token)}});
  });

  r.Get(R"(/v1/jobs/([^/]+))", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto job = VisibleJob(req.matches[1], who);
          if (!job.ok()) return SendError(res, job.status());
          SendJson(res, 200, PublicJob(*job));
        });

  // Stop takes no body (PostWithoutBody): `curl -X POST` without Content-Length is
  // answered at once; a body that is sent is ignored.
  r.PostWithoutBody(R"(/v1/jobs/([^/?]+)/stop)", Access::kMember,
                    [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
                      auto found = VisibleJob(httplib::detail::decode_url(req.matches[1].str(), false), who);
                      if (!found.ok()) return SendError(res, found.status());
                      auto job = ctl_.StopJob(found->id);
                      if (!job.ok()) return SendError(res, job.status());
                      SendJson(res, 202, PublicJob(*job));
                    });

  // The keep-alive of a job's warm pool: {"keep_alive_seconds": n}; 0 ends an Available pool.
  r.Put(R"(/v1/jobs/([^/?]+)/keep-alive)", Access::kMember, Body::kJson,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto found = VisibleJob(httplib::detail::decode_url(req.matches[1].str(), false), who);
          if (!found.ok()) return SendError(res, found.status());
          auto body = ParseUntrustedJson(req.body);
          if (!body.ok()) return SendError(res, body.status());
          const json& b = *body;
          for (auto it = b.begin(); b.is_object() && it != b.end(); ++it)
            if (it.key() != "keep_alive_seconds") return SendError(res, InvalidArgument(it.key(), "unknown field"));
          if (!b.is_object() || !b.contains("keep_alive_seconds") || !b["keep_alive_seconds"].is_number_integer())
            return SendError(res, InvalidArgument("keep_alive_seconds", "required, an integer number of seconds"));
          auto job = ctl_.UpdateKeepAlive(found->id, b["keep_alive_seconds"].get<int64_t>());
          if (!job.ok()) return SendError(res, job.status());
          SendJson(res, 200, PublicJob(*job));
        });
}

// GET /v1/jobs/{id}/metrics (stored series), GET /metrics (Prometheus exposition:
// the caller's team's series; every team's for an admin).
void NativeApi::RegisterMetrics(Router& r) {
  r.Get(R"(/v1/jobs/([^/]+)/metrics)", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto job = VisibleJob(req.matches[1], who);
          if (!job.ok()) return SendError(res, job.status());
          auto points = store_.JobMetrics(job->id, req.get_param_value("name"));
          if (!points.ok()) return SendError(res, points.status());
          SendJson(res, 200, {{"job_id", job->id}, {"series", GroupSeries(*points)}});
        });

  r.Get("/metrics", Access::kViewer, [this](const httplib::Request&, httplib::Response& res, const Principal& who) {
    if (!opts_.metrics) return res.set_content("", "text/plain; version=0.0.4");
    // Which jobs the caller may see, decided before the gateway's lock is taken.
    std::set<std::string> shown;
    std::map<std::string, std::string> teams;
    for (const auto& id : opts_.metrics->ExposedJobs())
      if (who.Sees(TeamOfJob(id, teams))) shown.insert(id);
    std::string text = opts_.metrics->PrometheusText([&](const std::string& id) { return shown.count(id) > 0; });
    res.set_content(text, "text/plain; version=0.0.4");
  });
}

// PUT, DELETE /v1/secrets/{team}/{name} (team admins); GET /v1/secrets/{team}
// (names only). Values go in (raw request body), never come out of the public API.
void NativeApi::RegisterSecrets(Router& r) {
  auto not_in_team = [](const Principal& who, const std::string& team) {
    return Status(Code::kPermissionDenied, who.name + " is not in team " + team, "team");
  };
  r.Put(R"(/v1/secrets/([^/]+)/([^/]+))", Access::kTeamAdmin, Body::kBytes,
        [this, not_in_team](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          std::string team = req.matches[1], name = req.matches[2];
          if (!who.May(Role::kTeamAdmin, team)) return SendError(res, not_in_team(who, team));
          if (!opts_.secrets) return SendError(res, Status(Code::kFailedPrecondition, "kilnd has no master key"));
          if (!IsValidJobName(team))
            return SendError(res, InvalidArgument("team", "must be 1-63 letters, digits or hyphens"));
          if (!IsValidSecretName(name))
            return SendError(res, InvalidArgument("name", "must match [A-Za-z_][A-Za-z0-9_]*"));
          if (req.body.size() > (1u << 20))
            return SendError(res, Status(Code::kPayloadTooLarge, "secret values are at most 1 MiB"));
          auto sealed = opts_.secrets->Seal(req.body, team + "/" + name);
          if (!sealed.ok()) return SendError(res, sealed.status());
          Status st = store_.PutSecret(team, name, *sealed, RealClock::Get().NowMs());
          if (!st.ok()) return SendError(res, st);
          SendJson(res, 200, {{"team", team}, {"name", name}});
        });
  r.Get(R"(/v1/secrets/([^/]+))", Access::kViewer,
        [this, not_in_team](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          const std::string team = req.matches[1];
          if (!who.Sees(team)) return SendError(res, not_in_team(who, team));
          auto list = store_.ListSecrets(team);
          if (!list.ok()) return SendError(res, list.status());
          json arr = json::array();
          for (const auto& [n, t] : *list) arr.push_back({{"name", n}, {"updated_at", FormatTime(t)}});
          SendJson(res, 200, {{"team", team}, {"secrets", arr}});
        });
  r.Delete(R"(/v1/secrets/([^/]+)/([^/]+))", Access::kTeamAdmin,
           [this, not_in_team](const httplib::Request& req, httplib::Response& res, const Principal& who) {
             const std::string team = req.matches[1];
             if (!who.May(Role::kTeamAdmin, team)) return SendError(res, not_in_team(who, team));
             Status st = store_.DeleteSecret(team, req.matches[2]);
             if (!st.ok()) return SendError(res, st);
             SendJson(res, 200, {{"deleted", true}});
           });
}

// GET /v1/instances[?job=id-or-name]: the caller's team's. Backend handles stay inside.
void NativeApi::RegisterInstances(Router& r) {
  r.Get(R"(/v1/instances)", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          std::string job_id = req.get_param_value("job");
          if (!job_id.empty()) {
            auto job = VisibleJob(job_id, who);
            if (!job.ok()) return SendError(res, job.status());
            job_id = job->id;
          }
          auto list = store_.ListInstances(job_id);
          if (!list.ok()) return SendError(res, list.status());
          std::map<std::string, std::string> teams;
          json arr = json::array();
          for (const auto& i : *list) {
            if (!who.Sees(TeamOfJob(i.job_id, teams))) continue;
            json j = ToJson(i);
            j.erase("handle");
            arr.push_back(j);
          }
          SendJson(res, 200, {{"instances", arr}});
        });
}

}  // namespace kiln
