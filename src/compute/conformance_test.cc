// The ComputeBackend conformance suite. Every backend runs the same cases through
// a small harness that knows how to build a request for a behaviour and how to
// wait for events (the fake needs its clock driven; real backends just wait).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>

#include "common/ids.h"
#include "compute/fake/fake_backend.h"
#include "compute/local/local_backend.h"
#include "compute/local/protocol.h"
#include "compute/local/supervisor.h"
#include "compute/slurm/slurm_backend.h"

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
  // Replaces the backend object with a fresh one on the same state, as a kilnd
  // restart does. Only backends whose state lives outside the object can.
  virtual bool CanRestart() const { return false; }
  virtual void Restart() {}
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

// A request for a backend that runs real processes on this host.
LaunchRequest HostRequest(Behavior b, const std::string& dir) {
  auto r = BaseRequest(b == Behavior::kExit0   ? std::vector<std::string>{"/bin/true"}
                       : b == Behavior::kExit3 ? std::vector<std::string>{"/bin/sh", "-c", "exit 3"}
                                               : std::vector<std::string>{"/bin/sleep", "600"});
  r.output_dir = dir + "/artifacts/" + r.job_id;
  return r;
}

// Real backends post from their own threads: wait (20 s at most) for the exit.
std::optional<Event> WaitRealExit(CollectingSink& sink, const std::string& id) {
  sink.WaitFor([&] { return !sink.ExitsFor(id).empty(); }, 20000);
  auto e = sink.ExitsFor(id);
  if (e.empty()) return std::nullopt;
  return e.front();
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
  // `data_dir`: the backend treats the harness directory as kilnd's data dir.
  enum class DataDir { kNone, kHarnessDir };
  explicit LocalHarness(DataDir data = DataDir::kNone) {
    dir_ = "/tmp/kiln-conformance-" + std::to_string(getpid()) + "-" + NewId("d");
    opts_.instances_dir = dir_ + "/instances";
    if (data == DataDir::kHarnessDir) opts_.data_dir = dir_;
    opts_.supervisor_path = std::string(KILN_BIN_DIR) + "/kiln-supervisor";
    opts_.entrypoint_path = std::string(KILN_BIN_DIR) + "/kiln-entrypoint";
    local_ = std::make_unique<LocalBackend>(opts_, sink, RealClock::Get());
    init_ = local_->Init();
  }
  ~LocalHarness() override {
    local_.reset();
    if (!getenv("KILN_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_);  // kept for debugging when set
  }
  Status init() const { return init_; }
  std::string instances_dir() const { return dir_ + "/instances"; }
  const std::string& dir() const { return dir_; }
  ComputeBackend& backend() override { return *local_; }
  bool CanRestart() const override { return true; }
  // Recreates the backend with changed options.
  void Reconfigure(const std::function<void(LocalBackendOptions&)>& change) {
    change(opts_);
    Restart();
  }
  void Restart() override {
    local_.reset();
    local_ = std::make_unique<LocalBackend>(opts_, sink, RealClock::Get());
    init_ = local_->Init();
  }
  LaunchRequest Request(Behavior b) override { return HostRequest(b, dir_); }
  std::optional<Event> WaitExit(const std::string& id) override { return WaitRealExit(sink, id); }

 private:
  std::string dir_;
  LocalBackendOptions opts_;
  std::unique_ptr<LocalBackend> local_;
  Status init_;
};

// The Slurm backend on a real 2-node Slurm 22.05 (scripts/slurm.sh) in a private
// directory, with its end-of-job hook (EpilogSlurmctld) posting to a small HTTP
// server here that hands the Slurm job id to the backend, as kilnd's route does.
class SlurmHarness : public Harness {
 public:
  SlurmHarness() {
    dir_ = "/var/tmp/kiln-conformance-slurm-" + std::to_string(getpid()) + "-" + NewId("d");
    const int port = 25000 + (getpid() % 250) * 16;  // 25000..29000 (slurm_rest_test: 21000..25000)
    std::filesystem::create_directories(dir_ + "/shared");
    up_ = system((std::string(KILN_SLURM_SCRIPT) + " start " + dir_ + "/slurm " + std::to_string(port) + " > " + dir_ +
                  "/slurm.log 2>&1")
                     .c_str()) == 0;
    if (!up_) return;
    hook_.Post("/v1/pools/conf/slurm-events", [this](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("Authorization") != "Bearer conformance-hook-token") {
        res.status = 401;
        return;
      }
      auto body = nlohmann::json::parse(req.body, nullptr, false);
      std::lock_guard<std::mutex> l(mu_);
      if (backend_ && body.is_object() && body["job_id"].is_number_integer())
        (void)backend_->JobEnded(body["job_id"].get<int64_t>());
      res.status = 202;
    });
    const int hook_port = hook_.bind_to_any_port("127.0.0.1");
    hook_thread_ = std::thread([this] { hook_.listen_after_bind(); });
    std::ofstream(dir_ + "/hook.token") << "conformance-hook-token";
    std::ofstream(dir_ + "/slurm/kiln-hooks")
        << "http://127.0.0.1:" << hook_port << " conf " << dir_ << "/hook.token\n";
    rest_.url = "http://127.0.0.1:" + std::to_string(port + 3);
    rest_.jwt_key_file = dir_ + "/slurm/jwt_hs256.key";
    Restart();
  }
  ~SlurmHarness() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      backend_.reset();
    }
    hook_.stop();
    if (hook_thread_.joinable()) hook_thread_.join();
    (void)system((std::string(KILN_SLURM_SCRIPT) + " stop " + dir_ + "/slurm >/dev/null 2>&1").c_str());
    if (!getenv("KILN_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_);
  }
  Status init() const { return up_ ? init_ : Status(Code::kUnavailable, "scripts/slurm.sh start failed"); }
  ComputeBackend& backend() override { return *backend_; }
  bool CanRestart() const override { return true; }
  void Restart() override {
    std::lock_guard<std::mutex> l(mu_);
    backend_.reset();
    auto client = slurm::RestClient::Create(rest_, RealClock::Get());
    if (!client.ok()) {
      init_ = client.status();
      return;
    }
    LocalBackendOptions lo;
    lo.instances_dir = dir_ + "/shared/instances";
    lo.supervisor_path = std::string(KILN_BIN_DIR) + "/kiln-supervisor";
    lo.entrypoint_path = std::string(KILN_BIN_DIR) + "/kiln-entrypoint";
    lo.network = supervisor::NetworkMode::kHost;
    lo.runtime_context = "kiln-slurm";
    std::filesystem::create_directories(lo.instances_dir);
    slurm::SlurmBackendOptions so;
    so.pool = "conf";
    so.rest = rest_;
    so.supervisor_path = lo.supervisor_path;
    so.instances_dir = lo.instances_dir;
    backend_ = std::make_unique<slurm::SlurmBackend>(
        so, std::move(*client), std::make_unique<LocalBackend>(lo, sink, RealClock::Get()), sink, RealClock::Get());
    init_ = backend_->Init();
  }
  LaunchRequest Request(Behavior b) override { return HostRequest(b, dir_); }
  std::optional<Event> WaitExit(const std::string& id) override { return WaitRealExit(sink, id); }

 private:
  std::string dir_;
  bool up_ = false;
  Status init_;
  slurm::RestOptions rest_;
  std::mutex mu_;
  std::unique_ptr<slurm::SlurmBackend> backend_;
  httplib::Server hook_;
  std::thread hook_thread_;
};

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "fake") {
      h_ = std::make_unique<FakeHarness>();
    } else if (GetParam() == "slurm") {
      if (geteuid() != 0 || system("command -v slurmctld >/dev/null 2>&1") != 0)
        GTEST_SKIP() << "the Slurm backend's suite needs root and Slurm (scripts/install-deps.sh)";
      auto s = std::make_unique<SlurmHarness>();
      ASSERT_TRUE(s->init().ok()) << s->init().ToString();
      h_ = std::move(s);
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

TEST_P(Conformance, DeclaresItsCapabilities) {
  auto caps = h_->backend().Capabilities();
  // Every backend here keeps its instances running across a kilnd restart, which
  // the controller relies on to call Recover rather than declare them lost.
  EXPECT_NE(std::find(caps.begin(), caps.end(), Capability::kSurvivesControllerRestart), caps.end());
}

// A restarted kilnd has a new backend object: it must re-attach from the handle
// alone, see the instance end, and stop it.
TEST_P(Conformance, RecoversARunningInstanceWithAFreshBackendObject) {
  if (!h_->CanRestart()) GTEST_SKIP() << "the fake keeps its instances in the backend object";
  auto r = h_->Request(Behavior::kRunLong);
  auto h = h_->backend().Launch(r);
  ASSERT_TRUE(h.ok());
  h_->Restart();
  ASSERT_TRUE(h_->backend().Recover(r.instance_id, *h).ok());
  ASSERT_TRUE(h_->backend().Stop(r.instance_id, *h, 1000).ok());
  auto e = h_->WaitExit(r.instance_id);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->payload["signal"] == 15 || e->payload["signal"] == 9) << e->payload.dump();
}

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::Values("fake", "local", "slurm"));

// A kilnd upgraded while instances run: a supervisor started by the previous build
// (files without "version") is re-adopted, and its status.json is read. The
// "supervisor" here is a shell that writes the previous build's status.json.
TEST(LocalBackendUpgrade, ReadoptsASupervisorOfThePreviousBuild) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  const std::string id = NewId("j") + ".1.0";
  const std::string dir = h.instances_dir() + "/" + id;
  std::filesystem::create_directories(dir);
  const std::string old_status =
      R"({"exit_code":7,"signal":0,"oom":false,"failure":"old build","started_ms":1,"ended_ms":2,"stopped":false})";
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", ("sleep 1; printf '%s' '" + old_status + "' > " + dir + "/status.json").c_str(),
          nullptr);
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  unsigned long long start = 0;
  for (int i = 0; i < 100 && !start; ++i) start = ProcessStartTime(pid);
  {
    std::ofstream f(dir + "/supervisor.pid");
    f << pid << " " << start << "\n";
  }
  const std::string handle = "{\"pid\":" + std::to_string(pid) + ",\"start\":" + std::to_string(start) + ",\"dir\":\"" +
                             dir + "\",\"job_id\":\"j-old\"}";
  ASSERT_TRUE(h.backend().Recover(id, handle).ok());
  auto e = h.WaitExit(id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload["exit_code"], 7);
  EXPECT_EQ(e->payload["failure"], "old build");
  EXPECT_EQ(e->job_id, "j-old");
}

// Attack: a job plants a symlink at /opt/ml/output/failure pointing at a host file
// that its sandbox can also see (its own output directory, bound at the same
// path). The supervisor, reading the failure text on the host, must not follow it.
TEST(LocalBackendHostileFiles, AFailureSymlinkDoesNotLeakTheFileItPointsAt) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  auto r = h.Request(Behavior::kExit0);
  std::filesystem::create_directories(r.output_dir);
  const std::string secret = r.output_dir + "/secret.txt";
  std::ofstream(secret) << "TOPSECRET host file";
  r.spec.command = {"/bin/sh", "-c", "ln -s " + secret + " /opt/ml/output/failure; exit 1"};
  ASSERT_TRUE(h.backend().Launch(r).ok());
  auto e = h.WaitExit(r.instance_id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload["exit_code"], 1);
  EXPECT_EQ(e->payload["failure"].get<std::string>().find("TOPSECRET"), std::string::npos) << e->payload.dump();
}

// Attack: a job that owns an S3-style prefix in kilnd's data dir plants a link to
// /etc there; a later job names the link as its input. Binds under the data dir
// are opened by the root supervisor, beneath the data dir and never through a
// symlink: the launch fails, naming the symlink, and nothing of /etc is bound.
TEST(LocalBackendHostileFiles, AnInputLinkInTheDataDirIsNotBound) {
  LocalHarness h(LocalHarness::DataDir::kHarnessDir);
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  std::filesystem::create_directories(h.dir() + "/s3/bucket");
  std::filesystem::create_symlink("/etc", h.dir() + "/s3/bucket/train");
  auto r = h.Request(Behavior::kExit0);
  r.spec.inputs["train"] = h.dir() + "/s3/bucket/train";
  auto launched = h.backend().Launch(r);
  ASSERT_FALSE(launched.ok());
  EXPECT_EQ(launched.status().code(), Code::kFailedPrecondition);  // not retried
  EXPECT_NE(launched.status().message().find("symlink"), std::string::npos) << launched.status().ToString();
}

// kilnd's own files are never a bind source, whatever the spec says.
TEST(LocalBackendHostileFiles, PathsInsideKilndsOwnFilesAreRefused) {
  LocalHarness h(LocalHarness::DataDir::kHarnessDir);
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  std::ofstream(h.dir() + "/secret.key") << "TOPSECRET";
  auto r = h.Request(Behavior::kExit0);
  r.spec.inputs["k"] = h.dir() + "/secret.key";
  auto launched = h.backend().Launch(r);
  EXPECT_EQ(launched.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(launched.status().field(), "inputs.k");
  auto r2 = h.Request(Behavior::kExit0);
  r2.spec.checkpoint_dir = "/etc/kiln-conformance";  // not under a writable root
  EXPECT_EQ(h.backend().Launch(r2).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists("/etc/kiln-conformance"));
}

// Admission control: whole jobs up to the declared capacity; the rest refused
// for now (kResourceExhausted, the controller queues them), or for good when a
// job can never fit. An instance that ends gives its job's share back.
TEST(LocalBackendAdmission, AdmitsWholeJobsUpToTheDeclaredCapacity) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  h.Reconfigure([](LocalBackendOptions& o) {
    o.capacity_vcpus = 2;
    o.capacity_memory_mib = 4096;
  });
  auto a = h.Request(Behavior::kRunLong);
  auto a_handle = h.backend().Launch(a);
  ASSERT_TRUE(a_handle.ok()) << a_handle.status().ToString();
  auto b = h.Request(Behavior::kRunLong);
  b.spec.instance_count = 2;  // 2 x 1 vCPU: fits the host, not next to a
  auto refused = h.backend().Launch(b);
  EXPECT_EQ(refused.status().code(), Code::kResourceExhausted) << refused.status().ToString();
  auto c = h.Request(Behavior::kExit0);
  c.spec.instance_count = 3;  // never fits
  EXPECT_EQ(h.backend().Launch(c).status().code(), Code::kInvalidArgument);
  ASSERT_TRUE(h.backend().Stop(a.instance_id, *a_handle, 1000).ok());
  ASSERT_TRUE(h.WaitExit(a.instance_id));
  auto b0 = h.backend().Launch(b);
  ASSERT_TRUE(b0.ok()) << b0.status().ToString();
  auto b1 = b;
  b1.instance_id = b.job_id + ".1.1";
  b1.index = 1;
  auto b1_handle = h.backend().Launch(b1);  // rides on its job's reservation
  ASSERT_TRUE(b1_handle.ok()) << b1_handle.status().ToString();
  EXPECT_EQ(h.backend().Launch(h.Request(Behavior::kExit0)).status().code(), Code::kResourceExhausted);
  ASSERT_TRUE(h.backend().Stop(b.instance_id, *b0, 1000).ok());
  ASSERT_TRUE(h.backend().Stop(b1.instance_id, *b1_handle, 1000).ok());
  ASSERT_TRUE(h.WaitExit(b.instance_id));
  ASSERT_TRUE(h.WaitExit(b1.instance_id));
}

// Team namespaces: a job reads only its team's data and writes only its team's
// write paths; a team without a namespace uses none.
TEST(LocalBackendTeams, AJobUsesOnlyItsTeamsData) {
  LocalHarness h(LocalHarness::DataDir::kHarnessDir);
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  const std::string a = h.dir() + "/s3/team-a-bucket", b = h.dir() + "/s3/team-b-bucket";
  const std::string shared = h.dir() + "/s3/shared-datasets";
  for (const auto& d : {a, b, shared}) std::filesystem::create_directories(d);
  h.Reconfigure([&](LocalBackendOptions& o) {
    o.teams["a"] = TeamData{{a}, {shared}};
    o.teams["b"] = TeamData{{b}, {}};
  });
  auto as_team = [&](const std::string& team) {
    auto r = h.Request(Behavior::kExit0);
    r.spec.team = team;
    r.output_dir = h.dir() + "/artifacts/" + r.spec.name + "/output";  // its own default output
    return r;
  };
  auto reads_other = as_team("a");
  reads_other.spec.inputs["train"] = b;
  auto refused = h.backend().Launch(reads_other);
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(refused.status().field(), "inputs.train");
  auto writes_shared = as_team("a");
  writes_shared.spec.checkpoint_dir = shared + "/ckpt";  // readable, not writable
  EXPECT_EQ(h.backend().Launch(writes_shared).status().field(), "checkpoint_dir");
  auto writes_other = as_team("a");
  writes_other.output_dir = b + "/model/output";
  EXPECT_EQ(h.backend().Launch(writes_other).status().field(), "output");
  EXPECT_FALSE(std::filesystem::exists(b + "/model"));
  EXPECT_EQ(h.backend().Launch(as_team("c")).status().field(), "team");
  auto own = as_team("a");
  own.spec.inputs["train"] = a;
  own.spec.inputs["shared"] = shared;
  own.spec.checkpoint_dir = a + "/ckpt";
  auto launched = h.backend().Launch(own);
  ASSERT_TRUE(launched.ok()) << launched.status().ToString();
  auto e = h.WaitExit(own.instance_id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload["exit_code"], 0);
}

// The handshake survives kilnd's death (PROTOCOL.md rule 5): a supervisor whose
// ready pipe has no reader (kilnd killed right as it answers) gets EPIPE, not
// SIGPIPE, runs the instance anyway and records its exit. Deterministic: the read
// end is closed before the supervisor starts.
TEST(LocalBackendFaults, ASupervisorWhoseKilndDiedAtTheHandshakeStillRunsTheInstance) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  const std::string dir = h.instances_dir() + "/" + NewId("j") + ".1.0";
  std::filesystem::create_directories(dir);
  supervisor::LaunchFile launch;  // no sandbox: the protocol is what is under test
  launch.instance_id = "j-handshake.1.0";
  launch.argv = {"/bin/sh", "-c", "exit 5"};
  launch.log = dir + "/output.log";
  std::ofstream(dir + "/launch.json") << supervisor::Encode(launch);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  close(ready[0]);  // kilnd is gone
  pid_t pid = fork();
  if (pid == 0) {
    dup2(ready[1], 3);
    // As kilnd starts it: SIGPIPE at its default (death), which the supervisor must override.
    signal(SIGPIPE, SIG_DFL);
    execl((std::string(KILN_BIN_DIR) + "/kiln-supervisor").c_str(), "kiln-supervisor", "--dir", dir.c_str(),
          "--ready-fd", "3", nullptr);
    _exit(127);
  }
  close(ready[1]);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "the supervisor died of signal " << WTERMSIG(st);
  std::ifstream f(dir + "/status.json");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto status = supervisor::DecodeStatusFile(text);
  ASSERT_TRUE(status.ok()) << text;
  EXPECT_EQ(status->exit.exit_code, 5);
}

// A supervisor that never answers the handshake is killed after 10 s, so the
// capacity share its launch gives back is really free, and the retry starts a
// fresh one (no pid file of a dead supervisor to adopt).
TEST(LocalBackendFaults, ASupervisorThatNeverAnswersIsKilledAndItsShareFreed) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  const std::string wrapper = h.dir() + "/hanging-supervisor";
  std::ofstream(wrapper) << "#!/bin/sh\n"
                            "case \"$2\" in *hang*) echo $$ > \"$2/hung.pid\"; echo 1 > \"$2/supervisor.pid\"; "
                            "exec sleep 60;; esac\n"
                            "exec " KILN_BIN_DIR "/kiln-supervisor \"$@\"\n";
  ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
  h.Reconfigure([&](LocalBackendOptions& o) {
    o.supervisor_path = wrapper;
    o.capacity_vcpus = 1;
  });
  auto hung = h.Request(Behavior::kExit0);
  hung.instance_id = hung.job_id + "-hang.1.0";
  auto refused = h.backend().Launch(hung);
  ASSERT_EQ(refused.status().code(), Code::kUnavailable) << refused.status().ToString();
  std::ifstream f(h.instances_dir() + "/" + hung.instance_id + "/hung.pid");
  pid_t pid = 0;
  ASSERT_TRUE(f >> pid);
  EXPECT_NE(kill(pid, 0), 0) << "the supervisor that never answered still runs";
  EXPECT_FALSE(std::filesystem::exists(h.instances_dir() + "/" + hung.instance_id + "/supervisor.pid"));
  // Its share is free: a job needing the whole host is admitted and runs.
  auto next = h.Request(Behavior::kExit0);
  auto launched = h.backend().Launch(next);
  ASSERT_TRUE(launched.ok()) << launched.status().ToString();
  auto e = h.WaitExit(next.instance_id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload["exit_code"], 0);
}

// A status.json of a newer protocol is not misread: the instance is reported lost
// with the reason.
TEST(LocalBackendUpgrade, ANewerStatusFileIsReportedNotMisread) {
  LocalHarness h;
  if (geteuid() != 0 || !h.init().ok()) GTEST_SKIP() << "local backend needs root and bwrap";
  const std::string id = NewId("j") + ".1.0";
  const std::string dir = h.instances_dir() + "/" + id;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/status.json") << R"({"version":99,"exit_code":0})";
  ASSERT_TRUE(h.backend().Recover(id, R"({"pid":1,"start":1,"dir":"x","job_id":"j-new"})").ok());
  auto e = h.WaitExit(id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->payload["exit_code"], -1);
  EXPECT_NE(e->payload["failure"].get<std::string>().find("protocol version 99"), std::string::npos)
      << e->payload.dump();
}

}  // namespace
}  // namespace kiln
