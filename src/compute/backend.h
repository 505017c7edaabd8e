#pragma once
// ComputeBackend: where instances run.
//
// Contract (every backend; src/compute/conformance_test.cc checks it):
//  - Threads: every method may be called from any thread, concurrently, including
//    concurrent calls for different instances. The controller never runs two
//    Launches of the same instance id at once.
//  - Blocking: Stop, Cleanup, Recover, LogPath and MetricsSocketPath return quickly
//    (no waiting for an instance to end). Launch may block while the instance is
//    being set up (the local backend waits for its supervisor, at most 10 s); the
//    controller calls it from launcher threads, never from the reconciler.
//  - Launch is idempotent per instance id: a second Launch for an id that exists
//    returns the same handle and starts nothing. Errors: kUnavailable = transient,
//    nothing may or may not have started, retry the same Launch; kInvalidArgument =
//    the request cannot run (its field named), nothing started; anything else =
//    the launch failed, nothing runs.
//  - Outcomes arrive as events through the EventSink given at construction:
//    InstanceExited (payload ExitReport) exactly when the instance has ended, at
//    least once; the sink deduplicates by dedup_key "exit:<instance_id>".
//  - Stop (SIGTERM, SIGKILL after grace_ms) and Cleanup are idempotent; for an
//    unknown instance they return Ok.
//  - Recover re-attaches to an instance from its persisted handle, possibly on a
//    new backend object after a kilnd restart (when the backend declares
//    kSurvivesControllerRestart; without it the controller declares such instances
//    lost). If the instance ended meanwhile it posts InstanceExited with the
//    recorded exit status. kNotFound if the handle names nothing the backend knows
//    (the controller then declares the instance lost).
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/catalog.h"
#include "jobs/events.h"
#include "jobs/model.h"

namespace kiln {

// Receives events from backends. Implemented by the controller.
// Contract: thread-safe; Post may be called from any thread, including a backend's
// own threads, and must not be called with a backend lock held that Launch/Stop
// also take. Ok = the event is durable (or was a duplicate by dedup_key, dropped);
// any error = not recorded: the poster may retry, and the controller's resync
// re-asks the backend (Recover) for exits that were never recorded.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual Status Post(Event e) = 0;
};

// An instance's exit token is the token of "<instance_id>/exit": only its
// supervisor holds it (in launch.json), never the job, so a job cannot report
// its own end (POST /v1/runtime/exit refuses the instance token).
inline constexpr char kExitTokenSuffix[] = "/exit";

struct LaunchRequest {
  std::string instance_id;
  std::string job_id;
  int index = 0;
  int attempt = 1;
  JobSpec spec;
  InstanceType type;
  ImageEnv image;
  std::string output_dir;  // where model.tar.gz goes (already includes <job-name>/output)
  std::string api_url;     // kilnd's URL for the entrypoint
  std::string token;       // bearer token for this instance
  // A backend whose supervisor reports the instance's end to kilnd itself
  // (Slurm): the token for POST /v1/runtime/exit, which the job never sees.
  std::string exit_report_token;
  // Warm pools: the job's cache chain (WarmPool::chain), "" for none. The
  // instance sees a directory kept for the chain, per instance index, at
  // /opt/ml/sagemaker/warmpoolcache (SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY),
  // until DeleteWarmCache.
  std::string warm_cache;
};

// What a backend can do, declared as data. The controller reads
// kSurvivesControllerRestart (whether Recover can re-attach after a restart).
enum class Capability { kSurvivesControllerRestart, kMemoryLimits, kCpuLimits, kPidNamespace };

// How a backend is doing, for GET /v1/pools: whether it can take work, and its
// queue as it knows it.
struct BackendHealth {
  enum class State { kHealthy, kUnhealthy };
  State state = State::kHealthy;
  std::string message;  // why unhealthy; "" when healthy
  int queued = 0;       // instances waiting in the backend's own queue
  int running = 0;      // instances it runs now
  int warm_idle = 0;    // pre-started sandboxes waiting for a job (local backend, sandbox.warm)
};
const char* ToString(BackendHealth::State s);

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;
  virtual std::string Name() const = 0;
  virtual std::vector<Capability> Capabilities() const = 0;
  // Starts the instance; returns its opaque handle, which the caller persists.
  virtual Result<std::string> Launch(const LaunchRequest& req) = 0;
  virtual Status Stop(const std::string& instance_id, const std::string& handle, int64_t grace_ms) = 0;
  virtual Status Cleanup(const std::string& instance_id, const std::string& handle) = 0;
  virtual Status Recover(const std::string& instance_id, const std::string& handle) = 0;
  // The instance's log file (its stdout and stderr), or "" if the backend keeps none locally.
  virtual std::string LogPath(const std::string& instance_id) const { return ""; }
  // Host path where the instance's StatsD Unix socket should be created so the
  // instance sees it at /run/kiln/metrics/statsd.sock, or "" if the backend has none.
  virtual std::string MetricsSocketPath(const std::string& instance_id) const { return ""; }
  virtual BackendHealth Health() const { return {}; }
  // Deletes the cache directories of a warm pool chain (LaunchRequest::warm_cache)
  // without following any link in them; idempotent, Ok when none exist.
  virtual Status DeleteWarmCache(const std::string& chain) { return Status::Ok(); }
  // Schedules' pre-warming: where the backend keeps warm sandboxes, has one
  // ready for a job like `like` (its type, image, team and command) until
  // `until_ms`, its runtime importing `preload`. Ok when there is nothing to do.
  virtual Status Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) {
    return Status::Ok();
  }
};

// Forwards every call; tests wrap a backend to inject faults around it.
class BackendWrapper : public ComputeBackend {
 public:
  explicit BackendWrapper(ComputeBackend& target) : target_(target) {}
  std::string Name() const override { return target_.Name(); }
  std::vector<Capability> Capabilities() const override { return target_.Capabilities(); }
  Result<std::string> Launch(const LaunchRequest& r) override { return target_.Launch(r); }
  Status Stop(const std::string& id, const std::string& h, int64_t g) override { return target_.Stop(id, h, g); }
  Status Cleanup(const std::string& id, const std::string& h) override { return target_.Cleanup(id, h); }
  Status Recover(const std::string& id, const std::string& h) override { return target_.Recover(id, h); }
  std::string LogPath(const std::string& id) const override { return target_.LogPath(id); }
  std::string MetricsSocketPath(const std::string& id) const override { return target_.MetricsSocketPath(id); }
  BackendHealth Health() const override { return target_.Health(); }
  Status DeleteWarmCache(const std::string& chain) override { return target_.DeleteWarmCache(chain); }
  Status Prewarm(const LaunchRequest& like, TimeMs until_ms, const std::vector<std::string>& preload) override {
    return target_.Prewarm(like, until_ms, preload);
  }

 protected:
  ComputeBackend& target_;
};

// Backends by name. Filled explicitly from main (no static registration).
class BackendRegistry {
 public:
  using Factory = std::function<Result<std::unique_ptr<ComputeBackend>>(EventSink&)>;
  void Register(const std::string& name, Factory f) { factories_[name] = std::move(f); }
  Result<std::unique_ptr<ComputeBackend>> Create(const std::string& name, EventSink& sink) const {
    auto it = factories_.find(name);
    if (it == factories_.end()) return InvalidArgument("backend", "unknown backend '" + name + "'");
    return it->second(sink);
  }
  std::vector<std::string> Names() const {
    std::vector<std::string> n;
    for (auto& [k, v] : factories_) n.push_back(k);
    return n;
  }

 private:
  std::map<std::string, Factory> factories_;
};

// Builds the InstanceExited event a backend posts (dedup key "exit:<instance_id>").
Event ExitEvent(const std::string& job_id, const ExitReport& report, TimeMs now);
// The InstanceExited event of an instance whose end nobody recorded: exit code -1,
// failure "InstanceLost: <why>".
Event LostEvent(const std::string& job_id, const std::string& instance_id, const std::string& why, TimeMs now);

}  // namespace kiln
