#include "jobs/state_machine.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {
using nlohmann::json;

Job NewJob(int count = 1, int retries = 0) {
  Job j;
  j.id = "j-1";
  j.spec.name = "t";
  j.spec.command = {"true"};
  j.spec.instance_count = count;
  j.spec.retry_attempts = retries;
  j.spec.max_runtime_seconds = 100;
  j.created_at = 1000;
  return j;
}

Event Ev(EventType t, json p = json::object(), TimeMs time = 1000) {
  Event e;
  e.job_id = "j-1";
  e.type = t;
  e.payload = std::move(p);
  e.time = time;
  return e;
}

std::string Iid(int attempt, int idx) {
  return InstanceId("j-1", attempt, idx);
}

TEST(StateMachine, HappyPath) {
  Job j = NewJob();
  auto r = Transition(j, Ev(EventType::kJobCreated));
  ASSERT_EQ(r.actions.size(), 1u);
  EXPECT_EQ(r.actions[0].type, ActionType::kLaunch);
  EXPECT_EQ(j.secondary, SecondaryStatus::kStarting);
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "h"}}, 1002));
  Transition(j, Ev(EventType::kPhaseReported, {{"instance_id", Iid(1, 0)}, {"phase", "Training"}}, 1005));
  EXPECT_EQ(j.secondary, SecondaryStatus::kTraining);
  // A late Downloading report does not move the phase backwards.
  Transition(j, Ev(EventType::kPhaseReported, {{"instance_id", Iid(1, 0)}, {"phase", "Downloading"}}, 1006));
  EXPECT_EQ(j.secondary, SecondaryStatus::kTraining);
  r = Transition(j, Ev(EventType::kInstanceExited,
                       {{"instance_id", Iid(1, 0)}, {"exit_code", 0}, {"model_artifact", "/a/model.tar.gz"}}, 1100));
  EXPECT_EQ(j.status, JobStatus::kCompleted);
  EXPECT_EQ(j.secondary, SecondaryStatus::kCompleted);
  EXPECT_EQ(j.model_artifact, "/a/model.tar.gz");
  EXPECT_EQ(j.ended_at, 1100);
  ASSERT_EQ(r.actions.size(), 1u);
  EXPECT_EQ(r.actions[0].type, ActionType::kCleanup);
  // Duplicate exit: no change, no actions.
  auto dup = Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 3}}, 1200));
  EXPECT_FALSE(dup.applied);
  EXPECT_EQ(j.status, JobStatus::kCompleted);
  EXPECT_EQ(j.ended_at, 1100);
}

// A backend with a queue of its own (Slurm): Pending with its reason from the
// submit (before and after InstanceLaunched) until the instance first reports;
// a newer reason replaces the message; a late one changes nothing.
TEST(StateMachine, WaitingInTheBackendsQueue) {
  Job j = NewJob();
  Transition(j, Ev(EventType::kJobCreated));
  auto waiting = [&](const std::string& reason, TimeMs t) {
    return Transition(j, Ev(EventType::kInstanceWaiting, {{"instance_id", Iid(1, 0)}, {"reason", reason}}, t));
  };
  waiting("Slurm (pool p, job 7)", 1001);
  EXPECT_EQ(j.secondary, SecondaryStatus::kPending);
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "h"}}, 1002));
  EXPECT_EQ(j.secondary, SecondaryStatus::kPending) << "launched into Slurm's queue is still waiting";
  EXPECT_EQ(j.transitions.back().message, "Queued in Slurm (pool p, job 7)");
  waiting("Slurm (pool p, job 7): Resources", 3000);
  EXPECT_EQ(j.transitions.back().message, "Queued in Slurm (pool p, job 7): Resources");
  EXPECT_EQ(j.transitions.back().start, 1001) << "one Pending stretch, its reason updated";
  Transition(j, Ev(EventType::kPhaseReported, {{"instance_id", Iid(1, 0)}, {"phase", "Downloading"}}, 5000));
  EXPECT_EQ(j.secondary, SecondaryStatus::kDownloading);
  EXPECT_FALSE(waiting("Slurm (pool p, job 7): Priority", 5001).applied);
  EXPECT_EQ(j.secondary, SecondaryStatus::kDownloading);
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 0}}, 6000));
  EXPECT_EQ(j.Timings()["backend_queue"], 3999);
  EXPECT_EQ(j.Timings()["start"], 3998);
  EXPECT_FALSE(waiting("Slurm (pool p, job 7): Resources again", 7000).applied);
  EXPECT_EQ(j.secondary, SecondaryStatus::kCompleted);
}

// The first instance's Training report says how it started, and its launch report
// how long acquiring it took; the describe keeps both (a retry forgets them).
TEST(StateMachine, HowTheInstanceStartedAndHowLongAcquiringItTook) {
  Job j = NewJob(1, 1);
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j,
             Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "h"}, {"acquire_ms", 3}}, 1400));
  Transition(j,
             Ev(EventType::kPhaseReported,
                {{"instance_id", Iid(1, 0)}, {"phase", "Training"}, {"start", "warm"}, {"start_note", "why"}}, 1410));
  EXPECT_EQ(j.start, "warm");
  EXPECT_EQ(j.start_note, "why");
  EXPECT_EQ(j.Timings()["acquire"], 3);
  const json doc = ToJson(j);
  EXPECT_EQ(doc["start"], "warm");
  auto back = JobFromJson(doc);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->start_note, "why");
  EXPECT_EQ(back->Timings()["acquire"], 3);
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 1}}, 1500));
  EXPECT_EQ(j.attempt, 2);
  EXPECT_EQ(j.start, "");
  EXPECT_FALSE(ToJson(j).contains("start"));
  EXPECT_FALSE(j.Timings().contains("acquire"));
  // A report without the field (an older kilnd's event) and a negative one say nothing.
  Transition(
      j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(2, 0)}, {"handle", "h2"}, {"acquire_ms", -5}}, 1530));
  EXPECT_FALSE(j.Timings().contains("acquire"));
}

struct ExitCase {
  json payload;
  JobStatus status;
  std::string reason_prefix;
};

TEST(StateMachine, FailureReasons) {
  std::vector<ExitCase> cases = {
      {{{"exit_code", 3}}, JobStatus::kFailed, "AlgorithmError: exit code 3"},
      {{{"exit_code", 137}, {"signal", 9}, {"oom", true}}, JobStatus::kFailed, "OutOfMemory"},
      {{{"exit_code", 143}, {"signal", 15}}, JobStatus::kFailed, "AlgorithmError: killed by SIGTERM"},
      {{{"exit_code", 1}, {"failure", "ValueError: bad data"}}, JobStatus::kFailed, "ValueError: bad data"},
      {{{"exit_code", 127}, {"failure", "command not found: nope"}}, JobStatus::kFailed, "command not found"},
  };
  for (auto& c : cases) {
    Job j = NewJob();
    Transition(j, Ev(EventType::kJobCreated));
    Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}}));
    json p = c.payload;
    p["instance_id"] = Iid(1, 0);
    Transition(j, Ev(EventType::kInstanceExited, p, 2000));
    EXPECT_EQ(j.status, c.status);
    EXPECT_EQ(j.failure_reason.rfind(c.reason_prefix, 0), 0u) << j.failure_reason;
    EXPECT_TRUE(j.exit_code.has_value());
  }
}

TEST(StateMachine, RetriesThenFails) {
  Job j = NewJob(1, 1);
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}}));
  auto r = Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 1}}, 1500));
  EXPECT_EQ(j.status, JobStatus::kInProgress);
  EXPECT_EQ(j.secondary, SecondaryStatus::kRestarting);
  EXPECT_EQ(j.attempt, 2);
  ASSERT_EQ(r.actions.size(), 2u);  // cleanup old, launch new
  EXPECT_EQ(r.actions[1].type, ActionType::kLaunch);
  EXPECT_EQ(r.actions[1].instance_id, Iid(2, 0));
  // A stale event for attempt 1 changes nothing.
  EXPECT_FALSE(Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}})).applied);
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(2, 0)}}));
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(2, 0)}, {"exit_code", 2}}, 1600));
  EXPECT_EQ(j.status, JobStatus::kFailed);
  EXPECT_EQ(j.exit_code, 2);
}

TEST(StateMachine, StopWhileLaunchingStopsOnceLaunched) {
  Job j = NewJob();
  Transition(j, Ev(EventType::kJobCreated));
  auto r = Transition(j, Ev(EventType::kStopRequested));
  EXPECT_EQ(j.status, JobStatus::kStopping);
  EXPECT_TRUE(r.actions.empty());
  r = Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}}));
  ASSERT_EQ(r.actions.size(), 1u);
  EXPECT_EQ(r.actions[0].type, ActionType::kStop);
  EXPECT_EQ(r.actions[0].grace_ms, 120000);
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 143}, {"signal", 15}}));
  EXPECT_EQ(j.status, JobStatus::kStopped);
  EXPECT_EQ(j.secondary, SecondaryStatus::kStopped);
}

TEST(StateMachine, MaxRuntime) {
  Job j = NewJob();
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}}));
  auto timers = PendingTimers(j);
  ASSERT_EQ(timers.size(), 1u);
  EXPECT_EQ(timers[0].at, 1000 + 100 * 1000);
  EXPECT_FALSE(Transition(j, Ev(EventType::kMaxRuntimeTimer, {}, 5000)).applied);
  auto r = Transition(j, Ev(EventType::kMaxRuntimeTimer, {}, 101000));
  EXPECT_EQ(j.status, JobStatus::kStopping);
  ASSERT_EQ(r.actions.size(), 1u);
  Transition(j,
             Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 143}, {"signal", 15}}, 101100));
  EXPECT_EQ(j.status, JobStatus::kStopped);
  EXPECT_EQ(j.secondary, SecondaryStatus::kMaxRuntimeExceeded);
  EXPECT_TRUE(PendingTimers(j).empty());
}

TEST(StateMachine, MultiInstanceFailureStopsPeers) {
  Job j = NewJob(3);
  Transition(j, Ev(EventType::kJobCreated));
  for (int i = 0; i < 3; ++i) Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, i)}}));
  auto r = Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 1)}, {"exit_code", 5}}));
  int stops = 0;
  for (auto& a : r.actions) stops += a.type == ActionType::kStop;
  EXPECT_EQ(stops, 2);
  EXPECT_EQ(j.status, JobStatus::kInProgress);
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 143}, {"signal", 15}}, 1200));
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 2)}, {"exit_code", 143}, {"signal", 15}}, 1200));
  EXPECT_EQ(j.status, JobStatus::kFailed);
  EXPECT_NE(j.failure_reason.find("exit code 5"), std::string::npos) << j.failure_reason;
}

TEST(StateMachine, PeerFailureStopsAnInstanceThatLaunchesLate) {
  Job j = NewJob(2);
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}}));
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 1}}));
  EXPECT_EQ(j.status, JobStatus::kInProgress);
  auto r = Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 1)}}));
  ASSERT_EQ(r.actions.size(), 1u);
  EXPECT_EQ(r.actions[0].type, ActionType::kStop);
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 1)}, {"exit_code", 143}, {"signal", 15}}));
  EXPECT_EQ(j.status, JobStatus::kFailed);
  EXPECT_EQ(j.exit_code, 1);
}

TEST(StateMachine, JobJsonRoundTrip) {
  Job j = NewJob(2, 1);
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "{\"pid\":5}"}}));
  auto back = JobFromJson(ToJson(j));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ToJson(*back), ToJson(j));
}

// Warm pools: which endings keep a pool, and how it ends.
TEST(StateMachine, WarmPoolsAreKeptForTheJobsOwnEndingsOnly) {
  auto ended = [](const char* exit_or_failure, bool launched, bool stop) {
    Job j = NewJob();
    j.spec.keep_alive_seconds = 60;
    Transition(j, Ev(EventType::kJobCreated));
    EXPECT_EQ(j.warm_pool.status, WarmPoolStatus::kInUse);
    EXPECT_EQ(j.warm_pool.chain, "j-1");
    if (launched) Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "h"}}));
    if (stop) Transition(j, Ev(EventType::kStopRequested, json::object(), 1001));
    std::string what = exit_or_failure;
    if (!launched) {
      Transition(j, Ev(EventType::kInstanceLaunchFailed, {{"instance_id", Iid(1, 0)}, {"reason", what}}, 1002));
    } else if (what == "0" || what == "3") {
      Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", std::stoi(what)}}, 1002));
    } else {
      Transition(
          j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 1}, {"failure", what}}, 1002));
    }
    return j;
  };
  EXPECT_EQ(ended("0", true, false).warm_pool.status, WarmPoolStatus::kAvailable);          // Completed
  EXPECT_EQ(ended("3", true, false).warm_pool.status, WarmPoolStatus::kAvailable);          // its code failed
  EXPECT_EQ(ended("0", true, true).warm_pool.status, WarmPoolStatus::kAvailable);           // stopped after it ran
  EXPECT_EQ(ended("no slot", false, false).warm_pool.status, WarmPoolStatus::kTerminated);  // never ran
  Job lost = ended("InstanceLost: the node died", true, false);
  EXPECT_EQ(lost.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_NE(lost.warm_pool.reason.find("InstanceLost"), std::string::npos) << lost.warm_pool.reason;

  Job j = ended("0", true, false);
  EXPECT_EQ(j.warm_pool.available_at, 1002);
  EXPECT_EQ(j.warm_pool.ExpiresAt(), 61002);
  auto early = Transition(j, Ev(EventType::kWarmPoolEnded, {{"reason", "Expired"}}, 61001));
  EXPECT_FALSE(early.applied);
  auto expired = Transition(j, Ev(EventType::kWarmPoolEnded, {{"reason", "Expired"}}, 61002));
  EXPECT_EQ(j.warm_pool.status, WarmPoolStatus::kTerminated);
  EXPECT_EQ(j.warm_pool.RetainedSeconds(99999), 60);
  ASSERT_EQ(expired.actions.size(), 1u);
  EXPECT_EQ(expired.actions[0].type, ActionType::kDropWarmCache);
  EXPECT_EQ(expired.actions[0].instance_id, "j-1");
  // Ended pools stay ended; a claim cannot revive them.
  EXPECT_FALSE(Transition(j, Ev(EventType::kWarmPoolEnded, {{"reason", "Reused"}, {"by", "j-2"}}, 70000)).applied);
}

// A claim whose job could not be created gives the pool back to that claim only.
TEST(StateMachine, AWarmPoolReturnedByItsClaimerIsAvailableAgain) {
  Job j = NewJob();
  j.spec.keep_alive_seconds = 60;
  Transition(j, Ev(EventType::kJobCreated));
  Transition(j, Ev(EventType::kInstanceLaunched, {{"instance_id", Iid(1, 0)}, {"handle", "h"}}));
  Transition(j, Ev(EventType::kInstanceExited, {{"instance_id", Iid(1, 0)}, {"exit_code", 0}}, 1002));
  Transition(j, Ev(EventType::kWarmPoolEnded, {{"reason", "Reused"}, {"by", "j-2"}, {"by_name", "b"}}, 2000));
  EXPECT_EQ(j.warm_pool.status, WarmPoolStatus::kReused);
  EXPECT_FALSE(Transition(j, Ev(EventType::kWarmPoolReturned, {{"by", "j-3"}}, 2001)).applied);
  EXPECT_TRUE(Transition(j, Ev(EventType::kWarmPoolReturned, {{"by", "j-2"}}, 2001)).applied);
  EXPECT_EQ(j.warm_pool.status, WarmPoolStatus::kAvailable);
  EXPECT_EQ(j.warm_pool.reused_by_name, "");
}

}  // namespace
}  // namespace kiln
