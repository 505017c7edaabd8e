// RestClient against a real single-host Slurm 22.05 (munge, slurmctld, slurmd,
// slurmrestd with JWT) that the test starts with scripts/slurm.sh in a private
// directory: ping, a job that completes and writes its output, a job that
// fails with its exit code, a cancelled job, a job Slurm refuses with its
// message, an unknown job, and a token signed with the wrong key.
#include "compute/slurm/slurm_rest.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace kiln::slurm {
namespace {

namespace fs = std::filesystem;

class SlurmRest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0 || system("command -v slurmctld >/dev/null 2>&1") != 0) return;
    dir_ = new std::string("/var/tmp/kiln-slurm-test-" + std::to_string(getpid()));
    // Ports away from Slurm's defaults, different for each test process.
    port_ = 21000 + (getpid() % 250) * 16;  // 21000..25000: below the ephemeral range
    const std::string cmd =
        std::string(KILN_SLURM_SCRIPT) + " start " + *dir_ + " " + std::to_string(port_) + " > " + *dir_ + ".log 2>&1";
    up_ = system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    (void)system((std::string(KILN_SLURM_SCRIPT) + " stop " + *dir_ + " >/dev/null 2>&1").c_str());
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    fs::remove(*dir_ + ".log", ec);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "needs root and Slurm (scripts/install-deps.sh installs it)";
    ASSERT_TRUE(up_) << "scripts/slurm.sh start failed; see " << *dir_ << ".log";
    RestOptions o;
    o.url = "http://127.0.0.1:" + std::to_string(port_ + 3);
    o.jwt_key_file = *dir_ + "/jwt_hs256.key";
    auto c = RestClient::Create(o, RealClock::Get());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(*c);
  }

  JobRequest Job(const std::string& name, const std::string& script) const {
    JobRequest r;
    r.name = name;
    r.script = "#!/bin/sh\n" + script + "\n";
    r.working_directory = *dir_ + "/jobs";
    r.standard_output = *dir_ + "/jobs/" + name + ".out";
    r.environment = {{"PATH", "/usr/bin:/bin"}, {"KILN_TEST", "yes"}};
    r.memory_per_node_mib = 64;
    r.time_limit_minutes = 5;
    return r;
  }
  // Waits (60 s at most) until the job is in a final state.
  JobInfo WaitFinal(int64_t id) {
    JobInfo info;
    for (int i = 0; i < 600; ++i) {
      auto j = client_->GetJob(id);
      EXPECT_TRUE(j.ok()) << j.status().ToString();
      if (!j.ok()) break;
      info = *j;
      if (IsFinal(info.state)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return info;
  }

  static std::string* dir_;
  static int port_;
  static bool up_;
  std::unique_ptr<RestClient> client_;
};
std::string* SlurmRest::dir_ = nullptr;
int SlurmRest::port_ = 0;
bool SlurmRest::up_ = false;

TEST_F(SlurmRest, PingsAndRunsAJobToCompletionWithItsEnvironmentAndOutput) {
  ASSERT_TRUE(client_->Ping().ok());
  auto id = client_->Submit(Job("ok", "echo \"hello $KILN_TEST $SLURM_JOB_ID\""));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  JobInfo info = WaitFinal(*id);
  EXPECT_EQ(info.state, JobState::kCompleted) << info.state_text << " " << info.reason;
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_EQ(info.name, "ok");
  EXPECT_GT(info.end_ms, 0);
  EXPECT_GE(info.end_ms, info.start_ms);
  std::ifstream out(*dir_ + "/jobs/ok.out");
  std::stringstream text;
  text << out.rdbuf();
  EXPECT_EQ(text.str(), "hello yes " + std::to_string(*id) + "\n");
}

TEST_F(SlurmRest, AFailingJobReportsItsExitCode) {
  auto id = client_->Submit(Job("fails", "exit 3"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  JobInfo info = WaitFinal(*id);
  EXPECT_EQ(info.state, JobState::kFailed) << info.state_text;
  EXPECT_EQ(info.exit_code, 3);  // Slurm reports the raw wait status 768
  EXPECT_EQ(info.reason, "NonZeroExitCode");
}

TEST_F(SlurmRest, ARunningJobIsCancelledAndCancellingAgainIsHarmless) {
  auto id = client_->Submit(Job("sleeps", "sleep 300"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  for (int i = 0; i < 600; ++i) {
    auto j = client_->GetJob(*id);
    ASSERT_TRUE(j.ok());
    if (j->state == JobState::kRunning) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(client_->Cancel(*id).ok());
  JobInfo info = WaitFinal(*id);
  EXPECT_EQ(info.state, JobState::kCancelled) << info.state_text;
  EXPECT_TRUE(client_->Cancel(*id).ok());
}

TEST_F(SlurmRest, ListsJobsSignalsThemAndSaysWhenNothingChanged) {
  auto id = client_->Submit(Job("listed", "trap 'echo got-term; exit 7' TERM; echo ready; sleep 300 & wait"));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto all = client_->ListJobs();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  bool found = false;
  for (const auto& j : *all) found |= j.id == *id && j.name == "listed" && j.tasks == 1;
  EXPECT_TRUE(found);
  for (int i = 0; i < 600; ++i) {  // its trap is set
    std::ifstream out(*dir_ + "/jobs/listed.out");
    std::string line;
    if (std::getline(out, line) && line == "ready") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // A signal (not a cancel): the batch script's trap runs and it ends its own way.
  Status st;
  for (int i = 0; i < 50; ++i) {  // "can not be altered now" while its step starts
    st = client_->Signal(*id, "SIGTERM");
    if (st.code() != Code::kFailedPrecondition) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(st.ok()) << st.ToString();
  JobInfo info = WaitFinal(*id);
  EXPECT_EQ(info.state, JobState::kFailed) << info.state_text;
  EXPECT_EQ(info.exit_code, 7);
  // Nothing changed after a time in the future: an empty list (slurmrestd's 304).
  auto none = client_->ListJobs(time(nullptr) + 3600);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

TEST_F(SlurmRest, RefusalsAreClearErrors) {
  JobRequest bad = Job("bad", "true");
  bad.partition = "no-such-partition";
  auto refused = client_->Submit(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("Invalid partition name specified"), std::string::npos)
      << refused.status().ToString();
  auto none = client_->GetJob(99999999);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::kNotFound) << none.status().ToString();
  // A token signed with another key: refused, nothing submitted.
  const std::string wrong = *dir_ + "/wrong.key";
  std::ofstream(wrong) << std::string(32, 'x');
  RestOptions o;
  o.url = "http://127.0.0.1:" + std::to_string(port_ + 3);
  o.jwt_key_file = wrong;
  auto c = RestClient::Create(o, RealClock::Get());
  ASSERT_TRUE(c.ok());
  auto denied = (*c)->Submit(Job("denied", "true"));
  ASSERT_FALSE(denied.ok());
  // slurmctld hangs up on a token it cannot verify; the error says where to look.
  EXPECT_EQ(denied.status().code(), Code::kUnavailable) << denied.status().ToString();
  EXPECT_NE(denied.status().message().find("check jwt_key_file"), std::string::npos) << denied.status().ToString();
  // Nobody listening: unavailable.
  o.url = "http://127.0.0.1:1";
  o.jwt_key_file = *dir_ + "/jwt_hs256.key";
  auto gone = RestClient::Create(o, RealClock::Get());
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ((*gone)->Ping().code(), Code::kUnavailable);
  // Bad options.
  o.url = "ftp://x";
  EXPECT_EQ(RestClient::Create(o, RealClock::Get()).status().field(), "url");
  o.url = "http://127.0.0.1:1";
  o.jwt_key_file = "/nonexistent";
  EXPECT_EQ(RestClient::Create(o, RealClock::Get()).status().field(), "jwt_key_file");
}

}  // namespace
}  // namespace kiln::slurm
