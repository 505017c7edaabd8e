#pragma once
// Time in Kiln is milliseconds since the Unix epoch (int64). Components take a
// Clock& so the simulation harness can drive them with FakeClock.
#include <cstdint>
#include <mutex>
#include <string>

namespace kiln {

using TimeMs = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time. Thread-safe.
  virtual TimeMs NowMs() const = 0;
};

class RealClock final : public Clock {
 public:
  TimeMs NowMs() const override;
  static RealClock& Get();
};

// Moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimeMs start = 1'700'000'000'000) : now_(start) {}
  TimeMs NowMs() const override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void Advance(TimeMs ms) {
    std::lock_guard<std::mutex> l(mu_);
    now_ += ms;
  }
  void Set(TimeMs t) {
    std::lock_guard<std::mutex> l(mu_);
    now_ = t;
  }

 private:
  mutable std::mutex mu_;
  TimeMs now_;
};

// RFC 3339 with milliseconds, UTC ("2026-11-26T20:19:07.123Z").
std::string FormatTime(TimeMs t);
// Monotonic nanoseconds, for benchmarks and timeouts only.
int64_t MonotonicNs();

}  // namespace kiln
