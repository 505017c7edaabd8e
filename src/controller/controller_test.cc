// Controller unit tests with BackendWrapper-based fault injection (in the spirit of
// LevelDB's FaultInjectionTestEnv): the fake backend wrapped to fail or to declare
// fewer capabilities, driven step by step in kManual mode with a fake clock.
#include "controller/controller.h"

#include <gtest/gtest.h>

#include <thread>

#include "compute/fake/fake_backend.h"
#include "store/memory_store.h"

namespace kiln {
namespace {

// Fails the first `failures` Launch calls with kUnavailable, starting nothing.
class FlakyLaunches : public BackendWrapper {
 public:
  FlakyLaunches(ComputeBackend& target, int failures) : BackendWrapper(target), failures_(failures) {}
  Result<std::string> Launch(const LaunchRequest& r) override {
    ++calls_;
    if (failures_-- > 0) return Status(Code::kUnavailable, "injected: launch timed out");
    return BackendWrapper::Launch(r);
  }
  int calls() const { return calls_; }

 private:
  int failures_;
  int calls_ = 0;
};

// A backend whose instances do not survive a kilnd restart.
class NoRestartCapability : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  std::vector<Capability> Capabilities() const override { return {}; }
};

// Admission control in miniature: room for one job at a time. Launches of any
// other job are refused with kResourceExhausted until the admitted job's instance
// exits (seen on its way from the fake backend to the controller).
class OneJobAtATime : public BackendWrapper, public EventSink {
 public:
  explicit OneJobAtATime(ComputeBackend& target) : BackendWrapper(target) {}
  void SetController(EventSink* ctl) { ctl_ = ctl; }
  Result<std::string> Launch(const LaunchRequest& r) override {
    if (!admitted_.empty() && admitted_ != r.job_id) {
      ++refused_;
      return Status(Code::kResourceExhausted, "the job needs 1 vCPUs; 1 of 1 are in use");
    }
    admitted_ = r.job_id;
    return BackendWrapper::Launch(r);
  }
  Status Post(Event e) override {
    if (e.type == EventType::kInstanceExited && e.job_id == admitted_) admitted_.clear();
    return ctl_->Post(std::move(e));
  }
  int refused() const { return refused_; }

 private:
  EventSink* ctl_ = nullptr;
  std::string admitted_;
  int refused_ = 0;
};

// Capacity for `slots` instances of any job at once; records the order in which
// instances start (the jobs' names). Refused launches are kResourceExhausted.
class Slots : public BackendWrapper, public EventSink {
 public:
  Slots(ComputeBackend& target, int slots) : BackendWrapper(target), free_(slots) {}
  void SetController(EventSink* ctl) { ctl_ = ctl; }
  Result<std::string> Launch(const LaunchRequest& r) override {
    if (running_.count(r.instance_id)) return BackendWrapper::Launch(r);  // idempotent
    if (free_ == 0) {
      ++refused_;
      return Status(Code::kResourceExhausted, "no slot free");
    }
    --free_;
    running_.insert(r.instance_id);
    started_.push_back(r.spec.name);
    return BackendWrapper::Launch(r);
  }
  Status Post(Event e) override {
    if (e.type == EventType::kInstanceExited && running_.erase(PayloadInstanceId(e.payload)) > 0) ++free_;
    return ctl_->Post(std::move(e));
  }
  // Like a backend process that restarted: it knows what runs again only from
  // Recover, as the local backend does.
  void ForgetRunning() {
    free_ += static_cast<int>(running_.size());
    running_.clear();
  }
  Status Recover(const std::string& id, const std::string& handle) override {
    Status st = BackendWrapper::Recover(id, handle);
    if (st.ok() && running_.insert(id).second) --free_;
    return st;
  }
  const std::vector<std::string>& started() const { return started_; }
  int refused() const { return refused_; }

 private:
  EventSink* ctl_ = nullptr;
  int free_;
  std::set<std::string> running_;
  std::vector<std::string> started_;
  int refused_ = 0;
};

// Records what warm pools ask of the backend: each launch's cache chain and
// each chain whose cache is deleted.
class WarmRecorder : public BackendWrapper {
 public:
  using BackendWrapper::BackendWrapper;
  Result<std::string> Launch(const LaunchRequest& r) override {
    chains_[r.spec.name] = r.warm_cache;
    return BackendWrapper::Launch(r);
  }
  Status DeleteWarmCache(const std::string& chain) override {
    deleted_.push_back(chain);
    return Status::Ok();
  }
  std::map<std::string, std::string> chains_;  // job name -> its launch's warm_cache
  std::vector<std::string> deleted_;
};

class ControllerTest : public ::testing::Test {
 protected:
  ControllerTest() : store_(NewMemoryStore()), fake_(clock_, 7) {
    fake_.SetScript([](const LaunchRequest&) {
      FakeOutcome o;
      o.duration_ms = 1000;
      return o;
    });
  }
  void StartController(ComputeBackend& backend, QuotaConfig quotas = {}, WarmPoolOptions warm = {}) {
    timers_ = std::make_unique<ManualTimerService>(clock_);
    ControllerOptions opts;
    opts.quotas = std::move(quotas);
    opts.warm_pools = warm;
    opts.threading = Threading::kManual;
    opts.artifacts_dir = "/artifacts";
    ctl_ = std::make_unique<Controller>(*store_, clock_, *timers_, catalog_, opts);
    fake_.SetSink(ctl_.get());
    ctl_->SetBackend(&backend);
    ASSERT_TRUE(ctl_->Start().ok());
  }
  // Runs queued work, delivers the fake's events and lets time pass until idle.
  void Settle(int rounds = 50) {
    for (int i = 0; i < rounds; ++i) {
      while (ctl_->RunOnce()) {
      }
      clock_.Advance(500);
      fake_.AdvanceToNow();
      while (fake_.DeliverOne(0, 0)) {
      }
      timers_->FireDue();
    }
  }
  Job CreateJob(const std::string& name, const std::string& team = "default", int priority = 0) {
    JobSpec s;
    s.name = name;
    s.team = team;
    s.priority = priority;
    s.command = {"train"};
    clock_.Advance(1);  // each job a millisecond younger than the one before
    auto j = ctl_->CreateJob(s);
    EXPECT_TRUE(j.ok());
    return *j;
  }

  FakeClock clock_;
  Catalog catalog_ = Catalog::Defaults();
  std::unique_ptr<Store> store_;
  FakeBackend fake_;
  std::unique_ptr<ManualTimerService> timers_;
  std::unique_ptr<Controller> ctl_;
};

TEST_F(ControllerTest, UnavailableLaunchesAreRetriedAndTheJobCompletes) {
  FlakyLaunches flaky(fake_, 2);
  StartController(flaky);
  Job job = CreateJob("flaky");
  Settle();
  auto got = store_->GetJob(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kCompleted) << got->failure_reason;
  EXPECT_EQ(flaky.calls(), 3);
}

TEST_F(ControllerTest, AJobWithoutCapacityWaitsPendingAndRunsWhenAnotherEnds) {
  OneJobAtATime slot(fake_);
  StartController(slot);
  slot.SetController(ctl_.get());
  fake_.SetSink(&slot);
  Job first = CreateJob("first");
  Job second = CreateJob("second");
  // Before the first ends: the second waits, Pending, with the backend's reason.
  while (ctl_->RunOnce()) {
  }
  while (ctl_->RunOnce()) {
  }
  auto waiting = store_->GetJob(second.id);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->status, JobStatus::kInProgress);
  EXPECT_EQ(waiting->secondary, SecondaryStatus::kPending);
  EXPECT_EQ(waiting->transitions.back().message, "Waiting for capacity: the job needs 1 vCPUs; 1 of 1 are in use");
  EXPECT_EQ(slot.refused(), 1);
  Settle();
  for (const Job& j : {first, second}) {
    auto got = store_->GetJob(j.id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->status, JobStatus::kCompleted) << j.spec.name << ": " << got->failure_reason;
  }
  EXPECT_EQ(slot.refused(), 1);  // retried once, when the first ended: no polling
}

TEST_F(ControllerTest, AJobOverItsTeamsQuotaWaitsPendingWithTheReasonAndStartsWhenCapacityFrees) {
  QuotaConfig q;
  q.teams["ads"].instances = 1;
  Slots slots(fake_, 10);
  StartController(slots, q);
  slots.SetController(ctl_.get());
  fake_.SetSink(&slots);
  Job a1 = CreateJob("a1", "ads");
  Job a2 = CreateJob("a2", "ads");
  Job w1 = CreateJob("w1", "web");  // another team: not held back by ads's quota
  while (ctl_->RunOnce()) {
  }
  auto waiting = store_->GetJob(a2.id);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->secondary, SecondaryStatus::kPending);
  EXPECT_EQ(waiting->transitions.back().message,
            "Waiting for team quota: team ads uses 1 of its 1 instances and this needs 1 more "
            "(quotas.teams.ads.instances)");
  EXPECT_EQ(slots.started(), (std::vector<std::string>{"a1", "w1"}));
  EXPECT_EQ(slots.refused(), 0);  // the quota held it back, not the backend
  Settle();
  for (const Job& j : {a1, a2, w1}) {
    auto got = store_->GetJob(j.id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->status, JobStatus::kCompleted) << j.spec.name << ": " << got->failure_reason;
  }
  EXPECT_EQ(slots.started(), (std::vector<std::string>{"a1", "w1", "a2"}));
  // A job that needs more at once than the team's whole quota is refused at create.
  JobSpec big;
  big.name = "a-big";
  big.team = "ads";
  big.instance_count = 2;
  big.command = {"train"};
  auto refused = ctl_->CreateJob(big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().field(), "instance.count");
  EXPECT_EQ(refused.status().message(),
            "team ads's quota allows at most 1 instances at once (quotas.teams.ads.instances): this job could never "
            "start");
  EXPECT_EQ(store_->GetJob("a-big").status().code(), Code::kNotFound);
}

TEST_F(ControllerTest, ScarceCapacityGoesToTeamsInFairShareOrderAndByPriorityWithinATeam) {
  QuotaConfig q;
  q.teams["heavy"].weight = 1;
  Slots slots(fake_, 1);
  StartController(slots, q);
  slots.SetController(ctl_.get());
  fake_.SetSink(&slots);
  // heavy queues four jobs before light queues two; one slot.
  for (int i = 1; i <= 4; ++i) CreateJob("h" + std::to_string(i), "heavy", i == 4 ? 10 : 0);
  CreateJob("l1", "light");
  CreateJob("l2", "light");
  Settle(200);
  // First come h1; then the slot alternates between the teams (light's share is
  // lower whenever heavy runs), and heavy's urgent h4 goes before its older ones.
  EXPECT_EQ(slots.started(), (std::vector<std::string>{"h1", "l1", "h4", "l2", "h2", "h3"}));
  // Each refusal parks the queue until an instance ends: no polling of the backend.
  EXPECT_LE(slots.refused(), 6);
}

TEST_F(ControllerTest, AfterKill9QueuedJobsOfSeveralTeamsAreNotLostNorStartedTwiceAndKeepTheirOrder) {
  Slots slots(fake_, 1);
  fake_.SetScript([](const LaunchRequest&) {
    FakeOutcome o;
    o.duration_ms = 2000;
    return o;
  });
  StartController(slots);
  slots.SetController(ctl_.get());
  fake_.SetSink(&slots);
  std::vector<Job> jobs;
  for (const char* n : {"a1", "a2", "a3"}) jobs.push_back(CreateJob(n, "ads"));
  for (const char* n : {"b1", "b2"}) jobs.push_back(CreateJob(n, "bio"));
  for (const char* n : {"c1"}) jobs.push_back(CreateJob(n, "cv"));
  while (ctl_->RunOnce()) {
  }
  ASSERT_EQ(slots.started(), (std::vector<std::string>{"a1"}));
  ctl_.reset();  // kill -9 with five jobs queued in memory
  slots.ForgetRunning();
  StartController(slots);
  slots.SetController(ctl_.get());
  fake_.SetSink(&slots);
  Settle(200);
  for (const Job& j : jobs) {
    auto got = store_->GetJob(j.id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->status, JobStatus::kCompleted) << j.spec.name << ": " << got->failure_reason;
  }
  for (const auto& [id, inst] : fake_.instances()) EXPECT_EQ(inst.starts, 1) << id;
  // ads ran a1 before the crash and is charged for it again after: the other
  // teams go first, then ads's next.
  EXPECT_EQ(slots.started(), (std::vector<std::string>{"a1", "b1", "c1", "a2", "b2", "a3"}));
}

TEST_F(ControllerTest, AJobStoppedWhileWaitingForCapacityStopsWithoutLaunching) {
  OneJobAtATime slot(fake_);
  fake_.SetScript([](const LaunchRequest&) {
    FakeOutcome o;
    o.duration_ms = 3600 * 1000;  // holds the capacity for an hour
    return o;
  });
  StartController(slot);
  slot.SetController(ctl_.get());
  fake_.SetSink(&slot);
  Job first = CreateJob("holder");
  Job second = CreateJob("waiter");
  Settle(4);
  ASSERT_TRUE(ctl_->StopJob(second.id).ok());
  Settle(4);
  auto got = store_->GetJob(second.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kStopped) << got->failure_reason;
  EXPECT_EQ(slot.refused(), 1);
  auto holder = store_->GetJob(first.id);
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(holder->status, JobStatus::kInProgress);
}

TEST_F(ControllerTest, ALaunchThatStaysUnavailableFailsTheInstance) {
  FlakyLaunches flaky(fake_, 100);
  StartController(flaky);
  Job job = CreateJob("down");
  Settle();
  auto got = store_->GetJob(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kFailed);
  EXPECT_NE(got->failure_reason.find("LaunchFailed: injected: launch timed out"), std::string::npos)
      << got->failure_reason;
  EXPECT_EQ(flaky.calls(), 3);  // three tries, then the failure is recorded
}

TEST_F(ControllerTest, WithoutSurvivesRestartARunningInstanceIsLostOnRestart) {
  NoRestartCapability backend(fake_);
  StartController(backend);
  Job job = CreateJob("no-restart");
  while (ctl_->RunOnce()) {
  }
  auto running = store_->GetJob(job.id);
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->instances.size(), 1u);
  ASSERT_EQ(running->instances[0].state, InstanceState::kRunning);
  ctl_.reset();  // kill -9
  StartController(backend);
  while (ctl_->RunOnce()) {
  }
  auto got = store_->GetJob(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kFailed);
  EXPECT_NE(got->failure_reason.find("InstanceLost"), std::string::npos) << got->failure_reason;
}

TEST_F(ControllerTest, WithSurvivesRestartARunningInstanceIsRecovered) {
  StartController(fake_);
  Job job = CreateJob("survivor");
  while (ctl_->RunOnce()) {
  }
  ctl_.reset();  // kill -9
  StartController(fake_);
  Settle();
  auto got = store_->GetJob(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kCompleted) << got->failure_reason;
}

// --- Warm pools ---

class WarmPoolTest : public ControllerTest {
 protected:
  Job Submit(const std::string& name, int64_t keep_alive, const std::string& team = "ads",
             const std::string& type = "ml.m5.large") {
    JobSpec s;
    s.name = name;
    s.team = team;
    s.instance_type = type;
    s.keep_alive_seconds = keep_alive;
    s.command = {"train"};
    clock_.Advance(1);
    auto j = ctl_->CreateJob(s);
    EXPECT_TRUE(j.ok()) << j.status().ToString();
    return j.ok() ? *j : Job{};
  }
  Job Get(const Job& j) {
    auto got = store_->GetJob(j.id);
    EXPECT_TRUE(got.ok());
    return got.ok() ? *got : Job{};
  }
  void Drain() {
    while (ctl_->RunOnce()) {
    }
  }
  // Moves the clock forward by `ms` and runs what that makes due.
  void Wait(TimeMs ms) {
    clock_.Advance(ms);
    timers_->FireDue();
    Drain();
  }
};

TEST_F(WarmPoolTest, AMatchingJobTakesOverAnAvailablePoolAndItsCacheChainThenThePoolExpires) {
  WarmRecorder rec(fake_);
  StartController(rec);
  Job a = Submit("a", 60);
  Settle(4);  // runs 1 s, then 1 s more
  Job done = Get(a);
  ASSERT_EQ(done.status, JobStatus::kCompleted);
  EXPECT_EQ(done.warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_EQ(rec.chains_["a"], a.id);  // a job with a keep-alive starts its own chain
  EXPECT_EQ(Job{}.warm_pool.status, WarmPoolStatus::kNone);

  Job b = Submit("b", 30);  // same team and instance type; the image or code may differ
  EXPECT_EQ(b.warm_pool.reused_from, a.id);
  Settle(4);
  Job was = Get(a);
  EXPECT_EQ(was.warm_pool.status, WarmPoolStatus::kReused);
  EXPECT_EQ(was.warm_pool.reused_by_name, "b");
  EXPECT_GE(was.warm_pool.RetainedSeconds(clock_.NowMs()), 0);
  EXPECT_EQ(rec.chains_["b"], a.id);  // b sees a's cache
  Job b_done = Get(b);
  ASSERT_EQ(b_done.status, JobStatus::kCompleted);
  ASSERT_EQ(b_done.warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_TRUE(rec.deleted_.empty());

  Wait(27000);  // b's keep-alive is 30 s from its end (a second or two ago)
  EXPECT_EQ(Get(b).warm_pool.status, WarmPoolStatus::kAvailable);
  Wait(4000);
  Job expired = Get(b);
  EXPECT_EQ(expired.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_EQ(expired.warm_pool.reason, "the keep-alive period ended");
  EXPECT_EQ(rec.deleted_, std::vector<std::string>{a.id});      // the chain's cache goes with its last pool
  EXPECT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kReused);  // a stays as it was
}

TEST_F(WarmPoolTest, APoolGoesOnlyToTheSameTeamInstanceTypeAndCountAndOnlyToAJobAskingForOne) {
  WarmRecorder rec(fake_);
  StartController(rec);
  Job a = Submit("a", 600);
  Settle(4);
  ASSERT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_TRUE(Submit("other-team", 600, "web").warm_pool.reused_from.empty());
  EXPECT_TRUE(Submit("other-type", 600, "ads", "ml.m5.xlarge").warm_pool.reused_from.empty());
  EXPECT_TRUE(Submit("no-keep-alive", 0).warm_pool.reused_from.empty());
  EXPECT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_EQ(Submit("match", 600).warm_pool.reused_from, a.id);
}

TEST_F(WarmPoolTest, ConcurrentSubmissionsTakeOnePoolOnce) {
  WarmRecorder rec(fake_);
  StartController(rec);
  Job a = Submit("a", 600);
  Settle(4);
  ASSERT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  std::vector<std::thread> threads;
  std::vector<std::string> from(8);
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      JobSpec s;
      s.name = "racer" + std::to_string(i);
      s.team = "ads";
      s.keep_alive_seconds = 600;
      s.command = {"train"};
      auto j = ctl_->CreateJob(s);
      if (j.ok()) from[i] = j->warm_pool.reused_from;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(std::count(from.begin(), from.end(), a.id), 1);
  Drain();
  EXPECT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kReused);
}

TEST_F(WarmPoolTest, KeepAliveUpdatesMoveTheExpiryAndZeroTerminatesThePool) {
  WarmRecorder rec(fake_);
  StartController(rec);
  Job a = Submit("a", 60);
  Settle(4);
  ASSERT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_EQ(ctl_->UpdateKeepAlive(a.id, 999999).status().field(), "instance.keep_alive_seconds");
  auto longer = ctl_->UpdateKeepAlive(a.id, 120);
  ASSERT_TRUE(longer.ok()) << longer.status().ToString();
  Drain();
  Wait(61000);  // the old deadline's timer fires and is ignored
  EXPECT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  ASSERT_TRUE(ctl_->UpdateKeepAlive(a.id, 0).ok());
  Drain();
  Job ended = Get(a);
  EXPECT_EQ(ended.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_EQ(ended.warm_pool.reason, "the keep-alive period was set to 0");
  EXPECT_EQ(rec.deleted_, std::vector<std::string>{a.id});
  // Nothing left to keep alive.
  EXPECT_EQ(ctl_->UpdateKeepAlive(a.id, 60).status().code(), Code::kFailedPrecondition);
}

TEST_F(WarmPoolTest, AnAvailablePoolSurvivesARestartCountsAgainstItsTeamsQuotaAndExpiresAfterIt) {
  WarmRecorder rec(fake_);
  QuotaConfig q;
  q.teams["ads"].instances = 1;
  StartController(rec, q);
  Job a = Submit("a", 60);
  Settle(4);
  ASSERT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kAvailable);
  ctl_.reset();  // kill -9: the timer is gone with it
  StartController(rec, q);
  Drain();
  // The retained instance still holds the team's one instance: a job that does
  // not match waits for it.
  Job other = Submit("other", 0, "ads", "ml.m5.large");
  Drain();
  EXPECT_EQ(Get(other).secondary, SecondaryStatus::kPending) << Get(other).transitions.back().message;
  Wait(60000);
  EXPECT_EQ(Get(a).warm_pool.status, WarmPoolStatus::kTerminated);
  Settle(4);
  EXPECT_EQ(Get(other).status, JobStatus::kCompleted);
  EXPECT_EQ(rec.deleted_, std::vector<std::string>{a.id});
}

TEST_F(WarmPoolTest, PlatformFailuresAndTheTeamCapKeepNoPool) {
  WarmRecorder rec(fake_);
  WarmPoolOptions warm;
  warm.max_retained_instances_per_team = 1;
  StartController(rec, {}, warm);
  Job a = Submit("a", 60);
  Job b = Submit("b", 60, "ads", "ml.m5.xlarge");  // does not match a
  Settle(4);
  // They end at once: whichever is settled first keeps its pool.
  Job kept = Get(a), capped = Get(b);
  if (kept.warm_pool.status != WarmPoolStatus::kAvailable) std::swap(kept, capped);
  EXPECT_EQ(kept.warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_EQ(capped.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_NE(capped.warm_pool.reason.find("max_retained_instances_per_team"), std::string::npos)
      << capped.warm_pool.reason;
  fake_.SetFaults({1.0, 0, 0});  // every launch fails
  Job lost = Submit("lost", 60, "web");
  Settle(4);
  Job failed = Get(lost);
  ASSERT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_EQ(failed.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_NE(failed.warm_pool.reason.find("LaunchFailed"), std::string::npos) << failed.warm_pool.reason;
}

}  // namespace
}  // namespace kiln
