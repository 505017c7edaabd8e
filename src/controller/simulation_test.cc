// Deterministic simulation of the controller: a fake clock, the fault-injecting
// fake backend, the in-memory fake store (and, for fewer histories, SQLite), and
// controller crashes. Each history
// is a random interleaving of reconciles, event deliveries (reordered, duplicated,
// lost), clock advances, stop requests, resyncs and kilnd restarts. After each
// history the invariants must hold.
#include <gtest/gtest.h>

#include <random>

#include "compute/fake/fake_backend.h"
#include "controller/controller.h"
#include "store/memory_store.h"

namespace kiln {
namespace {

struct SimJob {
  std::string id;
  JobSpec spec;
  bool stop_requested = false;
};

struct SimResult {
  int jobs = 0;
  int crashes = 0;
  int steps = 0;
};

enum class StoreKind { kFake, kSqlite };

std::unique_ptr<Store> NewStore(StoreKind kind) {
  if (kind == StoreKind::kFake) return NewMemoryStore();
  auto store = OpenSqliteStore(":memory:");
  EXPECT_TRUE(store.ok());
  return std::move(store.value());
}

SimResult RunHistory(uint64_t seed, StoreKind kind) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };

  FakeClock clock;
  auto store = NewStore(kind);
  Catalog catalog = Catalog::Defaults();
  FakeBackend backend(clock, seed * 7919 + 1);
  FakeFaults faults;
  faults.launch_error = chance(0.3) ? 0.05 : 0;
  faults.launch_ambiguous = chance(0.5) ? 0.2 : 0;
  faults.queue_ms = chance(0.5) ? pick(100, 5000) : 0;  // a queueing backend (Slurm)
  backend.SetFaults(faults);
  std::map<std::string, int> fail_pct;  // job name -> probability an instance fails
  backend.SetScript([&](const LaunchRequest& r) {
    FakeOutcome o;
    o.duration_ms = pick(10, 3000);
    int p = fail_pct[r.spec.name];
    if (pick(1, 100) <= p) {
      int kind = pick(0, 2);
      o.exit_code = kind == 0 ? 1 : 137;
      o.signal = kind == 0 ? 0 : 9;
      o.oom = kind == 2;
    }
    return o;
  });
  const double dup = chance(0.5) ? 0.3 : 0;
  const double drop = chance(0.3) ? 0.1 : 0;

  auto timers = std::make_unique<ManualTimerService>(clock);
  ControllerOptions opts;
  opts.threading = Threading::kManual;
  opts.artifacts_dir = "/artifacts";
  // Half the histories run under team quotas: launches wait their turn, and a
  // charge that leaks (never released) leaves a job stuck, which the
  // invariants catch.
  const bool quotas = chance(0.5);
  if (quotas) {
    opts.quotas.defaults.instances = pick(1, 3);
    opts.quotas.teams["t1"].weight = 2;
  }
  auto ctl = std::make_unique<Controller>(*store, clock, *timers, catalog, opts);
  backend.SetSink(ctl.get());
  ctl->SetBackend(&backend);
  EXPECT_TRUE(ctl->Start().ok());

  std::vector<SimJob> jobs;
  int njobs = pick(1, 6);
  for (int i = 0; i < njobs; ++i) {
    JobSpec s;
    s.name = "job-" + std::to_string(i);
    s.command = {"train"};
    // Within the team quota (a job past it is refused at create, see controller_test).
    s.instance_count = pick(1, quotas ? opts.quotas.defaults.instances : 3);
    s.retry_attempts = pick(0, 2);
    s.max_runtime_seconds = pick(1, 10);
    s.stop_grace_seconds = pick(0, 2);
    s.team = "t" + std::to_string(pick(0, 2));
    s.priority = pick(-1, 1);
    fail_pct[s.name] = pick(0, 1) ? 0 : pick(10, 100);
    auto j = ctl->CreateJob(s);
    EXPECT_TRUE(j.ok());
    jobs.push_back({j->id, s});
  }
  // A duplicate name is refused and creates nothing.
  EXPECT_EQ(ctl->CreateJob(jobs[0].spec).status().code(), Code::kAlreadyExists);

  SimResult res;
  res.jobs = njobs;
  auto all_terminal = [&] {
    for (auto& j : jobs)
      if (!IsTerminal(store->GetJob(j.id)->status)) return false;
    return true;
  };
  int idle_rounds = 0;
  for (res.steps = 0; res.steps < 20000; ++res.steps) {
    int what = pick(0, 99);
    if (what < 40) {
      ctl->RunOnce();
    } else if (what < 65) {
      backend.DeliverOne(dup, drop);
    } else if (what < 85) {
      clock.Advance(pick(1, 700));
      backend.AdvanceToNow();
      timers->FireDue();
    } else if (what < 88) {
      auto& j = jobs[pick(0, njobs - 1)];
      j.stop_requested = true;
      EXPECT_TRUE(ctl->StopJob(j.id).ok());
    } else if (what < 92) {
      ctl->Resync();
    } else if (what < 94) {
      // kill -9: the controller and its in-memory timers and queue vanish; the store
      // and the backend's instances survive.
      ctl.reset();
      timers = std::make_unique<ManualTimerService>(clock);
      ctl = std::make_unique<Controller>(*store, clock, *timers, catalog, opts);
      backend.SetSink(ctl.get());
      ctl->SetBackend(&backend);
      EXPECT_TRUE(ctl->Start().ok());
      res.crashes++;
    }
    // Checked every 8th step: reading every job back costs more than a step.
    if (res.steps % 8 == 0 && all_terminal() && !backend.AnyRunning()) break;
    // Drain: when nothing is queued, let time pass and the safety net run.
    if (!ctl->RunOnce()) {
      if (++idle_rounds % 50 == 0) {
        ctl->Resync();
        clock.Advance(1000);
        backend.AdvanceToNow();
        timers->FireDue();
      }
    }
  }
  // Deliver whatever is left, without loss, and settle.
  for (int i = 0; i < 10000 && (backend.DeliverOne(0, 0) || ctl->RunOnce()); ++i) {
  }

  // Invariants.
  for (auto& sj : jobs) {
    auto job = store->GetJob(sj.id);
    EXPECT_TRUE(job.ok());
    EXPECT_TRUE(IsTerminal(job->status)) << "seed " << seed << " job " << sj.id << " stuck in " << ToString(job->status)
                                         << "/" << ToString(job->secondary);
    EXPECT_LE(job->attempt, sj.spec.retry_attempts + 1) << "seed " << seed;
    // A late or repeated "waiting in the backend's queue" never sends an ended job back to Pending.
    EXPECT_NE(job->secondary, SecondaryStatus::kPending) << "seed " << seed << " job " << sj.id;
    for (const auto& in : job->instances) {
      auto it = backend.instances().find(in.id);
      if (it == backend.instances().end()) {
        // Never started: the record must say the launch failed.
        EXPECT_EQ(in.state, InstanceState::kExited) << "seed " << seed;
        EXPECT_NE(in.failure.find("LaunchFailed"), std::string::npos) << "seed " << seed << " " << in.failure;
        continue;
      }
      EXPECT_LE(it->second.starts, 1) << "seed " << seed << ": launched twice";
      EXPECT_TRUE(it->second.exited) << "seed " << seed << ": orphan instance " << in.id;
      EXPECT_EQ(in.state, InstanceState::kExited) << "seed " << seed;
      EXPECT_EQ(in.exit_code, it->second.outcome.exit_code)
          << "seed " << seed << " " << in.id << " " << in.failure << " state " << ToString(job->status);
    }
    auto current = [&] {
      std::vector<const Instance*> v;
      for (auto& in : job->instances)
        if (in.attempt == job->attempt) v.push_back(&in);
      return v;
    }();
    EXPECT_EQ(static_cast<int>(current.size()), sj.spec.instance_count);
    bool any_failed = false;
    for (auto* in : current) any_failed |= in->exit_code != 0;
    switch (job->status) {
      case JobStatus::kCompleted:
        EXPECT_FALSE(any_failed) << "seed " << seed;
        EXPECT_EQ(job->exit_code, 0);
        EXPECT_FALSE(job->model_artifact.empty());
        break;
      case JobStatus::kFailed:
        EXPECT_TRUE(any_failed) << "seed " << seed;
        EXPECT_EQ(job->attempt, sj.spec.retry_attempts + 1) << "seed " << seed;
        EXPECT_FALSE(job->failure_reason.empty());
        break;
      case JobStatus::kStopped: {
        bool timed_out = clock.NowMs() >= job->created_at + sj.spec.max_runtime_seconds * 1000;
        EXPECT_TRUE(sj.stop_requested || timed_out) << "seed " << seed;
        if (job->secondary == SecondaryStatus::kMaxRuntimeExceeded) {
          EXPECT_TRUE(timed_out);
        }
        break;
      }
      default:
        break;
    }
    // The event log is a complete history: folding it from scratch gives the same job.
    auto events = store->JobEventsAfter(sj.id, 0, 100000);
    EXPECT_TRUE(events.ok());
    Job replay;
    replay.id = job->id;
    replay.spec = job->spec;
    replay.created_at = job->created_at;
    replay.output_dir = job->output_dir;
    for (const auto& e : *events) {
      Transition(replay, e);
      replay.last_job_seq = e.job_seq;
    }
    EXPECT_EQ(ToJson(replay).dump(), ToJson(*job).dump()) << "seed " << seed << ": replay differs";
  }
  return res;
}

void RunHistories(StoreKind kind, const char* count_env, int default_count) {
  const char* env = getenv(count_env);
  int n = env ? atoi(env) : default_count;
  uint64_t base = getenv("KILN_SIM_SEED") ? strtoull(getenv("KILN_SIM_SEED"), nullptr, 10) : 1;
  int crashes = 0, jobs = 0;
  for (int i = 0; i < n; ++i) {
    auto r = RunHistory(base + i, kind);
    crashes += r.crashes;
    jobs += r.jobs;
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "first failing seed: " << base + i;
      break;
    }
  }
  EXPECT_GT(crashes, n / 4);  // the harness really exercises restarts
  printf("histories=%d jobs=%d controller crashes=%d\n", n, jobs, crashes);
}

// The controller against the fake store: many histories (KILN_SIM_HISTORIES).
TEST(Simulation, ThousandsOfRandomHistoriesKeepInvariants) {
  RunHistories(StoreKind::kFake, "KILN_SIM_HISTORIES", 5000);
}

// The same against SQLite, fewer: the real store's transactions under the same
// crashes (KILN_SIM_SQLITE_HISTORIES).
TEST(Simulation, RandomHistoriesOnSqliteKeepInvariants) {
  RunHistories(StoreKind::kSqlite, "KILN_SIM_SQLITE_HISTORIES", 300);
}

TEST(Requeue, BackoffDoublesToTheCapAndErrorsAreClassified) {
  EXPECT_EQ(RequeueDelayMs(1), kRequeueBaseMs);
  EXPECT_EQ(RequeueDelayMs(2), 2 * kRequeueBaseMs);
  EXPECT_EQ(RequeueDelayMs(4), 8 * kRequeueBaseMs);
  EXPECT_EQ(RequeueDelayMs(100), kRequeueMaxMs);
  EXPECT_TRUE(IsRetryable(Code::kUnavailable));
  EXPECT_TRUE(IsRetryable(Code::kInternal));
  EXPECT_FALSE(IsRetryable(Code::kNotFound));
  EXPECT_FALSE(IsRetryable(Code::kDataLoss));
}

}  // namespace
}  // namespace kiln
