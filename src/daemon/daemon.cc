#include "daemon/daemon.h"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "api/native_api.h"
#include "api/unix_server.h"
#include "auth/access_keys.h"
#include "cli/spec_file.h"
#include "common/fsutil.h"
#include "common/ids.h"
#include "compute/local/isolation.h"
#include "compute/local/local_backend.h"
#include "compute/local/scratch.h"
#include "controller/controller.h"
#include "daemon/pools_setup.h"
#include "http/async_server.h"
#include "schedules/scheduler.h"
#include "smapi/server.h"
#include "store/store.h"

namespace kiln {
namespace {

using nlohmann::json;

// SIGTERM and SIGINT write a byte here; the main thread waits on it.
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int) {
  const char c = 1;
  (void)!write(g_signal_pipe[1], &c, 1);
}

Result<std::string> LoadOrCreateSecret(const std::string& path) {
  auto s = ReadFile(path);
  if (s.ok() && s->size() >= 32) return *s;
  std::string secret = NewToken();
  KILN_RETURN_IF_ERROR(WriteFileAtomic(path, secret, 0600));
  return secret;
}

// Instances that outlived a kilnd restart keep sending metrics to the port and
// socket they were given: open them again.
void ReopenMetrics(Store& store, ComputeBackend& backend, MetricsGateway& metrics, HostUdpPort udp) {
  auto ids = store.JobsNeedingAttention();
  if (!ids.ok()) return;
  for (const auto& id : *ids) {
    auto job = store.GetJob(id);
    if (!job.ok() || IsTerminal(job->status)) continue;
    for (const auto& in : job->instances) {
      if (in.state != InstanceState::kRunning) continue;
      std::string sock = backend.MetricsSocketPath(in.id);
      auto port = ReadFile(sock + ".port");
      if (sock.empty() || !port.ok()) continue;  // never fetched its runtime
      auto r = metrics.OpenInstance(in.id, job->id, job->spec.team, sock, atoi(port->c_str()), udp);
      if (!r.ok())
        fprintf(stderr, "kilnd: reopening metrics of %s: %s\n", in.id.c_str(), r.status().ToString().c_str());
    }
  }
}

// kilnd's config file (YAML or JSON); {} without one.
Result<json> LoadConfig(const std::string& path) {
  if (path.empty()) return json::object();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto parsed = ParseYamlOrJson(*text);
  if (!parsed.ok()) return InvalidArgument("config", path + ": " + parsed.status().message());
  return *parsed;
}

// Binds `listen` ("host[:port]", 8470 by default, 0 = any); returns the bound "host:port".
Result<std::string> Bind(http::AsyncServer& server, const std::string& listen) {
  return server.Bind(listen.find(':') == std::string::npos ? listen + ":8470" : listen);
}

// Every backend this build has, by name (explicit registration, no static init).
void RegisterBackends(BackendRegistry& registry, const KilndOptions& o, const std::string& data,
                      const LocalBackendOptions& sandbox) {
  registry.Register("local", [&o, data, sandbox](EventSink& sink) -> Result<std::unique_ptr<ComputeBackend>> {
    LocalBackendOptions lo = sandbox;
    lo.instances_dir = data + "/instances";
    lo.supervisor_path = o.bin_dir + "/kiln-supervisor";
    lo.entrypoint_path = o.bin_dir + "/kiln-entrypoint";
    lo.data_dir = data;
    lo.runtime_socket = data + "/run/runtime.sock";
    auto b = std::make_unique<LocalBackend>(lo, sink, RealClock::Get());
    KILN_RETURN_IF_ERROR(b->Init());
    return std::unique_ptr<ComputeBackend>(std::move(b));
  });
}

// GET /v1/pools and the Slurm pools' end-of-job hook.
void ServePools(const Pools& pools, NativeApiOptions& aopts) {
  aopts.pools = [router = pools.router.get()] {
    json out = json::array();
    for (const auto& p : router->Pools()) out.push_back(ToJson(p));
    return out;
  };
  if (!pools.slurm.empty())
    aopts.pool_event = [p = &pools](const std::string& pool, const std::string& token, int64_t id) {
      return p->SlurmEvent(pool, token, id);
    };
}

// The compute pools (config `pools`; without it one pool on `--backend`).
Result<Pools> SetUpPools(const json& config, const KilndOptions& o, const std::string& data,
                         const LocalBackendOptions& sandbox, const Catalog& catalog, const TokenIssuer& tokens,
                         Controller& controller) {
  auto specs = ParsePools(config.value("pools", json()), o.backend, catalog);
  if (!specs.ok()) return specs.status();
  BackendRegistry registry;
  RegisterBackends(registry, o, data, sandbox);
  PoolsEnv env{data, o.bin_dir, sandbox, [&tokens](const std::string& id) { return tokens.For(id); },
               [&controller] { controller.CapacityChanged(); }};
  return BuildPools(*specs, env, controller, [&registry, &controller] { return registry.Create("local", controller); });
}

// The config's "sandbox" section (docs/operations.md): whose uid jobs run as,
// their network, their process limit.
// sandbox.teams.<team>: {buckets, read_buckets, write_paths, read_paths}.
Result<std::map<std::string, TeamData>> TeamNamespaces(const json& teams, const smapi::S3Map& s3) {
  std::map<std::string, TeamData> out;
  if (!teams.is_object()) return InvalidArgument("sandbox.teams", "sandbox.teams must map team names to their data");
  for (const auto& item : teams.items()) {
    const std::string& team = item.key();
    const json& t = item.value();  // (structured bindings cannot be captured by clang 14's lambdas)
    const std::string f = "sandbox.teams." + team;
    if (!t.is_object()) return InvalidArgument(f, f + " must be a mapping");
    TeamData d;
    auto strings = [&](const char* key, std::vector<std::string>& into, bool buckets) -> Status {
      if (!t.contains(key)) return Status::Ok();
      if (!t[key].is_array()) return InvalidArgument(f + "." + key, f + "." + key + " must be a list");
      for (const auto& v : t[key]) {
        if (!v.is_string()) return InvalidArgument(f + "." + key, f + "." + key + " must hold strings");
        std::string path = v.get<std::string>();
        if (buckets) {
          auto p = s3.ToPath("s3://" + path + "/", f + "." + key);
          if (!p.ok()) return p.status();
          path = *p;
        }
        if (path.empty() || path[0] != '/' || path == "/")
          return InvalidArgument(f + "." + key, f + "." + key + ": each path must be absolute, other than /");
        into.push_back(std::filesystem::path(path).lexically_normal().string());
      }
      return Status::Ok();
    };
    KILN_RETURN_IF_ERROR(strings("buckets", d.write_paths, true));
    KILN_RETURN_IF_ERROR(strings("write_paths", d.write_paths, false));
    KILN_RETURN_IF_ERROR(strings("read_buckets", d.read_paths, true));
    KILN_RETURN_IF_ERROR(strings("read_paths", d.read_paths, false));
    out[team] = std::move(d);
  }
  return out;
}

// sandbox.egress: {teams: [...], instance_types: [...], subnet: "a.b.c.d/n"}:
// who gets outbound access (nobody by default).
Status EgressOptions(const json& egress, LocalBackendOptions& lo) {
  if (!egress.is_object()) return InvalidArgument("sandbox.egress", "sandbox.egress must be a mapping");
  for (const auto& [key, value] : egress.items())
    if (key != "teams" && key != "instance_types" && key != "subnet")
      return InvalidArgument("sandbox.egress." + key, "unknown field (teams, instance_types, subnet)");
  auto names = [&](const char* key, std::set<std::string>& out) -> Status {
    const json list = egress.value(key, json::array());
    const std::string f = std::string("sandbox.egress.") + key;
    if (!list.is_array()) return InvalidArgument(f, f + " must be a list of names");
    for (const auto& n : list) {
      if (!n.is_string() || n.get<std::string>().empty()) return InvalidArgument(f, f + " must be a list of names");
      out.insert(n.get<std::string>());
    }
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(names("teams", lo.egress_teams));
  KILN_RETURN_IF_ERROR(names("instance_types", lo.egress_instance_types));
  const json subnet = egress.value("subnet", json(lo.egress_subnet));
  if (!subnet.is_string()) return InvalidArgument("sandbox.egress.subnet", "sandbox.egress.subnet must be a string");
  lo.egress_subnet = subnet.get<std::string>();
  return Status::Ok();
}

// sandbox.warm: [{instance_type, image?, team?, count?, runtime?, preload?}]:
// pre-started sandboxes (LocalBackend, warm_slots.cc), with the catalog's types.
Status WarmSandboxOptionsFor(const json& config, const Catalog& catalog, LocalBackendOptions& lo) {
  const json warm = config.value("sandbox", json::object()).value("warm", json::array());
  if (!warm.is_array()) return InvalidArgument("sandbox.warm", "sandbox.warm must be a list");
  for (size_t i = 0; i < warm.size(); ++i) {
    const std::string f = "sandbox.warm[" + std::to_string(i) + "]";
    const json& w = warm[i];
    if (!w.is_object()) return InvalidArgument(f, f + " must be a mapping");
    for (const auto& [key, value] : w.items())
      if (key != "instance_type" && key != "image" && key != "team" && key != "count" && key != "runtime" &&
          key != "preload" && key != "max_idle_seconds")
        return InvalidArgument(StrCat(f, ".", key),
                               "unknown field (instance_type, image, team, count, runtime, preload, max_idle_seconds)");
    WarmSandboxOptions o;
    const InstanceType* type =
        w.contains("instance_type") && w["instance_type"].is_string() ? catalog.FindType(w["instance_type"]) : nullptr;
    if (!type) return InvalidArgument(f + ".instance_type", "an instance type of the catalog is required");
    o.type = *type;
    if (w.contains("image")) {
      const ImageEnv* image = w["image"].is_string() ? catalog.FindImage(w["image"]) : nullptr;
      if (!image) return InvalidArgument(f + ".image", "not an image of the catalog");
      o.image = w["image"];
      o.image_env = *image;
    }
    if (w.contains("team") && (!w["team"].is_string() || w["team"].get<std::string>().empty()))
      return InvalidArgument(f + ".team", "must be a team name");
    o.team = w.value("team", "");
    if (w.contains("count") && (!w["count"].is_number_unsigned() || w["count"].get<uint64_t>() > 64))
      return InvalidArgument(f + ".count", "must be an integer 0..64");
    o.count = w.value("count", 1);
    if (w.contains("max_idle_seconds") &&
        (!w["max_idle_seconds"].is_number_unsigned() || w["max_idle_seconds"].get<uint64_t>() > 7 * 86400))
      return InvalidArgument(f + ".max_idle_seconds", "must be an integer 0..604800 (0: never replaced)");
    o.max_idle_seconds = w.value("max_idle_seconds", int64_t{3600});
    if (w.contains("runtime") && (!w["runtime"].is_string() || w["runtime"].get<std::string>().empty() ||
                                  w["runtime"].get<std::string>()[0] != '/'))
      return InvalidArgument(f + ".runtime", "must be an interpreter's absolute path");
    o.runtime = w.value("runtime", "");
    const json preload = w.value("preload", json::array());
    if (!preload.is_array()) return InvalidArgument(f + ".preload", "must be a list of module names");
    for (const auto& m : preload) {
      const std::string name = m.is_string() ? m.get<std::string>() : "";
      if (name.empty() || name.size() > 128 ||
          name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") !=
              std::string::npos)
        return InvalidArgument(f + ".preload", "must be a list of module names (letters, digits, _ and .)");
      o.preload.push_back(name);
    }
    if (!o.preload.empty() && o.runtime.empty()) return InvalidArgument(f + ".preload", "needs a runtime");
    if (lo.egress_teams.count(o.team) || lo.egress_instance_types.count(o.type.name))
      return InvalidArgument(f, "jobs with outbound access (sandbox.egress) do not run in warm sandboxes");
    lo.warm_sandboxes.push_back(std::move(o));
  }
  return Status::Ok();
}

Result<LocalBackendOptions> SandboxOptions(const json& config, const smapi::S3Map& s3) {
  LocalBackendOptions lo;
  const json sb = config.value("sandbox", json::object());
  if (!sb.is_object()) return InvalidArgument("sandbox", "sandbox must be a mapping");
  const std::string user = sb.value("user", "unprivileged");
  if (user != "unprivileged" && user != "root")
    return InvalidArgument("sandbox.user", "sandbox.user must be unprivileged or root");
  lo.user = user == "root" ? SandboxUser::kRoot : SandboxUser::kUnprivileged;
  const std::string network = sb.value("network", "private");
  if (network != "private" && network != "host")
    return InvalidArgument("sandbox.network", "sandbox.network must be private or host");
  lo.network = network == "host" ? supervisor::NetworkMode::kHost : supervisor::NetworkMode::kPrivate;
  for (auto [key, out] : {std::pair{"uid", &lo.job_uid}, std::pair{"gid", &lo.job_gid}}) {
    if (!sb.contains(key)) continue;
    if (!sb[key].is_number_unsigned() || sb[key].get<uint64_t>() == 0 || sb[key].get<uint64_t>() >= 4294967295u)
      return InvalidArgument(std::string("sandbox.") + key, std::string("sandbox.") + key + " must be 1..4294967294");
    *out = sb[key].get<uint32_t>();
  }
  if (sb.contains("pids_max")) {
    if (!sb["pids_max"].is_number_unsigned())
      return InvalidArgument("sandbox.pids_max", "sandbox.pids_max must be a non-negative integer");
    lo.pids_max = sb["pids_max"].get<int64_t>();
  }
  if (sb.contains("log_max_mib")) {  // per instance; 0: no cap
    if (!sb["log_max_mib"].is_number_unsigned() || sb["log_max_mib"].get<uint64_t>() > (uint64_t{1} << 30))
      return InvalidArgument("sandbox.log_max_mib", "sandbox.log_max_mib must be an integer 0..1073741824 (0: no cap)");
    lo.log_max_bytes = sb["log_max_mib"].get<int64_t>() * 1024 * 1024;
  }
  // Capacity: by default 4 vCPUs of quota per core (CPU is time-shared) and the
  // host's memory (limits are hard; overcommitting them invites the host OOM killer).
  lo.capacity_vcpus = 4.0 * static_cast<double>(std::max<long>(1, sysconf(_SC_NPROCESSORS_ONLN)));
  lo.capacity_memory_mib = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) / (1024 * 1024);
  if (sb.contains("capacity")) {
    const json& c = sb["capacity"];
    if (!c.is_object()) return InvalidArgument("sandbox.capacity", "sandbox.capacity must be a mapping");
    if (c.contains("vcpus")) {
      if (!c["vcpus"].is_number() || c["vcpus"].get<double>() < 0)
        return InvalidArgument("sandbox.capacity.vcpus", "sandbox.capacity.vcpus must be a number >= 0 (0: no limit)");
      lo.capacity_vcpus = c["vcpus"].get<double>();
    }
    if (c.contains("memory_mib")) {
      if (!c["memory_mib"].is_number_unsigned())
        return InvalidArgument("sandbox.capacity.memory_mib",
                               "sandbox.capacity.memory_mib must be an integer >= 0 (0: no limit)");
      lo.capacity_memory_mib = c["memory_mib"].get<int64_t>();
    }
  }
  KILN_RETURN_IF_ERROR(EgressOptions(sb.value("egress", json::object()), lo));
  if (sb.contains("teams")) {
    auto teams = TeamNamespaces(sb["teams"], s3);
    if (!teams.ok()) return teams.status();
    lo.teams = std::move(*teams);
  }
  if (sb.contains("writable_roots")) {
    const json& roots = sb["writable_roots"];
    if (!roots.is_array()) return InvalidArgument("sandbox.writable_roots", "sandbox.writable_roots must be a list");
    lo.writable_roots.clear();
    for (const auto& r : roots) {
      if (!r.is_string() || r.get<std::string>().empty() || r.get<std::string>()[0] != '/' ||
          r.get<std::string>() == "/")
        return InvalidArgument("sandbox.writable_roots", "each writable root must be an absolute path other than /");
      lo.writable_roots.push_back(r.get<std::string>());
    }
  }
  // Where S3-style outputs and checkpoints go: the S3 root, and any bucket
  // mapped elsewhere (created beneath these, never through a symlink).
  lo.writable_roots.push_back(s3.root());
  for (const auto& [bucket, dir] : s3.buckets()) lo.writable_roots.push_back(dir);
  return lo;
}

// bwrap resolves the paths of the binds under the data dir as the jobs' user, so
// each directory above the data dir must let that user through (x for it). A
// mkdtemp parent (0700) does not: say so at start rather than fail every job.
Status CheckJobUserReaches(const std::string& data, uint32_t uid, uint32_t gid) {
  for (std::filesystem::path p = std::filesystem::path(data).parent_path(); !p.empty();
       p = p == p.root_path() ? std::filesystem::path() : p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) continue;
    const bool through = (st.st_uid == uid && (st.st_mode & S_IXUSR)) || (st.st_gid == gid && (st.st_mode & S_IXGRP)) ||
                         (st.st_mode & S_IXOTH);
    if (!through)
      return Status(Code::kFailedPrecondition, "the jobs' user (uid " + std::to_string(uid) +
                                                   ") cannot reach the data dir " + data + ": " + p.string() +
                                                   " is not searchable by it (chmod o+x " + p.string() +
                                                   ", or put the data dir elsewhere)");
    if (p == p.root_path()) break;
  }
  return Status::Ok();
}

// One kilnd per data dir: a second one would run every instance twice. The lock
// is held (and released by the kernel) for the life of the process.
Result<int> LockDataDir(const std::string& data) {
  const std::string path = data + "/kilnd.lock";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Unavailable("cannot open " + path + ": " + strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
    close(fd);
    return Status(Code::kFailedPrecondition,
                  "another kilnd (pid " + std::string(n > 0 ? pid : "?") + ") is using the data dir " + data);
  }
  std::string me = std::to_string(getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, me.data(), me.size(), 0) < 0)
    fprintf(stderr, "kilnd: cannot record the pid in %s\n", path.c_str());
  return fd;
}

// Errors the HTTP server answers itself (no route, too large, too slow, too
// many connections) in the API's error shape.
void ErrorBody(int status, const std::string& message, httplib::Response& res) {
  const char* code = status == 413   ? "PayloadTooLarge"
                     : status == 404 ? "NotFound"
                     : status == 405 ? "MethodNotAllowed"
                     : status == 408 ? "RequestTimeout"
                     : status == 414 ? "PathTooLong"
                     : status == 431 ? "HeadersTooLarge"
                     : status == 503 ? "Unavailable"
                     : status >= 500 ? "Internal"
                                     : "BadRequest";
  json e = {{"error", {{"code", code}, {"message", message}, {"field", nullptr}}}};
  res.set_content(e.dump(), "application/json");
}

// Serves until SIGTERM/SIGINT, with the controller's slow safety-net resync and
// `housekeeping` every `resync_seconds` on this thread; then stops the server.
void ServeUntilSignal(http::AsyncServer& server, Controller& controller, int resync_seconds,
                      const std::function<void()>& housekeeping) {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) fprintf(stderr, "kilnd: pipe: %s\n", strerror(errno));
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  server.Start();
  auto next = std::chrono::steady_clock::now() + std::chrono::seconds(resync_seconds);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - std::chrono::steady_clock::now());
    pollfd p{g_signal_pipe[0], POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r > 0) break;     // a signal
    if (r < 0) continue;  // EINTR: the signal's byte is read next time round
    controller.Resync();
    housekeeping();
    next = std::chrono::steady_clock::now() + std::chrono::seconds(resync_seconds);
  }
}

// Connections: kilnd may hold as many as its open-file limit allows, so it
// raises that limit to the hard one.
int RaiseOpenFileLimit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return static_cast<int>(std::min<rlim_t>(rl.rlim_cur, 1 << 30));
}

// The data dir: root's, traversable only by the jobs' group (bwrap resolves the
// paths of the binds it is handed as the job's user) and hidden in every sandbox,
// so no host user can reach kiln.db or the keys (0600 besides); locked for this
// kilnd. Returns the lock's descriptor, held for the life of the process.
enum class DiskQuota { kAuto, kRequired, kOff };
struct DiskConfig {
  DiskQuota quota = DiskQuota::kAuto;
  int64_t pool_gib = 64;
  int default_volume_gb = 30;
};

// sandbox.disk: {quota: auto|required|off, pool_gib, default_volume_gb}.
Result<DiskConfig> DiskOptions(const json& config) {
  DiskConfig d;
  const json disk = config.value("sandbox", json::object()).value("disk", json::object());
  if (!disk.is_object()) return InvalidArgument("sandbox.disk", "sandbox.disk must be a mapping");
  const json quota = disk.value("quota", json("auto"));
  if (quota == "required") {
    d.quota = DiskQuota::kRequired;
  } else if (quota == "off" || quota == json(false)) {  // YAML 1.1 reads a bare off as false
    d.quota = DiskQuota::kOff;
  } else if (quota != "auto") {
    return InvalidArgument("sandbox.disk.quota", "sandbox.disk.quota must be auto, required or off");
  }
  const json gib = disk.value("pool_gib", json(d.pool_gib));
  if (!gib.is_number_integer() || gib.get<int64_t>() < 1 || gib.get<int64_t>() > (int64_t{1} << 20))
    return InvalidArgument("sandbox.disk.pool_gib", "sandbox.disk.pool_gib must be an integer 1..1048576");
  d.pool_gib = gib.get<int64_t>();
  const json volume = disk.value("default_volume_gb", json(d.default_volume_gb));
  if (!volume.is_number_integer() || volume.get<int64_t>() < 1 || volume.get<int64_t>() > kMaxVolumeGb)
    return InvalidArgument("sandbox.disk.default_volume_gb",
                           "sandbox.disk.default_volume_gb must be an integer 1.." + std::to_string(kMaxVolumeGb));
  d.default_volume_gb = static_cast<int>(volume.get<int64_t>());
  return d;
}

// Disk quotas (scratch.h): the scratch pool at <data>/scratch, or, with quota:
// auto, a warning and none where this host cannot have one.
Status PrepareScratch(const std::string& data, const DiskConfig& disk, LocalBackendOptions& sandbox) {
  sandbox.default_volume_gb = disk.default_volume_gb;
  if (disk.quota == DiskQuota::kOff) return Status::Ok();
  scratch::PoolOptions pool{data + "/scratch", data + "/scratch.img", disk.pool_gib,
                            sandbox.user == SandboxUser::kUnprivileged ? sandbox.job_gid : 0};
  Status st = scratch::PreparePool(pool);
  if (st.ok()) {
    sandbox.scratch_pool = pool.dir;
    return Status::Ok();
  }
  if (disk.quota == DiskQuota::kRequired) return Status(st.code(), "sandbox.disk.quota is required: " + st.message());
  fprintf(stderr, "kilnd: WARNING: no disk quotas for jobs (a job can fill the disk of the data dir): %s\n",
          st.message().c_str());
  return Status::Ok();
}

Result<int> PrepareDataDir(const std::string& data, const json& config, LocalBackendOptions& sandbox) {
  auto disk = DiskOptions(config);
  if (!disk.ok()) return disk.status();
  const gid_t data_group = sandbox.user == SandboxUser::kUnprivileged ? sandbox.job_gid : 0;
  if (data_group != 0) KILN_RETURN_IF_ERROR(CheckJobUserReaches(data, sandbox.job_uid, sandbox.job_gid));
  if (chown(data.c_str(), 0, data_group) != 0 || chmod(data.c_str(), data_group ? 0710 : 0700) != 0)
    return Internal("chmod " + data + ": " + strerror(errno));
  auto lock = LockDataDir(data);
  if (!lock.ok()) return lock.status();
  KILN_RETURN_IF_ERROR(MakeDirs(data + "/artifacts"));
  KILN_RETURN_IF_ERROR(MakeDirs(data + "/run"));
  KILN_RETURN_IF_ERROR(PrepareScratch(data, *disk, sandbox));
  return lock;
}

// SQLite creates the database (and its -wal and -shm, with the same mode) 0644;
// the credentials file holds the admin's access key, admin.token its API token.
void RestrictDatabaseFiles(const std::string& data) {
  for (const char* f : {"/kiln.db", "/kiln.db-wal", "/kiln.db-shm", "/credentials", "/admin.token"}) {
    const std::string p = data + f;
    if (std::string(f) == "/kiln.db") close(open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    chmod(p.c_str(), 0600);  // absent ones: nothing to do
  }
}

// The config's "metrics" section: {max_series_per_job, retention_days}; and the
// retention of events ("events" section, EventRetentionFrom).
struct MetricsConfig {
  GatewayOptions gateway;
  int64_t retention_ms = 0;        // 0: keep every point
  int64_t event_retention_ms = 0;  // 0: keep every event
};
Result<int64_t> EventRetentionFrom(const json& config);
Result<MetricsConfig> MetricsOptionsFrom(const json& config, int flush_ms) {
  MetricsConfig m;
  m.gateway.flush_interval_ms = flush_ms;
  const json mcfg = config.value("metrics", json::object());
  if (!mcfg.is_object()) return InvalidArgument("metrics", "metrics must be a mapping");
  const json series = mcfg.value("max_series_per_job", json(m.gateway.max_series_per_job));
  if (!series.is_number_integer() || series.get<int64_t>() < 0 || series.get<int64_t>() > 100000000)
    return InvalidArgument("metrics.max_series_per_job",
                           "metrics.max_series_per_job must be an integer 0..100000000 (0: no cap)");
  m.gateway.max_series_per_job = series.get<size_t>();
  const json retention = mcfg.value("retention_days", json(30));
  if (!retention.is_number_integer() || retention.get<int64_t>() < 0 || retention.get<int64_t>() > 36500)
    return InvalidArgument("metrics.retention_days",
                           "metrics.retention_days must be an integer 0..36500 (0: keep every point)");
  m.retention_ms = retention.get<int64_t>() * 24 * 3600 * 1000;
  auto events = EventRetentionFrom(config);
  if (!events.ok()) return events.status();
  m.event_retention_ms = *events;
  return m;
}

// The config's "events" section: {retention_days} (default 180; 0: keep every
// event). Only ended jobs' events are pruned; the jobs stay.
Result<int64_t> EventRetentionFrom(const json& config) {
  const json ecfg = config.value("events", json::object());
  if (!ecfg.is_object()) return InvalidArgument("events", "events must be a mapping");
  const json retention = ecfg.value("retention_days", json(180));
  if (!retention.is_number_integer() || retention.get<int64_t>() < 0 || retention.get<int64_t>() > 36500)
    return InvalidArgument("events.retention_days",
                           "events.retention_days must be an integer 0..36500 (0: keep every event)");
  return retention.get<int64_t>() * 24 * 3600 * 1000;
}

// Deletes metric points and ended jobs' events older than their retention, a
// bounded batch at a time (at most a million of each per pass).
void PruneOld(Store& store, int64_t metrics_ms, int64_t events_ms) {
  const TimeMs now = RealClock::Get().NowMs();
  struct Pass {
    const char* what;
    int64_t retention_ms;
    std::function<Result<int64_t>(TimeMs, int64_t)> prune;
  };
  for (const Pass& p : {Pass{"metric", metrics_ms, [&](TimeMs t, int64_t n) { return store.PruneMetricPoints(t, n); }},
                        Pass{"event", events_ms, [&](TimeMs t, int64_t n) { return store.PruneEvents(t, n); }}}) {
    if (p.retention_ms <= 0) continue;
    for (int batch = 0; batch < 100; ++batch) {
      auto pruned = p.prune(now - p.retention_ms, 10000);
      if (!pruned.ok()) fprintf(stderr, "kilnd: %s retention: %s\n", p.what, pruned.status().ToString().c_str());
      if (!pruned.ok() || *pruned < 10000) break;
    }
  }
}

// The config's "api" section: {allowed_origins: [..], failed_auth_per_minute,
// rate_limit: {requests_per_second, burst}}.
Result<RouterOptions> ApiOptionsFrom(const json& config) {
  RouterOptions r;
  const json api = config.value("api", json::object());
  if (!api.is_object()) return InvalidArgument("api", "api must be a mapping");
  const json origins = api.value("allowed_origins", json::array());
  if (!origins.is_array()) return InvalidArgument("api.allowed_origins", "api.allowed_origins must be a list");
  for (const auto& o : origins) {
    if (!o.is_string() || o.get<std::string>().find("://") == std::string::npos)
      return InvalidArgument("api.allowed_origins", "api.allowed_origins: each is scheme://host[:port]");
    r.allowed_origins.push_back(o);
  }
  const json failures = api.value("failed_auth_per_minute", json(r.limits.failures_per_minute));
  if (!failures.is_number_integer() || failures.get<int64_t>() < 0 || failures.get<int64_t>() > 1000000)
    return InvalidArgument("api.failed_auth_per_minute", "api.failed_auth_per_minute: an integer 0..1000000 (0: off)");
  r.limits.failures_per_minute = failures.get<int>();
  const json rate = api.value("rate_limit", json::object());
  if (!rate.is_object()) return InvalidArgument("api.rate_limit", "api.rate_limit must be a mapping");
  const json rps = rate.value("requests_per_second", json(0));
  const json burst = rate.value("burst", json(r.limits.burst));
  if (!rps.is_number() || rps.get<double>() < 0)
    return InvalidArgument("api.rate_limit.requests_per_second", "a number >= 0 (0: off)");
  if (!burst.is_number() || burst.get<double>() < 1) return InvalidArgument("api.rate_limit.burst", "a number >= 1");
  r.limits.requests_per_second = rps.get<double>();
  r.limits.burst = burst.get<double>();
  for (auto [key, out] : {std::pair{"max_streams", &r.max_streams},
                          std::pair{"max_streams_per_principal", &r.max_streams_per_principal}}) {
    const json v = api.value(key, json(*out));
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1000000)
      return InvalidArgument(std::string("api.") + key, std::string("api.") + key + " must be an integer 1..1000000");
    *out = v.get<int>();
  }
  return r;
}

// The config's "api" section, the server's part: {max_connections,
// max_connections_per_address, read_timeout_ms, idle_timeout_ms, workers}.
// Connections are bounded by the open-file limit (`open_files`), with room left
// for the store, logs and instances.
Result<http::ServerOptions> ServerOptionsFrom(const json& config, size_t max_body_bytes, int open_files) {
  http::ServerOptions s;
  s.body_limit = max_body_bytes;
  s.error_body = ErrorBody;
  s.max_connections = std::max(64, std::min(s.max_connections, open_files - 1024));
  s.max_connections_per_address = std::min(s.max_connections_per_address, s.max_connections);
  const json api = config.value("api", json::object());
  struct Bound {
    const char* key;
    int* out;
    int lo, hi;
  };
  for (const Bound& b :
       {Bound{"max_connections", &s.max_connections, 1, open_files - 256},
        Bound{"max_connections_per_address", &s.max_connections_per_address, 1, 1 << 20},
        Bound{"read_timeout_ms", &s.read_timeout_ms, 100, 600000},
        Bound{"idle_timeout_ms", &s.idle_timeout_ms, 100, 3600000}, Bound{"workers", &s.workers, 2, 1024}}) {
    const json v = api.value(b.key, json(*b.out));
    if (!v.is_number_integer() || v.get<int64_t>() < b.lo || v.get<int64_t>() > b.hi)
      return InvalidArgument(std::string("api.") + b.key, std::string("api.") + b.key + " must be an integer " +
                                                              std::to_string(b.lo) + ".." + std::to_string(b.hi));
    *b.out = v.get<int>();
  }
  return s;
}

// Principals: API tokens for /v1 (the bootstrap admin's in admin.token, 0600)
// and access keys for the SageMaker front (the admin's in credentials); the
// router's origins, limits and audit log.
Status SetUpAccess(const std::string& data, const json& config, Store& store, ApiTokens& api_tokens, AccessKeys& keys,
                   std::unique_ptr<OidcVerifier>& oidc, NativeApiOptions& aopts) {
  KILN_RETURN_IF_ERROR(EnsureBootstrapToken(api_tokens, data + "/admin.token"));
  auto admin = smapi::BootstrapAdminKey(keys, data + "/credentials");
  if (!admin.ok()) return admin.status();
  auto router = ApiOptionsFrom(config);
  if (!router.ok()) return router.status();
  aopts.api_tokens = &api_tokens;
  aopts.access_keys = &keys;
  aopts.router = *router;
  aopts.router.audit = &store;
  const json auth = config.value("auth", json::object());
  if (!auth.is_object()) return InvalidArgument("auth", "auth must be a mapping");
  if (auth.contains("oidc")) {
    auto oo = OidcOptionsFromJson(auth["oidc"]);
    if (!oo.ok()) return oo.status();
    auto v = OidcVerifier::Create(*oo, RealClock::Get());
    if (!v.ok()) return v.status();
    oidc = std::move(*v);
    aopts.router.oidc = oidc.get();
  }
  return Status::Ok();
}

// Instances in a network namespace of their own reach the gateway through their
// socket only: no host port anyone on the host could write into.
HostUdpPort StatsdUdpFor(const KilndOptions& o, const LocalBackendOptions& sandbox) {
  const bool own_network = o.backend == "local" && sandbox.network == supervisor::NetworkMode::kPrivate;
  return own_network ? HostUdpPort::kNone : HostUdpPort::kOpen;
}

// The controller's options: its URL and artifact root for instances, their
// tokens, the metrics gateway's and the HTTP server's hooks, and team quotas.
Result<ControllerOptions> ControllerOptionsFor(const json& config, const std::string& api_url, const std::string& data,
                                               const TokenIssuer& tokens, MetricsGateway& metrics,
                                               http::AsyncServer& server,
                                               std::atomic<schedules::Scheduler*>& scheduler) {
  ControllerOptions copts;
  copts.threading = Threading::kThreaded;
  copts.api_url = api_url;
  copts.artifacts_dir = data + "/artifacts";
  copts.token_for = [&tokens](const std::string& id) { return tokens.For(id); };
  copts.on_instance_released = [&metrics](const std::string& id) { metrics.CloseInstance(id); };
  copts.before_instance_exit = [&metrics](const std::string& id) { metrics.DrainInstance(id); };
  // The scheduler is set before the controller starts, and read only after.
  copts.on_job_changed = [&server, &scheduler](const std::string& id) {
    server.Wake(id);
    if (schedules::Scheduler* s = scheduler.load()) s->JobChanged(id);
  };
  auto quotas = QuotaConfigFromJson(config.value("quotas", json()));
  if (!quotas.ok()) return quotas.status();
  copts.quotas = *quotas;
  auto warm = WarmPoolOptionsFromJson(config.value("warm_pools", json()));
  if (!warm.ok()) return warm.status();
  copts.warm_pools = *warm;
  return copts;
}

// The SageMaker front's region, account, catalog and S3 map (config: sagemaker, s3).
smapi::ApiOptions SageMakerOptionsFor(const json& config, const Catalog& catalog, const smapi::S3Map& s3) {
  smapi::ApiOptions sopts;
  const json sm = config.value("sagemaker", json::object());
  sopts.ctx.region = sm.value("region", "us-east-1");
  sopts.ctx.account = sm.value("account", "000000000000");
  sopts.ctx.catalog = &catalog;
  sopts.ctx.s3 = s3;
  return sopts;
}

// How the scheduler submits, stops and validates its runs.
schedules::Options ScheduleOptions(Controller& controller, const Catalog& catalog, ComputeBackend* backend,
                                   const std::function<NativeApi*()>& api) {
  schedules::Options so;
  // A slot's sandbox, warmed ahead: for a job like the run's (its name aside).
  so.prewarm = [&catalog, backend](const json& job, TimeMs until_ms, const std::vector<std::string>& preload) {
    json probe = job;
    probe["name"] = "prewarm";
    auto spec = ParseSpec(probe, catalog);
    const InstanceType* type = spec.ok() ? catalog.FindType(spec->instance_type) : nullptr;
    const ImageEnv* image = spec.ok() ? catalog.FindImage(spec->image) : nullptr;
    if (!type || !image) return;
    LaunchRequest like;
    like.spec = *spec;
    like.type = *type;
    like.image = *image;
    if (Status st = backend->Prewarm(like, until_ms, preload); !st.ok())
      fprintf(stderr, "kilnd: pre-warming for a schedule: %s\n", st.ToString().c_str());
  };
  so.submit = [api](const std::string& body, const Principal& who) { return api()->Submit(body, who); };
  so.stop = [&controller](const std::string& id) { return controller.StopJob(id); };
  so.validate = [&catalog](const json& job) { return ParseSpec(job, catalog).status(); };
  return so;
}

}  // namespace

int RunKilnd(const KilndOptions& o) {
  auto fail = [](const Status& st) {
    fprintf(stderr, "kilnd: %s\n", st.ToString().c_str());
    return 1;
  };
  const std::string data = std::filesystem::absolute(o.data_dir).lexically_normal().string();
  if (Status st = MakeDirs(data); !st.ok()) return fail(st);
  auto loaded_config = LoadConfig(o.config_path);
  if (!loaded_config.ok()) return fail(loaded_config.status());
  auto s3 = smapi::S3Map::FromConfig(loaded_config->value("s3", json()), data + "/s3");
  if (!s3.ok()) return fail(s3.status());
  if (Status st = MakeDirs(s3->root()); !st.ok()) return fail(st);
  auto sandbox = SandboxOptions(*loaded_config, *s3);
  if (!sandbox.ok()) return fail(sandbox.status());
  auto lock = PrepareDataDir(data, *loaded_config, *sandbox);
  if (!lock.ok()) return fail(lock.status());

  const json& config = *loaded_config;
  auto catalog = Catalog::FromJson(config);
  if (!catalog.ok()) return fail(catalog.status());
  if (Status st = WarmSandboxOptionsFor(config, *catalog, *sandbox); !st.ok()) return fail(st);

  auto secret = LoadOrCreateSecret(data + "/secret.key");
  if (!secret.ok()) return fail(secret.status());
  TokenIssuer tokens(*secret);
  auto box = SecretBox::LoadOrCreate(o.master_key_path.empty() ? data + "/master.key" : o.master_key_path);
  if (!box.ok()) return fail(box.status());

  RestrictDatabaseFiles(data);
  auto store = OpenSqliteStore(data + "/kiln.db", o.durable_fsync ? Durability::kFull : Durability::kNormal);
  if (!store.ok()) return fail(store.status());

  auto serving = ServerOptionsFrom(config, NativeApiOptions{}.max_body_bytes, RaiseOpenFileLimit());
  if (!serving.ok()) return fail(serving.status());
  http::AsyncServer server(*serving);
  auto bound = Bind(server, o.listen);
  if (!bound.ok()) return fail(bound.status());
  const std::string addr = *bound;
  const std::string api_url = "http://" + addr;

  auto mopts = MetricsOptionsFrom(config, o.statsd_flush_ms);
  if (!mopts.ok()) return fail(mopts.status());
  const GatewayOptions gopts = mopts->gateway;
  const int64_t retention_ms = mopts->retention_ms, events_ms = mopts->event_retention_ms;
  Store& st = **store;
  MetricsGateway metrics(gopts, RealClock::Get(), [&st](const std::vector<MetricPoint>& points) {
    Status s = st.AppendMetricPoints(points);
    if (!s.ok()) fprintf(stderr, "kilnd: storing metrics: %s\n", s.ToString().c_str());
  });
  if (Status s = metrics.Start(); !s.ok()) return fail(s);

  ThreadTimerService timers(RealClock::Get());
  std::atomic<schedules::Scheduler*> scheduler{nullptr};
  auto copts = ControllerOptionsFor(config, api_url, data, tokens, metrics, server, scheduler);
  if (!copts.ok()) return fail(copts.status());
  Controller controller(**store, RealClock::Get(), timers, *catalog, *copts);

  auto pools = SetUpPools(config, o, data, *sandbox, *catalog, tokens, controller);
  if (!pools.ok()) return fail(pools.status());
  controller.SetBackend(pools->router.get());

  NativeApiOptions aopts;
  ComputeBackend* be = pools->router.get();
  ServePools(*pools, aopts);
  aopts.log_path = [be](const std::string& id) { return be->LogPath(id); };
  aopts.metrics_socket_path = [be](const std::string& id) { return be->MetricsSocketPath(id); };
  aopts.metrics = &metrics;
  const HostUdpPort statsd_udp = StatsdUdpFor(o, *sandbox);
  aopts.statsd_udp = statsd_udp;
  if (statsd_udp == HostUdpPort::kNone) aopts.job_interface = isolation::kJobInterface;
  aopts.staging_dir = data + "/artifacts/.staged-hyperparameters";
  aopts.secrets = &*box;
  tuning::ServiceOptions topts;
  topts.log_path = [be](const std::string& id) { return be->LogPath(id); };
  tuning::TuningService tuner(**store, controller, RealClock::Get(), topts);
  aopts.tuning = &tuner;
  NativeApi* api_ptr = nullptr;  // each slot's job goes through the API's own submit
  schedules::Scheduler sched(**store, RealClock::Get(), timers,
                             ScheduleOptions(controller, *catalog, be, [&api_ptr] { return api_ptr; }));
  scheduler.store(&sched);
  aopts.schedules = &sched;
  ApiTokens api_tokens(**store, RealClock::Get());
  AccessKeys keys(**store, *box, RealClock::Get());
  std::unique_ptr<OidcVerifier> oidc;
  if (Status st = SetUpAccess(data, config, **store, api_tokens, keys, oidc, aopts); !st.ok()) return fail(st);
  NativeApi api(controller, **store, *catalog, tokens, aopts);
  api_ptr = &api;
  api.Register(server);

  // The SageMaker-compatible front (SigV4 with Kiln's access keys).
  const smapi::ApiOptions sopts = SageMakerOptionsFor(config, *catalog, *s3);
  smapi::SageMakerApi sagemaker(controller, **store, keys, RealClock::Get(), sopts);
  sagemaker.SetTuning(&tuner);
  sagemaker.Register(server);

  // The runtime API for sandboxes with a network of their own: only /v1/runtime.
  UnixHttpServer runtime_server;
  api.RegisterRuntimeOnly(runtime_server);
  if (Status st = runtime_server.Start(data + "/run/runtime.sock"); !st.ok()) return fail(st);

  if (Status st = controller.Start(); !st.ok()) return fail(st);
  tuner.Start();  // resumes live tuning jobs from the store
  if (Status st = sched.Start(); !st.ok()) return fail(st);
  ReopenMetrics(**store, *be, metrics, statsd_udp);

  if (Status st = WriteFileAtomic(data + "/kilnd.addr", addr + "\n"); !st.ok()) return fail(st);
  fprintf(stderr, "kilnd: listening on %s (data dir %s, backend %s)\n", api_url.c_str(), data.c_str(),
          o.backend.c_str());
  ServeUntilSignal(server, controller, o.resync_seconds,
                   [&st, retention_ms, events_ms] { PruneOld(st, retention_ms, events_ms); });

  fprintf(stderr, "kilnd: shutting down; running instances keep running and are re-adopted on restart\n");
  api.Shutdown();
  server.Stop();  // open streams end
  runtime_server.Shutdown();
  tuner.Shutdown();
  controller.Shutdown();
  metrics.Shutdown();
  unlink((data + "/kilnd.addr").c_str());
  return 0;
}

}  // namespace kiln
