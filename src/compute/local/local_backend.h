#pragma once
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "compute/backend.h"
#include "compute/local/protocol.h"

namespace kiln {

// The host paths one team's jobs may use (sandbox.teams; S3 buckets resolved to
// their directories). Everything is beneath one of these, never through "..".
struct TeamData {
  std::vector<std::string> write_paths;  // read and write (the team's buckets, scratch)
  std::vector<std::string> read_paths;   // read only (shared datasets)
};

// Whose uid a job's processes run as.
enum class SandboxUser {
  kUnprivileged,  // job_uid/job_gid, in a user namespace of its own, no capabilities (the default)
  kRoot,          // the supervisor's (root): for hosts without user namespaces; not a security boundary
};

// Pre-started sandboxes (config sandbox.warm; warm_slots.cc): `count` sandboxes
// of this instance type and image kept started, cgroups made and the
// entrypoint waiting, for single-instance jobs of `team` ("" any team) without
// outbound access. With `runtime`, each keeps that interpreter started with
// `preload` imported, for the job's script to run in. Each sandbox runs one job.
struct WarmSandboxOptions {
  InstanceType type;
  std::string image;  // an image URI of the catalog; "" the host's root
  ImageEnv image_env;
  std::string team;
  int count = 1;
  std::string runtime;
  std::vector<std::string> preload;
  // An idle sandbox older than this is replaced by a fresh one (a runtime holds
  // the modules as they were when it started: an upgrade reaches jobs after
  // this long at most). 0: never.
  int64_t max_idle_seconds = 3600;
};

struct LocalBackendOptions {
  std::string instances_dir;    // <data-dir>/instances
  std::string supervisor_path;  // kiln-supervisor binary
  std::string entrypoint_path;  // kiln-entrypoint binary
  std::string bwrap_path = "/usr/bin/bwrap";
  // kilnd's data dir: hidden in every sandbox (a tmpfs over it); binds of paths
  // under it are opened by the root supervisor beneath it, never through a symlink.
  std::string data_dir;
  // kilnd's runtime API socket (only /v1/runtime); its directory, which holds
  // nothing else, is bound at sandbox::kRuntimeDir.
  // "" keeps the job on the host network with KILN_API_URL as given.
  std::string runtime_socket;
  // KILN_RUNTIME in the sandbox; "" is kiln-local (the Slurm backend says kiln-slurm).
  std::string runtime_context;
  SandboxUser user = SandboxUser::kUnprivileged;
  uint32_t job_uid = 2000000000;  // not in /etc/passwd on any sane host
  uint32_t job_gid = 2000000000;
  supervisor::NetworkMode network = supervisor::NetworkMode::kPrivate;
  int64_t pids_max = 4096;  // per instance; 0: none
  // An instance's log (its stdout and stderr) stops growing here, with a line
  // that says so; the job runs on. 0: no cap.
  int64_t log_max_bytes = int64_t{1} << 30;
  // Host directories outside the data dir where a job's output, checkpoint and
  // upload directories may be (kilnd creates them as root): beneath one of these
  // and never through a symlink. The data dir's s3/ and artifacts/ always are.
  std::vector<std::string> writable_roots = {"/tmp", "/var/tmp"};
  // What the host gives jobs, summed over the instance types of running
  // instances; 0: no limit. A job is admitted whole (all its instances) or
  // not at all; one that can never fit is refused.
  double capacity_vcpus = 0;
  int64_t capacity_memory_mib = 0;
  // Data namespaces by team. Empty: one team, no restriction beyond the rules
  // above. Otherwise a job may read only its team's paths and write only its
  // team's write paths (and its own default output under artifacts/); a team
  // not listed may use none.
  std::map<std::string, TeamData> teams;
  // Disk quotas: a btrfs filesystem with quotas on (scratch::PreparePool), where
  // each instance's /opt/ml is a subvolume limited to its volume size, deleted
  // at cleanup. "": /opt/ml is the instance directory's ml/, with no quota.
  std::string scratch_pool;
  int default_volume_gb = 30;  // for a spec without instance.volume_gb
  // Outbound access to other networks, off by default: an instance of one of
  // these teams or instance types gets eth1 on kilnd's egress bridge, NATed to
  // the host's networks (isolation::PrepareEgress). Needs kPrivate networks.
  std::set<std::string> egress_teams;
  std::set<std::string> egress_instance_types;
  std::string egress_subnet = "172.30.0.0/16";  // /16../28; .1 is the gateway
  std::vector<WarmSandboxOptions> warm_sandboxes;
};

// The sandbox command for one instance: bwrap's argv, with "{fd:i}" tokens for
// binds the supervisor opens itself, and "{seccomp}".
struct SandboxCommand {
  std::vector<std::string> argv;
  std::vector<supervisor::FdBind> fd_binds;
  std::vector<supervisor::Transfer> seed, publish;  // with a scratch volume (LaunchFile)
  // Collecting a warm sandbox's job binds (SandboxPart::kJobBinds): AddFdBind
  // appends to `late` instead of argv.
  bool deferred = false;
  std::vector<supervisor::Bind> late;
  // Appends "--bind-fd"/"--ro-bind-fd" "{fd:<i>}" `dest` for `bind`.
  void AddFdBind(supervisor::FdBind bind, const std::string& dest, bool writable);
};

// See README.md. Thread-safe.
class LocalBackend final : public ComputeBackend {
 public:
  LocalBackend(LocalBackendOptions opts, EventSink& sink, Clock& clock);
  ~LocalBackend() override;
  Status Init();

  std::string Name() const override { return "local"; }
  std::vector<Capability> Capabilities() const override;
  Result<std::string> Launch(const LaunchRequest& req) override;
  Status Stop(const std::string& id, const std::string& handle, int64_t grace_ms) override;
  Status Cleanup(const std::string& id, const std::string& handle) override;
  Status Recover(const std::string& id, const std::string& handle) override;
  std::string LogPath(const std::string& id) const override;
  // In the instance's root-owned sock/ directory (bound read-only at
  // sandbox::kMetricsDir), out of the job's reach to replace or redirect.
  std::string MetricsSocketPath(const std::string& id) const override { return Dir(id) + "/sock/statsd.sock"; }
  // Always healthy once Init succeeded; running: the supervisors it watches.
  // (Launches waiting for capacity wait in the controller, not here: queued 0.)
  BackendHealth Health() const override;
  // With a scratch pool, the subvolumes warm.<chain>.<index>; else
  // <instances_dir>/.warmcache/<chain>.
  Status DeleteWarmCache(const std::string& chain) override;
  // A warm sandbox for jobs like `like` until `until_ms` (warm_slots.cc), unless
  // a sandbox.warm entry keeps them warm already. With a `python… SCRIPT`
  // command its runtime is that interpreter, importing `preload`.
  Status Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) override;

  // Writes the instance's directory and launch.json without starting anything:
  // for a backend whose nodes run kiln-supervisor themselves (Slurm). The
  // directory is InstanceDir(req.instance_id).
  Status Prepare(const LaunchRequest& req);
  std::string InstanceDir(const std::string& id) const { return Dir(id); }

  // Which part of the sandbox command SandboxArgv builds: all of it; a warm
  // sandbox's (everything but the job's binds, the entrypoint waiting for an
  // assignment); or the job's binds alone, for assign.json.
  enum class SandboxPart { kWhole, kWarmSandbox, kJobBinds };
  // The sandbox command line for a request (exposed for tests and docs).
  SandboxCommand SandboxArgv(const LaunchRequest& req, const std::string& dir,
                             SandboxPart part = SandboxPart::kWhole) const;
  // Warm sandboxes idle now, per entry of opts.warm_sandboxes (for tests and
  // GET /v1/pools).
  std::vector<int> IdleWarmSandboxes() const;

 private:
  struct Watch {
    std::string job_id;
    int pid;
    int pidfd;
  };
  std::string Dir(const std::string& id) const { return opts_.instances_dir + "/" + id; }
  // The instance's /opt/ml on the host: its subvolume in the scratch pool, or <dir>/ml.
  std::string ScratchDir(const std::string& id) const {
    return opts_.scratch_pool.empty() ? Dir(id) + "/ml" : opts_.scratch_pool + "/" + id;
  }
  int64_t VolumeBytes(const LaunchRequest& req) const {
    return int64_t{req.spec.volume_gb > 0 ? req.spec.volume_gb : opts_.default_volume_gb} * 1000 * 1000 * 1000;
  }
  // SandboxArgv's parts: bwrap and the sandbox's root, /opt/ml and the
  // entrypoint; then the job's own binds (code, inputs, outputs, checkpoints).
  void SandboxHead(const LaunchRequest& req, const std::string& dir, SandboxCommand& c) const;
  void JobBinds(const LaunchRequest& req, SandboxCommand& c) const;
  // Adds a bind of `source` at `dest`: through a descriptor the supervisor opens
  // when `source` is under the data dir, else a path bwrap opens as the job's user.
  void AddBind(SandboxCommand& c, const std::string& source, const std::string& dest, bool writable,
               const std::string& team) const;
  // How the supervisor opens `source` (for a bind, a seed or a publish).
  supervisor::FdBind BindSource(const std::string& source, bool writable, const std::string& team) const;
  // Where, in an instance's volume, the job's output directory is staged.
  static constexpr char kStagedOutput[] = ".kiln/publish/output";
  // Creates a directory the job writes to (output, checkpoints, uploads) and gives
  // it to the job's user: beneath the data dir without following symlinks (and
  // the leaf always), elsewhere only the directories this call creates.
  Status MakeJobDir(const std::string& path) const;
  Status PrepareInstanceDir(const LaunchRequest& req, const std::string& dir) const;
  // Warm pools: the instance's cache directory (req.warm_cache), created if
  // missing, as the fd bind of kWarmPoolCacheDir. With a scratch pool, a
  // subvolume of its own limited to the instance's volume size.
  supervisor::FdBind WarmCacheBind(const LaunchRequest& req) const;
  Status PrepareWarmCache(const LaunchRequest& req) const;
  // Refuses a request naming kilnd's own files (kiln.db, keys, other instances)
  // as a bind source: binds under the data dir are opened by root.
  Status CheckHostPaths(const LaunchRequest& req) const;
  // sandbox.teams: the job's team's paths only.
  Status CheckTeamPaths(const LaunchRequest& req) const;
  bool Unprivileged() const { return opts_.user == SandboxUser::kUnprivileged; }
  // kFailedPrecondition, saying what to do, when the kernel refuses unprivileged
  // user namespaces (every job would fail in bwrap otherwise).
  static Status CheckUserNamespaces();
  // Admission control. Admit reserves the whole job's share at its first
  // instance (kResourceExhausted if it does not fit now, kInvalidArgument if it
  // never can); its later instances ride on the reservation. Release gives
  // the share back when the job's last live instance ends.
  Status Admit(const LaunchRequest& req) EXCLUDES(mu_);
  // Outbound access: whether an instance gets it, and its address on the egress
  // bridge (next free one; recorded in launch.json and claimed again from there
  // after a restart; freed when the instance ends).
  Status InitEgress();
  bool EgressFor(const LaunchRequest& req) const;
  Result<supervisor::JobLink> AllocateEgress(const std::string& instance_id) EXCLUDES(mu_);
  void ClaimEgress(const std::string& instance_id) EXCLUDES(mu_);
  void FreeEgress(const std::string& instance_id) EXCLUDES(mu_);
  // Counts an instance found running (adopted, recovered). kWholeJob: the
  // amounts are the job's (its other instances ride on them); kOneInstance:
  // this instance's own, added to its job's share.
  enum class ShareOf { kWholeJob, kOneInstance };
  void Account(const std::string& job_id, const std::string& instance_id, double vcpus, int64_t memory_mib, ShareOf of)
      EXCLUDES(mu_);
  void Release(const std::string& job_id, const std::string& instance_id) EXCLUDES(mu_);
  // A supervisor that already started for this instance: watch it, return its handle.
  Result<std::string> Adopt(const LaunchRequest& req);
  // The cgroups of an instance whose supervisor died: its own, or a warm
  // sandbox's (named by its launch.json).
  void RemoveLeftoverCgroups(const std::string& id) const;
  // The veth and idle bridge of an instance whose supervisor died (from its launch.json).
  void RemoveLeftoverLink(const std::string& id) const;
  // The supervisor's launch.json for a request (allocates its egress address).
  Result<supervisor::LaunchFile> LaunchFileFor(const LaunchRequest& req, const std::string& dir);
  // The instance directory and its launch.json (Prepare, Spawn).
  Status WriteLaunch(const LaunchRequest& req, const std::string& dir);
  // Launch after admission: prepares the instance directory and starts its supervisor.
  Result<std::string> Spawn(const LaunchRequest& req, const std::string& dir);
  static Result<std::pair<int, unsigned long long>> SupervisorOf(const std::string& dir);
  static std::string Handle(int pid, unsigned long long start, const std::string& dir, const std::string& job_id);
  Status WatchPid(const std::string& id, const std::string& job_id, int pid, unsigned long long start);
  void EpollLoop();
  void Finished(const std::string& id, const std::string& job_id, int pid);

  // Warm sandboxes (warm_slots.cc). A slot is a supervisor started on a
  // directory kSlotPrefix + n with launch.json's `warm`; Launch takes an idle
  // one that matches, renames its directory (and volume) to the instance's,
  // writes assign.json there and sends SIGUSR1. The refill thread starts what
  // is missing, each admitted against the capacity like a job, and removes
  // slots that ended (their pidfds are in warm_epfd_).
  struct WarmSlot {
    std::string id;
    size_t pool = 0;
    int pid = 0;
    unsigned long long start = 0;
    int pidfd = -1;
    TimeMs ready_ms = 0;  // when it became idle (max_idle_seconds)
  };
  // Retires idle slots past their pool's max_idle_seconds; returns the ms until
  // the next one is due (-1: none).
  int RetireStaleSlots();
  static constexpr char kSlotPrefix[] = "warm-slot-";
  void InitWarmSandboxes();
  void StopWarmSandboxes();
  bool SlotMatches(const WarmSandboxOptions& p, const LaunchRequest& req) const;
  LaunchRequest SlotRequest(const WarmSandboxOptions& p, const std::string& id) const;
  Result<WarmSlot> StartSlot(const WarmSandboxOptions& p);
  // Pre-warmed sandboxes asked for by schedules (Prewarm): one each, started by
  // the refill thread, retired at `until_ms` if no job took it.
  struct Prewarmed {
    uint64_t id = 0;
    WarmSandboxOptions options;
    TimeMs until_ms = 0;
    std::optional<WarmSlot> slot;
    bool starting = false;
  };
  // The refill thread: starts the pre-warmed sandboxes still missing. Returns
  // false if one failed to start.
  bool StartPrewarmed();
  std::optional<WarmSlot> TakeSlot(const LaunchRequest& req);
  // Launch on a slot; on failure the slot is gone and nothing of it is left
  // under the instance's name.
  Result<std::string> AssignSlot(const LaunchRequest& req, const WarmSlot& slot);
  void RefillLoop();
  // Ends a slot no job will take (SIGTERM); the refill thread removes it.
  void RetireSlot(const WarmSlot& slot);
  void RemoveSlot(const std::string& id);
  void WakeRefill() const;
  // The environment a job's entrypoint starts with.
  std::vector<std::string> JobEnv(const LaunchRequest& req) const;
  // Prepares the instance directory and the directories the job writes (all of
  // WriteLaunch but launch.json).
  Status PrepareJobDirs(const LaunchRequest& req, const std::string& dir);
  // Starts kiln-supervisor on `dir` and waits for its answer (up to
  // `timeout_ms`; a warm sandbox answers once its runtime is warm): its pid;
  // kAlreadyExists when another supervisor owns the directory.
  Result<int> StartSupervisor(const std::string& dir, const std::string& cgroup_id, int timeout_ms = 10000);

  LocalBackendOptions opts_;
  EventSink& sink_;
  Clock& clock_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  mutable Mutex mu_;
  std::map<int, std::pair<std::string, Watch>> watches_ GUARDED_BY(mu_);  // pidfd -> (instance, watch)
  std::set<std::string> watched_ids_ GUARDED_BY(mu_);
  std::mutex launch_mu_;  // serializes Launches (the adopt-or-spawn decision)
  std::thread loop_;
  bool stop_ GUARDED_BY(mu_) = false;
  struct JobShare {
    double vcpus = 0;
    int64_t memory_mib = 0;
    std::set<std::string> live;  // its admitted instances that have not ended
    bool whole = false;          // the amounts are the whole job's (admitted, or adopted)
  };
  std::map<std::string, JobShare> shares_ GUARDED_BY(mu_);  // job id -> its reservation
  uint32_t egress_base_ = 0;                                // the subnet's address, host order (0: no egress)
  int egress_prefix_ = 0;
  std::map<std::string, uint32_t> egress_ GUARDED_BY(mu_);  // instance id -> its address
  uint32_t egress_next_ GUARDED_BY(mu_) = 0;                // next-fit: addresses are reused last
  mutable std::mutex warm_mu_;
  std::vector<std::deque<WarmSlot>> idle_;  // per pool; guarded by warm_mu_
  std::map<int, std::string> retiring_;     // pidfd -> slot id of an ended or retired slot; guarded by warm_mu_
  std::vector<Prewarmed> prewarms_;         // guarded by warm_mu_
  uint64_t prewarm_seq_ = 0;                // guarded by warm_mu_
  bool warm_stop_ = false;                  // guarded by warm_mu_
  uint64_t slot_seq_ = 0;                   // refill thread only
  int warm_epfd_ = -1;
  int warm_wake_ = -1;
  std::thread refill_;
  double used_vcpus_ GUARDED_BY(mu_) = 0;
  int64_t used_memory_mib_ GUARDED_BY(mu_) = 0;
};

}  // namespace kiln
