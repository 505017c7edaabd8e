#include "entrypoint/context.h"

#include "common/sandbox_paths.h"

namespace kiln {

const char* ToString(RuntimeContext c) {
  switch (c) {
    case RuntimeContext::kKilnLocal:
      return "kiln-local";
    case RuntimeContext::kKilnSlurm:
      return "kiln-slurm";
    case RuntimeContext::kSageMaker:
      return "sagemaker";
    case RuntimeContext::kKubernetes:
      return "kubernetes";
    case RuntimeContext::kDev:
      return "dev";
  }
  return "dev";
}

DetectedContext DetectContext(const std::function<const char*(const char*)>& env,
                              const std::function<bool(const std::string&)>& exists, bool* error) {
  auto set = [&](const char* k) {
    const char* v = env(k);
    return v && *v;
  };
  if (error) *error = false;
  if (set("KILN_RUNTIME")) {
    std::string v = env("KILN_RUNTIME");
    for (auto c : {RuntimeContext::kKilnLocal, RuntimeContext::kKilnSlurm, RuntimeContext::kSageMaker,
                   RuntimeContext::kKubernetes, RuntimeContext::kDev})
      if (v == ToString(c)) return {c, "KILN_RUNTIME=" + v};
    if (error) *error = true;
    return {RuntimeContext::kDev,
            "unknown KILN_RUNTIME=" + v + " (expected kiln-local, kiln-slurm, sagemaker, kubernetes or dev)"};
  }
  if (set("TRAINING_JOB_NAME")) return {RuntimeContext::kSageMaker, "TRAINING_JOB_NAME"};
  if (exists(sandbox::kSageMakerProcessingConfigFile))
    return {RuntimeContext::kSageMaker, sandbox::kSageMakerProcessingConfigFile};
  if (set("SLURM_JOB_ID") && set("KILN_API_URL")) return {RuntimeContext::kKilnSlurm, "SLURM_JOB_ID"};
  if (set("KUBERNETES_SERVICE_HOST")) return {RuntimeContext::kKubernetes, "KUBERNETES_SERVICE_HOST"};
  if (exists("/var/run/secrets/kubernetes.io/serviceaccount/token"))
    return {RuntimeContext::kKubernetes, "service-account token"};
  if (set("KILN_API_URL")) return {RuntimeContext::kKilnLocal, "KILN_API_URL"};
  return {RuntimeContext::kDev, "no markers"};
}

ContextPlan PlanFor(RuntimeContext c, bool have_url) {
  switch (c) {
    case RuntimeContext::kKilnLocal:
    case RuntimeContext::kKilnSlurm:
      return {have_url, true, have_url, true};
    case RuntimeContext::kSageMaker:
      // SageMaker wrote the contract files and uploads /opt/ml/model itself; kilnd
      // (if pointed at) supplies what SageMaker's caps would not carry.
      return {have_url, false, have_url, false};
    case RuntimeContext::kKubernetes:
      return {have_url, have_url, have_url, false};
    case RuntimeContext::kDev:
      return {false, false, false, false};
  }
  return {false, false, false, false};
}

}  // namespace kiln
