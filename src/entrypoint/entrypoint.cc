#include "entrypoint/entrypoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/fsutil.h"
#include "entrypoint/context.h"
#include "entrypoint/http_client.h"

namespace kiln {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string Env(const char* k, const char* def = "") {
  const char* v = getenv(k);
  return v ? v : def;
}

void Log(const std::string& msg) {
  std::string line = "[kiln-entrypoint] " + msg + "\n";
  ssize_t n = write(2, line.data(), line.size());
  (void)n;
}

struct ApiTarget {
  std::string host;
  int port = 0;
};

ApiTarget ParseUrl(const std::string& url) {
  ApiTarget t;
  std::string rest = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
  auto slash = rest.find('/');
  if (slash != std::string::npos) rest = rest.substr(0, slash);
  auto colon = rest.rfind(':');
  t.host = rest.substr(0, colon);
  t.port = colon == std::string::npos ? 80 : atoi(rest.c_str() + colon + 1);
  return t;
}

// Sends phase reports in order on its own thread, retrying each until kilnd
// acknowledges it (kilnd may be restarting). Flush() waits, bounded.
class Reporter {
 public:
  Reporter(ApiTarget api, std::string token) : api_(std::move(api)), token_(std::move(token)) {
    if (!api_.host.empty()) thread_ = std::thread([this] { Loop(); });
  }
  ~Reporter() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Report(const std::string& phase, json extra = json::object()) {
    if (api_.host.empty()) return;
    json body = {{"type", phase}, {"time_ms", RealClock::Get().NowMs()}, {"payload", extra}};
    {
      std::lock_guard<std::mutex> l(mu_);
      q_.push_back(body.dump());
    }
    cv_.notify_all();
  }
  void Flush(int timeout_ms) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(timeout_ms), [&] { return q_.empty() && !busy_; });
  }

 private:
  void Loop() {
    const std::map<std::string, std::string> h = {{"Authorization", "Bearer " + token_},
                                                  {"Content-Type", "application/json"}};
    int backoff = 20;
    for (;;) {
      std::string body;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return done_ || !q_.empty(); });
        if (q_.empty()) return;
        body = q_.front();
        busy_ = true;
      }
      auto res = HttpCall(api_.host, api_.port, "POST", "/v1/runtime/events", h, body, 5000);
      std::unique_lock<std::mutex> l(mu_);
      busy_ = false;
      if (res.ok() && (res->status == 200 || res->status == 404 || res->status == 401 || res->status == 400)) {
        // Acknowledged, or refused for good (job gone): either way, done with it.
        q_.pop_front();
        backoff = 20;
        cv_.notify_all();
      } else {
        if (done_) return;
        cv_.wait_for(l, std::chrono::milliseconds(backoff));
        backoff = std::min(backoff * 2, 2000);
      }
    }
  }
  ApiTarget api_;
  std::string token_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> q_;
  bool busy_ = false;
  bool done_ = false;
  std::thread thread_;
};

std::string ToUpperName(const std::string& s) {
  std::string o;
  for (char c : s) o.push_back(isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(toupper(c)) : '_');
  return o;
}

std::string HpString(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// Runs a helper program (tar, cp) and waits; true on exit status 0. The child
// of a fork here only makes async-signal-safe calls: the phase reporter's thread
// may hold an allocator or libc lock at the fork, and a malloc in the child
// (a vector, strdup, putenv) would then wait for it forever.
bool RunQuiet(std::vector<std::string> args) {
  std::vector<char*> av;
  av.reserve(args.size() + 1);
  for (auto& a : args) av.push_back(a.data());
  av.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    execvp(av[0], av.data());
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// A hyperparameter value as the SageMaker toolkit sees it: JSON-decoded when it
// is a JSON document ("\"train.py\"" -> train.py, "0.1" -> 0.1), else the string.
json DecodeHp(const json& v) {
  if (!v.is_string()) return v;
  json d = json::parse(v.get<std::string>(), nullptr, false);
  return d.is_discarded() ? v : d;
}

// Script mode, as sagemaker-training-toolkit runs it: the command is `train`, the
// image is a framework image (kilnd says which interpreter), and the
// hyperparameters name the user's program. Runs `python <program> --k v ...`
// from /opt/ml/code with the toolkit's SM_USER_ARGS / SM_HPS.
bool ScriptMode(const json& rt, const std::string& root, std::vector<std::string>& cmd, std::vector<std::string>& env) {
  const std::string python = rt.value("script_mode_python", "");
  const json hps = rt.value("hyperparameters", json::object());
  if (python.empty() || cmd != std::vector<std::string>{"train"} || !hps.is_object() ||
      !hps.contains("sagemaker_program"))
    return false;
  json program = DecodeHp(hps["sagemaker_program"]);
  std::string prog = program.is_string() ? program.get<std::string>() : program.dump();
  json user_args = json::array();
  json decoded = json::object();
  for (auto& [k, v] : hps.items()) {
    if (k.rfind("sagemaker_", 0) == 0) continue;
    json d = DecodeHp(v);
    decoded[k] = d;
    user_args.push_back("--" + k);
    user_args.push_back(d.is_string() ? d.get<std::string>() : d.dump());
  }
  cmd = {python, prog};
  for (const auto& a : user_args) cmd.push_back(a);
  env.push_back("SM_USER_ARGS=" + user_args.dump());
  env.push_back("SM_HPS=" + decoded.dump());
  for (auto& [k, v] : decoded.items()) env.push_back("SM_HP_" + ToUpperName(k) + "=" + HpString(v));
  env.push_back("SM_USER_ENTRY_POINT=" + prog);
  env.push_back("SM_MODULE_NAME=" + prog.substr(0, prog.rfind('.')));
  env.push_back("SM_MODULE_DIR=" + root + "/code");
  env.push_back("SM_FRAMEWORK_MODULE=");
  env.push_back("PYTHONUNBUFFERED=1");
  return true;
}

// SM_TRAINING_ENV: everything above as one JSON document, keyed as
// sagemaker-training-toolkit writes it. Later entries of `env` win (script mode
// overrides SM_HPS and SM_USER_ARGS).
std::string TrainingEnv(const json& rt, const std::vector<std::string>& env) {
  std::map<std::string, std::string> sm;
  for (const auto& e : env) {
    size_t eq = e.find('=');
    if (e.rfind("SM_", 0) == 0 && eq != std::string::npos) sm[e.substr(3, eq - 3)] = e.substr(eq + 1);
  }
  auto as_json = [&](const char* k, json dflt) {
    auto it = sm.find(k);
    if (it == sm.end()) return dflt;
    json j = json::parse(it->second, nullptr, false);
    return j.is_discarded() ? json(it->second) : j;
  };
  auto str = [&](const char* k) { return sm.count(k) ? sm[k] : std::string(); };
  json channel_dirs = json::object();
  for (const auto& [k, v] : sm)
    if (k.rfind("CHANNEL_", 0) == 0) {
      std::string ch = k.substr(8);
      for (auto& c : ch) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
      channel_dirs[ch] = v;
    }
  json hosts = as_json("HOSTS", json::array({"algo-1"}));
  json te = {
      {"additional_framework_parameters", json::object()},
      {"channel_input_dirs", channel_dirs},
      {"current_host", str("CURRENT_HOST")},
      {"current_instance_type", str("CURRENT_INSTANCE_TYPE")},
      {"framework_module", str("FRAMEWORK_MODULE")},
      {"hosts", hosts},
      {"hyperparameters", as_json("HPS", json::object())},
      {"input_config_dir", str("INPUT_CONFIG_DIR")},
      {"input_data_config", as_json("INPUT_DATA_CONFIG", json::object())},
      {"input_dir", str("INPUT_DIR")},
      {"is_master", str("CURRENT_HOST") == (hosts.empty() ? std::string("algo-1") : hosts[0].get<std::string>())},
      {"job_name", rt.value("job_name", "")},
      {"log_level", 20},
      {"master_hostname", hosts.empty() ? std::string("algo-1") : hosts[0].get<std::string>()},
      {"model_dir", str("MODEL_DIR")},
      {"module_dir", str("MODULE_DIR")},
      {"module_name", str("MODULE_NAME")},
      {"network_interface_name", str("NETWORK_INTERFACE_NAME")},
      {"num_cpus", atoi(str("NUM_CPUS").c_str())},
      {"num_gpus", atoi(str("NUM_GPUS").c_str())},
      {"output_data_dir", str("OUTPUT_DATA_DIR")},
      {"output_dir", str("OUTPUT_DIR")},
      {"output_intermediate_dir", str("OUTPUT_INTERMEDIATE_DIR")},
      {"resource_config", as_json("RESOURCE_CONFIG", json::object())},
      {"user_entry_point", str("USER_ENTRY_POINT")}};
  return "SM_TRAINING_ENV=" + te.dump();
}

// MetricDefinitions: regexes over the job's output lines. A match becomes a StatsD
// gauge sent to the job's gateway port, so log metrics and StatsD metrics land in
// the same series model.
class LogMetrics {
 public:
  void Configure(const json& rt) {
    const json defs = rt.value("metric_definitions", json::array());
    const json statsd = rt.value("statsd", json());
    if (defs.empty() || !statsd.is_object()) return;
    for (const auto& d : defs) {
      try {
        defs_.emplace_back(d.value("name", ""), std::regex(d.value("regex", "")));
      } catch (const std::regex_error&) {
      }
    }
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(statsd.value("port", 0)));
    inet_pton(AF_INET, statsd.value("host", std::string("127.0.0.1")).c_str(), &a.sin_addr);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  void Match(const std::string& line) {
    if (fd_ < 0 || line.size() > 4096) return;
    std::smatch m;
    for (const auto& [name, re] : defs_) {
      if (!std::regex_search(line, m, re) || m.size() < 2) continue;
      char* end = nullptr;
      std::string v = m[1].str();
      double d = strtod(v.c_str(), &end);
      if (end == v.c_str() || !std::isfinite(d)) continue;
      char buf[320];
      int n = snprintf(buf, sizeof(buf), "%s:%.17g|g", name.c_str(), d);
      if (n > 0 && n < static_cast<int>(sizeof(buf))) {
        ssize_t w = send(fd_, buf, static_cast<size_t>(n), 0);
        (void)w;
      }
    }
  }
  LogMetrics() = default;
  LogMetrics(const LogMetrics&) = delete;
  LogMetrics& operator=(const LogMetrics&) = delete;
  ~LogMetrics() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  std::vector<std::pair<std::string, std::regex>> defs_;
  int fd_ = -1;
};

enum class ContractFiles { kWrite, kSkip };
constexpr size_t kMaxHyperparameterEnvBytes = 256 << 10;

// Writes the contract files (unless the platform already did) and returns the
// extra environment for the user command.
std::vector<std::string> WriteContract(const json& rt, const std::string& root, ContractFiles files,
                                       const std::string& staged_hyperparameters) {
  std::vector<std::string> env;
  // Staged (large) hyperparameters arrive raw and are written as they are; they
  // are too big for SM_HP_* anyway, so they are never parsed here.
  const bool staged = !staged_hyperparameters.empty();
  const json hps = staged ? json::object() : rt.value("hyperparameters", json::object());
  const std::string hps_text = staged ? staged_hyperparameters : hps.dump();
  const bool write = files == ContractFiles::kWrite;
  if (write) {
    MakeDirs(root + "/input/config");
    MakeDirs(root + "/model");
    MakeDirs(root + "/output/data");
    MakeDirs(root + "/checkpoints");
    WriteFileAtomic(root + "/input/config/hyperparameters.json", hps_text, 0644, Sync::kNoSync);
  }
  json rc = rt.value("resource_config", json::object());
  if (write) WriteFileAtomic(root + "/input/config/resourceconfig.json", rc.dump(), 0644, Sync::kNoSync);
  json idc = json::object();
  json channels = json::array();
  const json chans = rt.value("channels", json::object());
  for (auto& [ch, src] : chans.items()) {
    std::string dst = root;
    dst.append("/input/data/").append(ch);
    if (write && (!fs::exists(dst) || fs::is_empty(dst))) {
      // Not provided by the backend (e.g. no sandbox): copy it in.
      std::error_code ec;
      fs::create_directories(dst, ec);
      std::string s = src.get<std::string>();
      if (fs::is_directory(s))
        fs::copy(s, dst, fs::copy_options::recursive | fs::copy_options::skip_existing, ec);
      else
        fs::copy(s, dst + "/" + fs::path(s).filename().string(), fs::copy_options::skip_existing, ec);
    }
    const json sharded = rt.value("sharded_channels", json::array());
    const bool is_sharded = std::find(sharded.begin(), sharded.end(), json(ch)) != sharded.end();
    idc[ch] = {{"TrainingInputMode", "File"},
               {"S3DistributionType", is_sharded ? "ShardedByS3Key" : "FullyReplicated"},
               {"RecordWrapperType", "None"}};
    channels.push_back(ch);
    env.push_back("SM_CHANNEL_" + ToUpperName(ch) + "=" + dst);
  }
  if (write) WriteFileAtomic(root + "/input/config/inputdataconfig.json", idc.dump(), 0644, Sync::kNoSync);
  // Secrets become environment variables of the user command only; nothing logs them.
  const json secrets = rt.value("secrets", json::object());
  for (auto& [k, v] : secrets.items())
    if (v.is_string()) env.push_back(k + "=" + v.get<std::string>());
  const json user_env = rt.value("environment", json::object());
  for (auto& [k, v] : user_env.items()) env.push_back(k + "=" + HpString(v));
  json hosts = rc.value("hosts", json::array({"algo-1"}));
  // SM_HP_* and SM_HPS as the SageMaker toolkit sets them, unless they would
  // not fit in a process environment: then hyperparameters.json is the source.
  if (!staged && hps_text.size() <= kMaxHyperparameterEnvBytes) {
    for (auto& [k, v] : hps.items()) env.push_back("SM_HP_" + ToUpperName(k) + "=" + HpString(v));
    env.push_back("SM_HPS=" + hps_text);
    json user_args = json::array();
    for (auto& [k, v] : hps.items()) {
      if (k.rfind("sagemaker_", 0) == 0) continue;
      user_args.push_back("--" + k);
      user_args.push_back(HpString(v));
    }
    env.push_back("SM_USER_ARGS=" + user_args.dump());
  } else {
    Log("hyperparameters are " + std::to_string(hps_text.size()) + " bytes: SM_HP_*/SM_HPS not set, read " + root +
        "/input/config/hyperparameters.json");
  }
  env.push_back("SM_CHANNELS=" + channels.dump());
  env.push_back("SM_MODEL_DIR=" + root + "/model");
  env.push_back("SM_OUTPUT_DIR=" + root + "/output");
  env.push_back("SM_OUTPUT_DATA_DIR=" + root + "/output/data");
  env.push_back("SM_INPUT_DIR=" + root + "/input");
  env.push_back("SM_INPUT_CONFIG_DIR=" + root + "/input/config");
  env.push_back("SM_CHECKPOINT_DIR=" + root + "/checkpoints");
  env.push_back("SM_CURRENT_HOST=" + rc.value("current_host", std::string("algo-1")));
  env.push_back("SM_HOSTS=" + hosts.dump());
  env.push_back("SM_NUM_CPUS=" + std::to_string(rt.value("num_cpus", 1)));
  env.push_back("SM_NUM_GPUS=" + std::to_string(rt.value("num_gpus", 0)));
  env.push_back("SM_RESOURCE_CONFIG=" + rc.dump());
  env.push_back("SM_NETWORK_INTERFACE_NAME=" + rc.value("network_interface_name", std::string("lo")));
  env.push_back("SM_CURRENT_INSTANCE_TYPE=" + rc.value("current_instance_type", std::string()));
  env.push_back("SM_OUTPUT_INTERMEDIATE_DIR=" + root + "/output/intermediate");
  env.push_back("SM_LOG_LEVEL=20");
  env.push_back("SM_FRAMEWORK_PARAMS={}");
  // StatsD and DogStatsD clients report to kilnd's gateway, attributed to this job.
  const json statsd = rt.value("statsd", json());
  if (statsd.is_object()) {
    std::string host = statsd.value("host", "127.0.0.1"), port = std::to_string(statsd.value("port", 8125));
    env.push_back("STATSD_HOST=" + host);
    env.push_back("STATSD_PORT=" + port);
    env.push_back("DD_AGENT_HOST=" + host);
    env.push_back("DD_DOGSTATSD_PORT=" + port);
    std::string sock = statsd["socket"].is_string() ? statsd["socket"].get<std::string>() : "";
    if (!sock.empty() && fs::exists(sock)) env.push_back("DD_DOGSTATSD_SOCKET=" + sock);
  }
  env.push_back("SM_INPUT_DATA_CONFIG=" + idc.dump());
  return env;
}

// GET with retries (kilnd may be restarting); a 4xx answer is final.
Result<std::string> FetchWithRetry(const ApiTarget& api, const std::string& token, const std::string& path) {
  const std::map<std::string, std::string> h = {{"Authorization", "Bearer " + token}};
  int backoff = 20;
  std::string last = "no answer";
  const int64_t deadline = MonotonicNs() + 60LL * 1000 * 1000 * 1000;
  while (MonotonicNs() < deadline) {
    auto res = HttpCall(api.host, api.port, "GET", path, h, "", 10000);
    if (res.ok() && res->status == 200) return std::move(res->body);
    if (res.ok() && res->status >= 400 && res->status < 500) {
      json j = json::parse(res->body, nullptr, false);
      std::string msg = j.is_object() && j.contains("error") ? j["error"].value("message", res->body) : res->body;
      return Status(Code::kFailedPrecondition,
                    "runtime fetch refused (HTTP " + std::to_string(res->status) + "): " + msg);
    }
    last = res.ok() ? "HTTP " + std::to_string(res->status) : res.status().message();
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
    backoff = std::min(backoff * 2, 2000);
  }
  return Unavailable("could not fetch " + path + " from kilnd within 60 s: " + last);
}

Result<json> FetchRuntime(const ApiTarget& api, const std::string& token) {
  auto body = FetchWithRetry(api, token, "/v1/runtime");
  if (!body.ok()) return body.status();
  json j = json::parse(*body, nullptr, false);
  if (!j.is_object()) return Internal("kilnd sent an unreadable runtime document");
  return j;
}

// The staged hyperparameters, raw (no parse): they may be megabytes.
Result<std::string> FetchRaw(const ApiTarget& api, const std::string& token, const std::string& path) {
  return FetchWithRetry(api, token, path);
}

void WriteFailure(const std::string& root, const std::string& text) {
  if (fs::exists(root + "/output/failure") && fs::file_size(root + "/output/failure") > 0) return;
  MakeDirs(root + "/output");
  WriteFileAtomic(root + "/output/failure", text.substr(0, 1024), 0644, Sync::kNoSync);
}

}  // namespace

int RunEntrypoint(int argc, char** argv) {
  int first = 1;
  if (first < argc && std::string(argv[first]) == "--") ++first;
  if (first >= argc) {
    Log("usage: kiln-entrypoint [--] command [args...]");
    return 2;
  }
  // Block the signals we handle before any thread exists, so that they reach the
  // signalfd instead of a helper thread.
  sigset_t mask, old;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, &old);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  const std::string root = Env("KILN_ML_ROOT", "/opt/ml");
  const std::string api_url = Env("KILN_API_URL");
  const std::string token = Env("KILN_TOKEN");
  bool bad_override = false;
  const DetectedContext ctx = DetectContext(
      getenv, [](const std::string& p) { return fs::exists(p); }, &bad_override);
  if (bad_override) {
    Log(ctx.marker);
    return 2;
  }
  setenv("KILN_RUNTIME", ToString(ctx.context), 1);
  const ContextPlan plan = PlanFor(ctx.context, !api_url.empty());
  if (getenv("KILN_ENTRYPOINT_VERBOSE")) Log(std::string("context ") + ToString(ctx.context) + " (" + ctx.marker + ")");
  if (api_url.rfind("https://", 0) == 0) {
    // The in-instance client speaks plain HTTP (kilnd on loopback or the cluster
    // network); TLS to kilnd is not supported yet.
    std::string msg =
        "RuntimeFetchFailed: KILN_API_URL " + api_url + " uses https, which kiln-entrypoint does not support yet";
    Log(msg);
    WriteFailure(root, msg);
    return 1;
  }
  ApiTarget api = api_url.empty() ? ApiTarget{} : ParseUrl(api_url);
  Reporter reporter(plan.report_phases ? api : ApiTarget{}, token);

  std::vector<std::string> extra_env;
  LogMetrics log_metrics;
  std::string output_dir;
  int index = 0;
  std::vector<std::string> cmd(argv + first, argv + argc);
  json uploads = json::array();
  bool pack_output_data = false;
  if (plan.fetch_runtime) {
    reporter.Report("Downloading");
    auto rt = FetchRuntime(api, token);
    if (!rt.ok()) {
      std::string msg = "RuntimeFetchFailed: " + rt.status().message();
      Log(msg);
      WriteFailure(root, msg);
      MakeDirs(root + "/.kiln");
      WriteFileAtomic(root + "/.kiln/exit.json", json{{"exit_code", 1}, {"signal", 0}}.dump(), 0644, Sync::kNoSync);
      return 1;
    }
    std::string staged;
    if (rt->contains("hyperparameters_url") && (*rt)["hyperparameters_url"].is_string()) {
      auto raw = FetchRaw(api, token, (*rt)["hyperparameters_url"].get<std::string>());
      if (!raw.ok()) {
        std::string msg = "RuntimeFetchFailed: " + raw.status().message();
        Log(msg);
        WriteFailure(root, msg);
        MakeDirs(root + "/.kiln");
        WriteFileAtomic(root + "/.kiln/exit.json", json{{"exit_code", 1}, {"signal", 0}}.dump(), 0644, Sync::kNoSync);
        return 1;
      }
      staged = std::move(*raw);
    }
    extra_env = WriteContract(*rt, root, plan.write_contract ? ContractFiles::kWrite : ContractFiles::kSkip, staged);
    log_metrics.Configure(*rt);
    output_dir = rt->value("output_dir", "");
    index = rt->value("index", 0);
    uploads = rt->value("uploads", json::array());
    pack_output_data = rt->value("pack_output_data", false);
    // Script mode's source archive (sagemaker_submit_directory), bound in by the backend.
    if (fs::exists(root + "/.kiln/sourcedir.tar.gz")) {
      MakeDirs(root + "/code");
      if (!RunQuiet({"tar", "-xzf", root + "/.kiln/sourcedir.tar.gz", "-C", root + "/code"})) {
        std::string msg = "SourceUnpackFailed: could not unpack sagemaker_submit_directory into " + root + "/code";
        Log(msg);
        WriteFailure(root, msg);
        MakeDirs(root + "/.kiln");
        WriteFileAtomic(root + "/.kiln/exit.json", json{{"exit_code", 1}, {"signal", 0}}.dump(), 0644, Sync::kNoSync);
        return 1;
      }
    }
    if (ScriptMode(*rt, root, cmd, extra_env) && getenv("KILN_ENTRYPOINT_VERBOSE"))
      Log("script mode: " + cmd[0] + " " + cmd[1]);
    extra_env.push_back(TrainingEnv(*rt, extra_env));
  }
  std::vector<char*> cmd_argv;
  cmd_argv.reserve(cmd.size() + 1);
  for (auto& c : cmd) cmd_argv.push_back(c.data());
  cmd_argv.push_back(nullptr);

  // The user command: stdout/stderr through pipes so lines are seen (first-line
  // timing, failure tail); exec failure reported through a CLOEXEC pipe.
  int outp[2], errp[2], execp[2];
  if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(execp, O_CLOEXEC)) {
    Log("pipe failed");
    return 1;
  }

  reporter.Report("Training");
  const int64_t t_start = RealClock::Get().NowMs();
  // The command's environment, built before the fork (see RunQuiet): ours, with
  // extra_env's entries replacing those of the same name (the last one wins, as
  // with putenv). The child points `environ` at it, so execvp also searches the
  // command's PATH.
  std::map<std::string, std::string> merged_env;
  auto put = [&](std::string entry) {
    std::string name = entry.substr(0, entry.find('='));
    merged_env[name] = std::move(entry);
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) put(*e);
  for (const auto& x : extra_env) put(x);
  std::vector<char*> envp;
  envp.reserve(merged_env.size() + 1);
  for (auto& [name, entry] : merged_env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t child = fork();
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &old, nullptr);
    setpgid(0, 0);
    dup2(outp[1], 1);
    dup2(errp[1], 2);
    environ = envp.data();
    execvp(cmd_argv[0], cmd_argv.data());
    int err = errno;
    ssize_t n = write(execp[1], &err, sizeof(err));
    (void)n;
    _exit(127);
  }
  close(outp[1]);
  close(errp[1]);
  close(execp[1]);
  int exec_errno = 0;
  if (read(execp[0], &exec_errno, sizeof(exec_errno)) != sizeof(exec_errno)) exec_errno = 0;
  close(execp[0]);

  std::deque<std::string> stderr_tail;
  std::string partial[2];
  bool first_line = false;
  int status = 0;
  bool exited = false;
  int open_pipes = 2;
  pollfd fds[3] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}, {sfd, POLLIN, 0}};
  auto emit = [&](int which, const std::string& line) {
    if (!first_line) {
      first_line = true;
      reporter.Report("FirstLine");
    }
    log_metrics.Match(line);
    std::string l = line + "\n";
    ssize_t n = write(which == 0 ? 1 : 2, l.data(), l.size());
    (void)n;
    if (which == 1) {
      stderr_tail.push_back(line);
      if (stderr_tail.size() > 20) stderr_tail.pop_front();
    }
  };
  while (!exited || open_pipes > 0) {
    int n = poll(fds, 3, exited ? 200 : -1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && exited) break;  // pipes held open by a daemonized grandchild
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r <= 0) {
        if (!partial[i].empty()) emit(i, partial[i]);
        partial[i].clear();
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_pipes;
        continue;
      }
      partial[i].append(buf, static_cast<size_t>(r));
      size_t pos;
      while ((pos = partial[i].find('\n')) != std::string::npos) {
        emit(i, partial[i].substr(0, pos));
        partial[i].erase(0, pos + 1);
      }
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
          // pid 1 of the sandbox: reap everything, remember the user command.
          for (;;) {
            int st;
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w <= 0) break;
            if (w == child) {
              status = st;
              exited = true;
            }
          }
        } else {
          Log(std::string("forwarding ") + strsignal(static_cast<int>(si.ssi_signo)) + " to the job");
          kill(-child, static_cast<int>(si.ssi_signo));
          kill(child, static_cast<int>(si.ssi_signo));
        }
      }
    }
  }
  if (!exited) {
    waitpid(child, &status, 0);
  }
  int exit_code = 0, sig = 0;
  if (WIFEXITED(status)) exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    sig = WTERMSIG(status);
    exit_code = 128 + sig;
  }
  if (exec_errno) {
    exit_code = exec_errno == ENOENT ? 127 : 126;
    std::string why = exec_errno == ENOENT ? "CommandNotFound: '" + cmd[0] + "' was not found"
                                           : "CommandNotExecutable: '" + cmd[0] + "': " + strerror(exec_errno);
    Log(why);
    WriteFailure(root, why);
  } else if (exit_code != 0 && !stderr_tail.empty()) {
    std::string tail;
    for (auto& l : stderr_tail) tail += l + "\n";
    if (tail.size() > 1024) tail = tail.substr(tail.size() - 1024);
    WriteFailure(root, tail);
  }
  Log("command exited with code " + std::to_string(exit_code) + (sig ? " (signal " + std::to_string(sig) + ")" : "") +
      " after " + std::to_string(RealClock::Get().NowMs() - t_start) + " ms");

  json result = {{"exit_code", exit_code}, {"signal", sig}};
  if (plan.upload_model && exit_code == 0 && index == 0 && !output_dir.empty()) {
    reporter.Report("Uploading");
    std::string tmp = output_dir + "/.model.tar.gz.tmp";
    std::string dst = output_dir + "/model.tar.gz";
    const std::string model_dir = root + "/model";  // before the fork (see RunQuiet)
    pid_t tar = fork();
    if (tar == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      execlp("tar", "tar", "-czf", tmp.c_str(), "-C", model_dir.c_str(), ".", (char*)nullptr);
      _exit(127);
    }
    int tst = 0;
    while (waitpid(tar, &tst, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(tst) && WEXITSTATUS(tst) == 0 && rename(tmp.c_str(), dst.c_str()) == 0) {
      result["model_artifact"] = "file://" + dst;
      reporter.Report("Uploaded", {{"model_artifact", "file://" + dst}});
    } else {
      Log("packing /opt/ml/model failed");
      WriteFailure(root, "UploadFailed: could not pack /opt/ml/model into " + dst);
      result["exit_code"] = exit_code = 1;
    }
  }
  if (exit_code == 0 && pack_output_data && index == 0 && !output_dir.empty()) {
    std::string tmp = output_dir + "/.output.tar.gz.tmp", dst = output_dir + "/output.tar.gz";
    if (!RunQuiet({"tar", "-czf", tmp, "-C", root + "/output/data", "."}) || rename(tmp.c_str(), dst.c_str()) != 0) {
      WriteFailure(root, "UploadFailed: could not pack /opt/ml/output/data into " + dst);
      result["exit_code"] = exit_code = 1;
    }
  }
  // Outputs (ProcessingOutputs, EndOfJob): copied out once the command succeeded.
  for (const auto& u : uploads) {
    if (exit_code != 0) break;
    std::string local = u.value("local_path", ""), staged = u.value("staged", "");
    if (local.rfind("/opt/ml/", 0) == 0) local = StrCat(root, local.substr(7));
    if (staged.rfind("/opt/ml/", 0) == 0) staged = StrCat(root, staged.substr(7));
    if (local.empty() || staged.empty() || !fs::is_directory(local)) continue;
    if (!RunQuiet({"cp", "-a", "--", local + "/.", staged + "/"})) {
      WriteFailure(root, "UploadFailed: could not copy " + u.value("local_path", "") + " to its output location");
      result["exit_code"] = exit_code = 1;
    }
  }
  MakeDirs(root + "/.kiln");
  WriteFileAtomic(root + "/.kiln/exit.json", result.dump(), 0644, Sync::kNoSync);
  reporter.Flush(10000);
  return exit_code;
}

}  // namespace kiln
