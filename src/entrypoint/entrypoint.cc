#include "entrypoint/entrypoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/sandbox_paths.h"
#include "common/user_regex.h"
#include "entrypoint/context.h"
#include "entrypoint/contract.h"
#include "entrypoint/http_client.h"
#include "entrypoint/warm.h"
#include "jobs/events.h"
#include "jobs/runtime_doc.h"

namespace kiln {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string Env(const char* k, const char* def = "") {
  const char* v = getenv(k);
  return v ? v : def;
}

void Log(const std::string& msg) {
  std::string line = "[kiln-entrypoint] " + msg + "\n";
  ssize_t n = write(2, line.data(), line.size());
  (void)n;
}

struct ApiTarget {
  std::string host;
  int port = 0;
};

ApiTarget ParseUrl(const std::string& url) {
  ApiTarget t;
  if (url.rfind("unix:", 0) == 0) {  // kilnd's runtime socket: the host is the whole URL
    t.host = url;
    return t;
  }
  std::string rest = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
  auto slash = rest.find('/');
  if (slash != std::string::npos) rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  t.host = rest.substr(0, colon);
  t.port = colon == std::string::npos ? 80 : atoi(rest.c_str() + colon + 1);
  return t;
}

// Sends phase reports in order on its own thread, retrying each until kilnd
// acknowledges it (kilnd may be restarting). Flush() waits, bounded.
class Reporter {
 public:
  Reporter(ApiTarget api, std::string token) : api_(std::move(api)), token_(std::move(token)) {
    if (!api_.host.empty()) thread_ = std::thread([this] { Loop(); });
  }
  ~Reporter() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Report(const std::string& phase, json extra = json::object()) {
    if (api_.host.empty()) return;
    json body = {{"type", phase}, {"time_ms", RealClock::Get().NowMs()}, {"payload", extra}};
    {
      std::lock_guard<std::mutex> l(mu_);
      q_.push_back(body.dump());
    }
    cv_.notify_all();
  }
  void Flush(int timeout_ms) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return q_.empty() && !busy_; });
  }

 private:
  void Loop() {
    const std::map<std::string, std::string> h = {{"Authorization", "Bearer " + token_},
                                                  {"Content-Type", "application/json"}};
    int backoff = 20;
    for (;;) {
      std::string body;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return done_ || !q_.empty(); });
        if (q_.empty()) return;
        body = q_.front();
        busy_ = true;
      }
      auto res = HttpCall(api_.host, api_.port, "POST", "/v1/runtime/events", h, body, 5000);
      std::unique_lock<std::mutex> l(mu_);
      busy_ = false;
      if (res.ok() && (res->status == 200 || res->status == 404 || res->status == 401 || res->status == 400)) {
        // Acknowledged, or refused for good (job gone): either way, done with it.
        q_.pop_front();
        backoff = 20;
        cv_.notify_all();
      } else {
        if (done_) return;
        cv_.wait_for(l, std::chrono::milliseconds(backoff));
        backoff = std::min(backoff * 2, 2000);
      }
    }
  }
  ApiTarget api_;
  std::string token_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  bool busy_ = false;
  bool done_ = false;
  std::thread thread_;
};

// Runs a helper program (tar, cp) and waits; true on exit status 0. The child
// of a fork here only makes async-signal-safe calls: the phase reporter's thread
// may hold an allocator or libc lock at the fork, and a malloc in the child
// (a vector, strdup, putenv) would then wait for it forever.
bool RunQuiet(std::vector<std::string> args) {
  std::vector<char*> av;
  av.reserve(args.size() + 1);
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    execvp(av[0], av.data());
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// MetricDefinitions: regexes over the job's output lines. A match becomes a StatsD
// gauge sent to the job's gateway port, so log metrics and StatsD metrics land in
// the same series model.
class LogMetrics {
 public:
  void Configure(const RuntimeDoc& rt) {
    if (rt.metric_definitions.empty() || !rt.statsd) return;
    for (const auto& d : rt.metric_definitions) {
      auto re = UserRegex::Compile(d.regex);
      if (re.ok()) defs_.emplace_back(d.name, std::move(*re));
    }
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(rt.statsd->port));
    inet_pton(AF_INET, rt.statsd->host.c_str(), &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  void Match(const std::string& line) {
    if (fd_ < 0 || line.size() > 4096) return;
    for (const auto& [name, re] : defs_) {
      auto value = re.FirstGroup(line);
      if (!value) continue;
      char* end = nullptr;
      const std::string& v = *value;
      double d = strtod(v.c_str(), &end);
      if (end == v.c_str() || !std::isfinite(d)) continue;
      char buf[320];
      int n = snprintf(buf, sizeof(buf), "%s:%.17g|g", name.c_str(), d);
      if (n > 0 && n < static_cast<int>(sizeof(buf))) {
        ssize_t w = send(fd_, buf, static_cast<size_t>(n), 0);
        (void)w;
      }
    }
  }
  LogMetrics() = default;
  LogMetrics(const LogMetrics&) = delete;
  LogMetrics& operator=(const LogMetrics&) = delete;
  ~LogMetrics() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  std::vector<std::pair<std::string, UserRegex>> defs_;
  int fd_ = -1;
};

// --- Phase 1: fetch the runtime document from kilnd ---

// GET with retries (kilnd may be restarting); a 4xx answer is final.
Result<std::string> FetchWithRetry(const ApiTarget& api, const std::string& token, const std::string& path) {
  const std::map<std::string, std::string> h = {{"Authorization", "Bearer " + token}};
  int backoff = 20;
  std::string last = "no answer";
  const int64_t deadline = MonotonicNs() + 60LL * 1000 * 1000 * 1000;
  while (MonotonicNs() < deadline) {
    auto res = HttpCall(api.host, api.port, "GET", path, h, "", 10000);
    if (res.ok() && res->status == 200) return std::move(res->body);
    if (res.ok() && res->status >= 400 && res->status < 500) {
      json j = json::parse(res->body, nullptr, false);
      std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", res->body) : res->body;
      return Status(Code::kFailedPrecondition,
                    "runtime fetch refused (HTTP " + std::to_string(res->status) + "): " + msg);
    }
    last = res.ok() ? "HTTP " + std::to_string(res->status) : res.status().message();
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min(backoff * 2, 2000);
  }
  return Unavailable("could not fetch " + path + " from kilnd within 60 s: " + last);
}

struct FetchedRuntime {
  RuntimeDoc doc;
  // The staged hyperparameters, raw (never parsed: they may be megabytes); "" when
  // the document has them inline.
  std::string staged_hyperparameters;
};

Result<FetchedRuntime> FetchRuntime(const ApiTarget& api, const std::string& token) {
  auto body = FetchWithRetry(api, token, "/v1/runtime");
  if (!body.ok()) return body.status();
  json j = json::parse(*body, nullptr, false);
  if (!j.is_object()) return Internal("kilnd sent an unreadable runtime document");
  auto doc = RuntimeDocFromJson(j);
  if (!doc.ok()) return Internal("kilnd sent an unreadable runtime document: " + doc.status().message());
  FetchedRuntime out{std::move(*doc), ""};
  if (out.doc.staged_hyperparameters) {
    auto raw = FetchWithRetry(api, token, out.doc.staged_hyperparameters->url);
    if (!raw.ok()) return raw.status();
    out.staged_hyperparameters = std::move(*raw);
  }
  return out;
}

// --- Failure text and exit record ---

// Writes the failure text (docs/runtime-contract.md §7), unless the command wrote
// one. It is the job's last word, so a failure to write it goes to the job's log.
void WriteFailure(const std::string& root, const std::string& text) {
  const std::string path = sandbox::Rebase(root, sandbox::kFailureFile);
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (!ec && size > 0) return;
  Status st = MakeDirs(sandbox::Rebase(root, sandbox::kOutputDir));
  if (st.ok()) st = WriteFileAtomic(path, text.substr(0, 1024), 0644, Sync::kNoSync);
  if (!st.ok()) Log("could not write the failure reason to " + path + ": " + st.message());
}

// .kiln/exit.json: kiln-supervisor's record of how the command ended, the
// ExitReport that becomes the InstanceExited payload (jobs/events.h).
Status WriteExitRecord(const std::string& root, const ExitReport& record) {
  KILN_RETURN_IF_ERROR(MakeDirs(sandbox::Rebase(root, sandbox::kKilnDir)));
  return WriteFileAtomic(sandbox::Rebase(root, sandbox::kExitFile), ToJson(record).dump(), 0644, Sync::kNoSync);
}

std::string ExitRecordError(const std::string& root, const Status& st) {
  return "ContractWriteFailed: could not write " + sandbox::Rebase(root, sandbox::kExitFile) + ": " + st.message();
}

// The instance fails before its command starts: `reason` is logged and becomes the
// failure text, and exit.json says exit code 1.
int FailBeforeCommand(const std::string& root, const std::string& reason) {
  Log(reason);
  WriteFailure(root, reason);
  ExitReport failed;
  failed.exit_code = 1;
  if (Status st = WriteExitRecord(root, failed); !st.ok())
    Log(ExitRecordError(root, st));  // the failure text above already says why it failed
  return 1;
}

// --- Phase 3: lay out the contract ---

// Writes what PrepareContract planned. Channel copies are best effort: they stand
// in for a backend's binds (no sandbox), and a channel left empty is the job's to see.
Status WriteContractPlan(const ContractPlan& plan) {
  for (const auto& line : plan.log_lines) Log(line);
  for (const auto& dir : plan.directories) KILN_RETURN_IF_ERROR(MakeDirs(dir));
  for (const auto& f : plan.files) {
    Status st = WriteFileAtomic(f.path, f.content, 0644, Sync::kNoSync);
    if (!st.ok()) return Internal("could not write " + f.path + ": " + st.message());
  }
  for (const auto& c : plan.channel_copies) {
    std::error_code ec;
    if (fs::exists(c.destination, ec) && !fs::is_empty(c.destination, ec)) continue;
    fs::create_directories(c.destination, ec);
    if (fs::is_directory(c.source, ec))
      fs::copy(c.source, c.destination, fs::copy_options::recursive | fs::copy_options::skip_existing, ec);
    else
      fs::copy(c.source, c.destination + "/" + fs::path(c.source).filename().string(), fs::copy_options::skip_existing,
               ec);
  }
  return Status::Ok();
}

// Script mode's source archive (sagemaker_submit_directory), bound in by the backend,
// unpacked into /opt/ml/code. The error is the failure text.
Status UnpackSourceArchive(const std::string& root) {
  const std::string archive = sandbox::Rebase(root, sandbox::kSourceArchive);
  const std::string code = sandbox::Rebase(root, sandbox::kCodeDir);
  std::error_code ec;
  if (!fs::exists(archive, ec)) return Status::Ok();
  Status st = MakeDirs(code);
  if (!st.ok()) Log(st.message());
  if (!st.ok() || !RunQuiet({"tar", "-xzf", archive, "-C", code}))
    return Internal("SourceUnpackFailed: could not unpack sagemaker_submit_directory into " + code);
  return Status::Ok();
}

// --- Phase 4: run the user command ---

struct CommandPipes {
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  int exec[2] = {-1, -1};  // the child's execvp errno, if it fails; CLOEXEC closes it on success
};

bool OpenPipes(CommandPipes& p) {
  return pipe2(p.out, O_CLOEXEC) == 0 && pipe2(p.err, O_CLOEXEC) == 0 && pipe2(p.exec, O_CLOEXEC) == 0;
}

struct Spawned {
  pid_t pid = -1;
  int exec_errno = 0;  // why execvp failed; 0 when the command started
};

// Starts the command in its own process group, stdout and stderr into `pipes`. Its
// argv and environ are built before the fork (see RunQuiet); the child points
// `environ` at the prepared array, so execvp also searches the command's PATH.
Spawned SpawnCommand(std::vector<std::string>& cmd, std::vector<std::string>& env, const sigset_t& child_mask,
                     CommandPipes& pipes) {
  std::vector<char*> argv;
  argv.reserve(cmd.size() + 1);
  for (auto& c : cmd) argv.push_back(c.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  Spawned s;
  s.pid = fork();
  if (s.pid == 0) {
    sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    setpgid(0, 0);
    dup2(pipes.out[1], 1);
    dup2(pipes.err[1], 2);
    environ = envp.data();
    execvp(argv[0], argv.data());
    int err = errno;
    ssize_t n = write(pipes.exec[1], &err, sizeof(err));
    (void)n;
    _exit(127);
  }
  close(pipes.out[1]);
  close(pipes.err[1]);
  close(pipes.exec[1]);
  if (read(pipes.exec[0], &s.exec_errno, sizeof(s.exec_errno)) != sizeof(s.exec_errno)) s.exec_errno = 0;
  close(pipes.exec[0]);
  return s;
}

// Where the command's output lines go: our stdout/stderr (the job log), the
// FirstLine report, the log metrics, and the tail of stderr for the failure text.
class LineSink {
 public:
  LineSink(Reporter& reporter, LogMetrics& metrics) : reporter_(reporter), metrics_(metrics) {}
  // `which`: 0 for stdout, 1 for stderr.
  void Emit(int which, const std::string& line) {
    if (!first_line_) {
      first_line_ = true;
      reporter_.Report("FirstLine");
    }
    metrics_.Match(line);
    std::string l = line + "\n";
    ssize_t n = write(which == 0 ? 1 : 2, l.data(), l.size());
    (void)n;
    if (which == 1) {
      stderr_tail_.push_back(line);
      if (stderr_tail_.size() > 20) stderr_tail_.pop_front();
    }
  }
  const std::deque<std::string>& stderr_tail() const { return stderr_tail_; }

 private:
  Reporter& reporter_;
  LogMetrics& metrics_;
  bool first_line_ = false;
  std::deque<std::string> stderr_tail_;
};

// Reads what is there on one of the command's pipes and emits its complete lines;
// at end of file, the partial last line too, and the pipe is closed (fd = -1).
void DrainPipe(pollfd& p, int which, std::string& partial, LineSink& sink) {
  char buf[65536];
  ssize_t r = read(p.fd, buf, sizeof(buf));
  if (r <= 0) {
    if (!partial.empty()) sink.Emit(which, partial);
    partial.clear();
    close(p.fd);
    p.fd = -1;
    return;
  }
  partial.append(buf, static_cast<size_t>(r));
  size_t pos;
  while ((pos = partial.find('\n')) != std::string::npos) {
    sink.Emit(which, partial.substr(0, pos));
    partial.erase(0, pos + 1);
  }
}

// Handles the pending signals: SIGCHLD reaps everything (pid 1 of the sandbox) and
// notes the command's wait status; any other is forwarded to the command.
void HandleSignals(int sfd, pid_t child, int& status, bool& exited) {
  signalfd_siginfo si;
  while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
    if (si.ssi_signo != SIGCHLD) {
      Log(std::string("forwarding ") + strsignal(static_cast<int>(si.ssi_signo)) + " to the job");
      kill(-child, static_cast<int>(si.ssi_signo));
      kill(child, static_cast<int>(si.ssi_signo));
      continue;
    }
    for (;;) {
      int st;
      pid_t w = waitpid(-1, &st, WNOHANG);
      if (w <= 0) break;
      if (w == child) {
        status = st;
        exited = true;
      }
    }
  }
}

// Pumps the command's output until it has exited and its pipes are closed (or, once
// it has exited, 200 ms pass without output: a daemonized grandchild may hold them).
// Returns its wait status.
int WaitForCommand(pid_t child, CommandPipes& pipes, int sfd, LineSink& sink) {
  std::string partial[2];
  int status = 0;
  bool exited = false;
  pollfd fds[3] = {{pipes.out[0], POLLIN, 0}, {pipes.err[0], POLLIN, 0}, {sfd, POLLIN, 0}};
  while (!exited || fds[0].fd >= 0 || fds[1].fd >= 0) {
    int n = poll(fds, 3, exited ? 200 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && exited) break;
    for (int i = 0; i < 2; ++i)
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) DrainPipe(fds[i], i, partial[i], sink);
    if (fds[2].revents & POLLIN) HandleSignals(sfd, child, status, exited);
  }
  if (!exited) waitpid(child, &status, 0);
  return status;
}

struct CommandExit {
  int exit_code = 0;  // 128+N after signal N; 127/126 when it could not be executed
  int signal = 0;
};

// How the command ended; writes the failure text for an exec failure or a
// non-zero exit with stderr output, and logs the exit.
CommandExit SettleExit(const std::string& root, const std::string& argv0, int wait_status, int exec_errno,
                       const std::deque<std::string>& stderr_tail, int64_t t_start) {
  CommandExit e;
  if (WIFEXITED(wait_status)) e.exit_code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) {
    e.signal = WTERMSIG(wait_status);
    e.exit_code = 128 + e.signal;
  }
  if (exec_errno) {
    e.exit_code = exec_errno == ENOENT ? 127 : 126;
    std::string why = exec_errno == ENOENT ? "CommandNotFound: '" + argv0 + "' was not found"
                                           : "CommandNotExecutable: '" + argv0 + "': " + strerror(exec_errno);
    Log(why);
    WriteFailure(root, why);
  } else if (e.exit_code != 0 && !stderr_tail.empty()) {
    std::string tail;
    for (auto& l : stderr_tail) tail += l + "\n";
    if (tail.size() > 1024) tail = tail.substr(tail.size() - 1024);
    WriteFailure(root, tail);
  }
  Log("command exited with code " + std::to_string(e.exit_code) +
      (e.signal ? " (signal " + std::to_string(e.signal) + ")" : "") + " after " +
      std::to_string(RealClock::Get().NowMs() - t_start) + " ms");
  return e;
}

// --- Phase 5: pack and upload the outputs ---

// An empty tar archive (two zero blocks, 10,240 bytes), gzipped (`gzip -9n`):
// what an empty directory packs into, written without running tar (~40 ms).
constexpr unsigned char kEmptyTarGz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xed, 0xc1,
                                         0x01, 0x0d, 0x00, 0x00, 0x00, 0xc2, 0xa0, 0xf7, 0x4f, 0x6d, 0x0e, 0x37,
                                         0xa0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x37,
                                         0x03, 0x9a, 0xde, 0x1d, 0x27, 0x00, 0x28, 0x00, 0x00};

// Whether `dir` is a directory with no entries.
bool IsEmptyDirectory(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  return !ec && it == fs::directory_iterator();
}

// Writes the empty archive to `path`; false on any error.
bool WriteEmptyArchive(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return false;
  const bool ok = write(fd, kEmptyTarGz, sizeof(kEmptyTarGz)) == static_cast<ssize_t>(sizeof(kEmptyTarGz));
  return close(fd) == 0 && ok;
}

// Packs `dir` into <output_dir>/<name> through a temporary file; the archive's path,
// or "" when tar or the rename failed. An empty directory needs no tar.
std::string PackDirectory(const std::string& dir, const std::string& output_dir, const std::string& name) {
  const std::string tmp = output_dir + "/." + name + ".tmp";
  std::string dst = output_dir + "/" + name;
  const bool packed = IsEmptyDirectory(dir) ? WriteEmptyArchive(tmp) : RunQuiet({"tar", "-czf", tmp, "-C", dir, "."});
  if (!packed || rename(tmp.c_str(), dst.c_str()) != 0) {
    unlink(tmp.c_str());  // no half archive left among the outputs
    return "";
  }
  return dst;
}

// Instance 0's model.tar.gz (and output.tar.gz), then every instance's uploads, once
// the command exited 0; a failure sets exit_code to 1 with an UploadFailed text.
// Returns the model artifact's URI, or "".
std::string PackOutputs(const std::string& root, const RuntimeDoc& rt, bool upload_model, int& exit_code,
                        Reporter& reporter) {
  std::string model_artifact;
  const bool packs = exit_code == 0 && rt.index == 0 && !rt.output_dir.empty();
  if (upload_model && packs) {
    reporter.Report("Uploading");
    std::string dst = PackDirectory(sandbox::Rebase(root, sandbox::kModelDir), rt.output_dir, "model.tar.gz");
    if (!dst.empty()) {
      model_artifact = "file://" + dst;
      reporter.Report("Uploaded", {{"model_artifact", model_artifact}});
    } else {
      Log(std::string("packing ") + sandbox::kModelDir + " failed");
      WriteFailure(
          root, StrCat("UploadFailed: could not pack ", sandbox::kModelDir, " into ", rt.output_dir, "/model.tar.gz"));
      exit_code = 1;
    }
  }
  if (exit_code == 0 && packs && rt.pack_output_data &&
      PackDirectory(sandbox::Rebase(root, sandbox::kOutputDataDir), rt.output_dir, "output.tar.gz").empty()) {
    WriteFailure(root, StrCat("UploadFailed: could not pack ", sandbox::kOutputDataDir, " into ", rt.output_dir,
                              "/output.tar.gz"));
    exit_code = 1;
  }
  // Outputs (ProcessingOutputs, EndOfJob): copied out once the command succeeded.
  for (const auto& u : rt.uploads) {
    if (exit_code != 0) break;
    const std::string local = sandbox::Rebase(root, u.local_path), staged = sandbox::Rebase(root, u.staged);
    std::error_code ec;
    if (local.empty() || staged.empty() || !fs::is_directory(local, ec)) continue;
    if (!RunQuiet({"cp", "-a", "--", local + "/.", staged + "/"})) {
      WriteFailure(root, "UploadFailed: could not copy " + u.local_path + " to its output location");
      exit_code = 1;
    }
  }
  return model_artifact;
}

// Writes exit.json: `record` plus the exit code and signal. Without it the
// supervisor knows only our exit status, so a failure to write it fails the instance
// rather than let it complete without its model artifact.
void RecordExit(const std::string& root, ExitReport record, CommandExit& ended) {
  record.exit_code = ended.exit_code;
  record.signal = ended.signal;
  Status st = WriteExitRecord(root, record);
  if (st.ok()) return;
  const std::string reason = ExitRecordError(root, st);
  Log(reason);
  WriteFailure(root, reason);
  if (ended.exit_code == 0) ended.exit_code = 1;
}

// Blocks the signals we handle before any thread exists, so that they reach the
// signalfd instead of a helper thread. Returns the signalfd; `old` is the mask to
// give the command back.
int BlockHandledSignals(sigset_t& old) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, &old);
  return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

// kiln-entrypoint's own environment, as NAME=value entries.
std::vector<std::string> OwnEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

}  // namespace

// In an instance with a network of its own, the StatsD gateway's UDP port is on
// the host, out of reach: the entrypoint binds the same port on the instance's
// loopback and forwards each datagram to the instance's socket (bound in by the
// backend), so clients configured by STATSD_HOST/STATSD_PORT work unchanged. On
// the host network the gateway already holds the port, the bind fails, and
// nothing is relayed.
class StatsdRelay {
 public:
  ~StatsdRelay() {
    if (udp_ >= 0) close(udp_);
    if (unix_ >= 0) close(unix_);
  }
  bool Open(int port, const std::string& socket_path) {
    if (port <= 0 || socket_path.empty() || socket_path.size() >= sizeof(sockaddr_un::sun_path)) return false;
    udp_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (udp_ < 0 || bind(udp_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) return false;
    path_ = socket_path;
    unix_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return unix_ >= 0;
  }
  // After the command's fork: the thread must not hold a lock the child needs.
  void Start() {
    if (udp_ < 0 || unix_ < 0) return;
    // sendto by path every time: a kilnd restarted meanwhile has bound a new socket there.
    sockaddr_un ua{};
    ua.sun_family = AF_UNIX;
    memcpy(ua.sun_path, path_.data(), path_.size());
    std::thread([udp = udp_, ux = unix_, ua] {
      char buf[65536];
      for (;;) {
        ssize_t n = recv(udp, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;
        ssize_t sent =
            sendto(ux, buf, static_cast<size_t>(n), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&ua), sizeof(ua));
        (void)sent;  // a full gateway queue, or kilnd restarting, drops it, as UDP would
      }
    }).detach();
    udp_ = unix_ = -1;  // the thread owns them until the process ends
  }

 private:
  int udp_ = -1;
  int unix_ = -1;
  std::string path_;
};

// A warm sandbox: waits for its job on `assign_fd`, meanwhile starting the warm
// runtime (KILN_WARM_RUNTIME) on the command's pipes; then takes the job's
// environment and working directory. Returns the job's command, or the exit code.
static std::variant<std::vector<std::string>, int> AwaitAssignment(int assign_fd, int sfd, const sigset_t& child_mask,
                                                                   CommandPipes& pipes, warm::Runtime& runtime) {
  const std::string interpreter = Env("KILN_WARM_RUNTIME");
  if (!interpreter.empty()) {
    Status st = runtime.Start(interpreter, Env("KILN_WARM_PRELOAD"), child_mask, pipes.out[1], pipes.err[1]);
    if (st.ok()) st = runtime.WaitReady();  // a failed preload: the job starts cold, and says why
    if (!st.ok()) Log("warm runtime not started: " + st.message());
  }
  // Running, and warm: every mount bwrap makes is in place (the supervisor adds
  // the job's after this), and the runtime's imports are done.
  if (write(assign_fd, "ready\n", 6) != 6) return 1;
  auto assigned = warm::ReadAssignment(assign_fd, sfd);
  close(assign_fd);
  if (!assigned.ok()) {
    Log(assigned.status().message());
    return assigned.status().code() == Code::kFailedPrecondition ? 128 + SIGTERM : 1;
  }
  clearenv();
  for (const auto& e : assigned->env) {
    const size_t eq = e.find('=');
    setenv(e.substr(0, eq).c_str(), e.substr(eq + 1).c_str(), 1);
  }
  // bwrap entered /opt/ml/code before the job's code was mounted there.
  if (chdir(sandbox::kCodeDir) != 0 && chdir("/") != 0) return 1;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) != nullptr) setenv("PWD", cwd, 1);  // as bwrap's --chdir sets it
  return std::move(assigned->command);
}

// Starts the command: in the warm runtime when there is one and the command
// can run in it, else as a fresh process. `start` says which; `note`, why a
// warm runtime was not used.
static Spawned StartCommand(ContractPlan& contract, const sigset_t& child_mask, CommandPipes& pipes,
                            warm::Runtime& runtime, std::string& start, std::string& note) {
  if (runtime.started()) {
    note = warm::Ineligible(contract.command, contract.environment, runtime.interpreter());
    if (note.empty()) {
      char cwd[4096] = "/";
      if (getcwd(cwd, sizeof(cwd)) == nullptr) strcpy(cwd, "/");
      auto pid = runtime.Run(contract.command, contract.environment, cwd);
      if (pid.ok()) {
        for (int fd : {pipes.out[1], pipes.err[1], pipes.exec[0], pipes.exec[1]}) close(fd);
        start = "warm-runtime";
        return Spawned{*pid, 0};
      }
      note = "the warm runtime failed: " + pid.status().message();
    }
    runtime.Discard();
    Log("warm runtime not used (" + note + "): cold start");
  }
  return SpawnCommand(contract.command, contract.environment, child_mask, pipes);
}

int RunEntrypoint(int argc, char** argv) {
  int first = 1;
  int assign_fd = -1;  // a warm sandbox: the command comes later, on this descriptor
  if (first + 1 < argc && std::string(argv[first]) == "--assign-fd") {
    assign_fd = atoi(argv[first + 1]);
    first += 2;
    fcntl(assign_fd, F_SETFD, FD_CLOEXEC);  // never the job's
  }
  if (first < argc && std::string(argv[first]) == "--") ++first;
  if (first >= argc && assign_fd < 0) {
    Log("usage: kiln-entrypoint [--assign-fd N] [--] command [args...]");
    return 2;
  }
  sigset_t old;
  const int sfd = BlockHandledSignals(old);
  std::vector<std::string> command(argv + first, argv + argc);
  CommandPipes pipes;
  if (!OpenPipes(pipes)) {
    Log("pipe failed");
    return 1;
  }
  warm::Runtime warm_runtime;
  std::string start = "cold";
  if (assign_fd >= 0) {
    auto assigned = AwaitAssignment(assign_fd, sfd, old, pipes, warm_runtime);
    if (const int* code = std::get_if<int>(&assigned)) return *code;
    command = std::move(std::get<std::vector<std::string>>(assigned));
    start = "warm";
  }
  const std::string root = Env("KILN_ML_ROOT", sandbox::kRoot);
  const std::string api_url = Env("KILN_API_URL");
  const std::string token = Env("KILN_TOKEN");
  const bool verbose = getenv("KILN_ENTRYPOINT_VERBOSE") != nullptr;
  bool bad_override = false;
  const DetectedContext ctx = DetectContext(
      getenv, [](const std::string& p) { return fs::exists(p); }, &bad_override);
  if (bad_override) {
    Log(ctx.marker);
    return 2;
  }
  const ContextPlan plan = PlanFor(ctx.context, !api_url.empty());
  if (verbose) Log(std::string("context ") + ToString(ctx.context) + " (" + ctx.marker + ")");
  if (api_url.rfind("https://", 0) == 0) {
    // The in-instance client speaks plain HTTP (kilnd on loopback or the cluster
    // network); TLS to kilnd is not supported yet.
    std::string msg =
        "RuntimeFetchFailed: KILN_API_URL " + api_url + " uses https, which kiln-entrypoint does not support yet";
    Log(msg);
    WriteFailure(root, msg);
    return 1;
  }
  ApiTarget api = api_url.empty() ? ApiTarget{} : ParseUrl(api_url);
  Reporter reporter(plan.report_phases ? api : ApiTarget{}, token);

  // Phases 1 and 2: fetch the runtime document, prepare the contract.
  ContractInput in;
  in.context = ctx.context;
  in.files = plan.write_contract ? ContractFiles::kWrite : ContractFiles::kSkip;
  in.root = root;
  in.command = std::move(command);
  in.base_environment = OwnEnvironment();
  std::optional<RuntimeDoc> runtime;
  StatsdRelay relay;
  bool relay_open = false;
  if (plan.fetch_runtime) {
    reporter.Report("Downloading");
    auto fetched = FetchRuntime(api, token);
    if (!fetched.ok()) return FailBeforeCommand(root, "RuntimeFetchFailed: " + fetched.status().message());
    runtime = fetched->doc;
    const std::string socket = runtime->statsd ? runtime->statsd->socket.value_or("") : "";
    std::error_code ec;
    in.statsd_socket_exists = !socket.empty() && fs::exists(socket, ec);
    if (in.statsd_socket_exists) relay_open = relay.Open(runtime->statsd->port, socket);
    in.runtime = std::move(fetched->doc);
    in.staged_hyperparameters = std::move(fetched->staged_hyperparameters);
  }
  ContractPlan contract = PrepareContract(std::move(in));

  // Phase 3: lay it out.
  if (Status st = WriteContractPlan(contract); !st.ok())
    return FailBeforeCommand(root, "ContractWriteFailed: " + st.message());
  LogMetrics log_metrics;
  if (runtime) {
    log_metrics.Configure(*runtime);
    if (Status st = UnpackSourceArchive(root); !st.ok()) return FailBeforeCommand(root, st.message());
  }
  if (contract.script_mode && verbose) Log("script mode: " + contract.command[0] + " " + contract.command[1]);

  // Phase 4: run the command, its output lines into the job log.
  const int64_t t_start = RealClock::Get().NowMs();
  std::string note;
  const Spawned child = StartCommand(contract, old, pipes, warm_runtime, start, note);
  json started = {{"start", start}};
  if (!note.empty()) started["start_note"] = note;
  reporter.Report("Training", started);
  if (relay_open) relay.Start();
  LineSink sink(reporter, log_metrics);
  const int wait_status = WaitForCommand(child.pid, pipes, sfd, sink);
  CommandExit ended = SettleExit(root, contract.command[0], wait_status, child.exec_errno, sink.stderr_tail(), t_start);

  // Phase 5: pack and upload the outputs, record the exit.
  ExitReport record;
  if (runtime) {
    std::string model_artifact = PackOutputs(root, *runtime, plan.upload_model, ended.exit_code, reporter);
    record.model_artifact = model_artifact;
  }
  RecordExit(root, record, ended);
  reporter.Flush(10000);
  return ended.exit_code;
}

}  // namespace kiln
