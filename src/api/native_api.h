#pragma once
#include <httplib.h>

#include <atomic>
#include <functional>
#include <ios>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "api/router.h"
#include "api/tokens.h"
#include "auth/access_keys.h"
#include "auth/api_tokens.h"
#include "controller/controller.h"
#include "jobs/runtime_doc.h"
#include "metrics/gateway.h"
#include "schedules/scheduler.h"
#include "secrets/secret_box.h"
#include "tuning/service.h"

namespace kiln {

struct NativeApiOptions {
  size_t max_body_bytes = 64u << 20;
  std::string version = "0.1.0";
  // Where an instance's log file is (backend-specific).
  std::function<std::string(const std::string& instance_id)> log_path;
  MetricsGateway* metrics = nullptr;  // optional
  std::function<std::string(const std::string& instance_id)> metrics_socket_path;
  // kNone when instances have a network of their own: they get only their Unix
  // socket, and their entrypoint relays sandbox::kStatsdRelayPort to it.
  HostUdpPort statsd_udp = HostUdpPort::kOpen;
  // The interface a multi-instance job's instances reach each other on
  // (resourceconfig.json's network_interface_name): "eth0" on the local
  // backend's job links, "lo" on the host network.
  std::string job_interface = "lo";
  const SecretBox* secrets = nullptr;  // optional: without it, jobs cannot use secrets
  // Hyperparameters larger than this are staged as a file under `staging_dir`
  // at submit and fetched from there, so job records stay small.
  size_t inline_hyperparameters_bytes = 64u << 10;
  std::string staging_dir;
  tuning::TuningService* tuning = nullptr;    // optional: /v1/tuning-jobs
  schedules::Scheduler* schedules = nullptr;  // optional: /v1/schedules
  // GET /v1/pools: each compute pool with its health and queue; null: none listed.
  std::function<nlohmann::json()> pools;
  // POST /v1/pools/{pool}/slurm-events from Slurm's end-of-job hook: the pool's
  // hook token (checked by the callee) and the Slurm job id. kNotFound: no such
  // Slurm pool; kUnauthenticated: a wrong token. Null: no Slurm pools.
  std::function<Status(const std::string& pool, const std::string& token, int64_t slurm_job_id)> pool_event;
  // Who may call: API tokens (required for every route but health and the
  // runtime), access keys (optional: /v1/keys), origins, limits, audit.
  ApiTokens* api_tokens = nullptr;
  AccessKeys* access_keys = nullptr;
  RouterOptions router;
};

// Registers the /v1 routes on `server`, each behind the router's gate
// (router.h). Borrowed references must outlive it.
class NativeApi {
 public:
  NativeApi(Controller& ctl, Store& store, const Catalog& catalog, const TokenIssuer& tokens, NativeApiOptions opts)
      : ctl_(ctl),
        store_(store),
        catalog_(catalog),
        tokens_(tokens),
        opts_(std::move(opts)),
        streams_(opts_.router.max_streams, opts_.router.max_streams_per_principal) {}
  void Register(http::RouteTable& server);
  // Only the in-job runtime routes (/v1/runtime, instance tokens): what kilnd
  // serves on the runtime socket that sandboxes reach.
  // Bodies are bounded: a phase report is a few hundred bytes, and every caller
  // there is a job.
  void RegisterRuntimeOnly(httplib::Server& server) {
    server.set_payload_max_length(kRuntimeMaxBodyBytes);
    runtime_routes_ = std::make_unique<http::HttplibRoutes>(server);
    runtime_router_ = std::make_unique<Router>(*runtime_routes_, nullptr, RouterOptions{});
    RegisterRuntime(*runtime_router_);
  }
  // Every route Register added, with its access rule (the access-matrix test's input).
  const std::vector<RouteRule>& Routes() const { return router_->rules(); }
  static constexpr size_t kRuntimeMaxBodyBytes = 64u << 10;
  // Ends open streams (on shutdown).
  void Shutdown() { shutting_down_ = true; }

  // A byte range of a job's whole log (its instances' logs one after the other),
  // for reads without follow: ?offset=&limit=.
  struct LogRange {
    uint64_t skip = 0;             // bytes still to skip
    uint64_t budget = UINT64_MAX;  // bytes still to send
  };

  // Validates a submitted body and creates the job, for `who`'s team unless the
  // body names another team that `who` may submit to. Exposed for tests.
  Result<Job> Submit(const std::string& body, const Principal& who);

 private:
  // One per route group; Register calls each once. Each says its routes.
  void RegisterHealthAndCatalog(Router& r);  // native_api.cc
  void RegisterJobs(Router& r);              // native_api.cc
  void RegisterInstances(Router& r);         // native_api.cc
  void RegisterMetrics(Router& r);           // native_api.cc
  void RegisterSecrets(Router& r);           // native_api.cc
  void RegisterLogsAndEvents(Router& r);     // stream_routes.cc
  void RegisterRuntime(Router& r);           // runtime_routes.cc (in-job, instance tokens)
  void RegisterTuning(Router& r);            // tuning_routes.cc
  void RegisterSchedules(Router& r);         // schedule_routes.cc
  void RegisterAccounts(Router& r);          // account_routes.cc (tokens, access keys, audit)

  // The job `ref` names, if `who` may see it; otherwise the same NotFound as for a
  // job that does not exist.
  Result<Job> VisibleJob(const std::string& ref, const Principal& who);
  // A job's team, for filtering streams and lists (cached by the caller).
  std::string TeamOfJob(const std::string& job_id, std::map<std::string, std::string>& cache);

  // Server-Sent Events (stream_routes.cc): the global log when `job_id` is empty,
  // else one job's events; null with an error in `res`.
  std::shared_ptr<http::StreamSource> StreamEvents(const httplib::Request& req, httplib::Response& res,
                                                   const std::string& job_id, const Principal& who);

  // In-job runtime (runtime_routes.cc).
  // The declared secrets of `job`, opened for its team: {name: value}.
  Result<std::map<std::string, std::string>> OpenJobSecrets(const Job& job);
  // Opens the instance's StatsD port; null when kilnd has no metrics gateway or it fails.
  std::optional<RuntimeStatsd> OpenStatsd(const Instance& in, const Job& job);

  Controller& ctl_;
  Store& store_;
  const Catalog& catalog_;
  const TokenIssuer& tokens_;
  NativeApiOptions opts_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<http::HttplibRoutes> runtime_routes_;
  std::unique_ptr<Router> runtime_router_;
  StreamSlots streams_;  // logs and event streams open now
  std::atomic<bool> shutting_down_{false};
};

int HttpStatusFor(Code c);
// A tuning job as the native API shows it, with its trials.
nlohmann::json TuningJobDoc(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials);
bool IsValidSecretName(const std::string& n);

}  // namespace kiln
