#pragma once
// kilnd's compute pools from its config: the backends, the router the controller
// sees, and what the API needs of them (GET /v1/pools, the Slurm hook).
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "compute/local/local_backend.h"
#include "compute/pools/pool_router.h"
#include "compute/slurm/slurm_backend.h"

namespace kiln {

struct PoolsEnv {
  std::string data_dir;
  std::string bin_dir;
  LocalBackendOptions sandbox;  // the local backend's, from the config's sandbox section
  std::function<std::string(const std::string&)> token_for;
  std::function<void()> on_capacity;
};

struct Pools {
  std::unique_ptr<PoolRouter> router;
  std::map<std::string, slurm::SlurmBackend*> slurm;  // by pool name
  std::map<std::string, std::string> hook_tokens;     // by Slurm pool name
  // The hook's call: kNotFound (no such Slurm pool), kUnauthenticated (wrong token).
  Status SlurmEvent(const std::string& pool, const std::string& token, int64_t slurm_job_id) const;
};

// The `slurm` section of a pool (docs/operations.md); errors name the field
// ("pools[1].slurm.url").
Result<slurm::SlurmBackendOptions> SlurmOptionsFromJson(const nlohmann::json& s, const std::string& field,
                                                        const std::string& pool, const std::string& bin_dir);

// Builds every pool's backend (a local pool through `local`, which builds the
// local backend as before).
Result<Pools> BuildPools(const std::vector<PoolSpec>& specs, const PoolsEnv& env, EventSink& sink,
                         const std::function<Result<std::unique_ptr<ComputeBackend>>()>& local);

}  // namespace kiln
