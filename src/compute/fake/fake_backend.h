#pragma once
#include <functional>
#include <map>
#include <random>
#include <vector>

#include "common/clock.h"
#include "compute/backend.h"

namespace kiln {

struct FakeOutcome {
  int exit_code = 0;
  int signal = 0;
  bool oom = false;
  TimeMs duration_ms = 1000;
};

struct FakeFaults {
  double launch_error = 0;      // Launch fails permanently, nothing starts
  double launch_ambiguous = 0;  // Launch starts the instance but returns kUnavailable
  // Like Slurm: a launched instance may wait up to this long in the backend's own
  // queue before it starts, and says so with InstanceWaiting events (reasons that
  // change), which are delivered like exits: late, reordered, twice or never.
  TimeMs queue_ms = 0;
};

// Not thread-safe: for single-threaded simulations and the conformance suite.
class FakeBackend final : public ComputeBackend {
 public:
  struct Inst {
    std::string job_id;
    int starts = 0;
    bool exited = false;
    bool cleaned = false;
    TimeMs ends_at = 0;
    FakeOutcome outcome;
  };

  FakeBackend(Clock& clock, uint64_t seed) : clock_(clock), rng_(seed) {}

  void SetSink(EventSink* sink) { sink_ = sink; }
  void SetFaults(FakeFaults f) { faults_ = f; }
  void SetScript(std::function<FakeOutcome(const LaunchRequest&)> s) { script_ = std::move(s); }

  std::string Name() const override { return "fake"; }
  std::vector<Capability> Capabilities() const override { return {Capability::kSurvivesControllerRestart}; }
  Result<std::string> Launch(const LaunchRequest& req) override;
  Status Stop(const std::string& id, const std::string& handle, int64_t grace_ms) override;
  Status Cleanup(const std::string& id, const std::string& handle) override;
  Status Recover(const std::string& id, const std::string& handle) override;

  // Ends instances whose time has come; their exit events go to the outbox.
  void AdvanceToNow();
  // Posts one outbox event (random pick); returns false if the outbox is empty.
  // With probability `dup` it is posted twice, with `drop` it is lost.
  bool DeliverOne(double dup, double drop);
  size_t outbox_size() const { return outbox_.size(); }
  bool AnyRunning() const;
  const std::map<std::string, Inst>& instances() const { return inst_; }

 private:
  static ExitReport Report(const std::string& id, const FakeOutcome& o);

  Clock& clock_;
  std::mt19937_64 rng_;
  EventSink* sink_ = nullptr;
  FakeFaults faults_;
  std::function<FakeOutcome(const LaunchRequest&)> script_;
  std::map<std::string, Inst> inst_;
  std::vector<Event> outbox_;
};

}  // namespace kiln
