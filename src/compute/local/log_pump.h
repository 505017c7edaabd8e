#pragma once
// Copies an instance's output (the read end of its stdout/stderr pipe) into its
// log file, up to a cap: the job cannot fill kilnd's disk through its output,
// which lands outside its quota-limited volume. At the cap one line says so and
// the rest is read and dropped, so the job never blocks on a full pipe.
#include <cstdint>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace kiln {

class LogPump {
 public:
  // Takes `pipe_read` (made non-blocking) and `log` (open for append); a log that
  // already holds bytes counts them. `cap_bytes` 0: no cap.
  LogPump(UniqueFd pipe_read, UniqueFd log, int64_t cap_bytes);
  int pipe_fd() const { return in_.get(); }
  // Moves what is readable now; false at end of file (every writer closed).
  bool Pump();
  // Pumps until end of file or until `timeout_ms` passes without data (a
  // descendant that escaped the sandbox's end cannot hold the supervisor).
  void Drain(int timeout_ms);
  int64_t written() const { return written_; }
  int64_t dropped() const { return dropped_; }
  bool capped() const { return capped_; }
  // The line written when the cap is reached.
  static std::string CapMessage(int64_t cap_bytes);

 private:
  void Write(const char* data, size_t n);
  UniqueFd in_, out_;
  int64_t cap_;
  int64_t written_ = 0;
  int64_t dropped_ = 0;
  bool capped_ = false;
};

}  // namespace kiln
