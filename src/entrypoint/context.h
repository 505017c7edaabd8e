#pragma once
// Where kiln-entrypoint runs, from documented markers (docs/runtime-contract.md).
// Pure: the environment and the filesystem come in as functions.
#include <functional>
#include <string>

namespace kiln {

enum class RuntimeContext { kKilnLocal, kKilnSlurm, kSageMaker, kKubernetes, kDev };

const char* ToString(RuntimeContext c);

struct DetectedContext {
  RuntimeContext context;
  std::string marker;  // what decided it, for the log
};

// Order: an explicit KILN_RUNTIME wins (the override; unknown values are an
// error, reported in `marker` with context kDev); then SageMaker's
// TRAINING_JOB_NAME / processing config; then Slurm (SLURM_JOB_ID with a kilnd
// URL); then Kubernetes (KUBERNETES_SERVICE_HOST or a service-account token);
// then kiln-local (a kilnd URL); else dev.
DetectedContext DetectContext(const std::function<const char*(const char*)>& getenv_fn,
                              const std::function<bool(const std::string&)>& exists_fn, bool* error = nullptr);

// What each context does.
struct ContextPlan {
  bool fetch_runtime;   // GET /v1/runtime from kilnd
  bool write_contract;  // hyperparameters.json, resourceconfig.json, channels
  bool report_phases;   // POST /v1/runtime/events
  bool upload_model;    // pack /opt/ml/model into model.tar.gz
};
ContextPlan PlanFor(RuntimeContext c, bool have_kilnd_url);

}  // namespace kiln
