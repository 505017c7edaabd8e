#include "entrypoint/warm.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

extern char** environ;

namespace kiln::warm {
namespace {

using nlohmann::json;

// The runtime: imports argv[1:] with its output discarded, says "ready" (or
// "failed <why>") on fd 3, then waits there for one JSON line {argv, env, cwd,
// out, err} and becomes that script, as `python3 SCRIPT ARGS` would have
// started it: sys.argv, os.environ, cwd, sys.path[0], a __main__ module of its
// own with __file__ and __loader__, uncaught exceptions through sys.excepthook
// with the script's frames only and exit code 1, KeyboardInterrupt re-raised as
// SIGINT, PYTHONUNBUFFERED/PYTHONPATH/PYTHONDONTWRITEBYTECODE applied.
constexpr const char kProgram[] = R"PY(
import os, sys
def _kiln_warm():
    ctl = os.fdopen(3, 'r+b', buffering=0)
    try:
        for name in sys.argv[1:]:
            if name:
                __import__(name)
    except BaseException as e:
        ctl.write(('failed %s: %s: %s\n' % (name, type(e).__name__, e)).replace('\n', ' ').encode() + b'\n')
        os._exit(3)
    ctl.write(b'ready\n')
    line = b''
    while not line.endswith(b'\n'):
        chunk = ctl.read(65536)
        if not chunk:
            os._exit(0)
        line += chunk
    ctl.close()
    import json, io, builtins, importlib.machinery, types
    job = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    os.dup2(job['out'], 1); os.dup2(job['err'], 2)
    os.close(job['out']); os.close(job['err'])
    env = dict(e.split('=', 1) for e in job['env'] if '=' in e)
    os.environ.clear(); os.environ.update(env)
    os.chdir(job['cwd'])
    if env.get('PYTHONUNBUFFERED'):
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, 'w', closefd=False), encoding=sys.stdout.encoding, errors=sys.stdout.errors, write_through=True)
        sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, 'w', closefd=False), encoding=sys.stderr.encoding, errors=sys.stderr.errors, write_through=True)
    sys.dont_write_bytecode = bool(env.get('PYTHONDONTWRITEBYTECODE'))
    script = job['argv'][1]
    path = os.path.abspath(script)
    sys.argv = job['argv'][1:]
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    extra = [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    sys.path[1:1] = extra
    main = types.ModuleType('__main__')
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = builtins
    main.__loader__ = importlib.machinery.SourceFileLoader('__main__', path)
    sys.modules['__main__'] = main
    try:
        with io.open_code(path) as f:
            source = f.read()
    except OSError as e:
        sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n" % (sys.executable, script, e.errno, e.strerror))
        sys.exit(2)
    try:
        exec(compile(source, path, 'exec'), main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == '<string>':
            tb = tb.tb_next
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        if isinstance(e, KeyboardInterrupt):
            import signal
            sys.stdout.flush(); sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)
_kiln_warm()
)PY";

// Sets FD_CLOEXEC on `fd` (or clears it).
void SetCloexec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
}

// `name`'s value in env ("" if absent).
std::string Lookup(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& e : env)
    if (e.size() > name.size() && e.compare(0, name.size(), name) == 0 && e[name.size()] == '=')
      return e.substr(name.size() + 1);
  return "";
}

// The file `program` names: itself with a slash, else the first executable on `path`.
std::string Resolve(const std::string& program, const std::string& path) {
  if (program.find('/') != std::string::npos) return program;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t colon = path.find(':', pos);
    if (colon == std::string::npos) colon = path.size();
    std::string dir = path.substr(pos, colon - pos);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    pos = colon + 1;
  }
  return "";
}

bool SameFile(const std::string& a, const std::string& b) {
  struct stat sa {
  }, sb{};
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

const char* RuntimeProgram() {
  return kProgram;
}

std::string Encode(const Assignment& a) {
  return json{{"command", a.command}, {"env", a.env}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Assignment> DecodeAssignment(const std::string& line) {
  if (line.size() > kMaxAssignmentBytes) return InvalidArgument("assignment", "longer than 1 MiB");
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("assignment", "not a JSON object");
  Assignment a;
  for (const char* field : {"command", "env"}) {
    if (!j.contains(field) || !j[field].is_array()) return InvalidArgument(field, "must be an array of strings");
    for (const auto& v : j[field]) {
      if (!v.is_string()) return InvalidArgument(field, "must be an array of strings");
      (std::string(field) == "command" ? a.command : a.env).push_back(v.get<std::string>());
    }
  }
  if (a.command.empty() || a.command[0].empty()) return InvalidArgument("command", "must not be empty");
  for (const auto& e : a.env)
    if (e.find('=') == std::string::npos || e[0] == '=') return InvalidArgument("env", "entries are NAME=value");
  return a;
}

Result<Assignment> ReadAssignment(int fd, int signal_fd) {
  std::string line;
  char buf[65536];
  for (;;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {signal_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Internal(std::string("poll: ") + strerror(errno));
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP)
          return Status(Code::kFailedPrecondition, std::string("stopped before a job was assigned (") +
                                                       strsignal(static_cast<int>(si.ssi_signo)) + ")");
      }
    }
    if (fds[0].revents == 0) continue;
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Internal(std::string("read assignment: ") + strerror(errno));
    if (n == 0) return Status(Code::kUnavailable, "the supervisor closed the assignment pipe");
    line.append(buf, static_cast<size_t>(n));
    if (line.size() > kMaxAssignmentBytes) return InvalidArgument("assignment", "longer than 1 MiB");
    if (auto nl = line.find('\n'); nl != std::string::npos) return DecodeAssignment(line.substr(0, nl));
  }
}

std::string Ineligible(const std::vector<std::string>& command, const std::vector<std::string>& env,
                       const std::string& interpreter) {
  if (command.size() < 2) return "the command is not `interpreter SCRIPT`";
  const std::string program = Resolve(command[0], Lookup(env, "PATH"));
  if (program.empty() || !SameFile(program, interpreter))
    return "the command runs " + command[0] + ", not the warm runtime " + interpreter;
  if (command[1].empty() || command[1][0] == '-') return "the interpreter has options (" + command[1] + ")";
  for (const auto& e : env) {
    if (e.rfind("PYTHON", 0) != 0) continue;
    const std::string name = e.substr(0, e.find('='));
    if (name != "PYTHONUNBUFFERED" && name != "PYTHONPATH" && name != "PYTHONDONTWRITEBYTECODE")
      return "the job sets " + name + ", which only takes effect at the interpreter's start";
  }
  return "";
}

Status Runtime::Start(const std::string& interpreter, const std::string& preload, const sigset_t& child_mask,
                      int out_fd, int err_fd) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Internal(std::string("socketpair: ") + strerror(errno));
  std::vector<std::string> args = {interpreter, "-c", kProgram};
  size_t pos = 0;
  while (pos <= preload.size()) {
    size_t comma = preload.find(',', pos);
    if (comma == std::string::npos) comma = preload.size();
    if (comma > pos) args.push_back(preload.substr(pos, comma - pos));
    pos = comma + 1;
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Its own start takes no PYTHON* setting: the job's are applied when it runs.
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (strncmp(*e, "PYTHON", 6) != 0) envp.push_back(*e);
  envp.push_back(nullptr);
  // Descriptors for the child, moved above 10 before the fork (dup2 onto 3..5
  // must not clobber one another).
  const int out_hi = fcntl(out_fd, F_DUPFD_CLOEXEC, 10), err_hi = fcntl(err_fd, F_DUPFD_CLOEXEC, 10);
  const int ctl_hi = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  pid_t pid = fork();
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    setpgid(0, 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(null, 1);  // the preload's own output is nobody's log
    dup2(null, 2);
    dup2(ctl_hi, 3);
    dup2(out_hi, 4);  // the job's stdout and stderr, taken up at assignment
    dup2(err_hi, 5);
    for (int fd : {3, 4, 5}) SetCloexec(fd, false);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  for (int fd : {out_hi, err_hi, ctl_hi, sv[1]}) close(fd);
  if (pid < 0) {
    close(sv[0]);
    return Internal(std::string("fork: ") + strerror(errno));
  }
  pid_ = pid;
  control_ = sv[0];
  interpreter_ = interpreter;
  return Status::Ok();
}

Status Runtime::WaitReady() {
  if (ready_) return Status::Ok();
  if (control_ < 0) return Status(Code::kUnavailable, "the warm runtime has exited");
  // "ready", or why its preload failed.
  std::string answer;
  char c;
  while (answer.size() < 4096) {
    ssize_t n = read(control_, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') break;
    answer.push_back(c);
  }
  if (answer != "ready") {
    Discard();
    return Status(Code::kUnavailable,
                  answer.rfind("failed ", 0) == 0 ? "its preload failed: " + answer.substr(7) : "it did not start");
  }
  ready_ = true;
  return Status::Ok();
}

bool Runtime::Alive() {
  if (pid_ <= 0) return false;
  int st;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

Result<pid_t> Runtime::Run(const std::vector<std::string>& command, const std::vector<std::string>& env,
                           const std::string& cwd) {
  KILN_RETURN_IF_ERROR(WaitReady());
  if (!Alive()) return Status(Code::kUnavailable, "the warm runtime has exited");
  const std::string line = json{{"argv", command}, {"env", env}, {"cwd", cwd}, {"out", 4}, {"err", 5}}.dump(
                               -1, ' ', false, json::error_handler_t::replace) +
                           "\n";
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(control_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Discard();
      return Status(Code::kUnavailable, std::string("hand over the job: ") + strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  close(control_);
  control_ = -1;
  const pid_t pid = pid_;
  pid_ = -1;
  return pid;
}

void Runtime::Discard() {
  if (control_ >= 0) close(control_);
  control_ = -1;
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

}  // namespace kiln::warm
