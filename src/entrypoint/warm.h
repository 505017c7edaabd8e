#pragma once
// Warm sandboxes and warm runtimes, inside the instance (docs/runtime-contract.md §9).
//
// A warm sandbox starts before its job: kiln-entrypoint runs with
// `--assign-fd N` and no command, and waits for one assignment line on fd N
// from its supervisor. With KILN_WARM_RUNTIME (an interpreter) it first starts
// that interpreter with KILN_WARM_PRELOAD's modules imported; the job's script
// then runs in it, so the imports are already paid. A sandbox is used once: the
// interpreter becomes the job's process and nothing outlives the job.
#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::warm {

// What the supervisor hands a waiting entrypoint: the job's command (what
// follows "--" on a cold start) and its environment ("NAME=value").
struct Assignment {
  std::vector<std::string> command;
  std::vector<std::string> env;
};
inline constexpr size_t kMaxAssignmentBytes = 1 << 20;
std::string Encode(const Assignment& a);  // one line, '\n'-terminated
// kInvalidArgument naming the field for anything but {"command": [..1+], "env": [...]}.
Result<Assignment> DecodeAssignment(const std::string& line);

// Reads one assignment line from `fd` (at most kMaxAssignmentBytes). `signal_fd`
// (a signalfd) is watched meanwhile: a SIGTERM, SIGINT or SIGHUP before the
// assignment answers kFailedPrecondition. End of file without a line is kUnavailable.
Result<Assignment> ReadAssignment(int fd, int signal_fd);

// Why `command` cannot run in a warm runtime of `interpreter` with `env`, or ""
// when it can: `interpreter SCRIPT [ARGS...]` where the command's program,
// looked up on env's PATH, is the same file as `interpreter`, SCRIPT is not an
// option, and env sets no PYTHON* variable the runtime cannot apply after start
// (PYTHONUNBUFFERED, PYTHONPATH and PYTHONDONTWRITEBYTECODE it can).
std::string Ineligible(const std::vector<std::string>& command, const std::vector<std::string>& env,
                       const std::string& interpreter);

// The preloaded interpreter, a child of the entrypoint in its own process group
// (as a cold command is), stdout and stderr on the command's pipes.
class Runtime {
 public:
  Runtime() = default;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;
  ~Runtime() { Discard(); }
  // Starts `interpreter` importing `preload` (comma-separated module names).
  Status Start(const std::string& interpreter, const std::string& preload, const sigset_t& child_mask, int out_fd,
               int err_fd);
  bool started() const { return pid_ > 0; }
  const std::string& interpreter() const { return interpreter_; }
  pid_t pid() const { return pid_; }
  // Waits until its preload is done: Ok when it waits for the job, else why not
  // (it is then discarded). Run waits for it too.
  Status WaitReady();
  // Whether it is still waiting (it has not exited: a failed preload exits it).
  bool Alive();
  // Hands it the job: it becomes `command` run with `env` in `cwd`. Returns its
  // pid, now the job's (this object lets go of it).
  Result<pid_t> Run(const std::vector<std::string>& command, const std::vector<std::string>& env,
                    const std::string& cwd);
  // Ends it (closing its control pipe, then SIGKILL) and reaps it.
  void Discard();

 private:
  std::string interpreter_;
  pid_t pid_ = -1;
  int control_ = -1;
  bool ready_ = false;
};

// The Python program a warm runtime runs (exposed for tests).
const char* RuntimeProgram();

}  // namespace kiln::warm
