// The native API's shared helpers, job submission, and the route groups for
// health, jobs (with stop), instances, metrics and secrets. Logs and events are in
// stream_routes.cc, the in-job runtime in runtime_routes.cc, tuning in tuning_routes.cc.
#include "api/native_api.h"

#include <openssl/sha.h>

#include <filesystem>

#include "api/http_helpers.h"
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
  for (const char* k : {"created_ms", "ended_ms", "stop_cause", "last_job_seq", "phase_times"}) j.erase(k);
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

void SendApiError(httplib::Response& res, const Status& st) {
  SendError(res, st);
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return HexEncode(md, sizeof(md));
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
  }
  return 500;
}

Result<Job> NativeApi::Submit(const std::string& body) {
  if (body.size() > opts_.max_body_bytes)
    return Status(Code::kPayloadTooLarge, "request body exceeds " + std::to_string(opts_.max_body_bytes) + " bytes");
  auto j = ParseUntrustedJson(body);
  if (!j.ok()) return j.status();
  auto spec = ParseSpec(*j, catalog_);
  if (!spec.ok()) return spec.status();
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
      std::string path = opts_.staging_dir + "/" + Sha256Hex(hps) + ".json";
      KILN_RETURN_IF_ERROR(MakeDirs(opts_.staging_dir));
      if (!fs::exists(path)) KILN_RETURN_IF_ERROR(WriteFileAtomic(path, hps, 0600));
      spec->hyperparameters = json::object();
      spec->hyperparameters_file = path;
    }
  }
  return ctl_.CreateJob(*spec);
}

void NativeApi::Register(httplib::Server& s) {
  if (opts_.tuning) RegisterTuning(s);
  s.set_payload_max_length(opts_.max_body_bytes);
  RegisterHealthAndCatalog(s);
  RegisterJobs(s);
  RegisterMetrics(s);
  RegisterSecrets(s);
  RegisterInstances(s);
  RegisterLogsAndEvents(s);
  RegisterRuntime(s);
}

// GET /v1/health, GET /v1/instance-types.
void NativeApi::RegisterHealthAndCatalog(httplib::Server& s) {
  s.Get("/v1/health", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"status", "ok"}, {"version", opts_.version}});
  });

  s.Get("/v1/instance-types", [this](const httplib::Request&, httplib::Response& res) {
    json arr = json::array();
    for (const auto& [n, t] : catalog_.types())
      arr.push_back({{"name", n}, {"vcpus", t.vcpus}, {"memory_mib", t.memory_mib}, {"gpus", t.gpus}});
    SendJson(res, 200, {{"instance_types", arr}});
  });
}

// POST /v1/jobs, GET /v1/jobs, GET /v1/jobs/{id}, POST /v1/jobs/{id}/stop.
void NativeApi::RegisterJobs(httplib::Server& s) {
  s.Post("/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = Submit(req.body);
    if (!job.ok()) return SendError(res, job.status());
    res.set_header("Location", "/v1/jobs/" + job->id);
    // Re-read so the response shows the state the reconciler may already have reached.
    auto fresh = store_.GetJob(job->id);
    SendJson(res, 201, PublicJob(fresh.ok() ? *fresh : *job));
  });

  s.Get("/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    auto q = ParseListQuery(req);
    if (!q.ok()) return SendError(res, q.status());
    auto page = store_.ListJobs(*q);
    if (!page.ok()) return SendError(res, page.status());
    json arr = json::array();
    for (const auto& j : page->jobs) arr.push_back(PublicJob(j));
    SendJson(res, 200,
             {{"jobs", arr},
              {"next_page_token", page->next_page_token.empty() ? json(nullptr) : json(page->next_page_token)}});
  });

  s.Get(R"(/v1/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    SendJson(res, 200, PublicJob(*job));
  });

  // Stop takes no body. Registered with the ContentReader overload because httplib
  // dispatches those routes before it reads a body: a POST without Content-Length
  // (curl -X POST) is then answered at once, where an ordinary route would wait for
  // the read timeout and refuse it with 400. The reader is never called, so a body
  // that is sent is ignored.
  s.Post(R"(/v1/jobs/([^/?]+)/stop)",
         [this](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
           auto job = ctl_.StopJob(httplib::detail::decode_url(req.matches[1].str(), false));
           if (!job.ok()) return SendError(res, job.status());
           SendJson(res, 202, PublicJob(*job));
         });
}

// GET /v1/jobs/{id}/metrics (stored series), GET /metrics (Prometheus exposition).
void NativeApi::RegisterMetrics(httplib::Server& s) {
  s.Get(R"(/v1/jobs/([^/]+)/metrics)", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    auto points = store_.JobMetrics(job->id, req.get_param_value("name"));
    if (!points.ok()) return SendError(res, points.status());
    SendJson(res, 200, {{"job_id", job->id}, {"series", GroupSeries(*points)}});
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text = opts_.metrics ? opts_.metrics->PrometheusText() : "";
    res.set_content(text, "text/plain; version=0.0.4");
  });
}

// PUT, DELETE /v1/secrets/{team}/{name}; GET /v1/secrets/{team}.
// Values go in (raw request body), never come out of the public API.
void NativeApi::RegisterSecrets(httplib::Server& s) {
  s.Put(R"(/v1/secrets/([^/]+)/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    std::string team = req.matches[1], name = req.matches[2];
    if (!opts_.secrets) return SendError(res, Status(Code::kFailedPrecondition, "kilnd has no master key"));
    if (!IsValidJobName(team))
      return SendError(res, InvalidArgument("team", "must be 1-63 letters, digits or hyphens"));
    if (!IsValidSecretName(name)) return SendError(res, InvalidArgument("name", "must match [A-Za-z_][A-Za-z0-9_]*"));
    if (req.body.size() > (1u << 20))
      return SendError(res, Status(Code::kPayloadTooLarge, "secret values are at most 1 MiB"));
    auto sealed = opts_.secrets->Seal(req.body, team + "/" + name);
    if (!sealed.ok()) return SendError(res, sealed.status());
    Status st = store_.PutSecret(team, name, *sealed, RealClock::Get().NowMs());
    if (!st.ok()) return SendError(res, st);
    SendJson(res, 200, {{"team", team}, {"name", name}});
  });
  s.Get(R"(/v1/secrets/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto list = store_.ListSecrets(req.matches[1]);
    if (!list.ok()) return SendError(res, list.status());
    json arr = json::array();
    for (const auto& [n, t] : *list) arr.push_back({{"name", n}, {"updated_at", FormatTime(t)}});
    SendJson(res, 200, {{"team", req.matches[1]}, {"secrets", arr}});
  });
  s.Delete(R"(/v1/secrets/([^/]+)/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    Status st = store_.DeleteSecret(req.matches[1], req.matches[2]);
    if (!st.ok()) return SendError(res, st);
    SendJson(res, 200, {{"deleted", true}});
  });
}

// GET /v1/instances[?job=id-or-name]. Backend handles stay inside.
void NativeApi::RegisterInstances(httplib::Server& s) {
  s.Get(R"(/v1/instances)", [this](const httplib::Request& req, httplib::Response& res) {
    std::string job_id = req.get_param_value("job");
    if (!job_id.empty()) {
      auto job = store_.GetJob(job_id);
      if (!job.ok()) return SendError(res, job.status());
      job_id = job->id;
    }
    auto list = store_.ListInstances(job_id);
    if (!list.ok()) return SendError(res, list.status());
    json arr = json::array();
    for (const auto& i : *list) {
      json j = ToJson(i);
      j.erase("handle");
      arr.push_back(j);
    }
    SendJson(res, 200, {{"instances", arr}});
  });
}

}  // namespace kiln
