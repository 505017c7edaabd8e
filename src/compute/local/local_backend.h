#pragma once
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "compute/backend.h"

namespace kiln {

struct LocalBackendOptions {
  std::string instances_dir;    // <data-dir>/instances
  std::string supervisor_path;  // kiln-supervisor binary
  std::string entrypoint_path;  // kiln-entrypoint binary
  std::string bwrap_path = "/usr/bin/bwrap";
};

// See README.md. Thread-safe.
class LocalBackend final : public ComputeBackend {
 public:
  LocalBackend(LocalBackendOptions opts, EventSink& sink, Clock& clock);
  ~LocalBackend() override;
  Status Init();

  std::string Name() const override { return "local"; }
  std::vector<Capability> Capabilities() const override;
  Result<std::string> Launch(const LaunchRequest& req) override;
  Status Stop(const std::string& id, const std::string& handle, int64_t grace_ms) override;
  Status Cleanup(const std::string& id, const std::string& handle) override;
  Status Recover(const std::string& id, const std::string& handle) override;
  std::string LogPath(const std::string& id) const override;
  std::string MetricsSocketPath(const std::string& id) const override { return Dir(id) + "/ml/.kiln/statsd.sock"; }

  // The sandbox command line for a request (exposed for tests and docs).
  std::vector<std::string> SandboxArgv(const LaunchRequest& req, const std::string& dir) const;

 private:
  struct Watch {
    std::string job_id;
    int pid;
    int pidfd;
  };
  std::string Dir(const std::string& id) const { return opts_.instances_dir + "/" + id; }
  // A supervisor that already started for this instance: watch it, return its handle.
  Result<std::string> Adopt(const LaunchRequest& req);
  static Result<std::pair<int, unsigned long long>> SupervisorOf(const std::string& dir);
  static std::string Handle(int pid, unsigned long long start, const std::string& dir, const std::string& job_id);
  Status WatchPid(const std::string& id, const std::string& job_id, int pid, unsigned long long start);
  void EpollLoop();
  void Finished(const std::string& id, const std::string& job_id, int pid);

  LocalBackendOptions opts_;
  EventSink& sink_;
  Clock& clock_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  Mutex mu_;
  std::map<int, std::pair<std::string, Watch>> watches_ GUARDED_BY(mu_);  // pidfd -> (instance, watch)
  std::set<std::string> watched_ids_ GUARDED_BY(mu_);
  std::mutex launch_mu_;  // serializes Launches (the adopt-or-spawn decision)
  std::thread loop_;
  bool stop_ GUARDED_BY(mu_) = false;
};

}  // namespace kiln
