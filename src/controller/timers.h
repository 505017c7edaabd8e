#pragma once
// One-shot timers keyed by name. Scheduling a key that is already pending does
// nothing, so callers may re-derive and re-schedule timers freely.
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/thread_annotations.h"

namespace kiln {

class TimerService {
 public:
  virtual ~TimerService() = default;
  // `fn` runs once at or after `at` on the service's thread (or FireDue's caller).
  virtual void Schedule(TimeMs at, const std::string& key, std::function<void()> fn) = 0;
};

// Runs timers on its own thread against the real clock.
class ThreadTimerService final : public TimerService {
 public:
  explicit ThreadTimerService(Clock& clock);
  ~ThreadTimerService() override;
  void Schedule(TimeMs at, const std::string& key, std::function<void()> fn) override;

 private:
  void Loop();
  Clock& clock_;
  Mutex mu_;
  std::condition_variable cv_;
  std::multimap<TimeMs, std::pair<std::string, std::function<void()>>> due_ GUARDED_BY(mu_);
  std::set<std::string> keys_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Fires only when told: the simulation advances a FakeClock and calls FireDue.
class ManualTimerService final : public TimerService {
 public:
  explicit ManualTimerService(Clock& clock) : clock_(clock) {}
  void Schedule(TimeMs at, const std::string& key, std::function<void()> fn) override;
  // Runs every timer due at the clock's current time. Returns how many ran.
  int FireDue();
  // Earliest pending deadline, or 0 if none.
  TimeMs NextDeadline() const;
  void Clear();

 private:
  Clock& clock_;
  std::multimap<TimeMs, std::pair<std::string, std::function<void()>>> due_;
  std::set<std::string> keys_;
};

}  // namespace kiln
