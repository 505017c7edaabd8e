#include "compute/local/log_pump.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace kiln {

LogPump::LogPump(UniqueFd pipe_read, UniqueFd log, int64_t cap_bytes)
    : in_(std::move(pipe_read)), out_(std::move(log)), cap_(cap_bytes) {
  fcntl(in_.get(), F_SETFL, fcntl(in_.get(), F_GETFL) | O_NONBLOCK);
  struct stat st {};
  if (out_.get() >= 0 && fstat(out_.get(), &st) == 0) written_ = st.st_size;
  if (cap_ > 0 && written_ >= cap_) capped_ = true;
}

std::string LogPump::CapMessage(int64_t cap_bytes) {
  return "\n[kiln] this instance's log reached its cap of " + std::to_string(cap_bytes) +
         " bytes (sandbox.log_max_mib); the rest of its output is dropped. The job runs on.\n";
}

void LogPump::Write(const char* data, size_t n) {
  size_t keep = n;
  if (cap_ > 0 && !capped_) keep = static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(n), cap_ - written_));
  if (capped_) keep = 0;
  for (size_t off = 0; off < keep;) {
    ssize_t w = write(out_.get(), data + off, keep - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;  // the log's disk is full: drop rather than block the job
    off += static_cast<size_t>(w);
  }
  written_ += static_cast<int64_t>(keep);
  dropped_ += static_cast<int64_t>(n - keep);
  if (cap_ > 0 && !capped_ && written_ >= cap_) {
    capped_ = true;
    const std::string msg = CapMessage(cap_);
    ssize_t w = write(out_.get(), msg.data(), msg.size());
    (void)w;
  }
}

bool LogPump::Pump() {
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = read(in_.get(), buf, sizeof buf);
    if (n > 0) {
      Write(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

void LogPump::Drain(int timeout_ms) {
  for (;;) {
    if (!Pump()) return;
    pollfd p{in_.get(), POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return;
  }
}

}  // namespace kiln
