#pragma once
#include <httplib.h>

#include <atomic>
#include <functional>
#include <string>

#include "api/tokens.h"
#include "controller/controller.h"
#include "metrics/gateway.h"
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
  const SecretBox* secrets = nullptr;  // optional: without it, jobs cannot use secrets
  // Hyperparameters larger than this are staged as a file under `staging_dir`
  // at submit and fetched from there, so job records stay small.
  size_t inline_hyperparameters_bytes = 64u << 10;
  std::string staging_dir;
  tuning::TuningService* tuning = nullptr;  // optional: /v1/tuning-jobs
};

// Registers the /v1 routes on `server`. Borrowed references must outlive it.
class NativeApi {
 public:
  NativeApi(Controller& ctl, Store& store, const Catalog& catalog, const TokenIssuer& tokens, NativeApiOptions opts)
      : ctl_(ctl), store_(store), catalog_(catalog), tokens_(tokens), opts_(std::move(opts)) {}
  void Register(httplib::Server& server);
  // Ends open streams (on shutdown).
  void Shutdown() { shutting_down_ = true; }

  // Validates a submitted body and creates the job. Exposed for tests.
  Result<Job> Submit(const std::string& body);

 private:
  void RegisterTuning(httplib::Server& server);

  Controller& ctl_;
  Store& store_;
  const Catalog& catalog_;
  const TokenIssuer& tokens_;
  NativeApiOptions opts_;
  std::atomic<bool> shutting_down_{false};
};

int HttpStatusFor(Code c);
// The native API's error body: {"error": {"code", "message", "field"}}.
void SendApiError(httplib::Response& res, const Status& st);
// A tuning job as the native API shows it, with its trials.
nlohmann::json TuningJobDoc(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials);
bool IsValidSecretName(const std::string& n);
std::string Sha256Hex(const std::string& data);

}  // namespace kiln
