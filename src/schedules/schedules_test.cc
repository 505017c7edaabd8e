#include <gtest/gtest.h>

#include "common/ids.h"
#include "schedules/cron.h"
#include "schedules/scheduler.h"
#include "store/memory_store.h"

namespace kiln::schedules {
namespace {

using nlohmann::json;

constexpr TimeMs kMin = 60 * 1000;

// 2026-12-07T10:07:30Z, a Monday.
constexpr TimeMs kMonday = 1796638050000;

std::string At(TimeMs t) {
  return FormatTime(t);
}

TEST(Cron, NextSlots) {
  auto next = [](const std::string& expr, TimeMs after) {
    auto c = Cron::Parse(expr);
    EXPECT_TRUE(c.ok()) << expr << ": " << c.status().ToString();
    return c.ok() ? At(c->Next(after)) : std::string();
  };
  EXPECT_EQ(At(kMonday), "2026-12-07T10:07:30.000Z");
  EXPECT_EQ(next("*/15 * * * *", kMonday), "2026-12-07T10:15:00.000Z");
  EXPECT_EQ(next("0 0 * * *", kMonday), "2026-12-08T00:00:00.000Z");
  EXPECT_EQ(next("@daily", kMonday), "2026-12-08T00:00:00.000Z");
  EXPECT_EQ(next("@hourly", kMonday), "2026-12-07T11:00:00.000Z");
  EXPECT_EQ(next("30 9 * * sat,sun", kMonday), "2026-12-12T09:30:00.000Z");
  EXPECT_EQ(next("0 12 * * 7", kMonday), "2026-12-13T12:00:00.000Z");  // 7 is Sunday
  EXPECT_EQ(next("0 0 1 jan *", kMonday), "2027-01-01T00:00:00.000Z");
  EXPECT_EQ(next("5-10/5 10 * * *", kMonday), "2026-12-07T10:10:00.000Z");
  // Both day fields restricted: either matches (the 10th, or a Tuesday).
  EXPECT_EQ(next("0 0 10 * tue", kMonday), "2026-12-08T00:00:00.000Z");
  EXPECT_EQ(next("0 0 29 2 *", kMonday), "2028-02-29T00:00:00.000Z");
  EXPECT_EQ(next("@every 90s", kMonday), "2026-12-07T10:09:00.000Z");  // multiples of 90 s since the epoch
  EXPECT_EQ(next("@every 15m", kMonday), "2026-12-07T10:15:00.000Z");
  auto never = Cron::Parse("0 0 31 2 *");
  ASSERT_TRUE(never.ok());
  EXPECT_EQ(never->Next(kMonday), 0);
}

TEST(Cron, BadExpressionsSayWhatIsWrong) {
  for (const auto& [expr, want] : std::vector<std::pair<std::string, std::string>>{
           {"* * * *", "five fields"},
           {"61 * * * *", "minute: '61' is out of range 0-59"},
           {"*/0 * * * *", "step '0'"},
           {"10-5 * * * *", "runs backwards"},
           {"* * * foo *", "month: 'foo'"},
           {"* 1-2-3 * * *", "not a range"},
           {"@every 0s", "1s..31 days"},
           {"@every 32d", "unit"},
           {"@every 745h", "1s..31 days"},
           {"@sometimes", "unknown macro"},
           {"", "five fields"},
           {std::string(300, '*'), "longer than 256"},
       }) {
    auto c = Cron::Parse(expr);
    ASSERT_FALSE(c.ok()) << expr;
    EXPECT_EQ(c.status().field(), "cron") << expr;
    EXPECT_NE(c.status().message().find(want), std::string::npos) << expr << ": " << c.status().message();
  }
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : store_(NewMemoryStore()) { clock_.Set(kMonday); }

  void StartScheduler() {
    timers_ = std::make_unique<ManualTimerService>(clock_);
    Options o;
    o.submit = [this](const std::string& body, const Principal& who) -> Result<Job> {
      ++submits_;
      auto j = json::parse(body);
      Job job;
      job.id = NewId("j");
      job.spec.name = j["name"];
      job.spec.team = who.team;
      job.spec.command = {"train"};
      job.created_at = clock_.NowMs();
      Event created;
      created.type = EventType::kJobCreated;
      created.time = job.created_at;
      KILN_RETURN_IF_ERROR(store_->CreateJob(job, created));
      return job;
    };
    o.stop = [this](const std::string& id) -> Result<Job> {
      stopped_.push_back(id);
      Finish(id, Notify::kNo);  // the controller tells the scheduler later, from its own thread
      return store_->GetJob(id);
    };
    o.validate = [](const json& job) {
      return job.contains("command") ? Status::Ok() : InvalidArgument("command", "required");
    };
    o.prewarm = [this](const json& job, TimeMs until_ms, const std::vector<std::string>& preload) {
      prewarms_.push_back({clock_.NowMs(), until_ms, job, preload});
    };
    sched_ = std::make_unique<Scheduler>(*store_, clock_, *timers_, o);
    ASSERT_TRUE(sched_->Start().ok());
  }
  void Create(const std::string& overlap, const std::string& cron = "@every 60s") {
    auto r = sched_->Create(
        {{"name", "retrain"}, {"cron", cron}, {"overlap", overlap}, {"job", {{"command", {"train.py"}}}}}, owner_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // Lets `ms` pass and runs what is due.
  void Pass(TimeMs ms) {
    clock_.Advance(ms);
    while (timers_->FireDue() > 0) {
    }
  }
  enum class Notify { kYes, kNo };
  void Finish(const std::string& id, Notify notify = Notify::kYes) {
    Job j = *store_->GetJob(id);
    auto un = store_->UnappliedEvents(id);
    j.status = JobStatus::kCompleted;
    ASSERT_TRUE(store_->CommitTransition(j, *un).ok());
    if (notify == Notify::kYes) sched_->JobChanged(id);
  }
  State StateNow() { return StateFromJson(json::parse(store_->GetSchedule("retrain")->state)); }
  std::vector<std::string> Outcomes() {
    std::vector<std::string> out;
    for (const auto& r : StateNow().history) out.push_back(r.outcome);
    return out;
  }

  FakeClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ManualTimerService> timers_;
  std::unique_ptr<Scheduler> sched_;
  Principal owner_{"t-1", "ana", "ads", Role::kMember, Credential::kApiToken};
  int submits_ = 0;
  std::vector<std::string> stopped_;
  struct Prewarm {
    TimeMs at, until;
    json job;
    std::vector<std::string> preload;
  };
  std::vector<Prewarm> prewarms_;
};

TEST_F(SchedulerTest, EachSlotIsPrewarmedItsLeadTimeAhead) {
  StartScheduler();
  auto r = sched_->Create({{"name", "retrain"},
                           {"cron", "@every 60s"},
                           {"job", {{"command", {"python3", "train.py"}}}},
                           {"prewarm", {{"seconds", 20}, {"preload", {"sklearn.ensemble"}}}}},
                          owner_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const TimeMs slot = StateNow().next_slot;
  Pass(slot - clock_.NowMs() - 20001);
  EXPECT_TRUE(prewarms_.empty());  // not yet
  Pass(1);
  ASSERT_EQ(prewarms_.size(), 1u);
  EXPECT_EQ(prewarms_[0].at, slot - 20000);
  EXPECT_EQ(prewarms_[0].until, slot + kPrewarmHoldMs);
  EXPECT_EQ(prewarms_[0].job["command"], json({"python3", "train.py"}));
  EXPECT_EQ(prewarms_[0].job["team"], "ads");
  EXPECT_EQ(prewarms_[0].preload, std::vector<std::string>{"sklearn.ensemble"});
  Pass(20000);  // the slot runs; the next one is warmed 20 s ahead of it
  EXPECT_EQ(submits_, 1);
  Finish(StateNow().last_job_id);
  Pass(kMin - 20000);
  ASSERT_EQ(prewarms_.size(), 2u);
  EXPECT_EQ(prewarms_[1].until, slot + kMin + kPrewarmHoldMs);
  ASSERT_TRUE(sched_->Delete("retrain").ok());
  Pass(10 * kMin);
  EXPECT_EQ(prewarms_.size(), 2u);  // a deleted schedule warms nothing
}

TEST_F(SchedulerTest, BadPrewarmSettingsNameTheField) {
  StartScheduler();
  auto with = [&](json prewarm) {
    return sched_
        ->Create({{"name", "p"}, {"cron", "@hourly"}, {"job", {{"command", {"x"}}}}, {"prewarm", std::move(prewarm)}},
                 owner_)
        .status();
  };
  EXPECT_EQ(with(json::object()).field(), "prewarm.seconds");
  EXPECT_EQ(with({{"seconds", 0}}).field(), "prewarm.seconds");
  EXPECT_EQ(with({{"seconds", 3601}}).field(), "prewarm.seconds");
  EXPECT_EQ(with({{"seconds", 10}, {"preload", {"os; import evil"}}}).field(), "prewarm.preload");
  EXPECT_EQ(with({{"seconds", 10}, {"colour", 1}}).field(), "prewarm.colour");
  EXPECT_EQ(with("soon").field(), "prewarm");
  EXPECT_TRUE(store_->ListSchedules("")->empty());
}

TEST_F(SchedulerTest, EachSlotRunsOnceUnderItsOwnName) {
  StartScheduler();
  Create("skip");
  Pass(30000);  // 10:08:00, the first slot
  ASSERT_EQ(submits_, 1);
  State s = StateNow();
  ASSERT_EQ(s.history.size(), 1u);
  EXPECT_EQ(s.history[0].job_name, "retrain-20261207100800");
  EXPECT_EQ(store_->GetJob("retrain-20261207100800")->spec.team, "ads");
  Finish(s.last_job_id);
  Pass(kMin);
  EXPECT_EQ(submits_, 2);
  EXPECT_EQ(StateNow().history.back().job_name, "retrain-20261207100900");
  EXPECT_EQ(Outcomes(), (std::vector<std::string>{"Started", "Started"}));
}

TEST_F(SchedulerTest, OverlapSkipRecordsTheSlotAndRunsNothing) {
  StartScheduler();
  Create("skip");
  Pass(30000);
  Pass(kMin);  // the first run is still in progress
  EXPECT_EQ(submits_, 1);
  EXPECT_EQ(Outcomes(), (std::vector<std::string>{"Started", "Skipped"}));
  EXPECT_NE(StateNow().history[1].message.find("still InProgress"), std::string::npos);
}

TEST_F(SchedulerTest, OverlapQueueRunsTheSlotWhenThePreviousRunEnds) {
  StartScheduler();
  Create("queue");
  Pass(30000);
  const std::string first = StateNow().last_job_id;
  Pass(kMin + 10000);  // 10:09:10: the 10:09 slot waits
  EXPECT_EQ(submits_, 1);
  EXPECT_TRUE(StateNow().waiting);
  Finish(first);
  Pass(0);
  ASSERT_EQ(submits_, 2);
  State s = StateNow();
  EXPECT_FALSE(s.waiting);
  EXPECT_EQ(s.history.back().job_name, "retrain-20261207100900");  // the slot it waited for
  EXPECT_EQ(s.history.back().message, "after the previous run ended (overlap: queue)");
}

TEST_F(SchedulerTest, OverlapReplaceStopsThePreviousRun) {
  StartScheduler();
  Create("replace");
  Pass(30000);
  const std::string first = StateNow().last_job_id;
  Pass(kMin);
  EXPECT_EQ(stopped_, std::vector<std::string>{first});
  EXPECT_EQ(submits_, 2);
  EXPECT_NE(StateNow().history.back().message.find("overlap: replace"), std::string::npos);
}

TEST_F(SchedulerTest, ARestartNeitherRepeatsNorSilentlySkipsSlots) {
  StartScheduler();
  Create("skip");
  Pass(30000);
  Finish(StateNow().last_job_id);
  // kilnd stops for five minutes and a bit.
  sched_.reset();
  timers_.reset();
  clock_.Advance(5 * kMin + 20000);
  StartScheduler();
  Pass(0);
  EXPECT_EQ(submits_, 2);  // the latest slot only
  State s = StateNow();
  ASSERT_EQ(s.history.size(), 3u);
  EXPECT_EQ(s.history[1].outcome, "Missed");
  EXPECT_NE(s.history[1].message.find("4 slot(s) from 2026-12-07T10:09:00.000Z"), std::string::npos)
      << s.history[1].message;
  EXPECT_EQ(s.history[2].job_name, "retrain-20261207101300");
  // A crash after a slot's job was created and before the slot was recorded:
  // the restarted scheduler finds the job and does not submit it again.
  Finish(s.last_job_id);
  const int before = submits_;
  auto saved = store_->GetSchedule("retrain");
  Pass(kMin);  // 10:14 runs ...
  ASSERT_EQ(submits_, before + 1);
  ASSERT_TRUE(store_->UpdateScheduleState("retrain", saved->version + 1, saved->state).ok());  // ... unrecorded
  sched_.reset();
  StartScheduler();
  Pass(0);
  EXPECT_EQ(submits_, before + 1);
  EXPECT_EQ(StateNow().history.back().message, "recovered after a restart");
  EXPECT_EQ(StateNow().history.back().job_name, "retrain-20261207101400");
}

TEST_F(SchedulerTest, BadSchedulesAreRefusedWithTheFieldAndStoreNothing) {
  StartScheduler();
  json good = {{"name", "ok"}, {"cron", "@hourly"}, {"job", {{"command", {"x"}}}}};
  auto with = [&](const std::string& key, json value) {
    json b = good;
    b[key] = std::move(value);
    return sched_->Create(b, owner_).status();
  };
  EXPECT_EQ(with("name", "-bad").field(), "name");
  EXPECT_EQ(with("name", std::string(41, 'a')).field(), "name");
  EXPECT_EQ(with("cron", "* * *").field(), "cron");
  EXPECT_EQ(with("overlap", "sometimes").field(), "overlap");
  EXPECT_EQ(with("colour", "red").field(), "colour");
  EXPECT_EQ(with("job", {{"command", {"x"}}, {"name", "mine"}}).field(), "job.name");
  EXPECT_EQ(with("job", json::object()).field(), "job.command");  // the spec's own validation
  Status foreign = with("job", {{"command", {"x"}}, {"team", "web"}});
  EXPECT_EQ(foreign.code(), Code::kPermissionDenied);
  EXPECT_EQ(foreign.field(), "job.team");
  EXPECT_TRUE(store_->ListSchedules("")->empty());
  ASSERT_TRUE(sched_->Create(good, owner_).ok());
  EXPECT_EQ(sched_->Create(good, owner_).status().code(), Code::kAlreadyExists);
}

}  // namespace
}  // namespace kiln::schedules
