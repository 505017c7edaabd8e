// kiln_auth_bench [N]: what authentication and authorization add to a request.
// One HTTP server on loopback (kilnd's own http::AsyncServer), one SQLite store on disk
// holding a job and the tokens, and the same handler (describe the job, with the
// team check) behind two routes: one open, one behind the router's full gate
// (Origin, failed-auth limit, Bearer token looked up and hashed, least role, rate
// bucket). A keep-alive client alternates the two, N requests each; prints p50
// and p99 of each and of their difference, and the bare Authenticate() call.
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "api/router.h"
#include "auth/api_tokens.h"
#include "common/clock.h"
#include "http/async_server.h"
#include "jobs/model.h"
#include "store/store.h"

namespace {

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kiln;
  const int n = argc > 1 ? atoi(argv[1]) : 5000;
  const std::string dir = std::filesystem::temp_directory_path() / ("kiln-authbench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto store = OpenSqliteStore(dir + "/kiln.db");
  if (!store.ok()) return 1;
  Job job;
  job.id = "j-bench";
  job.spec.name = "bench";
  job.spec.team = "ads";
  job.spec.command = {"/bin/true"};
  Event created;
  created.type = EventType::kJobCreated;
  created.source = "api";
  if (!(*store)->CreateJob(job, created).ok()) return 1;
  ApiTokens tokens(**store, RealClock::Get());
  for (int i = 0; i < 1000; ++i) (void)tokens.Create({"user" + std::to_string(i), "ads", Role::kMember, 0});
  const std::string token = tokens.Create({"bench", "ads", Role::kViewer, 0})->token;

  http::AsyncServer server{http::ServerOptions{}};
  RouterOptions ropts;
  ropts.audit = store->get();
  Router router(server, &tokens, ropts);
  auto describe = [&](const httplib::Request& req, httplib::Response& res, const Principal& who) {
    auto j = (*store)->GetJob(req.matches[1]);
    if (!j.ok() || (!who.id.empty() && !who.Sees(j->spec.team))) {
      res.status = 404;
      return;
    }
    res.set_content(ToJson(*j).dump(), "application/json");
  };
  router.Get(R"(/open/jobs/([^/]+))", Access::kOpen, describe);
  router.Get(R"(/v1/jobs/([^/]+))", Access::kViewer, describe);
  auto bound = server.Bind("127.0.0.1:0");  // kilnd's server, as kilnd sets it up
  if (!bound.ok()) return 1;
  const int port = std::stoi(bound->substr(bound->rfind(':') + 1));
  server.Start();

  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  httplib::Headers auth = {{"Authorization", "Bearer " + token}};
  std::vector<double> open_us, gated_us;
  for (int i = 0; i < n + 200; ++i) {
    const int64_t t0 = MonotonicNs();
    auto a = c.Get("/open/jobs/j-bench");
    const int64_t t1 = MonotonicNs();
    auto b = c.Get("/v1/jobs/j-bench", auth);
    const int64_t t2 = MonotonicNs();
    if (!a || !b || a->status != 200 || b->status != 200) {
      fprintf(stderr, "request failed\n");
      return 1;
    }
    if (i < 200) continue;  // warm-up
    open_us.push_back(static_cast<double>(t1 - t0) / 1000.0);
    gated_us.push_back(static_cast<double>(t2 - t1) / 1000.0);
  }
  std::vector<double> bare;
  for (int i = 0; i < n; ++i) {
    const int64_t t0 = MonotonicNs();
    auto p = tokens.Authenticate(token);
    bare.push_back(static_cast<double>(MonotonicNs() - t0) / 1000.0);
    if (!p.ok()) return 1;
  }
  server.Stop();
  std::filesystem::remove_all(dir);
  printf(
      "{\"n\": %d, \"open_p50_us\": %.1f, \"open_p99_us\": %.1f, \"auth_p50_us\": %.1f, \"auth_p99_us\": %.1f, "
      "\"added_p50_us\": %.1f, \"authenticate_p50_us\": %.1f, \"authenticate_p99_us\": %.1f, \"tokens\": 1001}\n",
      n, Pct(open_us, 50), Pct(open_us, 99), Pct(gated_us, 50), Pct(gated_us, 99), Pct(gated_us, 50) - Pct(open_us, 50),
      Pct(bare, 50), Pct(bare, 99));
  return 0;
}
