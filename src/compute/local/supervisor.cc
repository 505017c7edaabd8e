#include "compute/local/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/sandbox_paths.h"
#include "compute/local/cgroup.h"
#include "compute/local/protocol.h"

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
// instance's ml/ directory): resolved beneath it, never through a symlink the job
// planted, regular files only. "" if absent or refused.
std::string ReadJobFile(const std::string& dir, const char* sandbox_path, size_t max) {
  const std::string relative = std::string(sandbox_path).substr(std::string(sandbox::kRoot).size() + 1);
  auto text = ReadFileBeneath(dir + "/ml", relative, max);
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

// Forks and execs the sandbox command; its stdout/stderr go to the log, fd 3 is
// bwrap's status pipe. Everything the child needs is prepared before the fork.
pid_t SpawnSandbox(const LaunchFile& launch, const Result<InstanceCgroup>& cg, const sigset_t& mask,
                   int status_write_fd) {
  std::vector<std::string> argv = launch.argv, env = launch.env;
  std::vector<char*> av, ev;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  for (auto& e : env) ev.push_back(e.data());
  ev.push_back(nullptr);
  pid_t child = fork();
  if (child != 0) return child;
  sigprocmask(SIG_UNBLOCK, &mask, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (cg.ok() && !cg->JoinSelf().ok()) dprintf(2, "kiln-supervisor: cannot join the instance's cgroups\n");
  int out = open(launch.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int in = open("/dev/null", O_RDONLY);
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  dup2(status_write_fd, 3);  // bwrap --json-status-fd 3
  if (chdir(launch.cwd.c_str()) != 0 && chdir("/") != 0) _exit(127);
  execve(av[0], av.data(), ev.data());
  dprintf(2, "kiln-supervisor: exec %s: %s\n", av[0], strerror(errno));
  _exit(127);
}

struct WaitOutcome {
  int wstatus = 0;
  bool stopping = false;  // a stop was requested
  bool killed = false;    // the grace period ran out: SIGKILL
};

// Waits for the sandbox to end, turning SIGTERM/SIGINT/SIGHUP into a graceful stop
// (SIGTERM to the sandbox's init, SIGKILL when the grace period of the stop file,
// or of launch.json, runs out).
WaitOutcome WaitForSandbox(const std::string& dir, const LaunchFile& launch, pid_t child, int sfd, BwrapStatus& bwrap) {
  WaitOutcome w;
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof(si));
    if (n != sizeof(si)) continue;
    bwrap.Pump();
    if (si.ssi_signo == SIGCHLD) {
      if (waitpid(child, &w.wstatus, WNOHANG) == child) return w;
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

// The exit report: the entrypoint's own account of the user command when it got
// to write one (exit.json), else the sandbox's wait status.
ExitReport ExitOf(const std::string& dir, const LaunchFile& launch, const WaitOutcome& w) {
  ExitReport x;
  auto ep = ExitReportFromJson(nlohmann::json::parse(ReadJobFile(dir, sandbox::kExitFile, 1 << 16), nullptr, false));
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
  x.failure = SanitizeUtf8(ReadJobFile(dir, sandbox::kFailureFile, 1024));
  x.message = SanitizeUtf8(ReadJobFile(dir, sandbox::kMessageFile, 1024));
  return x;
}

}  // namespace

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
  auto cg = InstanceCgroup::Create(launch->instance_id, launch->memory_bytes, launch->cpus);
  if (!cg.ok()) status.limits_warning = cg.status().message();

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGCHLD, SIGALRM, SIGHUP}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
  int statusp[2];
  if (sfd < 0 || pipe2(statusp, O_CLOEXEC) != 0) {
    Ready(ready_fd, {ReadyKind::kError, std::string("signalfd/pipe: ") + strerror(errno)});
    return 1;
  }
  Ready(ready_fd, {ReadyKind::kOk, ""});

  pid_t child = SpawnSandbox(*launch, cg, mask, statusp[1]);
  close(statusp[1]);
  BwrapStatus bwrap(statusp[0]);
  WaitOutcome w = WaitForSandbox(dir, *launch, child, sfd, bwrap);
  bwrap.Pump();
  status.exit = ExitOf(dir, *launch, w);
  if (cg.ok()) {
    status.exit.oom = cg->OomKilled();
    status.exit.peak_memory_bytes = cg->PeakMemoryBytes();
    cg->Destroy();
  }
  status.ended_ms = RealClock::Get().NowMs();
  status.stopped = w.stopping;
  Status written =
      WriteFileAtomic(dir + "/" + supervisor::kStatusFile, supervisor::Encode(status), 0644, Sync::kNoSync);
  if (!written.ok()) {
    // kilnd reports the instance lost (no status.json); say why in supervisor.log.
    fprintf(stderr, "kiln-supervisor: cannot record the exit: %s\n", written.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace kiln
