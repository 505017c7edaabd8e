#include "cli/cli.h"

#include <httplib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/spec_file.h"
#include "common/fsutil.h"
#include "compute/sagemaker/request.h"

namespace kiln {
namespace {

using nlohmann::json;

struct Endpoint {
  std::string host;
  int port = 8470;
};

Endpoint ResolveEndpoint(std::string endpoint, const std::string& data_dir) {
  if (endpoint.empty() && getenv("KILN_ENDPOINT")) endpoint = getenv("KILN_ENDPOINT");
  if (endpoint.empty()) {
    for (const std::string& d : {data_dir, std::string("./kiln-data")}) {
      if (d.empty()) continue;
      auto addr = ReadFile(d + "/kilnd.addr");
      if (addr.ok()) {
        endpoint = *addr;
        break;
      }
    }
  }
  if (endpoint.empty()) endpoint = "127.0.0.1:8470";
  while (!endpoint.empty() && isspace(static_cast<unsigned char>(endpoint.back()))) endpoint.pop_back();
  if (endpoint.rfind("http://", 0) == 0) endpoint = endpoint.substr(7);
  if (auto slash = endpoint.find('/'); slash != std::string::npos) endpoint = endpoint.substr(0, slash);
  Endpoint e;
  auto colon = endpoint.rfind(':');
  e.host = endpoint.substr(0, colon);
  if (colon != std::string::npos) e.port = atoi(endpoint.c_str() + colon + 1);
  return e;
}

class Api {
 public:
  explicit Api(Endpoint e) : ep_(std::move(e)), cli_(ep_.host, ep_.port) {
    cli_.set_connection_timeout(5, 0);
    cli_.set_read_timeout(60, 0);
    cli_.set_tcp_nodelay(true);
  }
  // Returns the parsed body; prints the error and returns nullopt on failure.
  std::optional<json> Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return Request(method, path, body);
  }
  std::optional<json> Request(const std::string& method, const std::string& path, const std::string& body) {
    httplib::Result r = method == "POST"     ? cli_.Post(path, body, "application/json")
                        : method == "PUT"    ? cli_.Put(path, body, "application/octet-stream")
                        : method == "DELETE" ? cli_.Delete(path)
                                             : cli_.Get(path);
    if (!r) {
      fprintf(stderr, "kiln: cannot reach kilnd at %s:%d (%s). Is it running? Set --endpoint or KILN_ENDPOINT.\n",
              ep_.host.c_str(), ep_.port, httplib::to_string(r.error()).c_str());
      return std::nullopt;
    }
    json j = json::parse(r->body, nullptr, false);
    if (r->status >= 400) {
      if (j.is_object() && j.contains("error")) {
        auto& e = j["error"];
        std::string field = e.contains("field") && e["field"].is_string() ? e["field"].get<std::string>() : "";
        fprintf(stderr, "kiln: error %d %s%s: %s\n", r->status, e.value("code", "").c_str(),
                field.empty() ? "" : (" (field " + field + ")").c_str(), e.value("message", "").c_str());
      } else {
        fprintf(stderr, "kiln: error %d: %s\n", r->status, r->body.c_str());
      }
      last_status_ = r->status;
      return std::nullopt;
    }
    return j;
  }
  // Streams a GET, calling on_data for each chunk; returns false if the connection failed.
  bool Stream(const std::string& path, const httplib::Headers& h, const std::function<bool(const char*, size_t)>& on) {
    httplib::Client c(ep_.host, ep_.port);
    c.set_read_timeout(3600, 0);
    auto r = c.Get(path, h, [&](const char* d, size_t n) { return on(d, n); });
    return static_cast<bool>(r);
  }
  int last_status() const { return last_status_; }

 private:
  Endpoint ep_;
  httplib::Client cli_;
  int last_status_ = 0;
};

std::string Pad(std::string s, size_t w) {
  if (s.size() > w) s = s.substr(0, w - 1) + "~";
  return s + std::string(w - s.size(), ' ') + "  ";
}

void PrintJobTable(const json& jobs) {
  std::cout << Pad("ID", 20) << Pad("NAME", 28) << Pad("STATUS", 11) << Pad("SECONDARY", 18) << Pad("CREATED", 24)
            << "REASON\n";
  for (const auto& j : jobs) {
    std::cout << Pad(j.value("id", ""), 20) << Pad(j.value("name", ""), 28) << Pad(j.value("status", ""), 11)
              << Pad(j.value("secondary_status", ""), 18) << Pad(j.value("created_at", ""), 24)
              << j.value("failure_reason", "") << "\n";
  }
}

void PrintJob(const json& j) {
  auto line = [](const char* k, const std::string& v) { std::cout << Pad(k, 18) << v << "\n"; };
  line("ID", j.value("id", ""));
  line("Name", j.value("name", ""));
  line("Status", j.value("status", "") + " / " + j.value("secondary_status", ""));
  if (!j.value("failure_reason", "").empty()) line("Failure reason", j.value("failure_reason", ""));
  if (j.contains("exit_code") && !j["exit_code"].is_null()) line("Exit code", j["exit_code"].dump());
  line("Attempt", j["attempt"].dump());
  line("Created", j.value("created_at", ""));
  if (j["ended_at"].is_string()) line("Ended", j["ended_at"].get<std::string>());
  const auto& spec = j["spec"];
  line("Instance", spec["instance"].value("type", "") + " x" + spec["instance"]["count"].dump());
  line("Image", spec.value("image", ""));
  line("Model artifact", j["model_artifact"].is_string() ? j["model_artifact"].get<std::string>() : "-");
  std::string timings;
  for (auto& [k, v] : j["timings_ms"].items()) timings += k + "=" + v.dump() + "ms ";
  line("Timings", timings);
  std::cout << "Transitions:\n";
  for (const auto& t : j["transitions"])
    std::cout << "  " << Pad(t.value("start_time", ""), 24) << Pad(t.value("status", ""), 18) << t.value("message", "")
              << "\n";
  std::cout << "Instances:\n";
  for (const auto& in : j["instances"])
    std::cout << "  " << Pad(in.value("id", ""), 28) << Pad(in.value("state", ""), 10)
              << "exit=" << in["exit_code"].dump() << (in.value("oom", false) ? " oom" : "") << "\n";
}

// Parses an SSE byte stream into (id, event, data) callbacks.
class SseParser {
 public:
  explicit SseParser(std::function<bool(const std::string&, const json&)> on) : on_(std::move(on)) {}
  bool Feed(const char* d, size_t n) {
    buf_.append(d, n);
    size_t pos;
    while ((pos = buf_.find("\n\n")) != std::string::npos) {
      std::string frame = buf_.substr(0, pos);
      buf_.erase(0, pos + 2);
      std::string type, data;
      size_t start = 0;
      while (start < frame.size()) {
        size_t end = frame.find('\n', start);
        if (end == std::string::npos) end = frame.size();
        std::string l = frame.substr(start, end - start);
        if (l.rfind("event: ", 0) == 0) type = l.substr(7);
        if (l.rfind("data: ", 0) == 0) data += l.substr(6);
        start = end + 1;
      }
      if (data.empty()) continue;
      json j = json::parse(data, nullptr, false);
      if (!j.is_discarded() && !on_(type, j)) return false;
    }
    return true;
  }

 private:
  std::string buf_;
  std::function<bool(const std::string&, const json&)> on_;
};

std::string DescribeEvent(const json& e) {
  std::string s = e.value("time", "") + "  " + e.value("type", "");
  const auto& p = e["payload"];
  if (p.contains("phase")) s += " " + p["phase"].get<std::string>();
  if (p.contains("instance_id")) s += " [" + p["instance_id"].get<std::string>() + "]";
  if (p.contains("exit_code")) s += " exit=" + p["exit_code"].dump();
  if (e.contains("status")) s += "  -> " + e.value("status", "") + "/" + e.value("secondary_status", "");
  return s;
}

// Follows a job: status changes from the event stream, log lines from the log
// stream. Returns the job's final JSON.
std::optional<json> Follow(Api& api, const std::string& id, bool show_logs) {
  std::thread logs;
  std::atomic<bool> done{false};
  if (show_logs) {
    logs = std::thread([&] {
      api.Stream("/v1/jobs/" + id + "/logs?follow=true", {}, [&](const char* d, size_t n) {
        fwrite(d, 1, n, stdout);
        fflush(stdout);
        return true;
      });
    });
  }
  std::string last;
  SseParser parser([&](const std::string&, const json& e) {
    std::string st = e.value("status", "") + "/" + e.value("secondary_status", "");
    if (e.contains("status") && st != last) {
      fprintf(stderr, "==> %s  %s\n", e.value("time", "").c_str(), st.c_str());
      last = st;
    }
    return true;
  });
  api.Stream("/v1/jobs/" + id + "/events", {}, [&](const char* d, size_t n) { return parser.Feed(d, n); });
  done = true;
  if (logs.joinable()) logs.join();
  return api.Call("GET", "/v1/jobs/" + id);
}

int ExitFor(const json& job) {
  std::string s = job.value("status", "");
  return s == "Completed" ? 0 : 1;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"kiln: run training jobs on Kiln"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--json, --endpoint) may follow a subcommand
  std::string endpoint, data_dir;
  bool as_json = false;
  app.add_option("--endpoint", endpoint,
                 "kilnd address (HOST:PORT); default: $KILN_ENDPOINT or ./kiln-data/kilnd.addr");
  app.add_option("--data-dir", data_dir, "read kilnd's address from DIR/kilnd.addr");
  app.add_flag("--json", as_json, "print JSON");

  auto* run = app.add_subcommand("run", "submit a job spec (YAML or JSON)");
  std::string spec_path, name_override;
  bool follow = false;
  run->add_option("spec", spec_path, "job spec file")->required();
  run->add_option("--name", name_override, "override the spec's name");
  run->add_flag("-f,--follow", follow, "stream status and logs until the job ends; exit non-zero if it failed");

  auto* jobs = app.add_subcommand("jobs", "inspect and control jobs");
  jobs->require_subcommand(1);
  auto* list = jobs->add_subcommand("list", "list jobs, newest first");
  std::string status, name, tag, page;
  int limit = 50;
  list->add_option("--status", status);
  list->add_option("--name", name, "substring of the name");
  list->add_option("--tag", tag, "key=value");
  list->add_option("--limit", limit);
  list->add_option("--page-token", page);
  std::string id;
  auto* describe = jobs->add_subcommand("describe", "show one job");
  describe->add_option("id", id, "job id or name")->required();
  auto* stop = jobs->add_subcommand("stop", "stop a job (SIGTERM, then SIGKILL after its grace period)");
  stop->add_option("id", id)->required();
  auto* logs = jobs->add_subcommand("logs", "print a job's output");
  logs->add_option("id", id)->required();
  bool logs_follow = false;
  logs->add_flag("-f,--follow", logs_follow);
  auto* metrics = jobs->add_subcommand("metrics", "print a job's metric series (StatsD, log regexes)");
  metrics->add_option("id", id)->required();
  std::string metric_name;
  metrics->add_option("--name", metric_name, "only this metric");
  auto* events = jobs->add_subcommand("events", "print a job's events");
  events->add_option("id", id)->required();
  bool events_follow = false;
  events->add_flag("-f,--follow", events_follow);
  int64_t after = 0;
  events->add_option("--after", after, "resume after this sequence number");

  auto* secrets = app.add_subcommand("secrets", "team secrets (values from stdin or a file, never argv)");
  secrets->require_subcommand(1);
  std::string team, secret_name, from_file;
  auto* sset = secrets->add_subcommand("set", "store a secret; the value is read from stdin or --from-file");
  sset->add_option("--team", team)->required();
  sset->add_option("name", secret_name)->required();
  sset->add_option("--from-file", from_file, "read the value from this file");
  auto* slist = secrets->add_subcommand("list", "list a team's secret names");
  slist->add_option("--team", team)->required();
  auto* sdel = secrets->add_subcommand("delete", "delete a secret");
  sdel->add_option("--team", team)->required();
  sdel->add_option("name", secret_name)->required();

  auto* tune = app.add_subcommand("tune", "start a hyperparameter tuning job (YAML or JSON tuning spec)");
  std::string tune_path;
  bool tune_follow = false;
  tune->add_option("spec", tune_path, "tuning spec file")->required();
  tune->add_flag("-f,--follow", tune_follow,
                 "show the trials until the tuning job ends; exit non-zero unless it completed");
  auto* tuning = app.add_subcommand("tuning", "inspect and stop tuning jobs");
  tuning->require_subcommand(1);
  std::string tuning_name;
  auto* tlist = tuning->add_subcommand("list", "list tuning jobs");
  auto* tdesc = tuning->add_subcommand("describe", "a tuning job and its trials");
  tdesc->add_option("name", tuning_name)->required();
  bool tdesc_follow = false;
  tdesc->add_flag("-f,--follow", tdesc_follow, "keep showing the trials until the tuning job ends");
  auto* tstop = tuning->add_subcommand("stop", "stop a tuning job and its running trials");
  tstop->add_option("name", tuning_name)->required();

  auto* keys = app.add_subcommand("keys", "access keys for the SageMaker-compatible API (SigV4)");
  keys->require_subcommand(1);
  std::string key_id;
  bool key_admin = false;
  auto* kcreate = keys->add_subcommand("create", "create a key pair for a team; the secret is shown once");
  kcreate->add_option("--team", team)->required();
  kcreate->add_flag("--admin", key_admin, "the key sees every team's jobs");
  auto* klist = keys->add_subcommand("list", "list key ids (all teams, or one)");
  klist->add_option("--team", team);
  auto* kdel = keys->add_subcommand("delete", "delete a key; requests signed with it are refused from then on");
  kdel->add_option("id", key_id)->required();

  auto* smreq = app.add_subcommand(
      "sagemaker-request", "print the CreateTrainingJob request Kiln would send to SageMaker for a spec (dry run)");
  std::string sm_spec, sm_role = "arn:aws:iam::123456789012:role/kiln-training", sm_output = "s3://kiln-artifacts/jobs",
                       sm_url = "https://kilnd.example.com:8470", sm_image;
  smreq->add_option("spec", sm_spec)->required();
  smreq->add_option("--role-arn", sm_role);
  smreq->add_option("--s3-output", sm_output);
  smreq->add_option("--runtime-url", sm_url);
  smreq->add_option("--image", sm_image, "ECR image URI (default: the spec's image)");

  CLI11_PARSE(app, argc, argv);
  if (*smreq) {
    auto j = LoadSpecFile(sm_spec);
    if (!j.ok()) {
      fprintf(stderr, "kiln: %s\n", j.status().ToString().c_str());
      return 2;
    }
    auto spec = ParseSpec(*j, nullptr);
    if (!spec.ok()) {
      fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
      return 2;
    }
    SageMakerTarget t{sm_role, sm_output, sm_url, sm_image.empty() ? spec->image : sm_image, 30};
    std::cout << BuildCreateTrainingJob(*spec, "j-dryrun", "<instance token>", t).dump(2) << "\n";
    return 0;
  }
  Api api(ResolveEndpoint(endpoint, data_dir));
  auto esc = [](const std::string& s) { return httplib::detail::encode_query_param(s); };

  if (*run) {
    auto spec = LoadSpecFile(spec_path);
    if (!spec.ok()) {
      fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
      return 2;
    }
    if (!name_override.empty()) (*spec)["name"] = name_override;
    auto job = api.Call("POST", "/v1/jobs", spec->dump());
    if (!job) return 2;
    std::string jid = (*job)["id"];
    if (!follow) {
      if (as_json)
        std::cout << job->dump(2) << "\n";
      else
        std::cout << jid << "\n";
      return 0;
    }
    fprintf(stderr, "==> submitted %s (%s)\n", jid.c_str(), (*job)["name"].get<std::string>().c_str());
    auto final_job = Follow(api, jid, !as_json);
    if (!final_job) return 2;
    if (as_json) {
      std::cout << final_job->dump(2) << "\n";
    } else {
      fprintf(stderr, "==> %s %s", (*final_job)["status"].get<std::string>().c_str(),
              (*final_job)["secondary_status"].get<std::string>().c_str());
      if (!(*final_job)["failure_reason"].get<std::string>().empty())
        fprintf(stderr, ": %s", (*final_job)["failure_reason"].get<std::string>().c_str());
      fprintf(stderr, "\n");
      if ((*final_job)["model_artifact"].is_string())
        fprintf(stderr, "==> model artifact: %s\n", (*final_job)["model_artifact"].get<std::string>().c_str());
    }
    return ExitFor(*final_job);
  }
  if (*list) {
    std::string q = "/v1/jobs?limit=" + std::to_string(limit);
    if (!status.empty()) q += "&status=" + esc(status);
    if (!name.empty()) q += "&name=" + esc(name);
    if (!tag.empty()) q += "&tag=" + esc(tag);
    if (!page.empty()) q += "&page_token=" + esc(page);
    auto r = api.Call("GET", q);
    if (!r) return 2;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else {
      PrintJobTable((*r)["jobs"]);
      if ((*r)["next_page_token"].is_string())
        std::cout << "(more: --page-token " << (*r)["next_page_token"].get<std::string>() << ")\n";
    }
    return 0;
  }
  if (*describe || *stop) {
    auto r = *describe ? api.Call("GET", "/v1/jobs/" + esc(id)) : api.Call("POST", "/v1/jobs/" + esc(id) + "/stop");
    if (!r) return 2;
    if (as_json)
      std::cout << r->dump(2) << "\n";
    else if (*describe)
      PrintJob(*r);
    else
      std::cout << "stopping " << (*r)["id"].get<std::string>() << " (" << (*r)["status"].get<std::string>() << ")\n";
    return 0;
  }
  if (*logs) {
    auto j = api.Call("GET", "/v1/jobs/" + esc(id));
    if (!j) return 2;
    bool ok = api.Stream("/v1/jobs/" + (*j)["id"].get<std::string>() + "/logs" + (logs_follow ? "?follow=true" : ""),
                         {}, [](const char* d, size_t n) {
                           fwrite(d, 1, n, stdout);
                           fflush(stdout);
                           return true;
                         });
    return ok ? 0 : 2;
  }
  if (*sset) {
    std::string value;
    if (!from_file.empty()) {
      auto v = ReadFile(from_file);
      if (!v.ok()) {
        fprintf(stderr, "kiln: %s\n", v.status().ToString().c_str());
        return 2;
      }
      value = *v;
    } else {
      if (isatty(0)) fprintf(stderr, "value (end with Ctrl-D): ");
      value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
      if (isatty(0)) fprintf(stderr, "\n");
    }
    if (!value.empty() && value.back() == '\n' && from_file.empty()) value.pop_back();  // echo adds one
    auto r = api.Request("PUT", "/v1/secrets/" + esc(team) + "/" + esc(secret_name), value);
    if (!r) return 2;
    std::cout << "stored " << team << "/" << secret_name << "\n";
    return 0;
  }
  if (*tune || *tdesc) {
    std::string name = tuning_name;
    bool follow_it = *tune ? tune_follow : tdesc_follow;
    if (*tune) {
      auto spec = LoadSpecFile(tune_path);
      if (!spec.ok()) {
        fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
        return 2;
      }
      auto created = api.Call("POST", "/v1/tuning-jobs", spec->dump());
      if (!created) return 2;
      name = (*created)["name"];
      if (!follow_it) {
        if (as_json) {
          std::cout << created->dump(2) << "\n";
        } else {
          std::cout << name << "\n";
        }
        return 0;
      }
    }
    std::string last;
    for (;;) {
      auto doc = api.Call("GET", "/v1/tuning-jobs/" + esc(name));
      if (!doc) return 2;
      std::string status = (*doc)["status"];
      std::ostringstream out;
      if (as_json) {
        out << doc->dump(2) << "\n";
      } else {
        const json& best = (*doc)["best"];
        out << name << "  " << status << "  " << (*doc)["strategy"].get<std::string>() << "  "
            << (*doc)["objective"]["type"].get<std::string>() << " " << (*doc)["objective"]["metric"].get<std::string>()
            << "  best: "
            << (best.is_null() ? std::string("-") : best["name"].get<std::string>() + " = " + best["objective"].dump())
            << (std::string((*doc)["reason"]).empty() ? "" : "  (" + (*doc)["reason"].get<std::string>() + ")") << "\n"
            << Pad("TRIAL", 26) << Pad("STATUS", 12) << Pad("OBJECTIVE", 14) << Pad("STEPS", 7) << "HYPERPARAMETERS\n";
        for (const auto& t : (*doc)["trials"]) {
          std::string hps;
          for (auto& [k, v] : t["hyperparameters"].items()) hps += k + "=" + v.get<std::string>() + " ";
          std::string obj = t["objective"].is_null()
                                ? (t["last_value"].is_null() ? "-" : "(" + t["last_value"].dump() + ")")
                                : t["objective"].dump();
          out << Pad(t["name"].get<std::string>(), 26)
              << Pad(t["status"].get<std::string>() + (t["early_stopped"].get<bool>() ? "*" : ""), 12) << Pad(obj, 14)
              << Pad(std::to_string(t["steps"].get<int>()), 7) << hps << "\n";
        }
      }
      if (out.str() != last) {
        std::cout << out.str() << (follow_it && !as_json ? "\n" : "") << std::flush;
        last = out.str();
      }
      bool done = status == "Completed" || status == "Failed" || status == "Stopped";
      if (!follow_it || done) return status == "Completed" || !follow_it ? 0 : 1;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
  if (*tlist) {
    auto r = api.Call("GET", "/v1/tuning-jobs");
    if (!r) return 2;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
      return 0;
    }
    std::cout << Pad("NAME", 34) << Pad("STATUS", 12) << Pad("STRATEGY", 11) << "BEST\n";
    for (const auto& t : (*r)["tuning_jobs"])
      std::cout << Pad(t["name"].get<std::string>(), 34) << Pad(t["status"].get<std::string>(), 12)
                << Pad(t["strategy"].get<std::string>(), 11)
                << (t["best"].is_null() ? std::string("-") : t["best"]["objective"].dump()) << "\n";
    return 0;
  }
  if (*tstop) {
    auto r = api.Call("POST", "/v1/tuning-jobs/" + esc(tuning_name) + "/stop");
    if (!r) return 2;
    std::cout << tuning_name << " " << (*r)["status"].get<std::string>() << "\n";
    return 0;
  }
  if (*kcreate) {
    json body = {{"team", team}, {"role", key_admin ? "admin" : "team"}};
    auto r = api.Call("POST", "/v1/keys", body.dump());
    if (!r) return 2;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else {
      std::cout << "[" << team << "]\naws_access_key_id = " << (*r)["access_key_id"].get<std::string>()
                << "\naws_secret_access_key = " << (*r)["secret_access_key"].get<std::string>() << "\n";
      std::cerr << "kiln: the secret is shown only now; it is stored encrypted\n";
    }
    return 0;
  }
  if (*klist) {
    auto r = api.Call("GET", "/v1/keys" + (team.empty() ? std::string() : "?team=" + esc(team)));
    if (!r) return 2;
    if (as_json)
      std::cout << r->dump(2) << "\n";
    else
      for (const auto& k : (*r)["keys"])
        std::cout << Pad(k.value("access_key_id", ""), 24) << Pad(k.value("team", ""), 24) << k.value("role", "")
                  << "\n";
    return 0;
  }
  if (*kdel) {
    if (!api.Request("DELETE", "/v1/keys/" + esc(key_id), "")) return 2;
    std::cout << "deleted " << key_id << "\n";
    return 0;
  }
  if (*slist) {
    auto r = api.Call("GET", "/v1/secrets/" + esc(team));
    if (!r) return 2;
    if (as_json)
      std::cout << r->dump(2) << "\n";
    else
      for (const auto& s : (*r)["secrets"])
        std::cout << Pad(s.value("name", ""), 40) << s.value("updated_at", "") << "\n";
    return 0;
  }
  if (*sdel) {
    if (!api.Request("DELETE", "/v1/secrets/" + esc(team) + "/" + esc(secret_name), "")) return 2;
    std::cout << "deleted " << team << "/" << secret_name << "\n";
    return 0;
  }
  if (*metrics) {
    auto r =
        api.Call("GET", "/v1/jobs/" + esc(id) + "/metrics" + (metric_name.empty() ? "" : "?name=" + esc(metric_name)));
    if (!r) return 2;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
      return 0;
    }
    std::cout << Pad("METRIC", 28) << Pad("STAT", 6) << Pad("LAST", 14) << Pad("POINTS", 7) << "TAGS\n";
    for (const auto& s : (*r)["series"]) {
      const auto& pts = s["points"];
      std::string last = pts.empty() ? "-" : pts.back()[1].dump();
      std::cout << Pad(s.value("name", ""), 28) << Pad(s.value("stat", ""), 6) << Pad(last, 14)
                << Pad(std::to_string(pts.size()), 7) << s.value("tags", "") << "\n";
    }
    return 0;
  }
  if (*events) {
    auto j = api.Call("GET", "/v1/jobs/" + esc(id));
    if (!j) return 2;
    SseParser parser([&](const std::string&, const json& e) {
      if (as_json)
        std::cout << e.dump() << "\n";
      else
        std::cout << Pad(std::to_string(e.value("job_seq", 0)), 4) << DescribeEvent(e) << "\n";
      std::cout.flush();
      return true;
    });
    std::string path =
        "/v1/jobs/" + (*j)["id"].get<std::string>() + "/events?follow=" + (events_follow ? "true" : "false");
    httplib::Headers h;
    if (after > 0) h.emplace("Last-Event-ID", std::to_string(after));
    return api.Stream(path, h, [&](const char* d, size_t n) { return parser.Feed(d, n); }) ? 0 : 2;
  }
  return 0;
}

}  // namespace kiln
