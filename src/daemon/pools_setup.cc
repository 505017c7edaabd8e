#include "daemon/pools_setup.h"

#include <openssl/crypto.h>

#include <filesystem>

#include "common/fsutil.h"

namespace kiln {

using nlohmann::json;

Status Pools::SlurmEvent(const std::string& pool, const std::string& token, int64_t slurm_job_id) const {
  auto it = slurm.find(pool);
  auto tok = hook_tokens.find(pool);
  if (it == slurm.end() || tok == hook_tokens.end()) return NotFound("no Slurm pool " + pool);
  if (token.size() != tok->second.size() || CRYPTO_memcmp(token.data(), tok->second.data(), token.size()) != 0)
    return Status(Code::kUnauthenticated, "not this pool's hook token");
  Status st = it->second->JobEnded(slurm_job_id);
  // The hook need not retry: the safety net asks again.
  return st.code() == Code::kNotFound ? Status::Ok() : st;
}

Result<slurm::SlurmBackendOptions> SlurmOptionsFromJson(const json& s, const std::string& f, const std::string& pool,
                                                        const std::string& bin_dir) {
  slurm::SlurmBackendOptions o;
  o.pool = pool;
  auto str = [&](const char* key, std::string& into, bool required) -> Status {
    if (!s.contains(key)) {
      if (required) return InvalidArgument(f + "." + key, f + "." + key + " is required");
      return Status::Ok();
    }
    if (!s[key].is_string()) return InvalidArgument(f + "." + key, f + "." + key + " must be a string");
    into = s[key].get<std::string>();
    return Status::Ok();
  };
  auto num = [&](const char* key, int& into, int lo, int hi) -> Status {
    if (!s.contains(key)) return Status::Ok();
    if (!s[key].is_number_integer() || s[key].get<int64_t>() < lo || s[key].get<int64_t>() > hi)
      return InvalidArgument(
          f + "." + key, f + "." + key + " must be a whole number " + std::to_string(lo) + ".." + std::to_string(hi));
    into = s[key].get<int>();
    return Status::Ok();
  };
  std::string hook_token_file;
  KILN_RETURN_IF_ERROR(str("url", o.rest.url, true));
  KILN_RETURN_IF_ERROR(str("jwt_key_file", o.rest.jwt_key_file, true));
  KILN_RETURN_IF_ERROR(str("user", o.rest.user, false));
  KILN_RETURN_IF_ERROR(str("partition", o.partition, false));
  KILN_RETURN_IF_ERROR(str("account", o.account, false));
  KILN_RETURN_IF_ERROR(str("qos", o.qos, false));
  KILN_RETURN_IF_ERROR(str("shared_dir", o.instances_dir, true));
  o.supervisor_path = bin_dir + "/kiln-supervisor";
  KILN_RETURN_IF_ERROR(str("supervisor_path", o.supervisor_path, false));
  KILN_RETURN_IF_ERROR(str("hook_token_file", hook_token_file, true));
  KILN_RETURN_IF_ERROR(num("reconcile_interval_s", o.reconcile_interval_s, 1, 86400));
  KILN_RETURN_IF_ERROR(num("queue_refresh_s", o.queue_refresh_s, 1, 86400));
  KILN_RETURN_IF_ERROR(num("submit_timeout_s", o.submit_timeout_s, 0, 30 * 86400));
  KILN_RETURN_IF_ERROR(num("timeout_ms", o.rest.timeout_ms, 100, 600000));
  if (o.rest.user.empty()) return InvalidArgument(f + ".user", f + ".user must name a Slurm user");
  if (o.instances_dir.empty() || o.instances_dir[0] != '/' || o.instances_dir == "/")
    return InvalidArgument(f + ".shared_dir", f + ".shared_dir must be an absolute directory other than /");
  o.instances_dir = std::filesystem::path(o.instances_dir).lexically_normal().string() + "/instances";
  for (const auto& [key, v] : s.items())
    if (key != "url" && key != "jwt_key_file" && key != "user" && key != "partition" && key != "account" &&
        key != "qos" && key != "shared_dir" && key != "supervisor_path" && key != "hook_token_file" &&
        key != "reconcile_interval_s" && key != "queue_refresh_s" && key != "submit_timeout_s" && key != "timeout_ms")
      return InvalidArgument(StrCat(f, ".", key), StrCat("unknown setting ", f, ".", key));
  o.hook_token_file = hook_token_file;
  return o;
}

namespace {

Result<std::unique_ptr<slurm::SlurmBackend>> BuildSlurm(const PoolSpec& spec, size_t index, const PoolsEnv& env,
                                                        EventSink& sink, std::string& hook_token) {
  const std::string f = "pools[" + std::to_string(index) + "].slurm";
  auto o = SlurmOptionsFromJson(spec.settings, f, spec.name, env.bin_dir);
  if (!o.ok()) return o.status();
  auto token = ReadFile(o->hook_token_file);
  if (!token.ok()) return InvalidArgument(f + ".hook_token_file", "cannot read " + o->hook_token_file);
  while (!token->empty() && (token->back() == '\n' || token->back() == '\r')) token->pop_back();
  if (token->size() < 16)
    return InvalidArgument(f + ".hook_token_file", o->hook_token_file + ": fewer than 16 characters");
  hook_token = *token;
  auto client = slurm::RestClient::Create(o->rest, RealClock::Get());
  if (!client.ok()) return InvalidArgument(f + "." + client.status().field(), client.status().message());
  KILN_RETURN_IF_ERROR(MakeDirs(o->instances_dir));
  // The instances' directories and launch.json, as the local backend writes
  // them, on the host network: the nodes run the same supervisor and sandbox.
  LocalBackendOptions lo = env.sandbox;
  lo.instances_dir = o->instances_dir;
  lo.supervisor_path = o->supervisor_path;
  lo.entrypoint_path = env.bin_dir + "/kiln-entrypoint";
  lo.data_dir = env.data_dir;
  lo.runtime_socket.clear();
  lo.runtime_context = "kiln-slurm";
  lo.network = supervisor::NetworkMode::kHost;
  lo.scratch_pool.clear();
  lo.egress_teams.clear();
  lo.egress_instance_types.clear();
  lo.capacity_vcpus = 0;
  lo.capacity_memory_mib = 0;
  auto preparer = std::make_unique<LocalBackend>(lo, sink, RealClock::Get());
  o->token_for = env.token_for;
  o->on_capacity = env.on_capacity;
  auto b = std::make_unique<slurm::SlurmBackend>(*o, std::move(*client), std::move(preparer), sink, RealClock::Get());
  KILN_RETURN_IF_ERROR(b->Init());
  return b;
}

}  // namespace

Result<Pools> BuildPools(const std::vector<PoolSpec>& specs, const PoolsEnv& env, EventSink& sink,
                         const std::function<Result<std::unique_ptr<ComputeBackend>>()>& local) {
  Pools out;
  std::vector<PoolRouter::Pool> pools;
  int locals = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const PoolSpec& spec = specs[i];
    if (spec.backend == "local") {
      if (++locals > 1) return InvalidArgument("pools", "at most one pool may use the local backend");
      auto b = local();
      if (!b.ok()) return b.status();
      pools.push_back({spec, std::move(*b)});
      continue;
    }
    std::string token;
    auto b = BuildSlurm(spec, i, env, sink, token);
    if (!b.ok()) return b.status();
    out.slurm[spec.name] = b->get();
    out.hook_tokens[spec.name] = token;
    pools.push_back({spec, std::move(*b)});
  }
  out.router = std::make_unique<PoolRouter>(std::move(pools));
  return out;
}

}  // namespace kiln
