#pragma once
// kiln-supervisor: one per instance, a session leader that outlives kilnd.
//
// The protocol (launch.json, status.json, supervisor.pid, stop, the ready pipe) is
// PROTOCOL.md and protocol.h. In short: takes an exclusive lock on <dir>/lock (a
// second supervisor for the same instance answers "busy" and exits, so an instance
// never starts twice), writes supervisor.pid, answers "ok" on `ready_fd` (if >= 0),
// runs the sandbox command in the instance's cgroups with stdout/stderr appended to
// the log, and when it ends writes status.json. SIGTERM starts a stop: the
// sandbox's init gets SIGTERM, and SIGKILL after the grace period.
#include <string>

namespace kiln {
int RunSupervisor(const std::string& dir, int ready_fd);
// SIGTERM to the supervisor of `dir` (its supervisor.pid, checked against the
// process's start time) and to nothing else; 0 also when none runs. kilnd (or
// the Slurm backend's batch script) wrote the grace period to `stop` first.
int RequestStop(const std::string& dir);
// Reads /proc/<pid>/stat's start time (clock ticks since boot); 0 if gone.
unsigned long long ProcessStartTime(int pid);
}  // namespace kiln
