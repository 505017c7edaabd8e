#include "compute/local/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/clock.h"
#include "common/fd.h"
#include "common/fsutil.h"
#include "common/sandbox_paths.h"
#include "compute/local/cgroup.h"
#include "compute/local/isolation.h"
#include "compute/local/log_pump.h"
#include "compute/local/protocol.h"
#include "compute/local/scratch.h"
#include "compute/local/transfer.h"
#include "entrypoint/http_client.h"
#include "entrypoint/warm.h"

namespace kiln {

unsigned long long ProcessStartTime(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto rp = s.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream in(s.substr(rp + 2));
  std::string field;
  // Fields after comm: state(3) ... starttime is field 22 overall -> index 19 here.
  for (int i = 0; i < 20 && in >> field; ++i) {
    if (i == 19) return std::stoull(field);
  }
  return 0;
}

namespace {

using supervisor::LaunchFile;
using supervisor::ReadyAnswer;
using supervisor::ReadyKind;
using supervisor::StatusFile;

// Answers on the ready pipe once; later calls do nothing. A kilnd that died
// meanwhile must not kill us with SIGPIPE: the write fails with EPIPE instead.
void Ready(int& fd, const ReadyAnswer& answer) {
  if (fd < 0) return;
  std::string msg = supervisor::Encode(answer);
  ssize_t n = write(fd, msg.data(), msg.size());
  (void)n;  // nobody left to tell if the pipe is gone
  close(fd);
  fd = -1;
}

std::string TrimTrailing(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// The first `max` bytes of a file in the instance's own directory (kilnd wrote it).
std::string ReadHead(const std::string& path, size_t max) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::string s(max, '\0');
  f.read(s.data(), static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(f.gcount()));
  return TrimTrailing(std::move(s));
}

// The first `max` bytes of a file the job may have written, under its /opt/ml (the
// instance's scratch directory): resolved beneath it, never through a symlink the job
// planted, regular files only. "" if absent or refused.
std::string ReadJobFile(const std::string& ml, const char* sandbox_path, size_t max) {
  const std::string relative = std::string(sandbox_path).substr(std::string(sandbox::kRoot).size() + 1);
  auto text = ReadFileBeneath(ml, relative, max);
  if (!text.ok()) {
    if (text.status().code() != Code::kNotFound)
      fprintf(stderr, "kiln-supervisor: %s\n", text.status().message().c_str());
    return "";
  }
  return TrimTrailing(std::move(*text));
}

// The sandbox's init pid (the entrypoint), read from bwrap's --json-status-fd stream.
class BwrapStatus {
 public:
  explicit BwrapStatus(int fd) : fd_(fd) { fcntl(fd_, F_SETFL, O_NONBLOCK); }
  void Pump() {
    char buf[512];
    ssize_t n;
    while ((n = read(fd_, buf, sizeof(buf))) > 0 && buf_.size() < (1 << 16)) buf_.append(buf, static_cast<size_t>(n));
    auto pos = buf_.find("\"child-pid\"");
    if (!init_pid_ && pos != std::string::npos) {
      auto colon = buf_.find(':', pos);
      if (colon != std::string::npos) init_pid_ = atoi(buf_.c_str() + colon + 1);
    }
  }
  pid_t init_pid() const { return init_pid_; }

 private:
  int fd_;
  std::string buf_;
  pid_t init_pid_ = 0;
};

// What the sandbox's process needs that the supervisor prepares as root before
// the fork: the descriptors bwrap binds or loads, and argv with their numbers.
struct SandboxSetup {
  std::vector<std::string> argv;
  std::vector<int> fds;  // fd binds, then the seccomp filter; all >= 10
  ~SandboxSetup() {
    for (int fd : fds) close(fd);
  }
};

// Moves `fd` to 10 or above (the child dup2s onto 0..3), close-on-exec.
int Park(int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return high;
}

// A host path the spec named, opened as the job's user would reach it (fsuid and
// fsgid are the job's while it opens), with symlinks but no magic links; then
// judged by where it really is, not by how it was spelled.
Result<int> OpenAsJobUser(const LaunchFile& launch, const supervisor::FdBind& b) {
  const std::string path = b.relative.empty() ? b.root : (b.root == "/" ? "/" + b.relative : b.root + "/" + b.relative);
  struct open_how how {};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_NO_MAGICLINKS;
  setgroups(0, nullptr);  // the job has none; root's must not open doors for it
  setfsgid(launch.gid);
  setfsuid(launch.uid);
  int fd = static_cast<int>(syscall(SYS_openat2, AT_FDCWD, path.c_str(), &how, sizeof(how)));
  int err = errno;
  setfsuid(0);
  setfsgid(0);
  if (fd < 0)
    return Status(
        Code::kFailedPrecondition,
        path + ": " +
            (err == ELOOP ? std::string("refused: a magic link (/proc/<pid>/root, /proc/<pid>/fd) or a symlink "
                                        "loop")
                          : std::string(strerror(err))) +
            " (opened as the job's user)");
  char real[PATH_MAX + 1] = {0};
  ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), real, PATH_MAX);
  std::string where = n > 0 ? std::string(real, static_cast<size_t>(n)) : "";
  bool allowed = b.allowed.empty();
  for (const auto& a : b.allowed) allowed |= RelativeBeneath(a, where).has_value();
  if (where.empty() || where[0] != '/' || RelativeBeneath(b.forbidden, where).has_value() || !allowed) {
    close(fd);
    return Status(Code::kFailedPrecondition,
                  path + " resolves to " + (where.empty() ? "?" : where) +
                      (RelativeBeneath(b.forbidden, where).has_value() ? ", inside kilnd's data dir"
                                                                       : ", outside the team's data"));
  }
  return fd;
}

enum class Direction { kSeed, kPublish };

// Copies the launch file's seed (host -> volume) or publish (volume -> host)
// transfers, as the job's user: the host side opened like a bind, the volume's
// side beneath it without symlinks. A volume directory the job removed has
// nothing to publish.
Status RunTransfers(const LaunchFile& launch, Direction direction) {
  const auto& list = direction == Direction::kSeed ? launch.seed : launch.publish;
  const char* verb = direction == Direction::kSeed ? "seeding" : "publishing";
  Status first = Status::Ok();
  for (const auto& tr : list) {
    const std::string what = std::string(verb) + " " + sandbox::kRoot + "/" + tr.scratch;
    // The first failure is the one reported; a seed stops at it, a publish goes on.
    auto failed = [&](const Status& st) {
      if (first.ok()) first = Status(st.code(), what + ": " + st.message());
      return direction == Direction::kSeed;
    };
    auto vol = OpenPathBeneath(launch.scratch, tr.scratch);
    if (!vol.ok() && vol.status().code() == Code::kNotFound && direction == Direction::kPublish) continue;
    if (!vol.ok()) {
      if (failed(vol.status())) return first;
      continue;
    }
    UniqueFd volume(*vol);
    auto h = tr.host.as_job_user ? OpenAsJobUser(launch, tr.host) : OpenPathBeneath(tr.host.root, tr.host.relative);
    if (!h.ok()) {
      if (failed(h.status())) return first;
      continue;
    }
    UniqueFd host(*h);
    setgroups(0, nullptr);
    setfsgid(launch.gid);
    setfsuid(launch.uid);
    transfer::Totals t;
    Status st = direction == Direction::kSeed ? transfer::CopyTree(host.get(), volume.get(), {}, &t)
                                              : transfer::CopyTree(volume.get(), host.get(), {}, &t);
    setfsuid(0);
    setfsgid(0);
    fprintf(stderr, "kiln-supervisor: %s: %llu files, %llu bytes, %llu unchanged, %llu skipped%s%s\n", what.c_str(),
            static_cast<unsigned long long>(t.files), static_cast<unsigned long long>(t.bytes),
            static_cast<unsigned long long>(t.unchanged), static_cast<unsigned long long>(t.skipped),
            st.ok() ? "" : ": ", st.ok() ? "" : st.message().c_str());
    if (!st.ok() && failed(st)) return first;
  }
  return first;  // publishing goes on past a failure: the other outputs still reach the host
}

// Why a transfer failed, as a failure reason.
std::string TransferFailure(Direction direction, const Status& st) {
  if (st.code() == Code::kResourceExhausted)
    return "OutOfDisk: " + st.message() +
           (direction == Direction::kSeed ? " (what the instance starts with does not fit its volume: raise volume_gb)"
                                          : " (the host has no room for the job's outputs)");
  return (direction == Direction::kSeed ? "CheckpointSeedFailed: " : "OutputPublishFailed: ") + st.message();
}

// Opens the launch file's fd binds (beneath their roots, no symlinks; or as the
// job's user) and the seccomp filter, and writes their numbers into argv.
Status PrepareSandbox(const LaunchFile& launch, SandboxSetup& out, int assign_fd) {
  std::vector<std::string> binds;
  for (const auto& b : launch.fd_binds) {
    auto fd = b.as_job_user ? OpenAsJobUser(launch, b) : OpenPathBeneath(b.root, b.relative);
    if (!fd.ok()) return fd.status();
    out.fds.push_back(Park(*fd));
    binds.push_back(std::to_string(out.fds.back()));
  }
  std::string seccomp;
  if (launch.seccomp) {
    auto fd = isolation::DefaultSeccompFilter();
    if (!fd.ok()) return fd.status();
    out.fds.push_back(Park(*fd));
    seccomp = std::to_string(out.fds.back());
  }
  bool command = false;  // after "--": the user's command, never rewritten
  for (const auto& a : launch.argv) {
    if (a == "{assign}" && launch.warm) {  // the entrypoint's own option: a warm argv holds no user command
      if (assign_fd < 0) return InvalidArgument("argv", "{assign} without an assignment descriptor");
      out.fds.push_back(assign_fd);
      out.argv.push_back(std::to_string(assign_fd));
    } else if (command) {
      out.argv.push_back(a);
    } else if (a == "--") {
      command = true;
      out.argv.push_back(a);
    } else if (a == "{seccomp}") {
      if (seccomp.empty()) return InvalidArgument("argv", "{seccomp} without seccomp: true");
      out.argv.push_back(seccomp);
    } else if (a.rfind("{fd:", 0) == 0 && a.back() == '}') {
      size_t i = strtoul(a.c_str() + 4, nullptr, 10);
      if (i >= binds.size()) return InvalidArgument("argv", a + " names no fd bind");
      out.argv.push_back(binds[i]);
    } else {
      out.argv.push_back(a);
    }
  }
  return Status::Ok();
}

// The pipes between the supervisor and its child while the child sets up.
struct ChildPipes {
  int output = -1;        // child's stdout and stderr (write end; the supervisor pumps it into the log)
  int status_write = -1;  // bwrap's --json-status-fd, fd 3 in the child
  int netns_ready = -1;   // child -> parent: "in its own network namespace"
  int link_ready = -1;    // parent -> child: "your interface is there" (read end)
  int error_write = -1;   // child -> parent: why setup failed (closed by exec)
};

[[noreturn]] void ChildFail(int error_fd, const std::string& why) {
  std::string msg = "SandboxSetupFailed: " + why;
  ssize_t n = write(error_fd, msg.data(), msg.size());
  (void)n;
  _exit(127);
}

// In the child, as root: its cgroups, its network namespace, then the job's user;
// then exec. Everything it needs was prepared before the fork.
[[noreturn]] void RunChild(const LaunchFile& launch, const Result<InstanceCgroup>& cg, const sigset_t& mask,
                           const ChildPipes& p, std::vector<char*>& av, std::vector<char*>& ev,
                           const std::vector<int>& keep) {
  sigprocmask(SIG_UNBLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (cg.ok() && !cg->JoinSelf().ok()) dprintf(2, "kiln-supervisor: cannot join the instance's cgroups\n");
  int out = p.output;  // the supervisor's LogPump writes it to the log, up to the cap
  int in = open("/dev/null", O_RDONLY);
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  dup2(p.status_write, 3);  // bwrap --json-status-fd 3
  // Nothing else of ours reaches the sandbox: 0-3 above, the binds and the filter.
  if (out > 3) close(out);
  if (in > 3) close(in);
  for (int fd : keep) fcntl(fd, F_SETFD, 0);  // bwrap inherits the binds and the filter
  if (launch.network == supervisor::NetworkMode::kPrivate) {
    if (unshare(CLONE_NEWNET) != 0) ChildFail(p.error_write, std::string("unshare(CLONE_NEWNET): ") + strerror(errno));
    if (Status up = isolation::BringLoopbackUp(); !up.ok()) ChildFail(p.error_write, up.message());
    if (launch.link || launch.egress) {
      char c = 'n';
      if (write(p.netns_ready, &c, 1) != 1 || read(p.link_ready, &c, 1) != 1 || c != 'y')
        ChildFail(p.error_write, "the instance's network links could not be created (see supervisor.log)");
      if (launch.link) {
        if (Status link = isolation::ConfigureJobInterface(*launch.link, isolation::kJobInterface); !link.ok())
          ChildFail(p.error_write, link.message());
      }
      if (launch.egress) {
        if (Status link = isolation::ConfigureJobInterface(*launch.egress, isolation::kEgressInterface); !link.ok())
          ChildFail(p.error_write, link.message());
      }
    }
  }
  if (launch.uid != 0) {
    if (Status drop = isolation::DropPrivileges(launch.uid, launch.gid); !drop.ok())
      ChildFail(p.error_write, drop.message());
  }
  if (chdir(launch.cwd.c_str()) != 0 && chdir("/") != 0) ChildFail(p.error_write, "chdir");
  execve(av[0], av.data(), ev.data());
  ChildFail(p.error_write, std::string("exec ") + av[0] + ": " + strerror(errno));
}

// Forks the sandbox; its stdout/stderr go to `output_write_fd`, fd 3 is bwrap's status
// pipe. Returns the child, and in `setup_error` why it could not start the
// sandbox (then the child has exited 127).
pid_t SpawnSandbox(const LaunchFile& launch, SandboxSetup& setup, const Result<InstanceCgroup>& cg,
                   const sigset_t& mask, int output_write_fd, int status_write_fd, std::string& setup_error) {
  std::vector<std::string> argv = setup.argv, env = launch.env;
  // Under Slurm (the task that runs this supervisor), where the instance runs
  // and which task it is: documented in docs/runtime-contract.md.
  for (const char* name : {"SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NODEID", "SLURM_NNODES", "SLURM_JOB_NODELIST",
                           "SLURMD_NODENAME", "SLURM_JOB_PARTITION"})
    if (const char* v = getenv(name)) env.push_back(std::string(name) + "=" + v);
  std::vector<char*> av, ev;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  for (auto& e : env) ev.push_back(e.data());
  ev.push_back(nullptr);
  int netns[2], link[2], err[2];
  if (pipe2(netns, O_CLOEXEC) != 0 || pipe2(link, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    setup_error = std::string("SandboxSetupFailed: pipe: ") + strerror(errno);
    return -1;
  }
  ChildPipes p{output_write_fd, status_write_fd, netns[1], link[0], err[1]};
  pid_t child = fork();
  if (child == 0) RunChild(launch, cg, mask, p, av, ev, setup.fds);
  close(netns[1]);
  close(link[0]);
  close(err[1]);
  if (child > 0 && launch.network == supervisor::NetworkMode::kPrivate && (launch.link || launch.egress)) {
    char c = 0;
    if (read(netns[0], &c, 1) == 1) {
      Status made = launch.link ? isolation::CreateJobLink(*launch.link, child) : Status::Ok();
      if (made.ok() && launch.egress) made = isolation::CreateJobLink(*launch.egress, child);
      if (!made.ok()) fprintf(stderr, "kiln-supervisor: %s\n", made.ToString().c_str());
      c = made.ok() ? 'y' : 'n';
      ssize_t n = write(link[1], &c, 1);
      (void)n;
    }
  }
  close(netns[0]);
  close(link[1]);
  // Until exec closes it (or the child writes why it could not get there).
  char buf[1024];
  ssize_t n;
  while ((n = read(err[0], buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    setup_error.append(buf, static_cast<size_t>(n));
  }
  close(err[0]);
  if (child < 0) setup_error = std::string("SandboxSetupFailed: fork: ") + strerror(errno);
  return child;
}

struct WaitOutcome {
  int wstatus = 0;
  bool stopping = false;  // a stop was requested
  bool killed = false;    // the grace period ran out: SIGKILL
};

// Waits for the sandbox to end, turning SIGTERM/SIGINT/SIGHUP into a graceful stop
// (SIGTERM to the sandbox's init, SIGKILL when the grace period of the stop file,
// or of launch.json, runs out).
// Meanwhile its output is pumped into the log.
WaitOutcome WaitForSandbox(const std::string& dir, const LaunchFile& launch, pid_t child, int sfd, BwrapStatus& bwrap,
                           LogPump& output, const std::function<void()>& on_assign) {
  WaitOutcome w;
  bool output_open = true;
  for (;;) {
    pollfd fds[2] = {{sfd, POLLIN, 0}, {output_open ? output.pipe_fd() : -1, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) output_open = output.Pump();
    if ((fds[0].revents & POLLIN) == 0) continue;
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof(si));
    if (n != sizeof(si)) continue;
    bwrap.Pump();
    if (si.ssi_signo == SIGCHLD) {
      if (waitpid(child, &w.wstatus, WNOHANG) == child) return w;
    } else if (si.ssi_signo == SIGUSR1) {
      if (!w.stopping && on_assign) on_assign();
    } else if (si.ssi_signo == SIGALRM) {
      w.killed = true;
      if (bwrap.init_pid() > 0) kill(bwrap.init_pid(), SIGKILL);
      kill(child, SIGKILL);
    } else if (!w.stopping) {
      w.stopping = true;
      int64_t grace = launch.grace_ms;
      std::string g = ReadHead(dir + "/" + supervisor::kStopFile, 32);
      if (!g.empty()) grace = atoll(g.c_str());
      kill(bwrap.init_pid() > 0 ? bwrap.init_pid() : child, SIGTERM);
      if (grace <= 0) grace = 1;
      struct itimerval it {};
      it.it_value.tv_sec = grace / 1000;
      it.it_value.tv_usec = (grace % 1000) * 1000;
      setitimer(ITIMER_REAL, &it, nullptr);
    }
  }
}

// Below this much space free to unprivileged users, a failed job is reported as
// out of disk.
constexpr uint64_t kDiskFullBytes = 1 << 20;

// Why a failed job may have failed for lack of disk, or "": its volume's quota
// is used up, or the filesystem of its /opt/ml has nothing left for jobs (jobs
// run unprivileged, so the root reserve still holds kilnd's own writes).
std::string OutOfDisk(const std::string& ml, int64_t volume_bytes) {
  if (volume_bytes > 0) {
    auto use = scratch::UsageOf(ml);
    if (use.ok() && use->limit_bytes > 0 && use->used_bytes + kDiskFullBytes >= use->limit_bytes) {
      char buf[256];
      snprintf(buf, sizeof(buf),
               "OutOfDisk: the instance used all of its volume: %.1f of %.1f GB in /opt/ml (instance.volume_gb, "
               "VolumeSizeInGB)",
               static_cast<double>(use->used_bytes) / 1e9, static_cast<double>(use->limit_bytes) / 1e9);
      return buf;
    }
  }
  struct statvfs fs {};
  if (statvfs(ml.c_str(), &fs) == 0 && static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize < kDiskFullBytes)
    return "OutOfDisk: the filesystem of the instance's /opt/ml (" + ml + ") has no space left for jobs";
  return "";
}

// The exit report: the entrypoint's own account of the user command when it got
// to write one (exit.json), else the sandbox's wait status.
ExitReport ExitOf(const std::string& dir, const LaunchFile& launch, const WaitOutcome& w,
                  const std::string& setup_error) {
  ExitReport x;
  if (!setup_error.empty()) {  // the job never ran
    x.instance_id = launch.instance_id;
    x.exit_code = 127;
    x.failure = SanitizeUtf8(TruncateUtf8(setup_error, 1024));
    return x;
  }
  const std::string ml = launch.scratch.empty() ? dir + "/ml" : launch.scratch;
  auto ep = ExitReportFromJson(nlohmann::json::parse(ReadJobFile(ml, sandbox::kExitFile, 1 << 16), nullptr, false));
  if (ep.ok()) {
    // Only what the entrypoint records: exit.json lies in the job's /opt/ml, so
    // the rest (oom, peak memory, failure, message) never comes from it.
    x.exit_code = ep->exit_code;
    x.signal = ep->signal;
    x.model_artifact = ep->model_artifact;
  } else if (WIFEXITED(w.wstatus)) {
    x.exit_code = WEXITSTATUS(w.wstatus);
    if (x.exit_code > 128 && x.exit_code < 160) x.signal = x.exit_code - 128;
  } else if (WIFSIGNALED(w.wstatus)) {
    x.exit_code = 128 + WTERMSIG(w.wstatus);
    x.signal = WTERMSIG(w.wstatus);
  }
  if (w.killed && x.signal == 0) {
    x.signal = SIGKILL;
    x.exit_code = 137;
  }
  x.instance_id = launch.instance_id;
  x.failure = SanitizeUtf8(ReadJobFile(ml, sandbox::kFailureFile, 1024));
  x.message = SanitizeUtf8(ReadJobFile(ml, sandbox::kMessageFile, 1024));
  if (x.exit_code != 0) {
    const std::string why = OutOfDisk(ml, launch.volume_bytes);
    if (!why.empty()) x.failure = TruncateUtf8(x.failure.empty() ? why : why + "; the job said: " + x.failure, 1024);
  }
  return x;
}

// The directory's assign.json, read through `dirfd` (the directory was renamed
// to the instance's id after the supervisor started).
Result<supervisor::AssignFile> ReadAssignFile(int dirfd) {
  int fd = openat(dirfd, supervisor::kAssignFile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status(Code::kNotFound, std::string("assign.json: ") + strerror(errno));
  UniqueFd file(fd);
  std::string text;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (4u << 20)) return InvalidArgument("assign.json", "larger than 4 MiB");
  }
  return supervisor::DecodeAssignFile(text);
}

// A warm sandbox's entrypoint says "ready" once it runs: bwrap has set up every
// mount (and resolved every path of the directory, which kilnd renames when it
// assigns the sandbox). "" when it did, else why not.
std::string AwaitEntrypoint(int assign_fd) {
  constexpr int kWarmStartMs = 120000;  // its runtime's imports included (torch: seconds)
  std::string ready;
  while (ready.size() < 6) {
    pollfd p{assign_fd, POLLIN, 0};
    if (poll(&p, 1, kWarmStartMs) <= 0) return "the warm sandbox did not get ready within 120 s";
    char c;
    ssize_t n = read(assign_fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "the warm sandbox's entrypoint exited before it was ready";
    ready.push_back(c);
  }
  return ready == "ready\n" ? "" : "the warm sandbox's entrypoint said " + ready;
}

// A warm sandbox's job (assign.json): its fields replace the launch file's and
// `dir`; its seeds are copied, its binds opened as for a cold launch and
// mounted into the running sandbox; then the entrypoint gets its command and
// environment on `assign_write`. Returns why it could not, as a failure reason.
std::string TakeAssignment(int dirfd, LaunchFile& launch, std::string& dir, BwrapStatus& bwrap, int assign_write) {
  bwrap.Pump();
  const pid_t init_pid = bwrap.init_pid();
  if (init_pid <= 0) return "SandboxSetupFailed: the warm sandbox did not start";
  auto a = ReadAssignFile(dirfd);
  if (!a.ok()) return "SandboxSetupFailed: " + a.status().message();
  launch.instance_id = a->instance_id;
  launch.scratch = a->scratch;
  launch.volume_bytes = a->volume_bytes;
  launch.seed = a->seed;
  launch.publish = a->publish;
  launch.grace_ms = a->grace_ms;
  launch.report_url = a->report_url;
  launch.report_token = a->report_token;
  dir = a->dir;
  if (Status seeded = RunTransfers(launch, Direction::kSeed); !seeded.ok())
    return TransferFailure(Direction::kSeed, seeded);
  std::vector<UniqueFd> trees;
  std::vector<isolation::LateMount> mounts;
  for (const auto& b : a->binds) {
    auto opened =
        b.source.as_job_user ? OpenAsJobUser(launch, b.source) : OpenPathBeneath(b.source.root, b.source.relative);
    if (!opened.ok()) return "SandboxSetupFailed: " + opened.status().message();
    UniqueFd path(*opened);
    struct stat st {};
    if (fstat(path.get(), &st) != 0) return std::string("SandboxSetupFailed: stat: ") + strerror(errno);
    auto tree = isolation::CloneTree(path.get(), b.writable);
    if (!tree.ok()) return "SandboxSetupFailed: " + tree.status().message();
    trees.emplace_back(*tree);
    mounts.push_back({*tree, b.dest, S_ISDIR(st.st_mode)});
  }
  if (Status injected = isolation::InjectMounts(init_pid, mounts, launch.uid, launch.gid); !injected.ok())
    return "SandboxSetupFailed: " + injected.message();
  const std::string line = warm::Encode(warm::Assignment{a->command, a->env});
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(assign_write, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::string("SandboxSetupFailed: the entrypoint is gone: ") + strerror(errno);
    off += static_cast<size_t>(n);
  }
  return "";
}

// A warm sandbox answers kilnd once its entrypoint is ready (or why it is not):
// kilnd may rename its directory from then on.
void AnswerWarm(int& ready_fd, const std::string& setup_error, int assign_fd, pid_t child) {
  const std::string why = setup_error.empty() ? AwaitEntrypoint(assign_fd) : setup_error;
  Ready(ready_fd, {why.empty() ? ReadyKind::kOk : ReadyKind::kError, why});
  if (!why.empty() && child > 0) kill(child, SIGKILL);
}

// SIGUSR1 in a warm sandbox: takes assign.json, once; a failure kills the sandbox.
void AssignOnce(int dirfd, LaunchFile& launch, std::string& at, BwrapStatus& bwrap, UniqueFd& assign_fd, pid_t child,
                bool& assigned, std::string& setup_error) {
  assigned = true;
  setup_error = TakeAssignment(dirfd, launch, at, bwrap, assign_fd.get());
  assign_fd.reset();
  if (setup_error.empty()) return;
  fprintf(stderr, "kiln-supervisor: %s\n", setup_error.c_str());
  if (bwrap.init_pid() > 0) kill(bwrap.init_pid(), SIGKILL);
  kill(child, SIGKILL);
}

}  // namespace

// Tells kilnd how the instance ended (POST /v1/runtime/exit with the exit
// token), a few tries within ~3 s. Failing is fine: status.json and Slurm's
// end-of-job hook still tell it.
static void ReportExit(const LaunchFile& launch, const StatusFile& status) {
  std::string hostport = launch.report_url.substr(7);
  hostport = hostport.substr(0, hostport.find('/'));
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return;
  const std::string host = hostport.substr(0, colon);
  const int port = atoi(hostport.c_str() + colon + 1);
  const nlohmann::json body = {{"exit", ToJson(status.exit)}, {"ended_ms", status.ended_ms}};
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = HttpCall(host, port, "POST", "/v1/runtime/exit",
                      {{"Authorization", "Bearer " + launch.report_token}, {"Content-Type", "application/json"}},
                      body.dump(), 1000);
    if (r.ok() && r->status < 500) return;
  }
}

int RequestStop(const std::string& dir) {
  auto text = ReadFile(dir + "/" + supervisor::kPidFile);
  if (!text.ok()) return 0;
  auto pidfile = supervisor::DecodePidFile(*text);
  if (!pidfile.ok() || pidfile->pid <= 0) return 0;
  if (ProcessStartTime(pidfile->pid) == pidfile->start) kill(pidfile->pid, SIGTERM);
  return 0;
}

int RunSupervisor(const std::string& dir, int ready_fd) {
  // A kilnd killed while we answer must not take us with it: a write to the closed
  // ready pipe fails with EPIPE instead. The sandbox gets the default back.
  signal(SIGPIPE, SIG_IGN);
  int lock = open((dir + "/" + supervisor::kLockFile).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0) {
    Ready(ready_fd, {ReadyKind::kBusy, ""});
    return 0;
  }
  if (access((dir + "/" + supervisor::kStatusFile).c_str(), F_OK) == 0) {  // already ran to completion
    Ready(ready_fd, {ReadyKind::kBusy, ""});
    return 0;
  }
  auto text = ReadFile(dir + "/" + supervisor::kLaunchFile);
  auto launch = text.ok() ? supervisor::DecodeLaunchFile(*text) : Result<LaunchFile>(text.status());
  if (!launch.ok()) {
    Ready(ready_fd, {ReadyKind::kError, "cannot read launch.json: " + launch.status().message()});
    return 1;
  }
  // The pid file is what makes Launch idempotent: without it, say so and stop.
  Status pid_written = WriteFileAtomic(dir + "/" + supervisor::kPidFile,
                                       supervisor::Encode(supervisor::PidFile{getpid(), ProcessStartTime(getpid())}),
                                       0644, Sync::kNoSync);
  if (!pid_written.ok()) {
    Ready(ready_fd, {ReadyKind::kError, "cannot write supervisor.pid: " + pid_written.message()});
    return 1;
  }
  StatusFile status;
  status.started_ms = RealClock::Get().NowMs();
  // A warm sandbox: its directory (renamed when it is assigned) and the socket
  // on which its entrypoint waits for the job. Binds are opened as root, before
  // anything runs: one the job could redirect (a symlink planted under kilnd's
  // data dir) fails the launch instead.
  UniqueFd dirfd(launch->warm ? open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC) : -1);
  int assign[2] = {-1, -1};
  if (launch->warm && (dirfd.get() < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, assign) != 0)) {
    Ready(ready_fd, {ReadyKind::kError, std::string("warm sandbox: ") + strerror(errno)});
    return 1;
  }
  UniqueFd assign_write(assign[1]);
  SandboxSetup setup;
  if (Status prepared = PrepareSandbox(*launch, setup, assign[0] >= 0 ? Park(assign[0]) : -1); !prepared.ok()) {
    Ready(ready_fd, {ReadyKind::kError, "sandbox setup: " + prepared.message()});
    return 1;
  }
  auto cg = InstanceCgroup::Create(launch->instance_id, launch->memory_bytes, launch->cpus, launch->pids_max);
  if (!cg.ok()) status.limits_warning = cg.status().message();
  if (cg.ok() && cg->pids_missing()) status.limits_warning = "no pids controller: pids_max is not enforced";

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGCHLD, SIGALRM, SIGHUP, SIGUSR1}) sigaddset(&mask, sig);  // USR1: assign.json
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  int statusp[2];
  if (sfd < 0 || pipe2(statusp, O_CLOEXEC) != 0) {
    Ready(ready_fd, {ReadyKind::kError, std::string("signalfd/pipe: ") + strerror(errno)});
    return 1;
  }
  // A warm sandbox answers once its sandbox runs (below): kilnd may rename its
  // directory from then on.
  if (!launch->warm) Ready(ready_fd, {ReadyKind::kOk, ""});

  std::string setup_error;
  if (Status seeded = RunTransfers(*launch, Direction::kSeed); !seeded.ok())
    setup_error = TransferFailure(Direction::kSeed, seeded);
  // The job's output: a pipe the supervisor copies into the log, up to its cap.
  int outp[2] = {-1, -1};
  if (setup_error.empty() && pipe2(outp, O_CLOEXEC) != 0)
    setup_error = std::string("SandboxSetupFailed: pipe: ") + strerror(errno);
  LogPump output(UniqueFd(outp[0]),
                 UniqueFd(open(launch->log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600)),
                 launch->log_max_bytes);
  pid_t child = setup_error.empty() ? SpawnSandbox(*launch, setup, cg, mask, outp[1], statusp[1], setup_error) : -1;
  if (outp[1] >= 0) close(outp[1]);
  close(statusp[1]);
  BwrapStatus bwrap(statusp[0]);
  if (launch->warm) AnswerWarm(ready_fd, setup_error, assign_write.get(), child);
  WaitOutcome w;
  std::string at = dir;  // a warm sandbox's moves when it is assigned
  bool assigned = false;
  auto on_assign = [&] {
    if (launch->warm && !assigned)
      AssignOnce(dirfd.get(), *launch, at, bwrap, assign_write, child, assigned, setup_error);
  };
  if (child > 0) w = WaitForSandbox(at, *launch, child, sfd, bwrap, output, on_assign);
  if (launch->warm && !assigned) setup_error = "SandboxSetupFailed: the warm sandbox ended before a job was assigned";
  output.Drain(1000);  // what the job wrote last
  bwrap.Pump();
  status.exit = ExitOf(at, *launch, w, setup_error);
  if (child > 0) {  // what the job staged on its volume, even if it failed (checkpoints above all)
    if (Status published = RunTransfers(*launch, Direction::kPublish); !published.ok()) {
      const std::string why = TransferFailure(Direction::kPublish, published);
      status.exit.failure =
          TruncateUtf8(status.exit.failure.empty() ? why : why + "; before that: " + status.exit.failure, 1024);
      if (status.exit.exit_code == 0) status.exit.exit_code = 1;
    }
  }
  if (cg.ok()) {
    status.exit.oom = cg->OomKilled();
    status.exit.peak_memory_bytes = cg->PeakMemoryBytes();
    cg->Destroy();
  }
  if (launch->link) isolation::RemoveJobLink(*launch->link);
  if (launch->egress) isolation::RemoveJobLink(*launch->egress);
  status.ended_ms = RealClock::Get().NowMs();
  status.stopped = w.stopping;
  Status written = WriteFileAtomic(at + "/" + supervisor::kStatusFile, supervisor::Encode(status), 0644, Sync::kNoSync);
  if (!written.ok()) {
    // kilnd reports the instance lost (no status.json); say why in supervisor.log.
    fprintf(stderr, "kiln-supervisor: cannot record the exit: %s\n", written.ToString().c_str());
    return 1;
  }
  if (!launch->report_url.empty()) ReportExit(*launch, status);
  return 0;
}

}  // namespace kiln
