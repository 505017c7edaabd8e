#include "compute/pools/pool_router.h"

#include <unistd.h>

#include <algorithm>
#include <set>

namespace kiln {

using nlohmann::json;

namespace {
constexpr char kPrefix[] = "pool:";
constexpr size_t kMaxPools = 64;
}  // namespace

Result<std::vector<PoolSpec>> ParsePools(const json& pools, const std::string& default_backend,
                                         const Catalog& catalog) {
  std::vector<PoolSpec> out;
  if (pools.is_null()) return std::vector<PoolSpec>{{"default", default_backend, {}, json::object()}};
  if (!pools.is_array()) return InvalidArgument("pools", "pools must be a list of pools");
  if (pools.size() > kMaxPools) return InvalidArgument("pools", "at most 64 pools");
  std::set<std::string> names;
  std::map<std::string, std::string> owner;  // instance type -> pool
  int defaults = 0;
  for (size_t i = 0; i < pools.size(); ++i) {
    const std::string f = "pools[" + std::to_string(i) + "]";
    const json& p = pools[i];
    if (!p.is_object()) return InvalidArgument(f, f + " must be a mapping");
    PoolSpec s;
    if (!p.contains("name") || !p["name"].is_string()) return InvalidArgument(f + ".name", f + ".name is required");
    s.name = p["name"].get<std::string>();
    if (s.name.empty() || s.name.size() > 63 ||
        !std::all_of(s.name.begin(), s.name.end(), [](char c) { return isalnum(c) || c == '-' || c == '_'; }))
      return InvalidArgument(f + ".name", f + ".name: 1 to 63 letters, digits, - or _");
    if (!names.insert(s.name).second) return InvalidArgument(f + ".name", "two pools are named " + s.name);
    s.backend = p.value("backend", json("local")).is_string() ? p.value("backend", "local") : "";
    if (s.backend != "local" && s.backend != "slurm")
      return InvalidArgument(f + ".backend", f + ".backend must be local or slurm");
    if (p.contains("instance_types")) {
      if (!p["instance_types"].is_array())
        return InvalidArgument(f + ".instance_types", f + ".instance_types must be a list");
      for (const auto& t : p["instance_types"]) {
        if (!t.is_string()) return InvalidArgument(f + ".instance_types", f + ".instance_types must hold names");
        const std::string type = t.get<std::string>();
        if (!catalog.FindType(type))
          return InvalidArgument(f + ".instance_types", StrCat(f, ": unknown instance type ", type));
        auto [it, fresh] = owner.emplace(type, s.name);
        if (!fresh)
          return InvalidArgument(f + ".instance_types", type + " is in two pools: " + it->second + " and " + s.name);
        s.instance_types.push_back(type);
      }
    }
    if (s.instance_types.empty()) ++defaults;
    if (p.contains(s.backend)) {
      if (!p[s.backend].is_object())
        return InvalidArgument(f + "." + s.backend, f + "." + s.backend + " must be a mapping");
      s.settings = p[s.backend];
    }
    out.push_back(std::move(s));
  }
  if (defaults > 1) return InvalidArgument("pools", "only one pool may leave out instance_types (the default pool)");
  if (defaults == 0) {
    if (names.count("default")) return InvalidArgument("pools", "the pool named default lists instance types");
    out.push_back({"default", default_backend, {}, json::object()});
  }
  return out;
}

json ToJson(const PoolStatus& p) {
  return {{"name", p.spec.name},       {"backend", p.spec.backend},          {"instance_types", p.spec.instance_types},
          {"default", p.is_default},   {"health", ToString(p.health.state)}, {"message", p.health.message},
          {"queued", p.health.queued}, {"running", p.health.running},        {"warm_idle", p.health.warm_idle}};
}

PoolRouter::PoolRouter(std::vector<Pool> pools) : pools_(std::move(pools)) {
  for (size_t i = 0; i < pools_.size(); ++i)
    if (pools_[i].spec.instance_types.empty()) default_ = i;
}

std::vector<Capability> PoolRouter::Capabilities() const {
  std::vector<Capability> caps = pools_[default_].backend->Capabilities();
  for (const auto& p : pools_) {
    auto mine = p.backend->Capabilities();
    caps.erase(std::remove_if(caps.begin(), caps.end(),
                              [&](Capability c) { return std::find(mine.begin(), mine.end(), c) == mine.end(); }),
               caps.end());
  }
  return caps;
}

size_t PoolRouter::ForType(const std::string& type) const {
  for (size_t i = 0; i < pools_.size(); ++i)
    for (const auto& t : pools_[i].spec.instance_types)
      if (t == type) return i;
  return default_;
}

void PoolRouter::Remember(const std::string& id, size_t pool) const {
  std::lock_guard<std::mutex> l(mu_);
  instances_[id] = pool;
}

std::pair<size_t, std::string> PoolRouter::Route(const std::string& id, const std::string& handle) const {
  if (handle.rfind(kPrefix, 0) == 0) {
    const size_t colon = handle.find(':', sizeof(kPrefix) - 1);
    if (colon != std::string::npos) {
      const std::string name = handle.substr(sizeof(kPrefix) - 1, colon - (sizeof(kPrefix) - 1));
      for (size_t i = 0; i < pools_.size(); ++i)
        if (pools_[i].spec.name == name) return {i, handle.substr(colon + 1)};
    }
  }
  std::lock_guard<std::mutex> l(mu_);
  auto it = instances_.find(id);
  return {it == instances_.end() ? default_ : it->second, handle};
}

Result<std::string> PoolRouter::Launch(const LaunchRequest& req) {
  const size_t i = ForType(req.type.name);
  auto h = pools_[i].backend->Launch(req);
  if (!h.ok()) return h;
  Remember(req.instance_id, i);
  if (i == default_) return h;
  return kPrefix + pools_[i].spec.name + ":" + *h;
}

Status PoolRouter::Stop(const std::string& id, const std::string& handle, int64_t grace_ms) {
  auto [i, h] = Route(id, handle);
  return pools_[i].backend->Stop(id, h, grace_ms);
}

Status PoolRouter::Cleanup(const std::string& id, const std::string& handle) {
  auto [i, h] = Route(id, handle);
  Status st = pools_[i].backend->Cleanup(id, h);
  if (st.ok()) {
    std::lock_guard<std::mutex> l(mu_);
    instances_.erase(id);
  }
  return st;
}

Status PoolRouter::Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) {
  return pools_[ForType(like.type.name)].backend->Prewarm(like, until_ms, preload);
}

Status PoolRouter::DeleteWarmCache(const std::string& chain) {
  Status first;
  for (auto& p : pools_) {
    Status st = p.backend->DeleteWarmCache(chain);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Status PoolRouter::Recover(const std::string& id, const std::string& handle) {
  auto [i, h] = Route(id, handle);
  Remember(id, i);
  return pools_[i].backend->Recover(id, h);
}

std::string PoolRouter::LogPath(const std::string& id) const {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = instances_.find(id);
    if (it != instances_.end()) return pools_[it->second].backend->LogPath(id);
  }
  // An instance that ended before this kilnd started: whichever pool has its directory.
  for (size_t i = 0; i < pools_.size(); ++i) {
    if (i == default_) continue;
    std::string dir = pools_[i].backend->LogPath(id);
    if (!dir.empty() && access(dir.c_str(), F_OK) == 0) return dir;
  }
  return pools_[default_].backend->LogPath(id);
}

std::string PoolRouter::MetricsSocketPath(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = instances_.find(id);
  return pools_[it == instances_.end() ? default_ : it->second].backend->MetricsSocketPath(id);
}

std::vector<PoolStatus> PoolRouter::Pools() const {
  std::vector<PoolStatus> out;
  for (size_t i = 0; i < pools_.size(); ++i)
    out.push_back({pools_[i].spec, i == default_, pools_[i].backend->Health()});
  return out;
}

ComputeBackend* PoolRouter::Find(const std::string& name) const {
  for (const auto& p : pools_)
    if (p.spec.name == name) return p.backend.get();
  return nullptr;
}

}  // namespace kiln
