// The native API's routes over real HTTP on loopback, against the in-memory fake
// store, a manual controller and the fake backend: status codes, error fields,
// the in-job runtime document and its token checks, phase reports.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "api/native_api.h"
#include "api/unix_server.h"
#include "compute/fake/fake_backend.h"
#include "store/memory_store.h"

namespace kiln {
namespace {

using nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() : store_(NewMemoryStore()), fake_(clock_, 3), timers_(clock_), tokens_("test-secret") {
    ControllerOptions copts;
    copts.threading = Threading::kManual;
    copts.artifacts_dir = "/artifacts";
    copts.token_for = [this](const std::string& id) { return tokens_.For(id); };
    ctl_ = std::make_unique<Controller>(*store_, clock_, timers_, catalog_, copts);
    fake_.SetSink(ctl_.get());
    ctl_->SetBackend(&fake_);
    EXPECT_TRUE(ctl_->Start().ok());
    api_ = std::make_unique<NativeApi>(*ctl_, *store_, catalog_, tokens_, NativeApiOptions{});
    api_->Register(server_);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~ApiTest() override {
    api_->Shutdown();
    server_.stop();
    thread_.join();
  }
  httplib::Client Client() { return httplib::Client("127.0.0.1", port_); }
  void Drain() {
    while (ctl_->RunOnce()) {
    }
  }
  static json Body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }

  FakeClock clock_;
  Catalog catalog_ = Catalog::Defaults();
  std::unique_ptr<Store> store_;
  FakeBackend fake_;
  ManualTimerService timers_;
  TokenIssuer tokens_;
  std::unique_ptr<Controller> ctl_;
  std::unique_ptr<NativeApi> api_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// GET `path` over the Unix socket at `socket_path`; the status code, or -1.
int UnixGet(const std::string& socket_path, const std::string& path, const std::string& auth = "") {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, socket_path.c_str(), sizeof(a.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  std::string req = "GET " + path + " HTTP/1.0\r\n" + (auth.empty() ? "" : "Authorization: " + auth + "\r\n") + "\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return -1;
  }
  char buf[64] = {0};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n > 12 ? atoi(buf + 9) : -1;
}

// The runtime socket that sandboxes reach serves the in-job routes and nothing else.
TEST_F(ApiTest, TheRuntimeSocketServesOnlyTheRuntimeRoutes) {
  UnixHttpServer runtime;
  api_->RegisterRuntimeOnly(runtime);
  const std::string path = "/tmp/kiln-api-test-" + std::to_string(getpid()) + ".sock";
  ASSERT_TRUE(runtime.Start(path).ok());
  EXPECT_EQ(UnixGet(path, "/v1/health"), 404);
  EXPECT_EQ(UnixGet(path, "/v1/jobs"), 404);
  EXPECT_EQ(UnixGet(path, "/v1/runtime"), 401);
  EXPECT_EQ(UnixGet(path, "/v1/runtime", "Bearer j-nope.1.0.deadbeef"), 401);
  // A job cannot make kilnd buffer an unbounded body.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  strncpy(ua.sun_path, path.c_str(), sizeof(ua.sun_path) - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&ua), sizeof(ua)), 0);
  const std::string big =
      "POST /v1/runtime/events HTTP/1.0\r\nContent-Length: " + std::to_string(NativeApi::kRuntimeMaxBodyBytes + 1) +
      "\r\n\r\n" + std::string(NativeApi::kRuntimeMaxBodyBytes + 1, 'x');
  ASSERT_EQ(write(fd, big.data(), big.size()), static_cast<ssize_t>(big.size()));
  char buf[64] = {0};
  ASSERT_GT(read(fd, buf, sizeof(buf) - 1), 12);
  close(fd);
  EXPECT_EQ(atoi(buf + 9), 413) << buf;
  runtime.Shutdown();
  EXPECT_EQ(UnixGet(path, "/v1/runtime"), -1);  // the socket file is gone
}

TEST_F(ApiTest, HealthAnswers) {
  auto r = Client().Get("/v1/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Body(r)["status"], "ok");
}

TEST_F(ApiTest, AnInvalidSpecIsRefusedWithItsFieldAndCreatesNothing) {
  auto r = Client().Post("/v1/jobs", R"({"name":"bad","command":["x"],"instance":{"count":0}})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(Body(r)["error"]["field"], "instance.count") << r->body;
  EXPECT_EQ(store_->GetJob("bad").status().code(), Code::kNotFound);
  auto garbage = Client().Post("/v1/jobs", "{not json", "application/json");
  ASSERT_TRUE(garbage);
  EXPECT_EQ(garbage->status, 400);
}

TEST_F(ApiTest, SubmitDescribeDuplicateAndStop) {
  auto c = Client();
  auto r = c.Post("/v1/jobs", R"({"name":"train-1","command":["/bin/true"]})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const std::string id = Body(r)["id"];
  EXPECT_EQ(r->get_header_value("Location"), "/v1/jobs/" + id);
  auto dup = c.Post("/v1/jobs", R"({"name":"train-1","command":["/bin/true"]})", "application/json");
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, 409);
  auto got = c.Get("/v1/jobs/train-1");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Body(got)["id"], id);
  auto missing = c.Get("/v1/jobs/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  Drain();
  auto stop = c.Post("/v1/jobs/" + id + "/stop");
  ASSERT_TRUE(stop);
  EXPECT_EQ(stop->status, 202) << stop->body;
  EXPECT_EQ(Body(stop)["status"], "Stopping") << stop->body;
}

TEST_F(ApiTest, TheRuntimeDocumentNeedsTheInstancesTokenAndDecodes) {
  auto c = Client();
  auto r =
      c.Post("/v1/jobs", R"({"name":"rt","command":["/bin/true"],"instance":{"count":2},"hyperparameters":{"lr":0.1}})",
             "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  Drain();  // instances exist once JobCreated is folded
  auto job = store_->GetJob("rt");
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->instances.size(), 2u);
  const Instance& in = job->instances[1];

  auto anonymous = c.Get("/v1/runtime");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  httplib::Headers forged = {{"Authorization", "Bearer " + in.id + ".forged"}};
  auto bad = c.Get("/v1/runtime", forged);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);

  httplib::Headers auth = {{"Authorization", "Bearer " + tokens_.For(in.id)}};
  auto doc = c.Get("/v1/runtime", auth);
  ASSERT_TRUE(doc);
  ASSERT_EQ(doc->status, 200) << doc->body;
  auto decoded = RuntimeDocFromJson(Body(doc));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->job_name, "rt");
  EXPECT_EQ(decoded->instance_id, in.id);
  EXPECT_EQ(decoded->index, 1);
  EXPECT_EQ(decoded->resource_config.current_host, "algo-2");
  EXPECT_EQ(decoded->resource_config.hosts, (std::vector<std::string>{"algo-1", "algo-2"}));
  EXPECT_EQ(decoded->hyperparameters["lr"], 0.1);
  EXPECT_FALSE(decoded->statsd.has_value());  // this kilnd has no metrics gateway

  // A phase report becomes a typed PhaseReported event; an unknown phase is a 400.
  auto phase = c.Post("/v1/runtime/events", auth, R"({"type":"Training","time_ms":5})", "application/json");
  ASSERT_TRUE(phase);
  EXPECT_EQ(phase->status, 200) << phase->body;
  auto unknown = c.Post("/v1/runtime/events", auth, R"({"type":"Dancing"})", "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 400);
  EXPECT_EQ(Body(unknown)["error"]["field"], "type");
  Drain();
  auto after = store_->GetJob("rt");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->phase_times.count("Training"), 1u);
}

}  // namespace
}  // namespace kiln
