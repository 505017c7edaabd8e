#include "api/native_api.h"

#include <openssl/sha.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "common/fsutil.h"
#include "common/ids.h"

namespace kiln {
namespace {

using nlohmann::json;

void SendError(httplib::Response& res, const Status& st) {
  json e = {{"code", CodeName(st.code())}, {"message", st.message()}};
  e["field"] = st.field().empty() ? json(nullptr) : json(st.field());
  res.status = HttpStatusFor(st.code());
  res.set_content(json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

}  // namespace

void SendApiError(httplib::Response& res, const Status& st) {
  SendError(res, st);
}

namespace {

void SendJson(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
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

std::string SseFrame(const std::string& id, const std::string& type, const std::string& data) {
  return "id: " + id + "\nevent: " + type + "\ndata: " + data + "\n\n";
}

int64_t ResumePoint(const httplib::Request& req) {
  std::string v = req.get_header_value("Last-Event-ID");
  if (v.empty()) v = req.get_param_value("after");
  if (v.empty()) return 0;
  try {
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

bool BoolParam(const httplib::Request& req, const char* name, bool def) {
  if (!req.has_param(name)) return def;
  std::string v = req.get_param_value(name);
  return v == "1" || v == "true" || v == "yes";
}

}  // namespace

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
      return 500;
  }
  return 500;
}

Result<Job> NativeApi::Submit(const std::string& body) {
  if (body.size() > opts_.max_body_bytes)
    return Status(Code::kPayloadTooLarge, "request body exceeds " + std::to_string(opts_.max_body_bytes) + " bytes");
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return InvalidArgument("", "request body is not valid JSON");
  auto spec = ParseSpec(j, &catalog_);
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

  s.Get("/v1/health", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"status", "ok"}, {"version", opts_.version}});
  });

  s.Get("/v1/instance-types", [this](const httplib::Request&, httplib::Response& res) {
    json arr = json::array();
    for (const auto& [n, t] : catalog_.types())
      arr.push_back({{"name", n}, {"vcpus", t.vcpus}, {"memory_mib", t.memory_mib}, {"gpus", t.gpus}});
    SendJson(res, 200, {{"instance_types", arr}});
  });

  s.Post("/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = Submit(req.body);
    if (!job.ok()) return SendError(res, job.status());
    res.set_header("Location", "/v1/jobs/" + job->id);
    // Re-read so the response shows the state the reconciler may already have reached.
    auto fresh = store_.GetJob(job->id);
    SendJson(res, 201, PublicJob(fresh.ok() ? *fresh : *job));
  });

  s.Get("/v1/jobs", [this](const httplib::Request& req, httplib::Response& res) {
    ListQuery q;
    if (req.has_param("status")) {
      auto st = ParseJobStatus(req.get_param_value("status"));
      if (!st)
        return SendError(res,
                         InvalidArgument("status", "must be one of InProgress, Completed, Failed, Stopping, Stopped"));
      q.status = st;
    }
    q.name_contains = req.get_param_value("name");
    if (req.has_param("tag")) {
      // Read from the raw target: "tag=team=a" is split at its second '=' by the parser.
      std::string t = req.get_param_value("tag");
      if (auto pos = req.target.find("tag="); pos != std::string::npos) {
        auto end = req.target.find('&', pos);
        t = httplib::detail::decode_url(req.target.substr(pos + 4, end == std::string::npos ? end : end - pos - 4),
                                        true);
      }
      auto eq = t.find('=');
      if (eq == std::string::npos || eq == 0) return SendError(res, InvalidArgument("tag", "must be key=value"));
      q.tag_key = t.substr(0, eq);
      q.tag_value = t.substr(eq + 1);
    }
    if (req.has_param("limit")) {
      try {
        q.limit = std::stoi(req.get_param_value("limit"));
      } catch (...) {
        q.limit = -1;
      }
      if (q.limit < 1 || q.limit > 1000) return SendError(res, InvalidArgument("limit", "must be 1..1000"));
    }
    q.page_token = req.get_param_value("page_token");
    auto page = store_.ListJobs(q);
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

  // Stop takes no body. Handled before routing so that a POST without a
  // Content-Length (curl -X POST) is not refused by the body reader.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    static const std::regex kStop(R"(^/v1/jobs/([^/?]+)/stop$)");
    static const std::regex kTuningStop(R"(^/v1/tuning-jobs/([A-Za-z0-9-]+)/stop$)");
    std::smatch m;
    if (req.method == "POST" && opts_.tuning && std::regex_match(req.path, m, kTuningStop)) {
      Status st = opts_.tuning->Stop(m[1].str());
      auto job = st.ok() ? opts_.tuning->Get(m[1].str()) : Result<tuning::TuningJob>(st);
      if (!job.ok()) {
        SendError(res, job.status());
      } else {
        auto trials = opts_.tuning->Trials(*job);
        SendJson(res, 202, TuningJobDoc(*job, trials.ok() ? *trials : std::vector<tuning::TrialView>{}));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.method != "POST" || !std::regex_match(req.path, m, kStop))
      return httplib::Server::HandlerResponse::Unhandled;
    auto job = ctl_.StopJob(httplib::detail::decode_url(m[1].str(), false));
    if (!job.ok()) {
      SendError(res, job.status());
    } else {
      SendJson(res, 202, PublicJob(*job));
    }
    return httplib::Server::HandlerResponse::Handled;
  });

  s.Get(R"(/v1/jobs/([^/]+)/metrics)", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    auto points = store_.JobMetrics(job->id, req.get_param_value("name"));
    if (!points.ok()) return SendError(res, points.status());
    // Group points into series: name + tags + stat.
    json series = json::array();
    std::string last;
    for (const auto& p : *points) {
      std::string key = p.name + "\x1f" + p.tags + "\x1f" + p.stat;
      if (key != last) {
        series.push_back({{"name", p.name}, {"tags", p.tags}, {"stat", p.stat}, {"points", json::array()}});
        last = key;
      }
      series.back()["points"].push_back({p.time, p.value});
    }
    SendJson(res, 200, {{"job_id", job->id}, {"series", series}});
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text = opts_.metrics ? opts_.metrics->PrometheusText() : "";
    res.set_content(text, "text/plain; version=0.0.4");
  });

  // Secrets: values go in (raw request body), never come out of the public API.
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

  // Logs: the instances' output, in launch order. follow=true streams until the job ends.
  s.Get(R"(/v1/jobs/([^/]+)/logs)", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    const std::string job_id = job->id;
    const bool follow = BoolParam(req, "follow", false);
    auto offsets = std::make_shared<std::map<std::string, std::streamoff>>();
    res.set_chunked_content_provider(
        "text/plain; charset=utf-8", [this, job_id, follow, offsets](size_t, httplib::DataSink& sink) {
          int ino = follow ? inotify_init1(IN_CLOEXEC | IN_NONBLOCK) : -1;
          std::set<std::string> watched;
          for (;;) {
            auto j = store_.GetJob(job_id);
            if (!j.ok()) break;
            bool terminal = IsTerminal(j->status);
            int64_t seen = ctl_.version();
            for (const auto& in : j->instances) {
              std::string path = opts_.log_path ? opts_.log_path(in.id) : "";
              if (path.empty()) continue;
              if (ino >= 0 && !watched.count(path) && std::filesystem::exists(path)) {
                inotify_add_watch(ino, path.c_str(), IN_MODIFY);
                watched.insert(path);
              }
              std::ifstream f(path, std::ios::binary);
              if (!f) continue;
              auto& off = (*offsets)[path];
              f.seekg(off);
              std::string chunk((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
              if (!follow || chunk.empty()) {
                if (!chunk.empty() && !sink.write(chunk.data(), chunk.size())) goto done;
                off += static_cast<std::streamoff>(chunk.size());
                continue;
              }
              // Whole lines only while following.
              auto last_nl = chunk.rfind('\n');
              if (last_nl == std::string::npos) continue;
              if (!sink.write(chunk.data(), last_nl + 1)) goto done;
              off += static_cast<std::streamoff>(last_nl + 1);
            }
            if (!follow || terminal || shutting_down_) break;
            // Wake on a log write (inotify) or a job change (controller), whichever first.
            pollfd p{ino, POLLIN, 0};
            if (poll(&p, 1, 100) > 0) {
              char buf[4096];
              while (read(ino, buf, sizeof(buf)) > 0) {
              }
            } else {
              ctl_.WaitForChange(seen, 400);
            }
          }
        done:
          if (ino >= 0) close(ino);
          sink.done();
          return true;
        });
  });

  auto stream = [this](const httplib::Request& req, httplib::Response& res, const std::string& job_id) {
    int64_t after = ResumePoint(req);
    if (after < 0) return SendError(res, InvalidArgument("Last-Event-ID", "must be an integer sequence number"));
    const bool follow = BoolParam(req, "follow", true);
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, job_id, after, follow](size_t, httplib::DataSink& sink) {
          int64_t cursor = after;
          int idle_ms = 0;
          for (;;) {
            int64_t seen = ctl_.version();
            auto events = job_id.empty() ? store_.EventsAfter(cursor, 500) : store_.JobEventsAfter(job_id, cursor, 500);
            if (!events.ok()) break;
            bool ended = false;
            for (const auto& e : *events) {
              int64_t id = job_id.empty() ? e.seq : e.job_seq;
              std::string frame = SseFrame(std::to_string(id), ToString(e.type),
                                           ToJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
              if (!sink.write(frame.data(), frame.size())) goto done;
              cursor = id;
              if (!job_id.empty() && !e.status_after.empty() && IsTerminal(*ParseJobStatus(e.status_after)))
                ended = true;
            }
            if (events->size() == 500) continue;
            if (ended || !follow || shutting_down_) break;
            if (!job_id.empty()) {
              auto j = store_.GetJob(job_id);
              if (j.ok() && IsTerminal(j->status) && j->last_job_seq <= cursor) break;
            }
            if (ctl_.WaitForChange(seen, 1000) == seen) {
              idle_ms += 1000;
              if (idle_ms >= 15000) {  // keep-alive comment; also detects a gone client
                idle_ms = 0;
                if (!sink.write(": keep-alive\n\n", 14)) goto done;
              }
            }
          }
        done:
          sink.done();
          return true;
        });
  };

  s.Get(R"(/v1/jobs/([^/]+)/events)", [this, stream](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendError(res, job.status());
    stream(req, res, job->id);
  });
  s.Get("/v1/events", [stream](const httplib::Request& req, httplib::Response& res) { stream(req, res, ""); });

  // --- Internal: kiln-entrypoint ---
  auto authenticate = [this](const httplib::Request& req, Instance* out_inst, Job* out_job) -> Status {
    std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) != 0) return Status(Code::kUnauthenticated, "missing bearer token");
    std::string token = auth.substr(7);
    auto dot = token.rfind('.');
    if (dot == std::string::npos) return Status(Code::kUnauthenticated, "malformed token");
    std::string iid = token.substr(0, dot);
    if (!tokens_.Verify(iid, token)) return Status(Code::kUnauthenticated, "invalid token");
    auto inst = store_.GetInstance(iid);
    if (!inst.ok()) return Status(Code::kUnauthenticated, "token for an unknown instance");
    auto job = store_.GetJob(inst->job_id);
    if (!job.ok()) return Status(Code::kUnauthenticated, "token for an unknown job");
    if (IsTerminal(job->status))
      return Status(Code::kUnauthenticated, "the job has ended; its token is no longer valid");
    *out_inst = *inst;
    *out_job = *job;
    return Status::Ok();
  };

  s.Get("/v1/runtime", [this, authenticate](const httplib::Request& req, httplib::Response& res) {
    Instance in;
    Job job;
    Status st = authenticate(req, &in, &job);
    if (!st.ok()) return SendError(res, st);
    json hosts = json::array();
    for (int i = 0; i < job.spec.instance_count; ++i) hosts.push_back("algo-" + std::to_string(i + 1));
    json channels = json::object();
    for (const auto& [ch, p] : job.spec.inputs) channels[ch] = p;
    const InstanceType* t = catalog_.FindType(job.spec.instance_type);
    // Secrets the job declared, for its team only. A missing one fails the fetch
    // (and so the job, early) with a reason that names it but shows no value.
    json secrets = json::object();
    for (const auto& name : job.spec.secrets) {
      if (!opts_.secrets) return SendError(res, Status(Code::kFailedPrecondition, "kilnd has no master key"));
      auto sealed = store_.GetSecret(job.spec.team, name);
      if (!sealed.ok())
        return SendError(res,
                         Status(Code::kFailedPrecondition, "secret " + name + " not found for team " + job.spec.team));
      auto value = opts_.secrets->Open(*sealed, job.spec.team + "/" + name);
      if (!value.ok())
        return SendError(res, Status(Code::kFailedPrecondition, "secret " + name + " of team " + job.spec.team +
                                                                    " cannot be decrypted with this master key"));
      secrets[name] = SanitizeUtf8(*value);
    }
    json statsd = nullptr;
    if (opts_.metrics) {
      std::string host_socket = opts_.metrics_socket_path ? opts_.metrics_socket_path(in.id) : "";
      auto port = opts_.metrics->OpenInstance(in.id, job.id, job.spec.team, host_socket);
      // Remembered beside the socket, so a restarted kilnd reopens the same port.
      if (port.ok() && !host_socket.empty())
        WriteFileAtomic(host_socket + ".port", std::to_string(*port), 0644, Sync::kNoSync);
      if (port.ok()) {
        statsd = {{"host", "127.0.0.1"}, {"port", *port}};
        statsd["socket"] = host_socket.empty() ? json(nullptr) : json("/opt/ml/.kiln/statsd.sock");
      }
    }
    json doc = {{"job_id", job.id},
                {"job_name", job.spec.name},
                {"instance_id", in.id},
                {"index", in.index},
                {"attempt", in.attempt},
                {"hyperparameters", job.spec.hyperparameters},
                {"environment", job.spec.environment},
                {"channels", channels},
                {"num_cpus", t ? static_cast<int>(t->vcpus) : 1},
                {"num_gpus", t ? t->gpus : 0},
                {"resource_config",
                 {{"current_host", "algo-" + std::to_string(in.index + 1)},
                  {"hosts", hosts},
                  {"current_instance_type", job.spec.instance_type},
                  {"network_interface_name", "lo"}}},
                {"output_dir", job.output_dir},
                {"statsd", statsd},
                {"secrets", secrets},
                {"metric_definitions", job.spec.ToJson()["metric_definitions"]},
                {"kind", ToString(job.spec.kind)},
                {"sharded_channels", job.spec.sharded_channels},
                {"pack_output_data", job.spec.pack_output_data}};
    // Uploads are staged by the backend at /opt/ml/.kiln/uploads/<i>; the
    // entrypoint copies local_path there once the command succeeds.
    json uploads = json::array();
    for (size_t i = 0; i < job.spec.uploads.size(); ++i)
      uploads.push_back(
          {{"local_path", job.spec.uploads[i].local_path}, {"staged", "/opt/ml/.kiln/uploads/" + std::to_string(i)}});
    doc["uploads"] = uploads;
    if (const ImageEnv* img = catalog_.FindImage(job.spec.image); img && !img->python.empty())
      doc["script_mode_python"] = img->python;
    if (!job.spec.hyperparameters_file.empty()) {
      // Staged: the entrypoint fetches the file as is, and writes it without parsing.
      std::error_code ec;
      doc["hyperparameters"] = nullptr;
      doc["hyperparameters_url"] = "/v1/runtime/hyperparameters";
      auto size = std::filesystem::file_size(job.spec.hyperparameters_file, ec);
      if (!ec) doc["hyperparameters_bytes"] = size;
    }
    SendJson(res, 200, doc);
  });

  s.Get("/v1/runtime/hyperparameters", [this, authenticate](const httplib::Request& req, httplib::Response& res) {
    Instance in;
    Job job;
    Status st = authenticate(req, &in, &job);
    if (!st.ok()) return SendError(res, st);
    if (job.spec.hyperparameters_file.empty()) return SendJson(res, 200, job.spec.hyperparameters);
    auto staged = ReadFile(job.spec.hyperparameters_file);
    if (!staged.ok())
      return SendError(res, Status(Code::kFailedPrecondition,
                                   "staged hyperparameters are missing: " + job.spec.hyperparameters_file));
    res.status = 200;
    res.set_content(*staged, "application/json");
  });

  s.Post("/v1/runtime/events", [this, authenticate](const httplib::Request& req, httplib::Response& res) {
    Instance in;
    Job job;
    Status st = authenticate(req, &in, &job);
    if (!st.ok()) return SendError(res, st);
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("type") || !body["type"].is_string())
      return SendError(res, InvalidArgument("type", "required string"));
    std::string phase = body["type"];
    static const std::set<std::string> kPhases = {"Downloading", "Training", "FirstLine", "Uploading", "Uploaded"};
    if (!kPhases.count(phase)) return SendError(res, InvalidArgument("type", "unknown phase '" + phase + "'"));
    Event e;
    e.job_id = job.id;
    e.type = EventType::kPhaseReported;
    e.source = "entrypoint";
    e.dedup_key = "phase:" + in.id + ":" + phase;
    e.payload = {{"instance_id", in.id}, {"phase", phase}};
    if (body.contains("time_ms") && body["time_ms"].is_number_integer()) e.payload["time_ms"] = body["time_ms"];
    if (body.contains("payload") && body["payload"].is_object())
      for (auto& [k, v] : body["payload"].items())
        if (k == "model_artifact") e.payload[k] = v;
    st = ctl_.Post(e);
    if (!st.ok()) return SendError(res, st);
    SendJson(res, 200, {{"ack", true}});
  });
}

}  // namespace kiln
