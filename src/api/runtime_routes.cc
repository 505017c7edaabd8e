// The in-job runtime API, called by kiln-entrypoint inside an instance with its
// instance token: GET /v1/runtime, GET /v1/runtime/hyperparameters, POST /v1/runtime/events.
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "api/http_helpers.h"
#include "api/native_api.h"
#include "common/fsutil.h"
#include "common/json_input.h"
#include "common/sandbox_paths.h"
#include "compute/backend.h"
#include "jobs/events.h"
#include "jobs/runtime_doc.h"

namespace kiln {
namespace {

using api_internal::SendJson;
using nlohmann::json;

// The instance a token was issued to, and its job.
struct RuntimeCaller {
  Instance instance;
  Job job;
};

// Checks "Authorization: Bearer <instance_id>.<mac>". Every failure is
// kUnauthenticated; a job that has ended no longer authenticates its instances.
Result<RuntimeCaller> Authenticate(const httplib::Request& req, const TokenIssuer& tokens, Store& store) {
  std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) != 0) return Status(Code::kUnauthenticated, "missing bearer token");
  std::string token = auth.substr(7);
  auto dot = token.rfind('.');
  if (dot == std::string::npos) return Status(Code::kUnauthenticated, "malformed token");
  std::string iid = token.substr(0, dot);
  if (!tokens.Verify(iid, token)) return Status(Code::kUnauthenticated, "invalid token");
  auto inst = store.GetInstance(iid);
  if (!inst.ok()) return Status(Code::kUnauthenticated, "token for an unknown instance");
  auto job = store.GetJob(inst->job_id);
  if (!job.ok()) return Status(Code::kUnauthenticated, "token for an unknown job");
  if (IsTerminal(job->status)) return Status(Code::kUnauthenticated, "the job has ended; its token is no longer valid");
  return RuntimeCaller{*inst, *job};
}

// POST /v1/runtime/exit: "Bearer <instance_id>/exit.<mac>" and {exit: ExitReport,
// ended_ms}; the InstanceExited event it stands for.
Result<Event> ParseExitReport(const httplib::Request& req, const TokenIssuer& tokens, Store& store) {
  const std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) != 0) return Status(Code::kUnauthenticated, "missing bearer token");
  const std::string token = auth.substr(7);
  const auto dot = token.rfind('.');
  const std::string suffix = kExitTokenSuffix;
  if (dot == std::string::npos || dot < suffix.size() || token.compare(dot - suffix.size(), suffix.size(), suffix) != 0)
    return Status(Code::kUnauthenticated, "not an exit token");
  const std::string signed_id = token.substr(0, dot);
  if (!tokens.Verify(signed_id, token)) return Status(Code::kUnauthenticated, "invalid token");
  const std::string iid = signed_id.substr(0, signed_id.size() - suffix.size());
  auto inst = store.GetInstance(iid);
  if (!inst.ok()) return Status(Code::kUnauthenticated, "token for an unknown instance");
  auto body = ParseUntrustedJson(req.body, "body");
  if (!body.ok()) return body.status();
  if (!body->is_object() || !body->contains("exit") || !(*body)["exit"].is_object())
    return InvalidArgument("exit", "exit must be an exit report");
  auto report = ExitReportFromJson((*body)["exit"]);
  if (!report.ok()) return InvalidArgument("exit", report.status().message());
  report->instance_id = iid;
  Event e;
  e.job_id = inst->job_id;
  e.type = EventType::kInstanceExited;
  e.source = "backend";
  e.dedup_key = "exit:" + iid;
  const json& ended = (*body)["ended_ms"];
  e.time = ended.is_number_integer() && ended.get<int64_t>() > 0 ? ended.get<TimeMs>() : 0;
  e.payload = ToJson(*report);
  return e;
}

// The GET /v1/runtime document: everything the entrypoint needs to set up /opt/ml.
RuntimeDoc BuildRuntimeDoc(const Instance& in, const Job& job, const Catalog& catalog, const std::string& job_interface,
                           std::map<std::string, std::string> secrets, std::optional<RuntimeStatsd> statsd) {
  const JobSpec& spec = job.spec;
  RuntimeDoc doc;
  doc.job_id = job.id;
  doc.job_name = spec.name;
  doc.instance_id = in.id;
  doc.index = in.index;
  doc.attempt = in.attempt;
  doc.kind = spec.kind;
  if (spec.hyperparameters_file.empty()) {
    doc.hyperparameters = spec.hyperparameters;
  } else {
    // Staged: the entrypoint fetches the file as is, and writes it without parsing.
    StagedHyperparameters staged{"/v1/runtime/hyperparameters", std::nullopt};
    std::error_code ec;
    auto size = std::filesystem::file_size(spec.hyperparameters_file, ec);
    if (!ec) staged.bytes = size;
    doc.staged_hyperparameters = staged;
  }
  doc.environment = spec.environment;
  doc.channels = spec.inputs;
  doc.sharded_channels = spec.sharded_channels;
  const InstanceType* t = catalog.FindType(spec.instance_type);
  doc.num_cpus = t ? static_cast<int>(t->vcpus) : 1;
  doc.num_gpus = t ? t->gpus : 0;
  doc.resource_config.current_host = "algo-" + std::to_string(in.index + 1);
  for (int i = 0; i < spec.instance_count; ++i) doc.resource_config.hosts.push_back("algo-" + std::to_string(i + 1));
  doc.resource_config.current_instance_type = spec.instance_type;
  // The interface its peers are reached on: loopback alone, or the job's link.
  doc.resource_config.network_interface_name = spec.instance_count > 1 ? job_interface : "lo";
  doc.output_dir = job.output_dir;
  doc.statsd = std::move(statsd);
  doc.secrets = std::move(secrets);
  for (const auto& [name, regex] : spec.metric_definitions) doc.metric_definitions.push_back({name, regex});
  doc.pack_output_data = spec.pack_output_data;
  // Uploads are staged by the backend at /opt/ml/.kiln/uploads/<i>; the entrypoint
  // copies local_path there once the command succeeds.
  for (size_t i = 0; i < spec.uploads.size(); ++i)
    doc.uploads.push_back({spec.uploads[i].local_path, sandbox::kUploadsPrefix + std::to_string(i)});
  if (const ImageEnv* img = catalog.FindImage(spec.image); img && !img->python.empty())
    doc.script_mode_python = img->python;
  return doc;
}

// A POST /v1/runtime/events body, {"type": phase, "time_ms"?, "payload"?}, as a
// kPhaseReported event. Posting it twice is harmless: the dedup key names the phase.
Result<Event> ParsePhaseReport(const std::string& raw, const Instance& in, const Job& job) {
  auto parsed = ParseUntrustedJson(raw);
  if (!parsed.ok()) return parsed.status();
  const json& body = *parsed;
  if (!body.is_object() || !body.contains("type") || !body["type"].is_string())
    return InvalidArgument("type", "required string");
  std::string phase_name = body["type"];
  std::optional<Phase> phase = ParsePhase(phase_name);
  if (!phase) return InvalidArgument("type", "unknown phase '" + phase_name + "'");
  Event e;
  e.job_id = job.id;
  e.type = EventType::kPhaseReported;
  e.source = "entrypoint";
  e.dedup_key = "phase:" + in.id + ":" + phase_name;
  PhaseReport report;
  report.instance_id = in.id;
  report.phase = *phase;
  if (body.contains("time_ms") && body["time_ms"].is_number_integer()) report.time_ms = body["time_ms"].get<TimeMs>();
  if (body.contains("payload") && body["payload"].is_object() && body["payload"].contains("model_artifact") &&
      body["payload"]["model_artifact"].is_string())
    report.model_artifact = body["payload"]["model_artifact"].get<std::string>();
  if (phase == Phase::kTraining && body.contains("payload") && body["payload"].is_object()) {
    const json& p = body["payload"];
    if (p.contains("start") && p["start"].is_string()) {
      const std::string start = p["start"];
      if (start != "cold" && start != "warm" && start != "warm-runtime")
        return InvalidArgument("payload.start", "must be cold, warm or warm-runtime");
      report.start = start;
    }
    if (p.contains("start_note") && p["start_note"].is_string())
      report.start_note = SanitizeUtf8(TruncateUtf8(p["start_note"].get<std::string>(), 512));
  }
  e.payload = ToJson(report);
  return e;
}

}  // namespace

void NativeApi::RegisterRuntime(Router& r) {
  r.Get("/v1/runtime", Access::kInstance,
        [this](const httplib::Request& req, httplib::Response& res, const Principal&) {
          auto caller = Authenticate(req, tokens_, store_);
          if (!caller.ok()) return SendApiError(res, caller.status());
          // Secrets before StatsD: a job that cannot get its secrets gets no port either.
          auto secrets = OpenJobSecrets(caller->job);
          if (!secrets.ok()) return SendApiError(res, secrets.status());
          auto statsd = OpenStatsd(caller->instance, caller->job);
          SendJson(res, 200,
                   ToJson(BuildRuntimeDoc(caller->instance, caller->job, catalog_, opts_.job_interface,
                                          std::move(*secrets), std::move(statsd))));
        });

  r.Get("/v1/runtime/hyperparameters", Access::kInstance,
        [this](const httplib::Request& req, httplib::Response& res, const Principal&) {
          auto caller = Authenticate(req, tokens_, store_);
          if (!caller.ok()) return SendApiError(res, caller.status());
          const JobSpec& spec = caller->job.spec;
          if (spec.hyperparameters_file.empty()) return SendJson(res, 200, spec.hyperparameters);
          // Only a file kilnd staged: in the staging directory, never through a symlink.
          const std::filesystem::path file(spec.hyperparameters_file);
          auto staged = file.parent_path() == std::filesystem::path(opts_.staging_dir)
                            ? ReadFileBeneath(opts_.staging_dir, file.filename().string(), opts_.max_body_bytes)
                            : Result<std::string>(Status(Code::kFailedPrecondition, "not a staged file"));
          if (!staged.ok())
            return SendApiError(res, Status(Code::kFailedPrecondition,
                                            "staged hyperparameters are missing: " + spec.hyperparameters_file));
          res.status = 200;
          res.set_content(*staged, "application/json");
        });

  // The supervisor of an instance on a backend that asks for it (Slurm) reports
  // the end itself, before Slurm's end-of-job hook: with the exit token
  // ("<instance_id>/exit"), which only the supervisor holds. The job's own token
  // is refused here, so a job cannot end itself in Kiln's books and run on.
  r.Post("/v1/runtime/exit", Access::kInstance, Body::kJson,
         [this](const httplib::Request& req, httplib::Response& res, const Principal&) {
           auto event = ParseExitReport(req, tokens_, store_);
           if (!event.ok()) return SendApiError(res, event.status());
           Status st = ctl_.Post(std::move(*event));
           if (!st.ok()) return SendApiError(res, st);
           SendJson(res, 200, {{"ack", true}});
         });

  r.Post("/v1/runtime/events", Access::kInstance, Body::kJson,
         [this](const httplib::Request& req, httplib::Response& res, const Principal&) {
           auto caller = Authenticate(req, tokens_, store_);
           if (!caller.ok()) return SendApiError(res, caller.status());
           auto event = ParsePhaseReport(req.body, caller->instance, caller->job);
           if (!event.ok()) return SendApiError(res, event.status());
           Status st = ctl_.Post(std::move(*event));
           if (!st.ok()) return SendApiError(res, st);
           SendJson(res, 200, {{"ack", true}});
         });
}

// Secrets the job declared, for its team only. A missing one fails the fetch (and
// so the job, early) with a reason that names it but shows no value.
Result<std::map<std::string, std::string>> NativeApi::OpenJobSecrets(const Job& job) {
  std::map<std::string, std::string> secrets;
  for (const auto& name : job.spec.secrets) {
    if (!opts_.secrets) return Status(Code::kFailedPrecondition, "kilnd has no master key");
    auto sealed = store_.GetSecret(job.spec.team, name);
    if (!sealed.ok())
      return Status(Code::kFailedPrecondition, "secret " + name + " not found for team " + job.spec.team);
    auto value = opts_.secrets->Open(*sealed, job.spec.team + "/" + name);
    if (!value.ok())
      return Status(Code::kFailedPrecondition,
                    "secret " + name + " of team " + job.spec.team + " cannot be decrypted with this master key");
    secrets[name] = SanitizeUtf8(*value);
  }
  return secrets;
}

std::optional<RuntimeStatsd> NativeApi::OpenStatsd(const Instance& in, const Job& job) {
  if (!opts_.metrics) return std::nullopt;
  std::string host_socket = opts_.metrics_socket_path ? opts_.metrics_socket_path(in.id) : "";
  const bool own_network = opts_.statsd_udp == HostUdpPort::kNone && !host_socket.empty();
  auto port = opts_.metrics->OpenInstance(in.id, job.id, job.spec.team, host_socket,
                                          own_network ? sandbox::kStatsdRelayPort : 0,
                                          own_network ? HostUdpPort::kNone : HostUdpPort::kOpen);
  if (!port.ok()) return std::nullopt;
  if (!host_socket.empty()) {
    // Remembered beside the socket, so a restarted kilnd reopens the same port. Without
    // it the job still runs and reports now; only a restart would move its port.
    Status st = WriteFileAtomic(host_socket + ".port", std::to_string(*port), 0644, Sync::kNoSync);
    if (!st.ok())
      fprintf(stderr, "kilnd: remembering the StatsD port of %s: %s\n", in.id.c_str(), st.ToString().c_str());
  }
  RuntimeStatsd statsd{"127.0.0.1", *port, std::nullopt};
  if (!host_socket.empty()) statsd.socket = sandbox::kStatsdSocket;
  return statsd;
}

}  // namespace kiln
