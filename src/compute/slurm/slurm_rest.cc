#include "compute/slurm/slurm_rest.h"

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include "common/fsutil.h"
#include "common/json_input.h"

namespace kiln::slurm {
namespace {

using nlohmann::json;

constexpr const char* kApi = "/slurm/v0.0.38";

std::string B64Url(const std::string& in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

// Slurm's errors[] as one message: "Invalid partition name specified (2000)".
std::string SlurmErrors(const json& body) {
  std::string msg;
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array()) return msg;
  for (const auto& e : body["errors"]) {
    if (!e.is_object()) continue;
    std::string one = e.value("error", "");
    const std::string desc = e.value("description", "");
    if (!desc.empty() && desc != one) one += one.empty() ? desc : ": " + desc;
    const json num = e.contains("error_number") ? e["error_number"] : e.value("error_code", json());
    if (num.is_number_integer()) one += " (" + std::to_string(num.get<int64_t>()) + ")";
    if (!one.empty()) msg += (msg.empty() ? "" : "; ") + one;
  }
  return msg;
}

bool HasError(const json& body, int64_t number) {
  if (!body.is_object() || !body.contains("errors") || !body["errors"].is_array()) return false;
  for (const auto& e : body["errors"]) {
    const json num = e.contains("error_number") ? e["error_number"] : e.value("error_code", json());
    if (num.is_number_integer() && num.get<int64_t>() == number) return true;
  }
  return false;
}

constexpr int64_t kInvalidJobId = 2017;
constexpr int64_t kNotRunning = 2020;   // "Job can not be altered now": a signal to a pending job
constexpr int64_t kAlreadyDone = 2021;  // "Job/step already completing or completed"
// slurmctld hung up on slurmrestd. A token slurmctld's auth/jwt refuses (signed
// with another key, expired) ends that way: slurmrestd passes tokens through.
constexpr int64_t kZeroBytes = 5005;

Status HungUp(const json& body) {
  return Status(Code::kUnavailable, "slurmctld closed the connection (" + SlurmErrors(body) +
                                        "); a token it refuses looks like this too: check jwt_key_file");
}

}  // namespace

JobState ParseJobState(const std::string& s) {
  static const std::map<std::string, JobState> kStates = {{"PENDING", JobState::kPending},
                                                          {"RUNNING", JobState::kRunning},
                                                          {"SUSPENDED", JobState::kSuspended},
                                                          {"COMPLETING", JobState::kCompleting},
                                                          {"COMPLETED", JobState::kCompleted},
                                                          {"CANCELLED", JobState::kCancelled},
                                                          {"FAILED", JobState::kFailed},
                                                          {"TIMEOUT", JobState::kTimeout},
                                                          {"NODE_FAIL", JobState::kNodeFail},
                                                          {"PREEMPTED", JobState::kPreempted},
                                                          {"OUT_OF_MEMORY", JobState::kOutOfMemory},
                                                          {"BOOT_FAIL", JobState::kBootFail},
                                                          {"DEADLINE", JobState::kDeadline},
                                                          {"CONFIGURING", JobState::kPending},
                                                          {"REQUEUED", JobState::kPending},
                                                          {"RESV_DEL_HOLD", JobState::kPending}};
  auto it = kStates.find(s);
  return it == kStates.end() ? JobState::kOther : it->second;
}

const char* ToString(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "pending";
    case JobState::kRunning:
      return "running";
    case JobState::kSuspended:
      return "suspended";
    case JobState::kCompleting:
      return "completing";
    case JobState::kCompleted:
      return "completed";
    case JobState::kCancelled:
      return "cancelled";
    case JobState::kFailed:
      return "failed";
    case JobState::kTimeout:
      return "timeout";
    case JobState::kNodeFail:
      return "node-fail";
    case JobState::kPreempted:
      return "preempted";
    case JobState::kOutOfMemory:
      return "out-of-memory";
    case JobState::kBootFail:
      return "boot-fail";
    case JobState::kDeadline:
      return "deadline";
    case JobState::kOther:
      return "other";
  }
  return "other";
}

bool IsFinal(JobState s) {
  switch (s) {
    case JobState::kPending:
    case JobState::kRunning:
    case JobState::kSuspended:
    case JobState::kCompleting:
    case JobState::kOther:
      return false;
    default:
      return true;
  }
}

struct RestClient::Http {
  explicit Http(const std::string& url) : client(url) {}
  httplib::Client client;
};

RestClient::RestClient(RestOptions opts, Clock& clock, std::string key)
    : opts_(std::move(opts)), clock_(clock), key_(std::move(key)), http_(std::make_unique<Http>(opts_.url)) {
  const int s = opts_.timeout_ms / 1000, us = (opts_.timeout_ms % 1000) * 1000;
  http_->client.set_connection_timeout(s, us);
  http_->client.set_read_timeout(s, us);
  http_->client.set_write_timeout(s, us);
}

RestClient::~RestClient() = default;

Result<std::unique_ptr<RestClient>> RestClient::Create(RestOptions opts, Clock& clock) {
  if (opts.url.rfind("http://", 0) != 0) return InvalidArgument("url", "slurmrestd's URL must be http://host:port");
  auto key = ReadFile(opts.jwt_key_file);
  if (!key.ok()) return InvalidArgument("jwt_key_file", "cannot read slurmctld's JWT key " + opts.jwt_key_file);
  if (key->size() < 32) return InvalidArgument("jwt_key_file", opts.jwt_key_file + " holds fewer than 32 bytes");
  return std::unique_ptr<RestClient>(new RestClient(std::move(opts), clock, std::move(*key)));
}

std::string RestClient::MintToken() const {
  const int64_t now = clock_.NowMs() / 1000;
  const std::string part =
      B64Url(R"({"alg":"HS256","typ":"JWT"})") + "." +
      B64Url(json{{"iat", now}, {"exp", now + opts_.token_lifetime_s}, {"sun", opts_.user}}.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(part.data()),
       part.size(), mac, &len);
  return part + "." + B64Url(std::string(reinterpret_cast<char*>(mac), len));
}

struct RestClient::Answer {
  json body;
  int status = 0;
};

Result<RestClient::Answer> RestClient::Call(const char* method, const std::string& path, const std::string& body) {
  const httplib::Headers h = {{"X-SLURM-USER-NAME", opts_.user}, {"X-SLURM-USER-TOKEN", MintToken()}};
  const std::string full = std::string(kApi) + path;
  httplib::Result r = std::string(method) == "POST"     ? http_->client.Post(full, h, body, "application/json")
                      : std::string(method) == "DELETE" ? http_->client.Delete(full, h)
                                                        : http_->client.Get(full, h);
  if (!r)
    return Status(Code::kUnavailable,
                  "slurmrestd at " + opts_.url + " did not answer: " + httplib::to_string(r.error()));
  if (r->status == 401) return Status(Code::kUnauthenticated, "slurmrestd refused kilnd's token (check jwt_key_file)");
  auto parsed = ParseUntrustedJson(r->body, "slurmrestd answer");
  return Answer{parsed.ok() ? *parsed : json(), r->status};
}

Status RestClient::Ping() {
  auto raw = Call("GET", "/ping", "");
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (status != 200)
    return Status(Code::kUnavailable, "slurmrestd ping: HTTP " + std::to_string(status) + " " + SlurmErrors(body));
  if (body.contains("pings") && body["pings"].is_array())
    for (const auto& p : body["pings"])
      if (p.value("ping", "") == "UP") return Status::Ok();
  return Status(Code::kUnavailable, "slurmctld is not up: " + body.dump().substr(0, 300));
}

Result<int64_t> RestClient::Submit(const JobRequest& req) {
  json job = {{"name", req.name},
              {"current_working_directory", req.working_directory},
              {"environment", req.environment.empty() ? json::object() : json(req.environment)},
              {"nodes", json::array({req.nodes, req.nodes})},
              {"tasks", req.tasks},
              {"cpus_per_task", req.cpus_per_task}};
  if (!req.partition.empty()) job["partition"] = req.partition;
  if (!req.account.empty()) job["account"] = req.account;
  if (!req.qos.empty()) job["qos"] = req.qos;
  if (!req.standard_output.empty()) job["standard_output"] = req.standard_output;
  if (req.memory_per_node_mib > 0) job["memory_per_node"] = req.memory_per_node_mib;
  if (req.time_limit_minutes > 0) job["time_limit"] = req.time_limit_minutes;
  if (req.tasks == req.nodes) job["tasks_per_node"] = 1;
  auto raw = Call("POST", "/job/submit", json{{"script", req.script}, {"job", job}}.dump());
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (status == 200 && body.contains("job_id") && body["job_id"].is_number_integer())
    return body["job_id"].get<int64_t>();
  if (HasError(body, kZeroBytes)) return HungUp(body);
  const std::string why = SlurmErrors(body);
  return InvalidArgument("slurm", "Slurm refused the job: " + (why.empty() ? "HTTP " + std::to_string(status) : why));
}

Result<JobInfo> RestClient::GetJob(int64_t id) {
  auto raw = Call("GET", "/job/" + std::to_string(id), "");
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (HasError(body, kInvalidJobId)) return NotFound("Slurm job " + std::to_string(id) + " not found");
  if (HasError(body, kZeroBytes)) return HungUp(body);
  if (status != 200 || !body.contains("jobs") || !body["jobs"].is_array() || body["jobs"].empty())
    return Status(Code::kUnavailable, "slurmrestd job " + std::to_string(id) + ": HTTP " + std::to_string(status) +
                                          " " + SlurmErrors(body));
  return JobInfoFromJson(body["jobs"][0]);
}

Result<std::vector<JobInfo>> RestClient::ListJobs(int64_t since) {
  auto raw = Call("GET", since > 0 ? "/jobs?update_time=" + std::to_string(since) : std::string("/jobs"), "");
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (status == 304) return std::vector<JobInfo>{};  // nothing changed since `since`
  if (HasError(body, kZeroBytes)) return HungUp(body);
  if (status != 200 || !body.contains("jobs") || !body["jobs"].is_array())
    return Status(Code::kUnavailable, "slurmrestd jobs: HTTP " + std::to_string(status) + " " + SlurmErrors(body));
  std::vector<JobInfo> out;
  out.reserve(body["jobs"].size());
  for (const auto& j : body["jobs"])
    if (j.is_object()) out.push_back(JobInfoFromJson(j));
  return out;
}

Status RestClient::Signal(int64_t id, const std::string& signal) {
  auto raw = Call("DELETE", "/job/" + std::to_string(id) + "?signal=" + signal, "");
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (status == 200 || HasError(body, kAlreadyDone)) return Status::Ok();
  if (HasError(body, kInvalidJobId)) return NotFound("Slurm job " + std::to_string(id) + " not found");
  if (HasError(body, kNotRunning))
    return Status(Code::kFailedPrecondition, "Slurm job " + std::to_string(id) + " is not running (pending)");
  return Status(Code::kUnavailable, "slurmrestd signal " + std::to_string(id) + ": HTTP " + std::to_string(status) +
                                        " " + SlurmErrors(body));
}

JobInfo JobInfoFromJson(const json& j) {
  auto num = [&j](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{0};
  };
  auto str = [&j](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  JobInfo info;
  info.id = num("job_id");
  info.name = str("name");
  info.state_text = str("job_state");
  info.state = ParseJobState(info.state_text);
  info.reason = str("state_reason");
  const int64_t wait_status = num("exit_code");  // a raw wait status: 768 is exit 3
  info.exit_code = static_cast<int>((wait_status >> 8) & 0xff);
  info.signal = static_cast<int>(wait_status & 0x7f);
  info.submit_ms = num("submit_time") * 1000;
  info.start_ms = num("start_time") * 1000;
  info.end_ms = num("end_time") * 1000;
  info.nodes = str("nodes");
  info.tasks = static_cast<int>(num("tasks"));
  return info;
}

Status RestClient::Cancel(int64_t id) {
  auto raw = Call("DELETE", "/job/" + std::to_string(id), "");
  if (!raw.ok()) return raw.status();
  const auto& [body, status] = *raw;
  if (status == 200 || HasError(body, kAlreadyDone)) return Status::Ok();
  if (HasError(body, kInvalidJobId)) return NotFound("Slurm job " + std::to_string(id) + " not found");
  return Status(Code::kUnavailable, "slurmrestd cancel " + std::to_string(id) + ": HTTP " + std::to_string(status) +
                                        " " + SlurmErrors(body));
}

}  // namespace kiln::slurm
