// The ComputeBackend conformance suite. Every backend runs the same cases through
// a small harness that knows how to build a request for a behaviour and how to
// wait for events (the fake needs its clock driven; real backends just wait).
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>

#include "common/ids.h"
#include "compute/fake/fake_backend.h"
#include "compute/local/local_backend.h"

namespace kiln {
namespace {

enum class Behavior { kExit0, kExit3, kRunLong };

class CollectingSink : public EventSink {
 public:
  Status Post(Event e) override {
    std::lock_guard<std::mutex> l(mu_);
    events_.push_back(std::move(e));
    cv_.notify_all();
    return Status::Ok();
  }
  std::vector<Event> ExitsFor(const std::string& id) {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<Event> out;
    for (auto& e : events_)
      if (e.type == EventType::kInstanceExited && e.payload.value("instance_id", "") == id) out.push_back(e);
    return out;
  }
  bool WaitFor(const std::function<bool()>& pred, int ms) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(ms), [&] {
      l.unlock();
      bool r = pred();
      l.lock();
      return r;
    });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event> events_;
};

class Harness {
 public:
  virtual ~Harness() = default;
  virtual ComputeBackend& backend() = 0;
  virtual LaunchRequest Request(Behavior b) = 0;
  // Lets time pass until `id` has an exit event (or the deadline passes).
  virtual std::optional<Event> WaitExit(const std::string& id) = 0;
  CollectingSink sink;
};

LaunchRequest BaseRequest(std::vector<std::string> cmd) {
  LaunchRequest r;
  r.job_id = NewId("j");
  r.instance_id = r.job_id + ".1.0";
  r.spec.name = "conf";
  r.spec.command = std::move(cmd);
  r.spec.stop_grace_seconds = 1;
  r.type = InstanceType{"local.small", 1, 512, 0};
  r.image = ImageEnv{"host", ImageKind::kHost, {}, {}};
  return r;
}

class FakeHarness : public Harness {
 public:
  FakeHarness() : fake_(clock_, 42) {
    fake_.SetSink(&sink);
    fake_.SetScript([](const LaunchRequest& r) {
      FakeOutcome o;
      o.exit_code = r.spec.command[0] == "exit3" ? 3 : 0;
      o.duration_ms = r.spec.command[0] == "long" ? 1'000'000 : 100;
      return o;
    });
  }
  ComputeBackend& backend() override { return fake_; }
  LaunchRequest Request(Behavior b) override {
    return BaseRequest({b == Behavior::kExit0 ? "exit0" : b == Behavior::kExit3 ? "exit3" : "long"});
  }
  std::optional<Event> WaitExit(const std::string& id) override {
    for (int i = 0; i < 100; ++i) {
      clock_.Advance(50);
      fake_.AdvanceToNow();
      while (fake_.DeliverOne(0, 0)) {
      }
      auto e = sink.ExitsFor(id);
      if (!e.empty()) return e.front();
    }
    return std::nullopt;
  }

 private:
  FakeClock clock_;
  FakeBackend fake_;
};

class LocalHarness : public Harness {
 public:
  LocalHarness() {
    dir_ = "/tmp/kiln-conformance-" + std::to_string(getpid()) + "-" + NewId("d");
    LocalBackendOptions o;
    o.instances_dir = dir_ + "/instances";
    o.supervisor_path = std::string(KILN_BIN_DIR) + "/kiln-supervisor";
    o.entrypoint_path = std::string(KILN_BIN_DIR) + "/kiln-entrypoint";
    local_ = std::make_unique<LocalBackend>(o, sink, RealClock::Get());
    init_ = local_->Init();
  }
  ~LocalHarness() override {
    local_.reset();
    std::filesystem::remove_all(dir_);
  }
  Status init() const { return init_; }
  ComputeBackend& backend() override { return *local_; }
  LaunchRequest Request(Behavior b) override {
    auto r = BaseRequest(b == Behavior::kExit0   ? std::vector<std::string>{"/bin/true"}
                         : b == Behavior::kExit3 ? std::vector<std::string>{"/bin/sh", "-c", "exit 3"}
                                                 : std::vector<std::string>{"/bin/sleep", "600"});
    r.output_dir = dir_ + "/out/" + r.job_id;
    return r;
  }
  std::optional<Event> WaitExit(const std::string& id) override {
    sink.WaitFor([&] { return !sink.ExitsFor(id).empty(); }, 20000);
    auto e = sink.ExitsFor(id);
    if (e.empty()) return std::nullopt;
    return e.front();
  }

 private:
  std::string dir_;
  std::unique_ptr<LocalBackend> local_;
  Status init_;
};

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "fake") {
      h_ = std::make_unique<FakeHarness>();
    } else {
      auto l = std::make_unique<LocalHarness>();
      if (geteuid() != 0 || !l->init().ok())
        GTEST_SKIP() << "local backend needs root and bwrap: " << l->init().ToString();
      h_ = std::move(l);
    }
  }
  std::unique_ptr<Harness> h_;
};

TEST_P(Conformance, ReportsExitCodes) {
  auto ok = h_->Request(Behavior::kExit0);
  auto bad = h_->Request(Behavior::kExit3);
  ASSERT_TRUE(h_->backend().Launch(ok).ok());
  ASSERT_TRUE(h_->backend().Launch(bad).ok());
  auto e0 = h_->WaitExit(ok.instance_id);
  auto e3 = h_->WaitExit(bad.instance_id);
  ASSERT_TRUE(e0 && e3);
  EXPECT_EQ(e0->payload["exit_code"], 0);
  EXPECT_EQ(e3->payload["exit_code"], 3);
  EXPECT_EQ(e0->job_id, ok.job_id);
  EXPECT_EQ(e0->dedup_key, "exit:" + ok.instance_id);
}

TEST_P(Conformance, LaunchIsIdempotent) {
  auto r = h_->Request(Behavior::kExit0);
  auto h1 = h_->backend().Launch(r);
  auto h2 = h_->backend().Launch(r);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(*h1, *h2);
  ASSERT_TRUE(h_->WaitExit(r.instance_id));
  // Relaunching an instance that already ran starts nothing new.
  auto h3 = h_->backend().Launch(r);
  ASSERT_TRUE(h3.ok());
  EXPECT_EQ(*h3, *h1);
}

TEST_P(Conformance, StopEndsALongInstance) {
  auto r = h_->Request(Behavior::kRunLong);
  auto h = h_->backend().Launch(r);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h_->backend().Stop(r.instance_id, *h, 1000).ok());
  ASSERT_TRUE(h_->backend().Stop(r.instance_id, *h, 1000).ok());  // idempotent
  auto e = h_->WaitExit(r.instance_id);
  ASSERT_TRUE(e);
  EXPECT_NE(e->payload["exit_code"], 0);
  EXPECT_TRUE(e->payload["signal"] == 15 || e->payload["signal"] == 9) << e->payload.dump();
  EXPECT_TRUE(h_->backend().Cleanup(r.instance_id, *h).ok());
  EXPECT_TRUE(h_->backend().Cleanup(r.instance_id, *h).ok());
}

TEST_P(Conformance, UnknownInstancesAreHarmless) {
  EXPECT_TRUE(h_->backend().Stop("nope.1.0", "{}", 10).ok());
  EXPECT_TRUE(h_->backend().Cleanup("nope.1.0", "{}").ok());
  EXPECT_EQ(h_->backend().Recover("nope.1.0", "not a handle").code(), Code::kNotFound);
}

TEST_P(Conformance, RecoverAfterExitReportsTheExitAgain) {
  auto r = h_->Request(Behavior::kExit3);
  auto h = h_->backend().Launch(r);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h_->WaitExit(r.instance_id));
  ASSERT_TRUE(h_->backend().Recover(r.instance_id, *h).ok());
  ASSERT_TRUE(h_->sink.WaitFor([&] { return h_->sink.ExitsFor(r.instance_id).size() >= 1; }, 1000));
  // Either re-posted (deduplicated downstream by dedup_key) or already reported:
  // the recorded exit status is the same.
  for (auto& e : h_->sink.ExitsFor(r.instance_id)) EXPECT_EQ(e.payload["exit_code"], 3);
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::Values("fake", "local"));

}  // namespace
}  // namespace kiln
