#pragma once
// Clang's thread-safety analysis (-Wthread-safety, on in every clang build and so in
// CI): GUARDED_BY beside each shared member, REQUIRES on functions that expect the
// lock held. libstdc++'s std::mutex carries no annotations, so shared state is
// guarded by kiln::Mutex and locked with kiln::MutexLock; both are std::mutex and
// std::unique_lock underneath (a condition variable waits on MutexLock::native()).
#include <mutex>

#if defined(__clang__)
#define KILN_TSA(x) __attribute__((x))
#else
#define KILN_TSA(x)
#endif

#define CAPABILITY(x) KILN_TSA(capability(x))
#define SCOPED_CAPABILITY KILN_TSA(scoped_lockable)
#define GUARDED_BY(x) KILN_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) KILN_TSA(pt_guarded_by(x))
#define REQUIRES(...) KILN_TSA(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) KILN_TSA(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) KILN_TSA(acquire_capability(__VA_ARGS__))
#define RELEASE(...) KILN_TSA(release_capability(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS KILN_TSA(no_thread_safety_analysis)

namespace kiln {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  std::mutex& native() { return mu_; }

 private:
  std::mutex mu_;
};

// Holds `mu` for its scope. native() lends the underlying std::unique_lock to a
// std::condition_variable; the wait gives the lock back before it returns.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.native()) {}
  ~MutexLock() RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  std::unique_lock<std::mutex>& native() { return lock_; }
  // Gives the lock up for a stretch (a callback that may take it again), then back.
  void Unlock() RELEASE() { lock_.unlock(); }
  void Lock() ACQUIRE() { lock_.lock(); }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace kiln
