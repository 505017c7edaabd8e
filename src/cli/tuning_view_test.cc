#include "cli/tuning_view.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

namespace kiln::cli {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

TEST(TuningView, TrialNamesHaveTheTuningJobsPrefixIndexAndHash) {
  EXPECT_TRUE(IsTrialName("tj", "tj-001-0a1b2c3d"));
  EXPECT_TRUE(IsTrialName("tj", "tj-1234-ffffffff"));
  EXPECT_FALSE(IsTrialName("tj", "tj-x-001-0a1b2c3d"));  // another tuning job's trial
  EXPECT_FALSE(IsTrialName("tj", "tj-001-0a1b2c3"));
  EXPECT_FALSE(IsTrialName("tj", "tj-001-0a1b2c3g"));
  EXPECT_FALSE(IsTrialName("tj", "tj--0a1b2c3d"));
  EXPECT_FALSE(IsTrialName("tj", "tjx001-0a1b2c3d"));
  EXPECT_FALSE(IsTrialName("tj", "tj"));
}

json Doc(const std::string& status) {
  json trial = {{"index", 1},
                {"name", "tj-001-0a1b2c3d"},
                {"status", "Completed"},
                {"hyperparameters", {{"x", "0.5"}}},
                {"objective", 0.25},
                {"last_value", 0.25},
                {"steps", 5},
                {"early_stopped", false}};
  return {{"name", "tj"},
          {"status", status},
          {"reason", status == "Completed" ? "MaxNumberOfTrainingJobs reached" : ""},
          {"strategy", "Random"},
          {"objective", {{"metric", "loss"}, {"type", "Minimize"}}},
          {"best", status == "Completed" ? trial : json(nullptr)},
          {"trials", json::array({trial})}};
}

TEST(TuningView, RendersAHeaderAndOneRowPerTrial) {
  std::string text = RenderTuning(Doc("Completed"), "tj", Output::kTable);
  EXPECT_EQ(text,
            "tj  Completed  Random  Minimize loss  best: tj-001-0a1b2c3d = 0.25  (MaxNumberOfTrainingJobs reached)\n" +
                Pad("TRIAL", 26) + Pad("STATUS", 12) + Pad("OBJECTIVE", 14) + Pad("STEPS", 7) + "HYPERPARAMETERS\n" +
                Pad("tj-001-0a1b2c3d", 26) + Pad("Completed", 12) + Pad("0.25", 14) + Pad("5", 7) + "x=0.5 \n");
  EXPECT_EQ(RenderTuning(Doc("Completed"), "tj", Output::kJson), Doc("Completed").dump(2) + "\n");
}

// A kilnd that knows one tuning job "tj" and serves GET /v1/events.
class FakeKilnd {
 public:
  // final_status: what the tuning job becomes; on_trial_event: when a trial's
  // event is streamed (else by itself after `reads_before_final` reads).
  FakeKilnd(std::string final_status, bool on_trial_event, int reads_before_final)
      : final_(std::move(final_status)), on_trial_event_(on_trial_event), reads_before_final_(reads_before_final) {
    server_.Get("/v1/jobs", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"jobs":[{"id":"j-newest"}]})", "application/json");
    });
    server_.Get("/v1/jobs/j-newest/events", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("id: 1\ndata: {\"seq\":40}\n\nid: 2\ndata: {\"seq\":41}\n\n", "text/event-stream");
    });
    server_.Get(R"(/v1/jobs/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      ++lookups_;
      std::string name = req.matches[1] == "j-trial" ? "tj-001-0a1b2c3d" : "other-001-0a1b2c3d";
      res.set_content(json{{"id", req.matches[1]}, {"name", name}}.dump(), "application/json");
    });
    server_.Get("/v1/tuning-jobs/tj", [this](const httplib::Request&, httplib::Response& res) {
      int n = ++reads_;
      bool done = on_trial_event_ ? trial_event_sent_.load() : n > reads_before_final_;
      res.set_content(Doc(done ? final_ : "InProgress").dump(), "application/json");
    });
    server_.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
      {
        std::lock_guard<std::mutex> l(mu_);
        resumed_after_ += req.get_header_value("Last-Event-ID") + " ";
      }
      res.set_chunked_content_provider("text/event-stream", [this](size_t, httplib::DataSink& sink) {
        if (on_trial_event_ && !trial_event_sent_) {
          std::string other = "id: 42\nevent: JobCreated\ndata: {\"seq\":42,\"job_id\":\"j-other\"}\n\n";
          sink.write(other.data(), other.size());
          trial_event_sent_ = true;
          std::string trial = "id: 43\nevent: JobCreated\ndata: {\"seq\":43,\"job_id\":\"j-trial\"}\n\n";
          sink.write(trial.data(), trial.size());
        }
        for (int i = 0; i < 25 && sink.is_writable() && !stopping_; ++i) std::this_thread::sleep_for(milliseconds(20));
        sink.done();
        return true;
      });
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~FakeKilnd() {
    stopping_ = true;
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  int lookups() const { return lookups_; }
  std::string resumed_after() {
    std::lock_guard<std::mutex> l(mu_);
    return resumed_after_;
  }

 private:
  const std::string final_;
  const bool on_trial_event_;
  const int reads_before_final_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> reads_{0}, lookups_{0};
  std::atomic<bool> trial_event_sent_{false}, stopping_{false};
  std::mutex mu_;
  std::string resumed_after_;
};

int Follow(FakeKilnd& kilnd, FollowTuningOptions options, std::string* out) {
  KilndClient client(Endpoint{"127.0.0.1", kilnd.port()}, "");
  Context ctx{client, Output::kTable};
  testing::internal::CaptureStdout();
  int rc = FollowTuning(ctx, "tj", options);
  *out = testing::internal::GetCapturedStdout();
  return rc;
}

TEST(FollowTuning, RedrawsOnATrialsEventFromWhereTheHistoryEnds) {
  FakeKilnd kilnd("Completed", /*on_trial_event=*/true, 0);
  FollowTuningOptions options;
  options.redraw_every = milliseconds(60000);  // only the trial's event can end it in time
  auto start = std::chrono::steady_clock::now();
  std::string out;
  EXPECT_EQ(Follow(kilnd, options, &out), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
  EXPECT_EQ(kilnd.resumed_after(), "41 ");
  EXPECT_EQ(kilnd.lookups(), 2);  // j-other, j-trial
  EXPECT_NE(out.find("tj  InProgress"), std::string::npos) << out;
  EXPECT_NE(out.find("tj  Completed"), std::string::npos) << out;
  EXPECT_EQ(out.substr(out.size() - 2), "\n\n");
}

TEST(FollowTuning, SeesItsOwnEndWithoutATrialEvent) {
  FakeKilnd kilnd("Failed", /*on_trial_event=*/false, 2);
  FollowTuningOptions options;
  options.redraw_every = milliseconds(200);
  options.min_reconnect = milliseconds(50);
  std::string out;
  EXPECT_EQ(Follow(kilnd, options, &out), 1);
  EXPECT_NE(out.find("tj  Failed"), std::string::npos) << out;
}

TEST(FollowTuning, ExitsTwoWhenKilndIsGone) {
  int port;
  {
    FakeKilnd gone("Completed", false, 0);
    port = gone.port();
  }
  KilndClient client(Endpoint{"127.0.0.1", port}, "");
  Context ctx{client, Output::kTable};
  testing::internal::CaptureStderr();
  EXPECT_EQ(FollowTuning(ctx, "tj"), 2);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("cannot reach kilnd"), std::string::npos);
}

}  // namespace
}  // namespace kiln::cli
