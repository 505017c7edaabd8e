#pragma once
// The protocol between kilnd's local backend and kiln-supervisor: the files in an
// instance directory and the ready pipe. PROTOCOL.md (beside this file) states the
// MUST rules; these structs and codecs are the only readers and writers.
//
// Versioning: every file carries "version". Version 1 is the first format (written
// before the field existed, so an absent version reads as 1). A reader accepts
// every version up to kProtocolVersion, so a kilnd upgraded while instances run
// re-adopts supervisors started by the previous build and reads their status.json;
// it refuses a newer version (kFailedPrecondition) rather than misread it.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "jobs/events.h"

namespace kiln::supervisor {

// 2: launch.json gains `user`, `network`, `seccomp`, `pids_max` and `fd_binds`
// (the sandbox runs unprivileged in its own network namespace).
inline constexpr int kProtocolVersion = 2;

// Names of the files in an instance directory.
inline constexpr const char* kLaunchFile = "launch.json";  // kilnd -> supervisor, before the spawn
inline constexpr const char* kStatusFile = "status.json";  // supervisor -> kilnd, once, when the instance ended
inline constexpr const char* kPidFile = "supervisor.pid";  // "<pid> <starttime>\n", before "ok"
inline constexpr const char* kStopFile = "stop";           // kilnd -> supervisor: grace ms, before SIGTERM
inline constexpr const char* kLockFile = "lock";           // flock: one supervisor per instance
inline constexpr const char* kLogFile = "output.log";      // the instance's stdout+stderr
inline constexpr const char* kSupervisorLog = "supervisor.log";
inline constexpr const char* kAssignFile = "assign.json";  // kilnd -> a warm supervisor, before SIGUSR1

// A bind the supervisor opens itself, as root, before it drops privileges: a
// path under kilnd's data dir, which the job's user cannot reach. `root` is
// trusted (kilnd's own directory, opened following symlinks); `relative` is
// resolved beneath it without following any symlink (a job may have planted one).
// The supervisor replaces the argv token "{fd:<index>}" with the open descriptor.
//
// `as_job_user`: a host path the spec named (code, inputs). Opened with the
// job's fsuid/fsgid (so only what the job's user may reach), following symlinks
// but no magic links; then its real path must not lie under `forbidden` (kilnd's
// data dir) and, when `allowed` is not empty, must lie under one of `allowed`
// (the team's paths).
struct FdBind {
  std::string root;
  std::string relative;  // "" binds root itself
  bool as_job_user = false;
  std::string forbidden;
  std::vector<std::string> allowed;
};

// A directory copied between the instance's volume (`scratch`, relative to
// LaunchFile::scratch) and the host (`host`, opened like a bind).
struct Transfer {
  std::string scratch;
  FdBind host;
};

// The network an instance gets.
enum class NetworkMode {
  kHost,     // the host's network (version 1 files)
  kPrivate,  // a network namespace of its own: loopback, a veth on its job's bridge, one on the egress bridge
};

// The job's own interface on its job's bridge (multi-instance jobs in kPrivate).
struct JobLink {
  std::string bridge;     // host bridge of the job ("kb" + hash); created if missing
  std::string host_veth;  // host end, attached to the bridge
  std::string address;    // the instance's IPv4 address on the link
  int prefix_len = 24;
  // Set on the outbound link only: the instance's default route. Its bridge is
  // kilnd's (never created or deleted by a supervisor) and its ports isolated.
  std::string gateway;
};

// launch.json: what to run and under which limits.
struct LaunchFile {
  int version = kProtocolVersion;
  std::string instance_id;
  std::vector<std::string> argv;  // argv[0] is an absolute path; never empty
  std::vector<std::string> env;   // "NAME=value"
  int64_t memory_bytes = int64_t{1} << 30;
  double cpus = 1.0;
  int64_t grace_ms = 120000;  // SIGTERM -> SIGKILL, unless the stop file says otherwise
  std::string log;            // absolute path of the output log
  std::string cwd = "/";
  // Version 2. Defaults keep version 1's meaning.
  uint32_t uid = 0;  // the sandbox runs as this host uid/gid (0: as the supervisor)
  uint32_t gid = 0;
  NetworkMode network = NetworkMode::kHost;
  std::optional<JobLink> link;    // kPrivate only: eth0, the job's bridge
  std::optional<JobLink> egress;  // kPrivate only: eth1, outbound access through kilnd's NAT
  bool seccomp = false;           // "{seccomp}" in argv becomes the filter's descriptor
  int64_t pids_max = 0;           // 0: no limit
  int64_t log_max_bytes = 0;      // the instance's log stops growing here (a marker line says so); 0: no cap
  std::vector<FdBind> fd_binds;   // "{fd:<i>}" in argv
  // The instance's /opt/ml on the host: "" is <instance dir>/ml. With disk quotas,
  // a subvolume of the scratch pool limited to `volume_bytes` (0: no quota).
  std::string scratch;
  int64_t volume_bytes = 0;
  // With a volume: what the supervisor copies into it before the sandbox starts
  // (checkpoints), and out of it after the sandbox ended (outputs, uploads,
  // checkpoints), as the job's user, never through a symlink.
  std::vector<Transfer> seed;
  std::vector<Transfer> publish;
  // Where the supervisor reports the instance's end itself (kilnd's runtime API,
  // POST /v1/runtime/exit with `report_token`), besides status.json: on a Slurm
  // node, sooner than Slurm's end-of-job hook. "": only status.json.
  std::string report_url;    // "http://host:port"
  std::string report_token;  // the instance's exit token (never the job's own)
  // A warm sandbox (PROTOCOL.md, "Warm sandboxes"): started before its job, with
  // the generic binds only; "{assign}" in argv becomes the descriptor on which the
  // entrypoint waits for its job. false (the default): an instance of one job.
  bool warm = false;
};
std::string Encode(const LaunchFile& f);
// kInvalidArgument (naming the field) for a malformed file, kFailedPrecondition for
// a newer version.
Result<LaunchFile> DecodeLaunchFile(const std::string& text);

// A bind the supervisor opens and mounts into a running warm sandbox at `dest`.
struct Bind {
  FdBind source;
  std::string dest;  // absolute, in the sandbox
  bool writable = false;
};
// assign.json: the job a warm sandbox runs. kilnd writes it into the sandbox's
// directory (then renamed to `dir`) and sends the supervisor SIGUSR1; the
// supervisor takes it once. Its fields replace the launch file's.
struct AssignFile {
  int version = kProtocolVersion;
  std::string instance_id;
  std::string dir;  // the instance directory's path from now on
  std::string scratch;
  int64_t volume_bytes = 0;
  std::vector<std::string> command;  // the job's command (after the entrypoint's "--")
  std::vector<std::string> env;      // the entrypoint's environment
  std::vector<Bind> binds;           // mounted in order
  std::vector<Transfer> seed, publish;
  int64_t grace_ms = 120000;
  std::string report_url, report_token;
};
std::string Encode(const AssignFile& f);
Result<AssignFile> DecodeAssignFile(const std::string& text);

// status.json: how the instance ended. `exit` is the ExitReport kilnd posts (its
// instance_id is the launch file's).
struct StatusFile {
  int version = kProtocolVersion;
  ExitReport exit;
  TimeMs started_ms = 0;
  TimeMs ended_ms = 0;
  bool stopped = false;        // the supervisor was asked to stop the instance
  std::string limits_warning;  // why the cgroup limits could not be applied, "" if they were
};
std::string Encode(const StatusFile& f);
Result<StatusFile> DecodeStatusFile(const std::string& text);

// supervisor.pid: the supervisor's pid and its start time (/proc/<pid>/stat field
// 22), so a recycled pid is never mistaken for it.
struct PidFile {
  int pid = 0;
  unsigned long long start = 0;
};
std::string Encode(const PidFile& f);
Result<PidFile> DecodePidFile(const std::string& text);

// The one line a supervisor writes on its ready pipe.
enum class ReadyKind { kOk, kBusy, kError };
struct ReadyAnswer {
  ReadyKind kind = ReadyKind::kError;
  std::string error;  // kError: why
};
std::string Encode(const ReadyAnswer& a);
// Anything else than "ok", "busy" or "err <why>" (including "") is a kError.
ReadyAnswer DecodeReady(const std::string& line);

// The backend's opaque handle, persisted by kilnd.
struct Handle {
  int pid = 0;
  unsigned long long start = 0;
  std::string dir;
  std::string job_id;
};
std::string Encode(const Handle& h);
Result<Handle> DecodeHandle(const std::string& text);

}  // namespace kiln::supervisor
