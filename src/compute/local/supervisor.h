#pragma once
// kiln-supervisor: one per instance, a session leader that outlives kilnd.
//
// Reads <dir>/launch.json, takes an exclusive lock on <dir>/lock (a second
// supervisor for the same instance exits at once, so an instance never starts
// twice), sets up cgroups, runs the sandbox command with stdout/stderr appended to
// the log, and on exit writes <dir>/status.json:
//   {"exit_code", "signal", "oom", "failure", "model_artifact", "started_ms", "ended_ms", "peak_memory_bytes"}
// SIGTERM starts a stop: the sandbox's init gets SIGTERM, and SIGKILL after the
// grace period from <dir>/stop (milliseconds) or launch.json's default.
// If `ready_fd` >= 0, writes "ok\n" (or "busy\n" / "err <msg>\n") to it once the
// lock is held and the pid file written, then closes it.
#include <string>

namespace kiln {
int RunSupervisor(const std::string& dir, int ready_fd);
// Reads /proc/<pid>/stat's start time (clock ticks since boot); 0 if gone.
unsigned long long ProcessStartTime(int pid);
}  // namespace kiln
