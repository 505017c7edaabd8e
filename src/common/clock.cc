#include "common/clock.h"

#include <chrono>
#include <ctime>

namespace kiln {

TimeMs RealClock::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RealClock& RealClock::Get() {
  static RealClock c;
  return c;
}

std::string FormatTime(TimeMs t) {
  time_t secs = static_cast<time_t>(t / 1000);
  int ms = static_cast<int>(t % 1000);
  if (ms < 0) ms += 1000;
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof(buf) - n, ".%03dZ", ms);
  return buf;
}

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace kiln
