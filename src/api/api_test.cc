// The native API's routes over real HTTP on loopback, against the in-memory fake
// store, a manual controller and the fake backend: status codes, error fields,
// the in-job runtime document and its token checks, phase reports.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <thread>

#include "api/native_api.h"
#include "api/unix_server.h"
#include "compute/fake/fake_backend.h"
#include "http/async_server.h"
#include "store/memory_store.h"

namespace kiln {
namespace {

using nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  ApiTest()
      : store_(NewMemoryStore()),
        fake_(clock_, 3),
        timers_(clock_),
        tokens_("test-secret"),
        api_tokens_(*store_, clock_),
        box_(SecretBox::FromKey(std::string(32, 'k'))),
        keys_(*store_, box_, clock_) {
    ControllerOptions copts;
    copts.threading = Threading::kManual;
    copts.artifacts_dir = "/artifacts";
    copts.token_for = [this](const std::string& id) { return tokens_.For(id); };
    copts.on_job_changed = [this](const std::string& id) { server_.Wake(id); };
    ctl_ = std::make_unique<Controller>(*store_, clock_, timers_, catalog_, copts);
    fake_.SetSink(ctl_.get());
    ctl_->SetBackend(&fake_);
    EXPECT_TRUE(ctl_->Start().ok());
    admin_ = api_tokens_.Create({"root", "default", Role::kAdmin, 0})->token;
    NativeApiOptions opts;
    opts.api_tokens = &api_tokens_;
    opts.access_keys = &keys_;
    opts.secrets = &box_;
    opts.router.audit = store_.get();
    opts.router.limits.failures_per_minute = 0;  // the matrix makes many failed attempts
    tuner_ = std::make_unique<tuning::TuningService>(*store_, *ctl_, clock_, tuning::ServiceOptions{});
    opts.tuning = tuner_.get();  // not started: its routes only
    schedules::Options so;
    so.submit = [this](const std::string& body, const Principal& who) { return api_->Submit(body, who); };
    so.validate = [this](const json& job) { return ParseSpec(job, catalog_).status(); };
    sched_ = std::make_unique<schedules::Scheduler>(*store_, clock_, timers_, so);
    opts.schedules = sched_.get();
    api_ = std::make_unique<NativeApi>(*ctl_, *store_, catalog_, tokens_, opts);
    api_->Register(server_);
    auto bound = server_.Bind("127.0.0.1:0");
    EXPECT_TRUE(bound.ok());
    port_ = std::stoi(bound->substr(bound->rfind(':') + 1));
    server_.Start();
  }
  ~ApiTest() override {
    api_->Shutdown();
    server_.Wake("*");
    server_.Stop();
  }
  // A client with the admin's token; Anonymous() one without any.
  httplib::Client Client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_bearer_token_auth(admin_);
    return c;
  }
  httplib::Client Anonymous() { return httplib::Client("127.0.0.1", port_); }
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
  ApiTokens api_tokens_;
  SecretBox box_;
  AccessKeys keys_;
  std::string admin_;
  std::unique_ptr<Controller> ctl_;
  std::unique_ptr<tuning::TuningService> tuner_;
  std::unique_ptr<schedules::Scheduler> sched_;
  std::unique_ptr<NativeApi> api_;
  http::AsyncServer server_{http::ServerOptions{}};
  int port_ = 0;
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
  auto r = Anonymous().Get("/v1/health");
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

TEST_F(ApiTest, AJobsEventStreamFollowsItLiveAndEndsWithItEvenWhenItsEventsWerePruned) {
  auto c = Client();
  auto r = c.Post("/v1/jobs", R"({"name":"streamed","command":["/bin/true"]})", "application/json");
  ASSERT_EQ(r->status, 201) << r->body;
  const std::string id = Body(r)["id"];
  // Followed while it runs: the controller's changes wake the parked stream.
  std::thread driver([&] {
    for (int i = 0; i < 200; ++i) {
      Drain();
      clock_.Advance(500);
      fake_.AdvanceToNow();
      while (fake_.DeliverOne(0, 0)) {
      }
      Drain();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::string body;
  auto live = c.Get("/v1/jobs/" + id + "/events", [&](const char* d, size_t n) {
    body.append(d, n);
    return true;
  });
  driver.join();
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 200);
  EXPECT_NE(body.find("event: JobCreated"), std::string::npos) << body;
  EXPECT_NE(body.find("\"status\":\"Completed\""), std::string::npos) << body;
  // Its events pruned by retention: a followed stream ends at once, empty.
  ASSERT_GT(*store_->PruneEvents(clock_.NowMs() + 1, 1000), 0);
  auto after = c.Get("/v1/jobs/" + id + "/events");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  EXPECT_EQ(after->body, "");
  EXPECT_EQ(Body(c.Get("/v1/jobs/" + id))["status"], "Completed");
}

TEST_F(ApiTest, TheRuntimeDocumentNeedsTheInstancesTokenAndDecodes) {
  auto c = Anonymous();
  auto submit = Client();
  auto r = submit.Post("/v1/jobs",
                       R"({"name":"rt","command":["/bin/true"],"instance":{"count":2},"hyperparameters":{"lr":0.1}})",
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

// ---------------------------------------------------------------- access

// One cell's request: a path (and body) for a route, on a resource of `team`.
struct Probe {
  std::string path;
  std::string body;
  std::string content_type = "application/json";
  bool own_fresh_token = false;  // sent with a new token of the caller's role (it revokes it)
  bool team_less = false;        // names no team's resource: "other team" is the same cell
};

class AccessMatrix : public ApiTest {
 protected:
  static constexpr const char* kOwn = "ads";
  static constexpr const char* kOther = "webteam";  // the marker: never in an answer to ads

  void SetUp() override {
    for (auto [role, name] : {std::pair{Role::kViewer, "ads-viewer"}, std::pair{Role::kMember, "ads-member"},
                              std::pair{Role::kTeamAdmin, "ads-teamadmin"}})
      principals_.push_back({name, api_tokens_.Create({name, kOwn, role, 0})->token, role});
    principals_.push_back({"admin", admin_, Role::kAdmin});
    principals_.push_back({"none", "", Role::kViewer});
    // Another team's resources, whose ids must never show to ads.
    other_job_ = NewJob(kOther);
    TuningOf(kOther);  // listed to nobody but an admin
    ASSERT_TRUE(store_->PutSecret(kOther, "S", *box_.Seal("v", std::string(kOther) + "/S"), 1).ok());
    ASSERT_TRUE(store_->PutSecret(kOwn, "S", *box_.Seal("v", std::string(kOwn) + "/S"), 1).ok());
    markers_ = {kOther, other_job_};
  }

  std::string NewJob(const std::string& team) {
    auto job =
        api_->Submit(json{{"name", "j" + std::to_string(++n_)}, {"command", {"/bin/true"}}, {"team", team}}.dump(),
                     Principal{"t", "t", team, Role::kAdmin, Credential::kApiToken});
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    Drain();
    if (team == kOther) markers_.push_back(job->id);
    return job->id;
  }

  // How each route is called on a resource of `team`; a route missing here fails
  // the test, so a new route cannot ship without a row in the matrix.
  std::optional<Probe> ProbeFor(const RouteRule& rule, const std::string& team) {
    const std::string key = rule.method + " " + rule.pattern;
    const bool other = team == kOther;
    const std::string q = other ? "?team=" + team : "";
    if (key == "GET /v1/health" || key == "GET /v1/instance-types" || key == "GET /v1/whoami" ||
        key == "GET /v1/runtime" || key == "GET /v1/runtime/hyperparameters")
      return Probe{rule.pattern, "", "application/json", false, true};
    if (key == "GET /metrics") return Probe{rule.pattern, ""};
    if (key == "GET /v1/pools") return Probe{rule.pattern, "", "application/json", false, true};
    if (key == "POST /v1/pools/([a-zA-Z0-9_-]{1,63})/slurm-events")
      return Probe{"/v1/pools/cluster/slurm-events", R"({"job_id":1})", "application/json", false, true};
    if (key == "POST /v1/runtime/exit")
      return Probe{rule.pattern, R"({"exit":{"exit_code":0}})", "application/json", false, true};
    if (key == "POST /v1/runtime/events")
      return Probe{rule.pattern, R"({"type":"Training"})", "application/json", false, true};
    if (key == "POST /v1/jobs")
      return Probe{"/v1/jobs",
                   json{{"name", "p" + std::to_string(++n_)}, {"command", {"/bin/true"}}, {"team", team}}.dump()};
    if (key == "GET /v1/jobs" || key == "GET /v1/tokens" || key == "GET /v1/keys" || key == "GET /v1/audit")
      return Probe{rule.pattern + q, ""};
    if (key == "GET /v1/jobs/([^/]+)") return Probe{"/v1/jobs/" + JobOf(team), ""};
    if (key == "POST /v1/jobs/([^/?]+)/stop") return Probe{"/v1/jobs/" + NewJob(team) + "/stop", ""};
    if (key == "PUT /v1/jobs/([^/?]+)/keep-alive")
      return Probe{"/v1/jobs/" + NewJob(team) + "/keep-alive", R"({"keep_alive_seconds":60})"};
    if (key == "GET /v1/jobs/([^/]+)/metrics" || key == "GET /v1/jobs/([^/]+)/logs")
      return Probe{"/v1/jobs/" + JobOf(team) + rule.pattern.substr(rule.pattern.rfind('/')), ""};
    if (key == "GET /v1/jobs/([^/]+)/events") return Probe{"/v1/jobs/" + JobOf(team) + "/events?follow=false", ""};
    if (key == "GET /v1/events") return Probe{"/v1/events?follow=false", ""};
    if (key == "GET /v1/instances") return Probe{"/v1/instances?job=" + JobOf(team), ""};
    if (key == "PUT /v1/secrets/([^/]+)/([^/]+)")
      return Probe{"/v1/secrets/" + team + "/S", "value", "application/octet-stream"};
    if (key == "GET /v1/secrets/([^/]+)") return Probe{"/v1/secrets/" + team, ""};
    if (key == "DELETE /v1/secrets/([^/]+)/([^/]+)") {
      const std::string name = "D" + std::to_string(++n_);
      EXPECT_TRUE(store_->PutSecret(team, name, *box_.Seal("v", team + "/" + name), 1).ok());
      return Probe{"/v1/secrets/" + team + "/" + name, ""};
    }
    if (key == "POST /v1/tokens")
      return Probe{"/v1/tokens", json{{"name", "n"}, {"team", team}, {"role", "viewer"}}.dump()};
    if (key == "DELETE /v1/tokens/([A-Z2-7]+)")
      return Probe{"/v1/tokens/" + api_tokens_.Create({"victim", team, Role::kViewer, 0})->record.id, ""};
    if (key == "POST /v1/tuning-jobs") return Probe{"/v1/tuning-jobs", TuningSpec(team).dump()};
    if (key == "POST /v1/schedules")
      return Probe{"/v1/schedules", json{{"name", "s" + std::to_string(++n_)},
                                         {"cron", "@daily"},
                                         {"job", {{"command", {"/bin/true"}}, {"team", team}}}}
                                        .dump()};
    if (key == "GET /v1/schedules") return Probe{"/v1/schedules", ""};
    if (key == "GET /v1/schedules/([A-Za-z0-9-]+)") return Probe{"/v1/schedules/" + ScheduleOf(team, false), ""};
    if (key == "DELETE /v1/schedules/([A-Za-z0-9-]+)") return Probe{"/v1/schedules/" + ScheduleOf(team, true), ""};
    if (key == "GET /v1/tuning-jobs") return Probe{"/v1/tuning-jobs", ""};
    if (key == "GET /v1/tuning-jobs/([A-Za-z0-9-]+)") return Probe{"/v1/tuning-jobs/" + TuningOf(team), ""};
    if (key == "POST /v1/tuning-jobs/([A-Za-z0-9-]+)/stop")
      return Probe{"/v1/tuning-jobs/" + NewTuning(team) + "/stop", ""};
    if (key == "DELETE /v1/whoami") return Probe{"/v1/whoami", "", "application/json", true, true};
    if (key == "POST /v1/keys") return Probe{"/v1/keys", json{{"team", team}, {"role", "viewer"}}.dump()};
    if (key == "DELETE /v1/keys/([A-Z0-9]+)") {
      auto k = keys_.Create(team, Role::kViewer);
      if (other) markers_.push_back(k->id);
      return Probe{"/v1/keys/" + k->id, ""};
    }
    return std::nullopt;
  }

  // A tuning job's spec; another team's name carries the marker.
  json TuningSpec(const std::string& team) {
    return json{{"name", team + "-tune-" + std::to_string(++n_)},
                {"team", team},
                {"objective", {{"metric", "loss"}, {"type", "Minimize"}, {"source", "StatsD"}}},
                {"max_trials", 2},
                {"max_parallel", 1},
                {"parameters", {{"lr", {{"type", "Continuous"}, {"min", 0.01}, {"max", 1}}}}},
                {"trial", {{"command", {"/bin/true"}}}}};
  }
  // A schedule of `team` (made by an admin); another team's name carries the
  // marker. `fresh`: a new one each time (the probe deletes it).
  std::string ScheduleOf(const std::string& team, bool fresh) {
    std::string& s = team == kOther ? other_schedule_ : own_schedule_;
    if (!s.empty() && !fresh) return s;
    const std::string name = (team == kOther ? std::string(kOther) : "own") + "-sched" + std::to_string(++n_);
    Principal admin{"t", "root", team, Role::kAdmin, Credential::kApiToken};
    auto rec = sched_->Create(
        {{"name", name}, {"cron", "@daily"}, {"job", {{"command", {"/bin/true"}}, {"team", team}}}}, admin);
    EXPECT_TRUE(rec.ok()) << rec.status().ToString();
    if (!fresh) s = name;
    return name;
  }

  std::string NewTuning(const std::string& team) {
    auto spec = tuning::ParseTuningSpec(TuningSpec(team), &catalog_);
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    auto job = tuner_->Create(*spec);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return spec->name;
  }
  std::string TuningOf(const std::string& team) {
    std::string& t = team == kOther ? other_tuning_ : own_tuning_;
    if (t.empty()) t = NewTuning(team);
    return t;
  }

  std::string JobOf(const std::string& team) { return team == kOther ? other_job_ : OwnJob(); }
  std::string OwnJob() {
    if (own_job_.empty()) own_job_ = NewJob(kOwn);
    return own_job_;
  }

  // Everything a denied request must leave as it was.
  json Fingerprint() {
    json f;
    ListQuery q;
    q.limit = 1000;
    auto jobs = store_->ListJobs(q);
    for (const auto& j : jobs->jobs) f["jobs"][j.id] = ToString(j.status);
    for (const char* t : {kOwn, kOther}) {
      auto secrets = store_->ListSecrets(t);
      for (const auto& [n, at] : *secrets) f["secrets"][t][n] = at;
    }
    auto tokens = store_->ListApiTokens("");
    for (const auto& t : *tokens) f["tokens"][t.id] = t.revoked;
    auto keys = store_->ListAccessKeys("");
    for (const auto& k : *keys) f["keys"].push_back(k.id);
    return f;
  }

  struct Who {
    std::string name, token;
    Role role;
  };
  std::vector<Who> principals_;
  std::vector<std::string> markers_;
  std::string other_job_, own_job_, other_tuning_, own_tuning_, other_schedule_, own_schedule_;
  int n_ = 0;
};

TEST_F(AccessMatrix, EveryRouteTimesEveryRoleTimesOwnAndOtherTeam) {
  int cells = 0, must_deny = 0, denied = 0;
  for (const RouteRule& rule : api_->Routes()) {
    for (const char* team : {kOwn, kOther}) {
      for (const Who& who : principals_) {
        auto probe = ProbeFor(rule, team);
        ASSERT_TRUE(probe) << "no access-matrix row for " << rule.method << " " << rule.pattern;
        const bool anonymous = who.token.empty();
        const std::optional<Role> least = LeastRole(rule.access);
        bool allowed = rule.access == Access::kOpen;
        if (least)
          allowed = !anonymous && who.role >= *least && (team == kOwn || probe->team_less || who.role == Role::kAdmin);
        const json before = Fingerprint();
        httplib::Client c("127.0.0.1", port_);
        httplib::Headers h;
        std::string token = who.token;
        if (probe->own_fresh_token && !anonymous)
          token = api_tokens_.Create({who.name, who.role == Role::kAdmin ? "default" : kOwn, who.role, 0})->token;
        if (!anonymous) h.emplace("Authorization", "Bearer " + token);
        httplib::Result r = rule.method == "GET"    ? c.Get(probe->path, h)
                            : rule.method == "POST" ? c.Post(probe->path, h, probe->body, probe->content_type)
                            : rule.method == "PUT"  ? c.Put(probe->path, h, probe->body, probe->content_type)
                                                    : c.Delete(probe->path, h);
        Drain();
        ASSERT_TRUE(r) << probe->path;
        const std::string cell =
            rule.method + " " + probe->path + " as " + who.name + " (" + team + ") -> " + std::to_string(r->status);
        ++cells;
        bool leaked = false;
        if (who.role != Role::kAdmin || anonymous)
          for (const auto& m : markers_)  // what the caller itself sent may be echoed
            leaked = leaked ||
                     (r->body.find(m) != std::string::npos && (probe->path + probe->body).find(m) == std::string::npos);
        if (rule.pattern == "/v1/audit" && r->status == 200 && who.role != Role::kAdmin) {
          // The team's own requests, which may name what its members tried; never another team's.
          const json records = Body(r)["records"];  // a copy: Body's json is a temporary
          for (const auto& rec : records) EXPECT_EQ(rec["team"], kOwn) << cell;
          leaked = false;
        }
        EXPECT_FALSE(leaked) << cell << ": shows another team's resource: " << r->body.substr(0, 300);
        EXPECT_LT(r->status, 500) << cell << ": " << r->body;
        if (allowed) {
          EXPECT_TRUE(r->status != 401 && r->status != 403 && r->status != 404) << cell << ": " << r->body;
          continue;
        }
        ++must_deny;
        const bool refused = r->status == 401 || r->status == 403 || r->status == 404;
        const bool harmless = rule.method == "GET" && r->status == 200;  // only its own team's (no marker)
        EXPECT_TRUE(refused || harmless) << cell << ": " << r->body;
        if (anonymous && rule.access != Access::kOpen) EXPECT_EQ(r->status, 401) << cell;
        EXPECT_EQ(Fingerprint(), before) << cell << ": a denied request changed something";
        if (!leaked && (refused || harmless) && Fingerprint() == before) ++denied;
      }
    }
  }
  printf("access matrix: %zu routes, %d cells, %d must be denied, %d denied\n", api_->Routes().size(), cells, must_deny,
         denied);
  EXPECT_EQ(denied, must_deny);
  EXPECT_GT(cells, 200);
}

TEST_F(AccessMatrix, AJobIsSubmittedForTheCallersTeamAndAnotherTeamsIsIndistinguishableFromNone) {
  httplib::Client c("127.0.0.1", port_);
  c.set_bearer_token_auth(principals_[1].token);  // ads member
  auto r = c.Post("/v1/jobs", R"({"name":"mine","command":["/bin/true"]})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(Body(r)["spec"]["team"], kOwn);
  auto theirs = c.Get("/v1/jobs/" + other_job_);
  auto none = c.Get("/v1/jobs/j-0000000000000000");
  ASSERT_TRUE(theirs && none);
  EXPECT_EQ(theirs->status, 404);
  EXPECT_EQ(Body(theirs)["error"]["message"], "job '" + other_job_ + "' not found");
  EXPECT_EQ(Body(none)["error"]["message"], "job 'j-0000000000000000' not found");
  // Submitting for another team: refused, with the field.
  auto other = c.Post("/v1/jobs", R"({"name":"x","command":["/bin/true"],"team":"webteam"})", "application/json");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 403);
  EXPECT_EQ(Body(other)["error"]["field"], "team");
  EXPECT_EQ(store_->GetJob("x").status().code(), Code::kNotFound);
}

TEST_F(AccessMatrix, BrowsersCannotDriveTheApi) {
  httplib::Client c("127.0.0.1", port_);
  c.set_bearer_token_auth(admin_);
  const std::string spec = R"({"name":"csrf","command":["/bin/true"]})";
  // A form post (text/plain) is no JSON request, even with a credential.
  auto form = c.Post("/v1/jobs", spec, "text/plain");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 415) << form->body;
  // A page of another origin is refused whatever it sends.
  auto cross = c.Post("/v1/jobs", httplib::Headers{{"Origin", "http://evil.example"}}, spec, "application/json");
  ASSERT_TRUE(cross);
  EXPECT_EQ(cross->status, 403) << cross->body;
  // Without the header a browser never adds by itself: 401.
  auto anon = Anonymous().Post("/v1/jobs", spec, "application/json");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
  EXPECT_EQ(anon->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
  EXPECT_EQ(store_->GetJob("csrf").status().code(), Code::kNotFound);
}

TEST_F(AccessMatrix, ARevokedTokenStopsAtOnceAndMutationsAreAudited) {
  auto t = api_tokens_.Create({"temp", kOwn, Role::kMember, 0});
  httplib::Client c("127.0.0.1", port_);
  c.set_bearer_token_auth(t->token);
  auto ok = c.Post("/v1/jobs", R"({"name":"before-revoke","command":["/bin/true"]})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201);
  auto revoke = c.Delete("/v1/whoami");  // its own (kiln logout)
  ASSERT_TRUE(revoke);
  EXPECT_EQ(revoke->status, 204) << revoke->body;
  auto after = c.Post("/v1/jobs", R"({"name":"after-revoke","command":["/bin/true"]})", "application/json");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 401);
  EXPECT_EQ(store_->GetJob("after-revoke").status().code(), Code::kNotFound);
  auto audit = store_->ListAudit(0, kOwn, 100);
  ASSERT_TRUE(audit.ok());
  std::vector<std::pair<std::string, int>> seen;
  for (const auto& a : *audit)
    if (a.principal == t->record.id) seen.emplace_back(a.method + " " + a.path, a.status);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_pair(std::string("POST /v1/jobs"), 201));
  EXPECT_EQ(seen[1], std::make_pair(std::string("DELETE /v1/whoami"), 204));
  // A team admin grants no role above its own, and only in its team.
  httplib::Client ta("127.0.0.1", port_);
  ta.set_bearer_token_auth(principals_[2].token);
  auto up = ta.Post("/v1/tokens", R"({"name":"x","role":"admin"})", "application/json");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->status, 403);
  EXPECT_EQ(Body(up)["error"]["field"], "role");
  auto own = ta.Post("/v1/tokens", R"({"name":"ci-bot","role":"member"})", "application/json");
  ASSERT_TRUE(own);
  ASSERT_EQ(own->status, 201) << own->body;
  EXPECT_EQ(Body(own)["team"], kOwn);
  auto p = api_tokens_.Authenticate(Body(own)["token"]);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->role, Role::kMember);
}

TEST(StreamSlots, BoundTheStreamsInAllAndPerPrincipal) {
  StreamSlots slots(3, 2);
  auto a1 = slots.Acquire("a");
  auto a2 = slots.Acquire("a");
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = slots.Acquire("a");
  EXPECT_EQ(a3.status().code(), Code::kResourceExhausted);
  EXPECT_NE(a3.status().message().find("max_streams_per_principal"), std::string::npos);
  auto b1 = slots.Acquire("b");
  ASSERT_TRUE(b1.ok());
  auto b2 = slots.Acquire("b");
  EXPECT_NE(b2.status().message().find("api.max_streams"), std::string::npos);  // all 3 taken
  EXPECT_EQ(slots.open(), 3);
  { auto gone = std::move(*a1); }  // the stream ended
  EXPECT_EQ(slots.open(), 2);
  EXPECT_TRUE(slots.Acquire("a").ok());
}

}  // namespace
}  // namespace kiln
