#pragma once
// Compute pools: each names a backend (local, slurm) with its settings and the
// instance types it offers; a job's instance type picks its pool. PoolRouter is
// the one ComputeBackend the controller sees, and forwards each call to the
// pool's backend.
//
// Handles: an instance of the default pool keeps its backend's handle as is (so
// handles persisted before pools existed still recover); any other pool's is
// "pool:<name>:<backend handle>".
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compute/backend.h"

namespace kiln {

struct PoolSpec {
  std::string name;
  std::string backend;                                 // "local" or "slurm"
  std::vector<std::string> instance_types;             // empty: the default pool (every type no other pool lists)
  nlohmann::json settings = nlohmann::json::object();  // the backend's section ("slurm": {...})
};

// Parses the config's `pools` list (docs/operations.md). `default_backend` is
// `kilnd --backend`: the default pool when no pool lists no instance types.
// Errors name the field: pools[1].instance_types.
Result<std::vector<PoolSpec>> ParsePools(const nlohmann::json& pools, const std::string& default_backend,
                                         const Catalog& catalog);

struct PoolStatus {
  PoolSpec spec;
  bool is_default = false;
  BackendHealth health;
};
nlohmann::json ToJson(const PoolStatus& p);

class PoolRouter final : public ComputeBackend {
 public:
  struct Pool {
    PoolSpec spec;
    std::unique_ptr<ComputeBackend> backend;
  };
  // Exactly one pool has no instance types (the default); ParsePools ensures it.
  explicit PoolRouter(std::vector<Pool> pools);

  std::string Name() const override { return "pools"; }
  // What every pool's backend can do.
  std::vector<Capability> Capabilities() const override;
  Result<std::string> Launch(const LaunchRequest& req) override;
  Status Stop(const std::string& id, const std::string& handle, int64_t grace_ms) override;
  Status Cleanup(const std::string& id, const std::string& handle) override;
  Status Recover(const std::string& id, const std::string& handle) override;
  std::string LogPath(const std::string& id) const override;
  std::string MetricsSocketPath(const std::string& id) const override;
  BackendHealth Health() const override { return pools_[default_].backend->Health(); }
  // Every pool's: a chain's instances ran in the pool of its instance type.
  Status DeleteWarmCache(const std::string& chain) override;
  // To the pool of the job's instance type.
  Status Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) override;

  std::vector<PoolStatus> Pools() const;
  // The pool named `name`, or null.
  ComputeBackend* Find(const std::string& name) const;

 private:
  // The pool a handle belongs to, and the backend's own handle.
  std::pair<size_t, std::string> Route(const std::string& id, const std::string& handle) const;
  size_t ForType(const std::string& type) const;
  void Remember(const std::string& id, size_t pool) const;

  std::vector<Pool> pools_;
  size_t default_ = 0;
  mutable std::mutex mu_;
  mutable std::map<std::string, size_t> instances_;  // instance id -> pool, as launched or recovered
};

}  // namespace kiln
