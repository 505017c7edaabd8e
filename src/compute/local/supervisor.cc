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
#include "compute/local/cgroup.h"

namespace kiln {

using nlohmann::json;

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

void Ready(int& fd, const std::string& msg) {
  if (fd < 0) return;
  ssize_t n = write(fd, msg.data(), msg.size());
  (void)n;
  close(fd);
  fd = -1;
}

std::string ReadHead(const std::string& path, size_t max) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  std::string s(max, '\0');
  f.read(s.data(), static_cast<std::streamsize>(max));
  s.resize(static_cast<size_t>(f.gcount()));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

int RunSupervisor(const std::string& dir, int ready_fd) {
  int lock = open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0) {
    Ready(ready_fd, "busy\n");
    return 0;
  }
  if (access((dir + "/status.json").c_str(), F_OK) == 0) {  // already ran to completion
    Ready(ready_fd, "busy\n");
    return 0;
  }
  auto launch_text = ReadFile(dir + "/launch.json");
  json launch = launch_text.ok() ? json::parse(*launch_text, nullptr, false) : json();
  if (launch.is_discarded() || !launch.is_object()) {
    Ready(ready_fd, "err cannot read launch.json\n");
    return 1;
  }
  WriteFileAtomic(dir + "/supervisor.pid",
                  std::to_string(getpid()) + " " + std::to_string(ProcessStartTime(getpid())) + "\n", 0644,
                  Sync::kNoSync);

  std::string instance_id = launch.value("instance_id", "x");
  json status = {{"exit_code", -1}, {"signal", 0}, {"oom", false}, {"failure", ""}};
  const TimeMs started = RealClock::Get().NowMs();
  status["started_ms"] = started;

  auto cg =
      InstanceCgroup::Create(instance_id, launch.value("memory_bytes", int64_t{1} << 30), launch.value("cpus", 1.0));
  if (!cg.ok()) status["limits_warning"] = cg.status().message();

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGALRM);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  int statusp[2];
  if (pipe2(statusp, O_CLOEXEC) != 0) {
    Ready(ready_fd, "err pipe\n");
    return 1;
  }
  std::string log = launch.value("log", dir + "/output.log");
  std::vector<std::string> argv = launch.value("argv", std::vector<std::string>{});
  std::vector<std::string> env = launch.value("env", std::vector<std::string>{});
  if (argv.empty()) {
    Ready(ready_fd, "err empty argv\n");
    return 1;
  }
  Ready(ready_fd, "ok\n");

  pid_t child = fork();
  if (child == 0) {
    sigprocmask(SIG_UNBLOCK, &mask, nullptr);
    if (cg.ok()) cg->JoinSelf();
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    dup2(statusp[1], 3);  // bwrap --json-status-fd 3
    std::vector<char*> av, ev;
    for (auto& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    for (auto& e : env) ev.push_back(e.data());
    ev.push_back(nullptr);
    std::string wd = launch.value("cwd", "/");
    if (chdir(wd.c_str()) != 0) chdir("/");
    execve(av[0], av.data(), ev.data());
    dprintf(2, "kiln-supervisor: exec %s: %s\n", av[0], strerror(errno));
    _exit(127);
  }
  close(statusp[1]);
  // The sandbox's init pid (the entrypoint), from bwrap's status stream.
  pid_t init_pid = 0;
  std::string status_buf;
  int sp = statusp[0];
  fcntl(sp, F_SETFL, O_NONBLOCK);
  auto pump_status = [&] {
    char buf[512];
    ssize_t n;
    while ((n = read(sp, buf, sizeof(buf))) > 0) status_buf.append(buf, static_cast<size_t>(n));
    auto pos = status_buf.find("\"child-pid\"");
    if (!init_pid && pos != std::string::npos) {
      auto colon = status_buf.find(':', pos);
      if (colon != std::string::npos) init_pid = atoi(status_buf.c_str() + colon + 1);
    }
  };

  int wstatus = 0;
  bool stopping = false, killed = false;
  for (;;) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof(si));
    if (n != sizeof(si)) continue;
    pump_status();
    if (si.ssi_signo == SIGCHLD) {
      pid_t w = waitpid(child, &wstatus, WNOHANG);
      if (w == child) break;
    } else if (si.ssi_signo == SIGALRM) {
      killed = true;
      if (init_pid > 0) kill(init_pid, SIGKILL);
      kill(child, SIGKILL);
    } else if (!stopping) {  // SIGTERM / SIGINT / SIGHUP: stop with grace
      stopping = true;
      int64_t grace = launch.value("grace_ms", int64_t{120000});
      std::string g = ReadHead(dir + "/stop", 32);
      if (!g.empty()) grace = atoll(g.c_str());
      if (init_pid > 0)
        kill(init_pid, SIGTERM);
      else
        kill(child, SIGTERM);
      if (grace <= 0) grace = 1;
      struct itimerval it {};
      it.it_value.tv_sec = grace / 1000;
      it.it_value.tv_usec = (grace % 1000) * 1000;
      setitimer(ITIMER_REAL, &it, nullptr);
    }
  }
  pump_status();
  // Entrypoint's own account of the user command, when it got to write one.
  json ep = json::parse(ReadHead(dir + "/ml/.kiln/exit.json", 1 << 16), nullptr, false);
  if (ep.is_object()) {
    status["exit_code"] = ep.value("exit_code", -1);
    status["signal"] = ep.value("signal", 0);
    if (ep.contains("model_artifact")) status["model_artifact"] = ep["model_artifact"];
  } else if (WIFEXITED(wstatus)) {
    int code = WEXITSTATUS(wstatus);
    status["exit_code"] = code;
    if (code > 128 && code < 160) status["signal"] = code - 128;
  } else if (WIFSIGNALED(wstatus)) {
    status["exit_code"] = 128 + WTERMSIG(wstatus);
    status["signal"] = WTERMSIG(wstatus);
  }
  if (killed && status["signal"] == 0) {
    status["signal"] = SIGKILL;
    status["exit_code"] = 137;
  }
  if (cg.ok()) {
    status["oom"] = cg->OomKilled();
    status["peak_memory_bytes"] = cg->PeakMemoryBytes();
    cg->Destroy();
  }
  status["failure"] = SanitizeUtf8(ReadHead(dir + "/ml/output/failure", 1024));
  status["message"] = SanitizeUtf8(ReadHead(dir + "/ml/output/message", 1024));
  status["ended_ms"] = RealClock::Get().NowMs();
  status["stopped"] = stopping;
  WriteFileAtomic(dir + "/status.json", status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 0644,
                  Sync::kNoSync);
  return 0;
}

}  // namespace kiln
