#pragma once
// The SageMaker-compatible front: AWS JSON 1.1 (POST / with X-Amz-Target:
// SageMaker.<Operation>), every request authenticated with SigV4 against Kiln's
// access keys, validated against botocore's model, then served by the same
// controller and store as the native API. The access keys are managed on the
// native API (/v1/keys, api/account_routes.cc).
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/access_keys.h"
#include "auth/replay_guard.h"
#include "auth/sigv4.h"
#include "controller/controller.h"
#include "http/route_table.h"
#include "smapi/translate.h"
#include "tuning/service.h"

namespace kiln::smapi {

struct ApiOptions {
  Context ctx;
  size_t max_body_bytes = 1u << 20;
};

struct Reply {
  int http_status = 200;
  nlohmann::json body = nlohmann::json::object();
  std::string error_type;  // empty on success
};

class SageMakerApi {
 public:
  SageMakerApi(Controller& ctl, Store& store, AccessKeys& keys, Clock& clock, ApiOptions opts)
      : ctl_(ctl), store_(store), keys_(keys), clock_(clock), opts_(std::move(opts)) {}
  void Register(http::RouteTable& server);
  // Optional: serves the hyperparameter tuning operations.
  void SetTuning(tuning::TuningService* t) { tuning_ = t; }
  // Every operation this front serves (with tuning); the access-matrix test's input.
  static const std::set<std::string>& ServedOperations();

  // One request, as the HTTP handler sees it (exposed for tests).
  // `source`: the client's address, for the audit log.
  Reply Handle(const SigV4Request& req, const std::string& source = "");
  // An authenticated, parsed request (exposed for tests).
  Reply Dispatch(const std::string& op, const nlohmann::json& body, const AccessKey& caller);

 private:
  // SageMaker's rules on top of a valid SigV4 signature: scoped to this Kiln's
  // region and to "sagemaker", X-Amz-Target signed. An error reply, or none.
  std::optional<Reply> CheckScope(const SigV4Request& req) const;
  Result<nlohmann::json> CreateJob(JobKind kind, const nlohmann::json& body, const AccessKey& caller);
  Result<Job> FindJob(JobKind kind, const std::string& name, const AccessKey& caller);
  Result<nlohmann::json> ListJobs(JobKind kind, const nlohmann::json& body, const AccessKey& caller);
  Result<nlohmann::json> StopJob(JobKind kind, const std::string& name, const AccessKey& caller);
  // A resource that carries tags: a training or processing job, or a tuning job.
  struct Tagged {
    std::string job_id;       // a job's id; empty for a tuning job
    std::string tuning_name;  // a tuning job's name; empty for a job
    std::map<std::string, std::string> tags;
  };
  Result<Tagged> FindTagged(const std::string& arn, const AccessKey& caller);
  Status UpdateTags(const Tagged& r, const std::map<std::string, std::string>& add,
                    const std::vector<std::string>& remove);
  Result<nlohmann::json> AddTags(const nlohmann::json& body, const AccessKey& caller);
  Result<nlohmann::json> ListTags(const nlohmann::json& body, const AccessKey& caller);
  Result<nlohmann::json> DeleteTags(const nlohmann::json& body, const AccessKey& caller);
  Result<tuning::TuningJob> FindTuning(const std::string& name, const AccessKey& caller);
  Result<nlohmann::json> Tuning(const std::string& op, const nlohmann::json& body, const AccessKey& caller);

  Controller& ctl_;
  Store& store_;
  AccessKeys& keys_;
  Clock& clock_;
  ReplayGuard replays_;  // signatures of mutating requests, until they expire
  ApiOptions opts_;
  tuning::TuningService* tuning_ = nullptr;
};

// Whether a SageMaker operation changes something (everything but Describe*, List*).
bool IsMutating(const std::string& op);

// Ensures an admin key exists and `path` holds it as an AWS credentials file
// (mode 0600). Returns the admin key.
Result<AccessKey> BootstrapAdminKey(AccessKeys& keys, const std::string& path);

}  // namespace kiln::smapi
