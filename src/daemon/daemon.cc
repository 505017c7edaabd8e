#include "daemon/daemon.h"

#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <thread>

#include "api/native_api.h"
#include "auth/access_keys.h"
#include "cli/spec_file.h"
#include "common/fsutil.h"
#include "common/ids.h"
#include "compute/local/local_backend.h"
#include "controller/controller.h"
#include "smapi/server.h"
#include "store/store.h"

namespace kiln {
namespace {

using nlohmann::json;

std::atomic<httplib::Server*> g_server{nullptr};
void OnSignal(int) {
  if (auto* s = g_server.load()) s->stop();
}

Result<std::string> LoadOrCreateSecret(const std::string& path) {
  auto s = ReadFile(path);
  if (s.ok() && s->size() >= 32) return *s;
  std::string secret = NewToken();
  KILN_RETURN_IF_ERROR(WriteFileAtomic(path, secret, 0600));
  return secret;
}

// Instances that outlived a kilnd restart keep sending metrics to the port and
// socket they were given: open them again.
void ReopenMetrics(Store& store, ComputeBackend& backend, MetricsGateway& metrics) {
  auto ids = store.JobsNeedingAttention();
  if (!ids.ok()) return;
  for (const auto& id : *ids) {
    auto job = store.GetJob(id);
    if (!job.ok() || IsTerminal(job->status)) continue;
    for (const auto& in : job->instances) {
      if (in.state != InstanceState::kRunning) continue;
      std::string sock = backend.MetricsSocketPath(in.id);
      auto port = ReadFile(sock + ".port");
      if (sock.empty() || !port.ok()) continue;  // never fetched its runtime
      auto r = metrics.OpenInstance(in.id, job->id, job->spec.team, sock, atoi(port->c_str()));
      if (!r.ok())
        fprintf(stderr, "kilnd: reopening metrics of %s: %s\n", in.id.c_str(), r.status().ToString().c_str());
    }
  }
}

// kilnd's config file (YAML or JSON); {} without one.
Result<json> LoadConfig(const std::string& path) {
  if (path.empty()) return json::object();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto parsed = ParseYamlOrJson(*text);
  if (!parsed.ok()) return InvalidArgument("config", path + ": " + parsed.status().message());
  return *parsed;
}

// Binds `listen` ("host:port", port 0 = any); returns the bound "host:port".
Result<std::string> Bind(httplib::Server& server, const std::string& listen) {
  std::string host = listen;
  int port = 8470;
  if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = atoi(listen.c_str() + colon + 1);
  }
  int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) return Unavailable("cannot listen on " + listen);
  return host + ":" + std::to_string(bound);
}

// Every backend this build has, by name (explicit registration, no static init).
void RegisterBackends(BackendRegistry& registry, const KilndOptions& o, const std::string& data) {
  registry.Register("local", [&o, data](EventSink& sink) -> Result<std::unique_ptr<ComputeBackend>> {
    LocalBackendOptions lo;
    lo.instances_dir = data + "/instances";
    lo.supervisor_path = o.bin_dir + "/kiln-supervisor";
    lo.entrypoint_path = o.bin_dir + "/kiln-entrypoint";
    auto b = std::make_unique<LocalBackend>(lo, sink, RealClock::Get());
    KILN_RETURN_IF_ERROR(b->Init());
    return std::unique_ptr<ComputeBackend>(std::move(b));
  });
}

// Errors httplib answers itself (no route, body too large, unparsable request) in
// the API's error shape.
void InstallErrorHandler(httplib::Server& server) {
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string code = res.status == 413 ? "PayloadTooLarge" : res.status == 404 ? "NotFound" : "BadRequest";
    std::string msg = res.status == 413   ? "request body too large"
                      : res.status == 404 ? "no such route"
                                          : "bad request";
    json e = {{"error", {{"code", code}, {"message", msg}, {"field", nullptr}}}};
    res.set_content(e.dump(), "application/json");
  });
}

// Serves until SIGTERM/SIGINT, with the controller's slow safety-net resync every
// `resync_seconds` on its own thread.
void ServeUntilSignal(httplib::Server& server, Controller& controller, int resync_seconds) {
  g_server = &server;
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  std::mutex resync_mu;
  std::condition_variable resync_cv;
  bool stopping = false;
  std::thread resync([&] {
    std::unique_lock<std::mutex> l(resync_mu);
    while (!resync_cv.wait_for(l, std::chrono::seconds(resync_seconds), [&] { return stopping; })) controller.Resync();
  });
  server.listen_after_bind();
  {
    std::lock_guard<std::mutex> l(resync_mu);
    stopping = true;
  }
  resync_cv.notify_all();
  resync.join();
}

}  // namespace

int RunKilnd(const KilndOptions& o) {
  auto fail = [](const Status& st) {
    fprintf(stderr, "kilnd: %s\n", st.ToString().c_str());
    return 1;
  };
  const std::string data = std::filesystem::absolute(o.data_dir).lexically_normal().string();
  if (Status st = MakeDirs(data); !st.ok()) return fail(st);
  if (Status st = MakeDirs(data + "/artifacts"); !st.ok()) return fail(st);

  auto loaded = LoadConfig(o.config_path);
  if (!loaded.ok()) return fail(loaded.status());
  const json& config = *loaded;
  auto catalog = Catalog::FromJson(config);
  if (!catalog.ok()) return fail(catalog.status());

  auto secret = LoadOrCreateSecret(data + "/secret.key");
  if (!secret.ok()) return fail(secret.status());
  TokenIssuer tokens(*secret);
  auto box = SecretBox::LoadOrCreate(o.master_key_path.empty() ? data + "/master.key" : o.master_key_path);
  if (!box.ok()) return fail(box.status());

  auto store = OpenSqliteStore(data + "/kiln.db", o.durable_fsync ? Durability::kFull : Durability::kNormal);
  if (!store.ok()) return fail(store.status());

  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(64); };
  server.set_tcp_nodelay(true);
  auto bound = Bind(server, o.listen);
  if (!bound.ok()) return fail(bound.status());
  const std::string addr = *bound;
  const std::string api_url = "http://" + addr;

  GatewayOptions gopts;
  gopts.flush_interval_ms = o.statsd_flush_ms;
  Store& st = **store;
  MetricsGateway metrics(gopts, RealClock::Get(), [&st](const std::vector<MetricPoint>& points) {
    Status s = st.AppendMetricPoints(points);
    if (!s.ok()) fprintf(stderr, "kilnd: storing metrics: %s\n", s.ToString().c_str());
  });
  if (Status s = metrics.Start(); !s.ok()) return fail(s);

  ThreadTimerService timers(RealClock::Get());
  ControllerOptions copts;
  copts.threading = Threading::kThreaded;
  copts.api_url = api_url;
  copts.artifacts_dir = data + "/artifacts";
  copts.token_for = [&tokens](const std::string& id) { return tokens.For(id); };
  copts.on_instance_released = [&metrics](const std::string& id) { metrics.CloseInstance(id); };
  copts.before_instance_exit = [&metrics](const std::string& id) { metrics.DrainInstance(id); };
  Controller controller(**store, RealClock::Get(), timers, *catalog, copts);

  BackendRegistry registry;
  RegisterBackends(registry, o, data);
  auto backend = registry.Create(o.backend, controller);
  if (!backend.ok()) return fail(backend.status());
  controller.SetBackend(backend->get());

  NativeApiOptions aopts;
  ComputeBackend* be = backend->get();
  aopts.log_path = [be](const std::string& id) { return be->LogPath(id); };
  aopts.metrics_socket_path = [be](const std::string& id) { return be->MetricsSocketPath(id); };
  aopts.metrics = &metrics;
  aopts.staging_dir = data + "/artifacts/.staged-hyperparameters";
  aopts.secrets = &*box;
  tuning::ServiceOptions topts;
  topts.log_path = [be](const std::string& id) { return be->LogPath(id); };
  tuning::TuningService tuner(**store, controller, RealClock::Get(), topts);
  aopts.tuning = &tuner;
  NativeApi api(controller, **store, *catalog, tokens, aopts);
  api.Register(server);

  // The SageMaker-compatible front (SigV4 with Kiln's access keys).
  AccessKeys keys(**store, *box, RealClock::Get());
  auto admin = smapi::BootstrapAdminKey(keys, data + "/credentials");
  if (!admin.ok()) return fail(admin.status());
  smapi::ApiOptions sopts;
  const json sm = config.value("sagemaker", json::object());
  sopts.ctx.region = sm.value("region", "us-east-1");
  sopts.ctx.account = sm.value("account", "000000000000");
  sopts.ctx.catalog = &*catalog;
  auto s3 = smapi::S3Map::FromConfig(config.value("s3", json()), data + "/s3");
  if (!s3.ok()) return fail(s3.status());
  sopts.ctx.s3 = *s3;
  if (Status st = MakeDirs(s3->root()); !st.ok()) return fail(st);
  smapi::SageMakerApi sagemaker(controller, **store, keys, RealClock::Get(), sopts);
  sagemaker.SetTuning(&tuner);
  sagemaker.Register(server);
  InstallErrorHandler(server);

  if (Status st = controller.Start(); !st.ok()) return fail(st);
  tuner.Start();  // resumes live tuning jobs from the store
  ReopenMetrics(**store, *be, metrics);

  if (Status st = WriteFileAtomic(data + "/kilnd.addr", addr + "\n"); !st.ok()) return fail(st);
  fprintf(stderr, "kilnd: listening on %s (data dir %s, backend %s)\n", api_url.c_str(), data.c_str(),
          o.backend.c_str());
  ServeUntilSignal(server, controller, o.resync_seconds);

  fprintf(stderr, "kilnd: shutting down; running instances keep running and are re-adopted on restart\n");
  api.Shutdown();
  tuner.Shutdown();
  controller.Shutdown();
  metrics.Shutdown();
  unlink((data + "/kilnd.addr").c_str());
  return 0;
}

}  // namespace kiln
