#include "controller/timers.h"

namespace kiln {

ThreadTimerService::ThreadTimerService(Clock& clock) : clock_(clock), thread_([this] { Loop(); }) {}

ThreadTimerService::~ThreadTimerService() {
  {
    MutexLock l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ThreadTimerService::Schedule(TimeMs at, const std::string& key, std::function<void()> fn) {
  {
    MutexLock l(mu_);
    if (!keys_.insert(key).second) return;
    due_.emplace(at, std::make_pair(key, std::move(fn)));
  }
  cv_.notify_all();
}

void ThreadTimerService::Loop() {
  MutexLock l(mu_);
  while (!stop_) {
    if (due_.empty()) {
      cv_.wait(l.native());
      continue;
    }
    TimeMs now = clock_.NowMs();
    auto it = due_.begin();
    if (it->first > now) {
      cv_.wait_for(l.native(), std::chrono::milliseconds(std::min<TimeMs>(it->first - now, 60000)));
      continue;
    }
    auto fn = std::move(it->second.second);
    keys_.erase(it->second.first);
    due_.erase(it);
    l.Unlock();
    fn();
    l.Lock();
  }
}

void ManualTimerService::Schedule(TimeMs at, const std::string& key, std::function<void()> fn) {
  if (!keys_.insert(key).second) return;
  due_.emplace(at, std::make_pair(key, std::move(fn)));
}

int ManualTimerService::FireDue() {
  int n = 0;
  while (!due_.empty() && due_.begin()->first <= clock_.NowMs()) {
    auto fn = std::move(due_.begin()->second.second);
    keys_.erase(due_.begin()->second.first);
    due_.erase(due_.begin());
    fn();
    ++n;
  }
  return n;
}

TimeMs ManualTimerService::NextDeadline() const {
  return due_.empty() ? 0 : due_.begin()->first;
}

void ManualTimerService::Clear() {
  due_.clear();
  keys_.clear();
}

}  // namespace kiln
