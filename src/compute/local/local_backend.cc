#include "compute/local/local_backend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/fsutil.h"
#include "common/sandbox_paths.h"
#include "compute/local/cgroup.h"
#include "compute/local/isolation.h"
#include "compute/local/protocol.h"
#include "compute/local/scratch.h"
#include "compute/local/supervisor.h"

extern char** environ;

namespace kiln {

using nlohmann::json;
namespace fs = std::filesystem;

// The files of `root` (recursively, sorted) that instance `index` of `count`
// receives when a channel is ShardedByS3Key: every count-th object. Symlinks are
// neither followed nor bound (a job may have planted them in a shared prefix).
static std::vector<std::string> ShardFiles(const std::string& root, int index, int count) {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::symlink_status(root, ec).type() == fs::file_type::regular) {
    files.push_back("");
  } else {
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->symlink_status(ec).type() == fs::file_type::regular)
        files.push_back(fs::relative(it->path(), root, ec).string());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> mine;
  for (size_t i = 0; i < files.size(); ++i)
    if (static_cast<int>(i % static_cast<size_t>(count)) == index) mine.push_back(files[i]);
  return mine;
}

static uint32_t Fnv(const std::string& s) {
  uint32_t h = 2166136261u;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

static std::string Hex(uint64_t v, int digits) {
  static const char* const kDigits = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kDigits[v & 15];
  return out;
}

// The subnet of a multi-instance job on its bridge: 10.<a>.<b>.0/24, from the job id.
static std::string JobSubnet(const std::string& job_id) {
  uint32_t h = Fnv(job_id);
  return "10." + std::to_string((h >> 8) % 256) + "." + std::to_string(h % 256) + ".";
}

// How algo-N resolve inside an instance. Own network: a single instance is
// itself (127.0.1.1); a multi-instance job's instances sit on its bridge at
// 10.a.b.N. Host network (SandboxUser::kRoot hosts): per-job loopback addresses.
static std::string HostsFile(const std::string& job_id, int count, supervisor::NetworkMode network) {
  std::string net;
  if (network == supervisor::NetworkMode::kPrivate) {
    net = count > 1 ? JobSubnet(job_id) : "127.0.1.";
  } else {
    uint32_t h = Fnv(job_id);
    net = "127." + std::to_string(1 + h % 254) + "." + std::to_string(1 + (h >> 8) % 254) + ".";
  }
  std::string out = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
  for (int i = 0; i < count; ++i) out += net + std::to_string(i + 1) + "\talgo-" + std::to_string(i + 1) + "\n";
  return out;
}

void SandboxCommand::AddFdBind(supervisor::FdBind bind, const std::string& dest, bool writable) {
  if (deferred) {
    late.push_back({std::move(bind), dest, writable});
    return;
  }
  argv.insert(argv.end(),
              {writable ? "--bind-fd" : "--ro-bind-fd", "{fd:" + std::to_string(fd_binds.size()) + "}", dest});
  fd_binds.push_back(std::move(bind));
}

void LocalBackend::AddBind(SandboxCommand& c, const std::string& source, const std::string& dest, bool writable,
                           const std::string& team) const {
  c.AddFdBind(BindSource(source, writable, team), dest, writable);
}

supervisor::FdBind LocalBackend::BindSource(const std::string& source, bool writable, const std::string& team) const {
  supervisor::FdBind b;
  if (auto rel = RelativeBeneath(opts_.data_dir, source)) {  // beneath the data dir, no symlinks
    b.root = opts_.data_dir;
    b.relative = *rel;
    return b;
  }
  if (writable) {  // beneath the root it was created under, no symlinks (a job may own the parent)
    std::vector<std::string> roots = opts_.writable_roots;
    if (auto t = opts_.teams.find(team); t != opts_.teams.end()) roots = t->second.write_paths;
    for (const auto& root : roots)
      if (auto rel = RelativeBeneath(root, source)) {
        b.root = fs::path(root).lexically_normal().string();
        b.relative = *rel;
        return b;
      }
  }
  // A host path the spec named: opened as the job's user, judged by its real path.
  b.root = "/";
  b.relative = fs::path(source).lexically_normal().relative_path().string();
  b.as_job_user = true;
  b.forbidden = opts_.data_dir;
  if (auto t = opts_.teams.find(team); t != opts_.teams.end()) {
    b.allowed = t->second.write_paths;
    b.allowed.insert(b.allowed.end(), t->second.read_paths.begin(), t->second.read_paths.end());
  } else if (!opts_.teams.empty()) {
    b.allowed = {"/nonexistent-team-namespace"};  // refused earlier by CheckTeamPaths anyway
  }
  return b;
}

// Binds `source` at `target` read-only: all of it, or this instance's shard.
static void BindData(const std::function<void(const std::string&, const std::string&)>& bind, const std::string& source,
                     const std::string& target, Distribution d, int index, int count, std::vector<std::string>& a) {
  std::error_code ec;
  const bool file = fs::symlink_status(source, ec).type() == fs::file_type::regular;
  if (d == Distribution::kFullyReplicated || count <= 1) {
    // An object (a file) lands inside the target directory, as S3 downloads do.
    bind(source, file ? target + "/" + fs::path(source).filename().string() : target);
    return;
  }
  a.insert(a.end(), {"--dir", target});
  for (const auto& rel : ShardFiles(source, index, count)) {
    if (rel.empty()) {
      bind(source, target + "/" + fs::path(source).filename().string());
    } else {
      bind(StrCat(source, "/", rel), StrCat(target, "/", rel));
    }
  }
}

static int PidfdOpen(int pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

LocalBackend::LocalBackend(LocalBackendOptions opts, EventSink& sink, Clock& clock)
    : opts_(std::move(opts)), sink_(sink), clock_(clock) {}

LocalBackend::~LocalBackend() {
  StopWarmSandboxes();
  if (loop_.joinable()) {
    {
      MutexLock l(mu_);
      stop_ = true;
    }
    uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    (void)n;
    loop_.join();
  }
  MutexLock l(mu_);  // the loop has ended; the lock only satisfies the analysis
  for (auto& [fd, w] : watches_) close(fd);
  if (epfd_ >= 0) close(epfd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status LocalBackend::Init() {
  KILN_RETURN_IF_ERROR(MakeDirs(opts_.instances_dir));
  // bwrap needs the mount point on the (read-only) host root.
  std::error_code ec;
  fs::create_directories(sandbox::kRoot, ec);
  if (access(opts_.bwrap_path.c_str(), X_OK) != 0)
    return Status(Code::kFailedPrecondition,
                  "bubblewrap not found at " + opts_.bwrap_path + " (apt install bubblewrap)");
  if (access(opts_.supervisor_path.c_str(), X_OK) != 0)
    return Status(Code::kFailedPrecondition, "kiln-supervisor not found at " + opts_.supervisor_path);
  if (Unprivileged()) KILN_RETURN_IF_ERROR(CheckUserNamespaces());
  if (!opts_.egress_teams.empty() || !opts_.egress_instance_types.empty()) KILN_RETURN_IF_ERROR(InitEgress());
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  loop_ = std::thread([this] { EpollLoop(); });
  InitWarmSandboxes();
  return Status::Ok();
}

// Reads a small integer from a /proc/sys file; -1 if absent.
static int64_t ProcSysValue(const char* path) {
  auto text = ReadFile(path);
  return text.ok() ? atoll(text->c_str()) : -1;
}

Status LocalBackend::CheckUserNamespaces() {
  const int64_t max = ProcSysValue("/proc/sys/user/max_user_namespaces");
  const int64_t debian = ProcSysValue("/proc/sys/kernel/unprivileged_userns_clone");  // Debian's switch
  if (max == 0 || debian == 0)
    return Status(Code::kFailedPrecondition,
                  "jobs run as an unprivileged user in a user namespace of their own, and this kernel does not allow "
                  "those (user.max_user_namespaces=" +
                      std::to_string(max) + ", kernel.unprivileged_userns_clone=" + std::to_string(debian) +
                      "): enable them (sysctl), or set sandbox.user: root (not a security boundary)");
  return Status::Ok();
}

static std::string Ipv4(uint32_t host_order) {
  in_addr a{htonl(host_order)};
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof(buf));
  return buf;
}

Status LocalBackend::InitEgress() {
  if (opts_.network != supervisor::NetworkMode::kPrivate)
    return Status(Code::kFailedPrecondition, "sandbox.egress needs sandbox.network: private");
  const std::string& cidr = opts_.egress_subnet;
  const size_t slash = cidr.find('/');
  in_addr a{};
  const int prefix = slash == std::string::npos ? -1 : atoi(cidr.c_str() + slash + 1);
  if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1 || prefix < 16 ||
      prefix > 28)
    return InvalidArgument("sandbox.egress.subnet", "must be an IPv4 subnet a.b.c.d/16../28, not " + cidr);
  const uint32_t mask = ~uint32_t{0} << (32 - prefix);
  egress_base_ = ntohl(a.s_addr) & mask;
  egress_prefix_ = prefix;
  isolation::EgressNetwork n;
  n.gateway = Ipv4(egress_base_ + 1);
  n.prefix_len = prefix;
  n.subnet = Ipv4(egress_base_) + "/" + std::to_string(prefix);
  Status st = isolation::PrepareEgress(n);
  if (!st.ok()) return Status(Code::kFailedPrecondition, "sandbox.egress: " + st.message());
  return Status::Ok();
}

bool LocalBackend::EgressFor(const LaunchRequest& req) const {
  return !req.spec.network_isolation && egress_base_ != 0 && opts_.network == supervisor::NetworkMode::kPrivate &&
         (opts_.egress_teams.count(req.spec.team) > 0 || opts_.egress_instance_types.count(req.spec.instance_type) > 0);
}

Result<supervisor::JobLink> LocalBackend::AllocateEgress(const std::string& instance_id) {
  const uint32_t size = uint32_t{1} << (32 - egress_prefix_);
  MutexLock l(mu_);
  std::set<uint32_t> used;
  for (const auto& [id, addr] : egress_) used.insert(addr);
  for (uint32_t i = 0; i < size; ++i) {
    const uint32_t offset = 2 + (egress_next_ + i) % (size - 3);  // .0 the subnet, .1 the gateway, last broadcast
    if (used.count(egress_base_ + offset)) continue;
    egress_next_ = offset - 1;
    egress_[instance_id] = egress_base_ + offset;
    return supervisor::JobLink{"kegress", "kx" + Hex(Fnv(instance_id), 8) + Hex(Fnv(instance_id + "#") & 0xff, 2),
                               Ipv4(egress_base_ + offset), egress_prefix_, Ipv4(egress_base_ + 1)};
  }
  return Status(Code::kResourceExhausted, "no address left on the egress subnet " + opts_.egress_subnet);
}

void LocalBackend::ClaimEgress(const std::string& instance_id) {
  auto text = ReadFile(Dir(instance_id) + "/" + supervisor::kLaunchFile);
  if (!text.ok()) return;
  auto launch = supervisor::DecodeLaunchFile(*text);
  in_addr a{};
  if (!launch.ok() || !launch->egress || inet_pton(AF_INET, launch->egress->address.c_str(), &a) != 1) return;
  MutexLock l(mu_);
  egress_[instance_id] = ntohl(a.s_addr);
}

void LocalBackend::FreeEgress(const std::string& instance_id) {
  MutexLock l(mu_);
  egress_.erase(instance_id);
}

std::vector<Capability> LocalBackend::Capabilities() const {
  return {Capability::kSurvivesControllerRestart, Capability::kMemoryLimits, Capability::kCpuLimits,
          Capability::kPidNamespace};
}

BackendHealth LocalBackend::Health() const {
  BackendHealth h;
  for (int n : IdleWarmSandboxes()) h.warm_idle += n;
  MutexLock l(mu_);
  h.running = static_cast<int>(watched_ids_.size());
  return h;
}

std::string LocalBackend::LogPath(const std::string& id) const {
  return Dir(id) + "/output.log";
}

SandboxCommand LocalBackend::SandboxArgv(const LaunchRequest& req, const std::string& dir, SandboxPart part) const {
  SandboxCommand c;
  c.deferred = part == SandboxPart::kJobBinds;
  auto& a = c.argv;
  if (part != SandboxPart::kJobBinds) SandboxHead(req, dir, c);
  if (part != SandboxPart::kWarmSandbox) JobBinds(req, c);
  if (part == SandboxPart::kJobBinds) return c;
  c.AddFdBind({dir, "hosts"}, "/etc/hosts", false);
  // kilnd's sockets: this instance's StatsD socket directory, and the runtime API.
  c.AddFdBind({dir, "sock"}, sandbox::kMetricsDir, false);
  if (!opts_.runtime_socket.empty()) {
    c.AddFdBind({fs::path(opts_.runtime_socket).parent_path().string(), ""}, sandbox::kRuntimeDir, false);
  }
  a.insert(a.end(), {"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"});
  // The job's user: a user namespace of its own mapping only its uid, no
  // capabilities, and no further user namespaces inside.
  if (Unprivileged()) a.insert(a.end(), {"--unshare-user", "--disable-userns"});
  a.insert(a.end(), {"--seccomp", "{seccomp}", "--hostname", "algo-" + std::to_string(req.index + 1), "--as-pid-1",
                     "--die-with-parent", "--json-status-fd", "3", "--chdir", sandbox::kCodeDir, "--",
                     sandbox::kEntrypointBinary});
  if (part == SandboxPart::kWarmSandbox) {
    a.insert(a.end(), {"--assign-fd", "{assign}"});
    return c;
  }
  a.push_back("--");
  for (const auto& p : req.image.prefix) a.push_back(p);
  for (const auto& cmd : req.spec.command) a.push_back(cmd);
  return c;
}

void LocalBackend::SandboxHead(const LaunchRequest& req, const std::string& dir, SandboxCommand& c) const {
  auto& a = c.argv;
  a.push_back(opts_.bwrap_path);
  if (req.image.kind == ImageKind::kRootfs) {
    a.insert(a.end(), {"--ro-bind", req.image.rootfs, "/"});  // the admin's image
  } else {
    a.insert(a.end(), {"--ro-bind", "/", "/"});
  }
  a.insert(a.end(), {"--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run"});
  // Nothing of kilnd's: its data dir is an empty tmpfs here (wherever it lives);
  // the binds below that come from it are opened by the supervisor.
  if (!opts_.data_dir.empty()) a.insert(a.end(), {"--tmpfs", opts_.data_dir});
  // Nor the host's home directories.
  for (const char* home : {"/home", "/root"}) {
    std::error_code ec;
    if (req.image.kind != ImageKind::kRootfs && fs::is_directory(home, ec)) a.insert(a.end(), {"--tmpfs", home});
  }
  if (opts_.scratch_pool.empty()) {
    c.AddFdBind({dir, "ml"}, sandbox::kRoot, true);
  } else {
    c.AddFdBind({opts_.scratch_pool, req.instance_id}, sandbox::kRoot, true);
  }
  // The entrypoint is bound in, so it runs whatever the image and wherever the
  // binary lives (a host /tmp, say, is hidden by the sandbox's private /tmp).
  const fs::path entrypoint(opts_.entrypoint_path);
  c.AddFdBind({entrypoint.parent_path().string(), entrypoint.filename().string()}, sandbox::kEntrypointBinary, false);
}

void LocalBackend::JobBinds(const LaunchRequest& req, SandboxCommand& c) const {
  auto& a = c.argv;
  if (!req.spec.code_dir.empty()) AddBind(c, req.spec.code_dir, sandbox::kCodeDir, false, req.spec.team);
  const int n = req.spec.instance_count;
  auto ro = [&](const std::string& src, const std::string& dst) { AddBind(c, src, dst, false, req.spec.team); };
  for (const auto& [ch, path] : req.spec.inputs) {
    std::string target = StrCat(sandbox::kInputDataDir, "/", ch);
    const auto& sc = req.spec.sharded_channels;
    bool sharded = std::find(sc.begin(), sc.end(), ch) != sc.end();
    BindData(ro, path, target, sharded ? Distribution::kShardedByKey : Distribution::kFullyReplicated, req.index, n, a);
  }
  for (const auto& m : req.spec.mounts) BindData(ro, m.source, m.target, m.distribution, req.index, n, a);
  // What the job writes for the host: with a volume, staged on it (so it counts
  // against the quota) and published by the supervisor when the job ended;
  // checkpoints and the output directory are seeded onto it first. Without one,
  // bound in place.
  const bool staged = !opts_.scratch_pool.empty();
  auto in_volume = [](const std::string& path) { return *RelativeBeneath(sandbox::kRoot, path); };
  for (size_t i = 0; i < req.spec.uploads.size(); ++i) {
    const std::string at = sandbox::kUploadsPrefix + std::to_string(i);
    if (staged) {
      c.publish.push_back({in_volume(at), BindSource(req.spec.uploads[i].destination, true, req.spec.team)});
    } else {
      AddBind(c, req.spec.uploads[i].destination, at, true, req.spec.team);
    }
  }
  if (!req.spec.checkpoint_dir.empty()) {
    if (staged) {
      const supervisor::FdBind host = BindSource(req.spec.checkpoint_dir, true, req.spec.team);
      c.seed.push_back({in_volume(sandbox::kCheckpointsDir), host});
      c.publish.push_back({in_volume(sandbox::kCheckpointsDir), host});
    } else {
      AddBind(c, req.spec.checkpoint_dir, sandbox::kCheckpointsDir, true, req.spec.team);
    }
  }
  if (!req.spec.code_archive.empty()) AddBind(c, req.spec.code_archive, sandbox::kSourceArchive, false, req.spec.team);
  if (!req.warm_cache.empty()) c.AddFdBind(WarmCacheBind(req), sandbox::kWarmPoolCacheDir, true);
  if (staged) {
    // The job sees its output directory as it was (a retry, what the last attempt left).
    const supervisor::FdBind host = BindSource(req.output_dir, true, req.spec.team);
    c.AddFdBind({opts_.scratch_pool, req.instance_id + "/" + kStagedOutput}, req.output_dir, true);
    c.seed.push_back({kStagedOutput, host});
    c.publish.push_back({kStagedOutput, host});
  } else {
    AddBind(c, req.output_dir, req.output_dir, true, req.spec.team);
  }
}

// The data dir's areas that hold users' data (S3-style buckets, native outputs):
// the only part of it a bind may come from.
// Inside one bucket (s3/<bucket>/...) or one job's artifacts
// (artifacts/<name>/...): never an area's root, never a dot-named entry (kilnd's
// own, such as artifacts/.staged-hyperparameters).
static bool InUserData(const std::string& rel) {
  std::vector<std::string> parts;
  for (size_t pos = 0; pos <= rel.size();) {
    size_t slash = rel.find('/', pos);
    if (slash == std::string::npos) slash = rel.size();
    parts.push_back(rel.substr(pos, slash - pos));
    pos = slash + 1;
  }
  if (parts.size() < 2 || (parts[0] != "s3" && parts[0] != "artifacts")) return false;
  for (size_t i = 1; i < parts.size(); ++i)
    if (parts[i].empty() || parts[i][0] == '.') return false;
  return true;
}

static std::string Amount(double vcpus, int64_t memory_mib) {
  char buf[96];
  snprintf(buf, sizeof(buf), "%g vCPUs and %lld MiB", vcpus, static_cast<long long>(memory_mib));
  return buf;
}

Status LocalBackend::Admit(const LaunchRequest& req) {
  const int count = std::max(1, req.spec.instance_count);
  const double vcpus = req.type.vcpus * count;
  const int64_t memory = req.type.memory_mib * count;
  const bool limited = opts_.capacity_vcpus > 0 || opts_.capacity_memory_mib > 0;
  auto over = [&](double v, int64_t m) {
    return (opts_.capacity_vcpus > 0 && v > opts_.capacity_vcpus + 1e-9) ||
           (opts_.capacity_memory_mib > 0 && m > opts_.capacity_memory_mib);
  };
  if (limited && over(vcpus, memory))
    return InvalidArgument("instance", "the job needs " + Amount(vcpus, memory) + " (" + std::to_string(count) + " x " +
                                           req.type.name + "); this host gives jobs at most " +
                                           Amount(opts_.capacity_vcpus, opts_.capacity_memory_mib) +
                                           " (sandbox.capacity)");
  MutexLock l(mu_);
  if (auto it = shares_.find(req.job_id); it != shares_.end()) {
    it->second.live.insert(req.instance_id);
    return Status::Ok();
  }
  if (limited && over(used_vcpus_ + vcpus, used_memory_mib_ + memory))
    return Status(Code::kResourceExhausted,
                  "the job needs " + Amount(vcpus, memory) + "; " + Amount(used_vcpus_, used_memory_mib_) + " of " +
                      Amount(opts_.capacity_vcpus, opts_.capacity_memory_mib) + " are in use");
  shares_[req.job_id] = JobShare{vcpus, memory, {req.instance_id}, true};
  used_vcpus_ += vcpus;
  used_memory_mib_ += memory;
  return Status::Ok();
}

void LocalBackend::Account(const std::string& job_id, const std::string& instance_id, double vcpus, int64_t memory_mib,
                           ShareOf of) {
  MutexLock l(mu_);
  auto [it, inserted] = shares_.try_emplace(job_id);
  if (!it->second.live.insert(instance_id).second) return;
  // Within the job's reservation: a whole-job share covers every instance.
  if (!inserted && (of == ShareOf::kWholeJob || it->second.whole)) return;
  if (of == ShareOf::kWholeJob) it->second.whole = true;
  it->second.vcpus += vcpus;
  it->second.memory_mib += memory_mib;
  used_vcpus_ += vcpus;
  used_memory_mib_ += memory_mib;
}

void LocalBackend::Release(const std::string& job_id, const std::string& instance_id) {
  MutexLock l(mu_);
  auto it = shares_.find(job_id);
  if (it == shares_.end() || it->second.live.erase(instance_id) == 0 || !it->second.live.empty()) return;
  used_vcpus_ -= it->second.vcpus;
  used_memory_mib_ -= it->second.memory_mib;
  shares_.erase(it);
}

Status LocalBackend::CheckTeamPaths(const LaunchRequest& req) const {
  if (opts_.teams.empty()) return Status::Ok();
  const std::string& team = req.spec.team;
  auto it = opts_.teams.find(team);
  if (it == opts_.teams.end())
    return InvalidArgument("team", "team " + team + " has no data namespace on this host (sandbox.teams)");
  const TeamData& data = it->second;
  auto within = [](const std::vector<std::string>& roots, const std::string& path) {
    for (const auto& r : roots)
      if (RelativeBeneath(r, path)) return true;
    return false;
  };
  auto read = [&](const std::string& field, const std::string& path) -> Status {
    if (path.empty() || within(data.write_paths, path) || within(data.read_paths, path)) return Status::Ok();
    return InvalidArgument(field, path + " is not in team " + team + "'s data (sandbox.teams." + team + ")");
  };
  auto write = [&](const std::string& field, const std::string& path) -> Status {
    if (path.empty() || within(data.write_paths, path)) return Status::Ok();
    return InvalidArgument(
        field, path + " is not writable by team " + team + " (sandbox.teams." + team + ".write_paths and buckets)");
  };
  KILN_RETURN_IF_ERROR(read("code_dir", req.spec.code_dir));
  KILN_RETURN_IF_ERROR(read("code_archive", req.spec.code_archive));
  for (const auto& [ch, path] : req.spec.inputs) KILN_RETURN_IF_ERROR(read("inputs." + ch, path));
  for (size_t i = 0; i < req.spec.mounts.size(); ++i)
    KILN_RETURN_IF_ERROR(read("mounts[" + std::to_string(i) + "]", req.spec.mounts[i].source));
  KILN_RETURN_IF_ERROR(write("checkpoint_dir", req.spec.checkpoint_dir));
  for (size_t i = 0; i < req.spec.uploads.size(); ++i)
    KILN_RETURN_IF_ERROR(write("uploads[" + std::to_string(i) + "]", req.spec.uploads[i].destination));
  // The job's own default output (artifacts/<name>/output) is its alone.
  const std::string own_output = opts_.data_dir + "/artifacts/" + req.spec.name + "/output";
  if (!opts_.data_dir.empty() && fs::path(req.output_dir).lexically_normal() == fs::path(own_output).lexically_normal())
    return Status::Ok();
  return write("output", req.output_dir);
}

Status LocalBackend::CheckHostPaths(const LaunchRequest& req) const {
  auto check = [&](const std::string& field, const std::string& path) -> Status {
    if (path.empty()) return Status::Ok();
    auto rel = RelativeBeneath(opts_.data_dir, path);
    if (rel && !InUserData(*rel))
      return InvalidArgument(field, path +
                                        " is inside kilnd's data dir; jobs may only use paths in its buckets "
                                        "(s3/<bucket>/...) and artifacts/<name>/...");
    return Status::Ok();
  };
  KILN_RETURN_IF_ERROR(CheckTeamPaths(req));
  KILN_RETURN_IF_ERROR(check("code_dir", req.spec.code_dir));
  KILN_RETURN_IF_ERROR(check("code_archive", req.spec.code_archive));
  KILN_RETURN_IF_ERROR(check("checkpoint_dir", req.spec.checkpoint_dir));
  KILN_RETURN_IF_ERROR(check("output", req.output_dir));
  if (req.image.kind == ImageKind::kRootfs) KILN_RETURN_IF_ERROR(check("image", req.image.rootfs));
  for (const auto& [ch, path] : req.spec.inputs) KILN_RETURN_IF_ERROR(check("inputs." + ch, path));
  for (size_t i = 0; i < req.spec.mounts.size(); ++i)
    KILN_RETURN_IF_ERROR(check("mounts[" + std::to_string(i) + "]", req.spec.mounts[i].source));
  for (size_t i = 0; i < req.spec.uploads.size(); ++i)
    KILN_RETURN_IF_ERROR(check("uploads[" + std::to_string(i) + "]", req.spec.uploads[i].destination));
  return Status::Ok();
}

Status LocalBackend::MakeJobDir(const std::string& path) const {
  const DirOwner owner{Unprivileged() ? opts_.job_uid : 0, Unprivileged() ? opts_.job_gid : 0};
  // Only what this launch creates becomes the job's: an existing directory (another
  // job's output, a bucket's root) keeps its owner.
  if (auto rel = RelativeBeneath(opts_.data_dir, path))
    return MakeDirsBeneath(opts_.data_dir, *rel, owner, OwnLeaf::kCreatedOnly);
  // A host path the spec names: beneath a writable root, never through a symlink
  // (anyone may plant one in /tmp). Only the directories created here become the
  // job's; an existing one keeps its owner (the job writes there only if it may).
  for (const auto& root : opts_.writable_roots)
    if (auto rel = RelativeBeneath(root, path)) return MakeDirsBeneath(root, *rel, owner, OwnLeaf::kCreatedOnly);
  std::string roots;
  for (const auto& r : opts_.writable_roots) roots += (roots.empty() ? "" : ", ") + r;
  return InvalidArgument("output", path + " is not under a directory jobs may write to (" + roots +
                                       ", or kilnd's s3/ and artifacts/; see sandbox.writable_roots)");
}

Status LocalBackend::PrepareInstanceDir(const LaunchRequest& req, const std::string& dir) const {
  KILN_RETURN_IF_ERROR(MakeDirs(dir));
  const DirOwner owner{Unprivileged() ? opts_.job_uid : 0, Unprivileged() ? opts_.job_gid : 0};
  // Root's, and only traversable by the jobs' group: bwrap resolves the paths of
  // the binds the supervisor opened (ml/, sock/) as the job's user. launch.json
  // (the instance's token) and the other files in it are 0600.
  if (chown(dir.c_str(), 0, owner.gid) != 0 || chmod(dir.c_str(), 0710) != 0)
    return Internal("chmod " + dir + ": " + strerror(errno));
  // The job's /opt/ml: its user's alone. With a scratch pool, a subvolume
  // limited to the instance's volume (beneath the pool root, which is root's).
  std::string ml_root = dir, ml = "ml";
  if (!opts_.scratch_pool.empty()) {
    KILN_RETURN_IF_ERROR(scratch::Create(opts_.scratch_pool, req.instance_id, VolumeBytes(req), owner));
    ml_root = opts_.scratch_pool;
    ml = req.instance_id;
  }
  // The whole tree is the instance's own, so every directory on each path is
  // (re)owned by the job: a kilnd killed between a mkdir and its chown left a
  // root-owned directory that a relaunch must repair, not keep.
  for (const char* sub : {"input/config", "input/data", "model", "output/data", "code", "checkpoints", ".kiln/bin"})
    KILN_RETURN_IF_ERROR(MakeDirsBeneath(ml_root, ml + "/" + sub, owner, OwnLeaf::kWholePath));
  if (!req.warm_cache.empty()) {
    KILN_RETURN_IF_ERROR(MakeDirsBeneath(
        ml_root, ml + "/" + *RelativeBeneath(sandbox::kRoot, sandbox::kWarmPoolCacheDir), owner, OwnLeaf::kWholePath));
    KILN_RETURN_IF_ERROR(PrepareWarmCache(req));
  }
  if (!opts_.scratch_pool.empty()) {  // staged for the supervisor to publish
    KILN_RETURN_IF_ERROR(MakeDirsBeneath(ml_root, ml + "/" + kStagedOutput, owner, OwnLeaf::kWholePath));
    for (size_t i = 0; i < req.spec.uploads.size(); ++i)
      KILN_RETURN_IF_ERROR(MakeDirsBeneath(
          ml_root, ml + "/" + *RelativeBeneath(sandbox::kRoot, sandbox::kUploadsPrefix + std::to_string(i)), owner,
          OwnLeaf::kWholePath));
  }
  const std::string ml_dir = ml_root + "/" + ml;
  if (chmod(ml_dir.c_str(), 0700) != 0) return Internal("chmod " + ml_dir + ": " + strerror(errno));
  KILN_RETURN_IF_ERROR(MakeDirsBeneath(dir, "sock", DirOwner{}, OwnLeaf::kCreatedOnly));
  for (const auto& [ch, path] : req.spec.inputs) {
    KILN_RETURN_IF_ERROR(MakeDirsBeneath(ml_root, StrCat(ml, "/input/data/", ch), owner, OwnLeaf::kWholePath));
    if (access(path.c_str(), R_OK) != 0)
      return InvalidArgument("inputs." + ch,
                             "input path " + path + " is not readable: " + std::string(strerror(errno)));
  }
  return Status::Ok();
}

namespace {

// A chain names directories: a job id, never a path.
bool ValidChain(const std::string& chain) {
  return !chain.empty() && chain.size() <= 128 && chain != "." && chain != ".." &&
         chain.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
             std::string::npos;
}

constexpr char kWarmCacheDir[] = ".warmcache";

std::string WarmSubvolume(const std::string& chain, int index) {
  return StrCat("warm.", chain, ".", std::to_string(index));
}

}  // namespace

supervisor::FdBind LocalBackend::WarmCacheBind(const LaunchRequest& req) const {
  if (!opts_.scratch_pool.empty()) return {opts_.scratch_pool, WarmSubvolume(req.warm_cache, req.index)};
  return {StrCat(opts_.instances_dir, "/", kWarmCacheDir, "/", req.warm_cache), std::to_string(req.index)};
}

Status LocalBackend::PrepareWarmCache(const LaunchRequest& req) const {
  if (!ValidChain(req.warm_cache)) return InvalidArgument("warm_cache", "not a warm pool chain: " + req.warm_cache);
  const DirOwner owner{Unprivileged() ? opts_.job_uid : 0, Unprivileged() ? opts_.job_gid : 0};
  if (!opts_.scratch_pool.empty())
    return scratch::Create(opts_.scratch_pool, WarmSubvolume(req.warm_cache, req.index), VolumeBytes(req), owner);
  // Root's down to the chain (traversable by the jobs' group, for bwrap), the
  // instance's directory the job's: it keeps what the last job left there.
  const std::string rel = StrCat(kWarmCacheDir, "/", req.warm_cache);
  KILN_RETURN_IF_ERROR(MakeDirsBeneath(opts_.instances_dir, rel, DirOwner{0, owner.gid}, OwnLeaf::kCreatedOnly));
  for (const std::string& d : {StrCat(opts_.instances_dir, "/", kWarmCacheDir), StrCat(opts_.instances_dir, "/", rel)})
    if (chmod(d.c_str(), 0710) != 0) return Internal("chmod " + d + ": " + strerror(errno));
  const std::string leaf = std::to_string(req.index);
  KILN_RETURN_IF_ERROR(MakeDirsBeneath(StrCat(opts_.instances_dir, "/", rel), leaf, owner, OwnLeaf::kCreatedOnly));
  return Status::Ok();
}

Status LocalBackend::DeleteWarmCache(const std::string& chain) {
  if (!ValidChain(chain)) return InvalidArgument("chain", "not a warm pool chain: " + chain);
  Status first = RemoveTreeNoFollow(StrCat(opts_.instances_dir, "/", kWarmCacheDir, "/", chain));
  if (!opts_.scratch_pool.empty()) {
    const std::string prefix = StrCat("warm.", chain, ".");
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(opts_.scratch_pool, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) == 0 && name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
        names.push_back(name);
    }
    for (const auto& name : names) {
      Status st = scratch::Remove(opts_.scratch_pool, name);
      if (!st.ok() && first.ok()) first = st;
    }
  }
  return first;
}

Result<std::string> LocalBackend::Launch(const LaunchRequest& req) {
  std::lock_guard<std::mutex> launch_lock(launch_mu_);
  const std::string dir = Dir(req.instance_id);
  // Idempotent: a supervisor that already started owns the instance.
  if (auto adopted = Adopt(req); adopted.ok()) return adopted;
  KILN_RETURN_IF_ERROR(CheckHostPaths(req));
  if (auto slot = TakeSlot(req)) {
    // Its share of the host becomes the job's.
    Release(slot->id, slot->id);
    if (!Admit(req).ok()) {
      RetireSlot(*slot);
    } else {
      Result<std::string> handle = AssignSlot(req, *slot);
      if (handle.ok()) return handle;
      Release(req.job_id, req.instance_id);
      fprintf(stderr, "kilnd: local backend: warm sandbox %s for %s: %s; starting a cold one\n", slot->id.c_str(),
              req.instance_id.c_str(), handle.status().ToString().c_str());
    }
    WakeRefill();
  }
  KILN_RETURN_IF_ERROR(Admit(req));
  Result<std::string> launched = Spawn(req, dir);
  if (!launched.ok()) {
    Release(req.job_id, req.instance_id);
    FreeEgress(req.instance_id);
  }
  return launched;
}

std::vector<std::string> LocalBackend::JobEnv(const LaunchRequest& req) const {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOME=/tmp",
      "LANG=C.UTF-8",
      std::string("KILN_RUNTIME=") + (opts_.runtime_context.empty() ? "kiln-local" : opts_.runtime_context),
      "KILN_JOB_ID=" + req.job_id,
      "KILN_JOB_NAME=" + req.spec.name,
      "KILN_INSTANCE_ID=" + req.instance_id,
      "KILN_API_URL=" + (opts_.runtime_socket.empty() ? req.api_url
                                                      : StrCat("unix:", sandbox::kRuntimeDir, "/",
                                                               fs::path(opts_.runtime_socket).filename().string())),
      "KILN_TOKEN=" + req.token,
  };
  if (!req.warm_cache.empty())
    env.push_back(StrCat("SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY=", sandbox::kWarmPoolCacheDir));
  return env;
}

Result<supervisor::LaunchFile> LocalBackend::LaunchFileFor(const LaunchRequest& req, const std::string& dir) {
  const DirOwner owner{Unprivileged() ? opts_.job_uid : 0, Unprivileged() ? opts_.job_gid : 0};
  std::vector<std::string> env = JobEnv(req);
  supervisor::LaunchFile launch;
  launch.instance_id = req.instance_id;
  SandboxCommand command = SandboxArgv(req, dir);
  launch.argv = std::move(command.argv);
  launch.fd_binds = std::move(command.fd_binds);
  launch.seed = std::move(command.seed);
  launch.publish = std::move(command.publish);
  launch.env = std::move(env);
  launch.uid = owner.uid;
  launch.gid = owner.gid;
  launch.seccomp = true;
  launch.pids_max = opts_.pids_max;
  launch.log_max_bytes = opts_.log_max_bytes;
  if (!opts_.scratch_pool.empty()) {
    launch.scratch = ScratchDir(req.instance_id);
    launch.volume_bytes = VolumeBytes(req);
  }
  launch.network = opts_.network;
  if (opts_.network == supervisor::NetworkMode::kPrivate && req.spec.instance_count > 1)
    launch.link = supervisor::JobLink{"kb" + Hex(Fnv(req.job_id), 8),
                                      "kv" + Hex(Fnv(req.instance_id), 8) + Hex(Fnv(req.instance_id + "#") & 0xff, 2),
                                      JobSubnet(req.job_id) + std::to_string(req.index + 1), 24};
  if (EgressFor(req)) {
    auto egress = AllocateEgress(req.instance_id);
    if (!egress.ok()) return egress.status();
    launch.egress = std::move(*egress);
  }
  launch.memory_bytes = req.type.memory_mib * 1024 * 1024;
  launch.cpus = req.type.vcpus;
  launch.grace_ms = req.spec.stop_grace_seconds * 1000;
  launch.log = dir + "/" + supervisor::kLogFile;
  if (!req.exit_report_token.empty()) {
    launch.report_url = req.api_url;
    launch.report_token = req.exit_report_token;
  }
  return launch;
}

Status LocalBackend::Prepare(const LaunchRequest& req) {
  KILN_RETURN_IF_ERROR(CheckHostPaths(req));
  return WriteLaunch(req, Dir(req.instance_id));
}

Status LocalBackend::WriteLaunch(const LaunchRequest& req, const std::string& dir) {
  KILN_RETURN_IF_ERROR(PrepareJobDirs(req, dir));
  auto launch = LaunchFileFor(req, dir);
  if (!launch.ok()) return launch.status();
  return WriteFileAtomic(dir + "/" + supervisor::kLaunchFile, supervisor::Encode(*launch), 0600, Sync::kNoSync);
}

Status LocalBackend::PrepareJobDirs(const LaunchRequest& req, const std::string& dir) {
  KILN_RETURN_IF_ERROR(PrepareInstanceDir(req, dir));
  for (size_t i = 0; i < req.spec.mounts.size(); ++i)
    if (access(req.spec.mounts[i].source.c_str(), R_OK) != 0)
      return InvalidArgument("mounts[" + std::to_string(i) + "]",
                             "input path " + req.spec.mounts[i].source + " is not readable: " + strerror(errno));
  if (!req.spec.code_archive.empty() && access(req.spec.code_archive.c_str(), R_OK) != 0)
    return InvalidArgument("code_archive", "source archive " + req.spec.code_archive +
                                               " is not readable: " + std::string(strerror(errno)));
  const DirOwner owner{Unprivileged() ? opts_.job_uid : 0, Unprivileged() ? opts_.job_gid : 0};
  for (const auto& u : req.spec.uploads) {
    KILN_RETURN_IF_ERROR(MakeJobDir(u.destination));
    auto local = RelativeBeneath(sandbox::kRoot, u.local_path);
    if (local && !local->empty())
      KILN_RETURN_IF_ERROR(MakeDirsBeneath(ScratchDir(req.instance_id), *local, owner, OwnLeaf::kCreatedOnly));
  }
  if (!req.spec.checkpoint_dir.empty()) KILN_RETURN_IF_ERROR(MakeJobDir(req.spec.checkpoint_dir));
  KILN_RETURN_IF_ERROR(WriteFileAtomic(dir + "/hosts", HostsFile(req.job_id, req.spec.instance_count, opts_.network),
                                       0644, Sync::kNoSync));
  return MakeJobDir(req.output_dir);
}

Result<std::string> LocalBackend::Spawn(const LaunchRequest& req, const std::string& dir) {
  KILN_RETURN_IF_ERROR(WriteLaunch(req, dir));
  auto pid = StartSupervisor(dir, req.instance_id);
  if (!pid.ok() && pid.status().code() == Code::kAlreadyExists) return Adopt(req);  // raced with an earlier one
  if (!pid.ok()) return pid.status();
  unsigned long long start = ProcessStartTime(*pid);
  KILN_RETURN_IF_ERROR(WatchPid(req.instance_id, req.job_id, *pid, start));
  return Handle(*pid, start, dir, req.job_id);
}

Result<int> LocalBackend::StartSupervisor(const std::string& dir, const std::string& cgroup_id, int timeout_ms) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return Internal(std::string("pipe: ") + strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, ready[1], 3);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::string slog = dir + "/supervisor.log";
  posix_spawn_file_actions_addopen(&fa, 1, slog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // The supervisor outlives kilnd: it must not hold kilnd's sockets (client
  // connections, the listener) or any other descriptor a library left inheritable.
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> args = {opts_.supervisor_path, "--dir", dir, "--ready-fd", "3"};
  std::vector<char*> av;
  av.reserve(args.size() + 1);
  for (auto& s : args) av.push_back(s.data());
  av.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, opts_.supervisor_path.c_str(), &fa, &attr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(ready[1]);
  if (rc != 0) {
    close(ready[0]);
    return Status(Code::kUnavailable, std::string("spawn kiln-supervisor: ") + strerror(rc));
  }
  // Bounded: a supervisor that never answers must not stall the reconciler. The
  // launch then reports Unavailable and is retried; Launch is idempotent.
  char buf[256] = {0};
  ssize_t n = -1;
  pollfd rp{ready[0], POLLIN, 0};
  if (poll(&rp, 1, timeout_ms) > 0) n = read(ready[0], buf, sizeof(buf) - 1);
  close(ready[0]);
  if (n < 0) {
    // Killed, with whatever it started (its cgroup) and its pid file: nothing of
    // it runs on, so the capacity share Launch gives back is really free, and
    // the retry starts a fresh supervisor instead of adopting a dead one.
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    InstanceCgroup::RemoveLeftover(cgroup_id);
    unlink((dir + "/" + supervisor::kPidFile).c_str());
    return Status(Code::kUnavailable,
                  "kiln-supervisor did not answer within " + std::to_string(timeout_ms / 1000) + " s (it was killed)");
  }
  supervisor::ReadyAnswer answer = supervisor::DecodeReady(n > 0 ? std::string(buf, static_cast<size_t>(n)) : "");
  if (answer.kind == supervisor::ReadyKind::kError) {
    waitpid(pid, nullptr, WNOHANG);
    // A bind it refused (a symlink planted under the data dir) will be refused
    // again: not worth a retry.
    const Code code = answer.error.rfind("sandbox setup:", 0) == 0 ? Code::kFailedPrecondition : Code::kInternal;
    return Status(code, "kiln-supervisor failed to start: " + answer.error);
  }
  if (answer.kind == supervisor::ReadyKind::kBusy) {  // raced with an earlier supervisor: report that one
    waitpid(pid, nullptr, 0);
    return Status(Code::kAlreadyExists, "another kiln-supervisor owns " + dir);
  }
  return static_cast<int>(pid);
}

std::string LocalBackend::Handle(int pid, unsigned long long start, const std::string& dir, const std::string& job_id) {
  return supervisor::Encode(supervisor::Handle{pid, start, dir, job_id});
}

Result<std::pair<int, unsigned long long>> LocalBackend::SupervisorOf(const std::string& dir) {
  auto text = ReadFile(dir + "/" + supervisor::kPidFile);
  if (!text.ok()) return text.status();
  auto pidfile = supervisor::DecodePidFile(*text);
  if (!pidfile.ok()) return Internal(dir + ": " + pidfile.status().message());
  return std::make_pair(pidfile->pid, pidfile->start);
}

Result<std::string> LocalBackend::Adopt(const LaunchRequest& req) {
  const std::string dir = Dir(req.instance_id);
  auto sup = SupervisorOf(dir);
  if (!sup.ok()) return sup.status();
  // A warm sandbox renamed for this instance by a kilnd that died before it
  // finished the assignment: signal it again (a supervisor takes one assignment
  // and ignores later signals), or, without assign.json, end it so that the
  // retried launch starts afresh.
  if (auto text = ReadFile(dir + "/" + supervisor::kLaunchFile); text.ok()) {
    auto launch = supervisor::DecodeLaunchFile(*text);
    if (launch.ok() && launch->warm && ProcessStartTime(sup->first) == sup->second) {
      if (access((dir + "/" + supervisor::kAssignFile).c_str(), F_OK) == 0) {
        kill(sup->first, SIGUSR1);
      } else {
        kill(sup->first, SIGKILL);
        InstanceCgroup::RemoveLeftover(launch->instance_id);
        unlink((dir + "/" + supervisor::kPidFile).c_str());
        return Status(Code::kUnavailable, "a warm sandbox renamed for " + req.instance_id +
                                              " had no assignment (kilnd stopped meanwhile); it was ended");
      }
    }
  }
  ClaimEgress(req.instance_id);
  Account(req.job_id, req.instance_id, req.type.vcpus * std::max(1, req.spec.instance_count),
          req.type.memory_mib * std::max(1, req.spec.instance_count), ShareOf::kWholeJob);
  KILN_RETURN_IF_ERROR(WatchPid(req.instance_id, req.job_id, sup->first, sup->second));
  return Handle(sup->first, sup->second, dir, req.job_id);
}

Status LocalBackend::WatchPid(const std::string& id, const std::string& job_id, int pid, unsigned long long start) {
  {
    MutexLock l(mu_);
    if (watched_ids_.count(id)) return Status::Ok();
  }
  int fd = PidfdOpen(pid);
  if (fd < 0 || (start && ProcessStartTime(pid) != start)) {
    if (fd >= 0) close(fd);
    // Already gone: report from status.json.
    Finished(id, job_id, pid);
    return Status::Ok();
  }
  MutexLock l(mu_);
  watched_ids_.insert(id);
  watches_[fd] = {id, Watch{job_id, pid, fd}};
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  return Status::Ok();
}

void LocalBackend::EpollLoop() {
  epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(epfd_, evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == wake_fd_) {
        MutexLock l(mu_);
        if (stop_) return;
        continue;
      }
      std::string id;
      Watch w{};
      {
        MutexLock l(mu_);
        auto it = watches_.find(fd);
        if (it == watches_.end()) continue;
        id = it->second.first;
        w = it->second.second;
        watches_.erase(it);
        watched_ids_.erase(id);
        epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      }
      close(fd);
      waitpid(w.pid, nullptr, WNOHANG);  // reap if it is our child
      Finished(id, w.job_id, w.pid);
    }
  }
}

void LocalBackend::Finished(const std::string& id, const std::string& job_id, int pid) {
  auto text = ReadFile(Dir(id) + "/" + supervisor::kStatusFile);
  auto status = text.ok() ? supervisor::DecodeStatusFile(*text) : Result<supervisor::StatusFile>(text.status());
  Event e;
  if (!status.ok()) {
    std::string why = text.ok()
                          ? "the instance supervisor recorded an unreadable status (" + status.status().message() + ")"
                          : "the instance supervisor exited without recording a status";
    RemoveLeftoverCgroups(id);  // its supervisor died before it could
    RemoveLeftoverLink(id);
    e = LostEvent(job_id, id, why + " (see " + Dir(id) + "/" + supervisor::kSupervisorLog + ")", clock_.NowMs());
  } else {
    status->exit.instance_id = id;
    e = ExitEvent(job_id, status->exit, status->ended_ms ? status->ended_ms : clock_.NowMs());
  }
  Release(job_id, id);  // before the exit is posted: the controller retries waiting launches on it
  FreeEgress(id);
  WakeRefill();  // the share may be what a warm sandbox waits for
  Status s = sink_.Post(e);
  if (!s.ok()) fprintf(stderr, "kilnd: local backend: post exit of %s: %s\n", id.c_str(), s.ToString().c_str());
}

Status LocalBackend::Stop(const std::string& id, const std::string& handle, int64_t grace_ms) {
  const std::string dir = Dir(id);
  if (access((dir + "/" + supervisor::kStatusFile).c_str(), F_OK) == 0) return Status::Ok();
  auto sup = SupervisorOf(dir);
  if (!sup.ok()) return Status::Ok();
  auto [pid, start] = *sup;
  KILN_RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/" + supervisor::kStopFile, std::to_string(grace_ms), 0644, Sync::kNoSync));
  if (pid > 0 && ProcessStartTime(pid) == start) kill(pid, SIGTERM);
  return Status::Ok();
}

Status LocalBackend::Cleanup(const std::string& id, const std::string&) {
  // Logs and status stay for inspection; the supervisor already removed the
  // cgroups. Large inputs are bind mounts, so nothing was copied. /opt/ml stays
  // too, unless it is a subvolume of the scratch pool: that is the instance's
  // volume, and like SageMaker's it goes with the instance.
  if (opts_.scratch_pool.empty()) return Status::Ok();
  return scratch::Remove(opts_.scratch_pool, id);
}

void LocalBackend::RemoveLeftoverCgroups(const std::string& id) const {
  InstanceCgroup::RemoveLeftover(id);
  // A warm sandbox's cgroups keep the name it started with (launch.json's).
  auto text = ReadFile(Dir(id) + "/" + supervisor::kLaunchFile);
  if (!text.ok()) return;
  auto launch = supervisor::DecodeLaunchFile(*text);
  if (launch.ok() && launch->instance_id != id) InstanceCgroup::RemoveLeftover(launch->instance_id);
}

void LocalBackend::RemoveLeftoverLink(const std::string& id) const {
  auto text = ReadFile(Dir(id) + "/" + supervisor::kLaunchFile);
  if (!text.ok()) return;
  auto launch = supervisor::DecodeLaunchFile(*text);
  if (launch.ok() && launch->link) isolation::RemoveJobLink(*launch->link);
  if (launch.ok() && launch->egress) isolation::RemoveJobLink(*launch->egress);
}

Status LocalBackend::Recover(const std::string& id, const std::string& handle) {
  auto h = supervisor::DecodeHandle(handle);
  if (!h.ok()) return NotFound("unreadable handle for " + id + ": " + h.status().message());
  if (access((Dir(id) + "/" + supervisor::kStatusFile).c_str(), F_OK) == 0) {
    // Ended: report it even if a watch is still registered, so a missed pidfd
    // notification is repaired by the resync. A duplicate exit is dropped by its
    // dedup key.
    Finished(id, h->job_id, h->pid);
    return Status::Ok();
  }
  if (h->pid <= 0 || ProcessStartTime(h->pid) != h->start) {
    // A supervisor killed with its instance leaves the instance's cgroups (and,
    // for a multi-instance job, its veth and the job's bridge) behind.
    RemoveLeftoverCgroups(id);
    RemoveLeftoverLink(id);
    return NotFound("supervisor of " + id + " (pid " + std::to_string(h->pid) + ") is gone and left no status");
  }
  // Still running: it holds its share of the host (as launch.json declared it),
  // and its address on the egress bridge.
  ClaimEgress(id);
  if (auto text = ReadFile(Dir(id) + "/" + supervisor::kLaunchFile); text.ok()) {
    if (auto launch = supervisor::DecodeLaunchFile(*text); launch.ok())
      Account(h->job_id, id, launch->cpus, launch->memory_bytes / (1024 * 1024), ShareOf::kOneInstance);
  }
  return WatchPid(id, h->job_id, h->pid, h->start);
}

}  // namespace kiln
