// kiln run, kiln jobs list|describe|stop|logs|metrics|events, kiln sagemaker-request.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/spec_file.h"
#include "compute/sagemaker/request.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

void PrintJobTable(const json& jobs) {
  std::cout << Pad("ID", 20) << Pad("NAME", 28) << Pad("STATUS", 11) << Pad("SECONDARY", 18) << Pad("CREATED", 24)
            << "REASON\n";
  for (const auto& j : jobs) {
    std::cout << Pad(j.value("id", ""), 20) << Pad(j.value("name", ""), 28) << Pad(j.value("status", ""), 11)
              << Pad(j.value("secondary_status", ""), 18) << Pad(j.value("created_at", ""), 24)
              << j.value("failure_reason", "") << "\n";
  }
}

}  // namespace

std::string WarmPoolLine(const json& w) {
  std::string s = w.value("status", "") + ", keep-alive " + std::to_string(w.value("keep_alive_seconds", 0)) +
                  " s, retained " + std::to_string(w.value("retained_billable_seconds", 0)) + " s";
  if (w.contains("expires_at")) s += ", until " + w.value("expires_at", "");
  if (w.contains("reused_by_name")) s += ", reused by " + w.value("reused_by_name", "");
  if (w.contains("reused_from")) s += ", took over " + w.value("reused_from", "") + "'s pool";
  if (w.contains("reason")) s += " (" + w.value("reason", "") + ")";
  return s;
}

namespace {

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
  if (j.contains("warm_pool")) line("Warm pool", WarmPoolLine(j["warm_pool"]));
  if (j.contains("start") && j["start"].is_string()) {
    std::string start = j["start"].get<std::string>();
    if (j["timings_ms"].contains("acquire")) start += ", acquired in " + j["timings_ms"]["acquire"].dump() + " ms";
    if (j.contains("start_note") && j["start_note"].is_string())
      start += " (" + j["start_note"].get<std::string>() + ")";
    line("Start", start);
  }
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

std::string DescribeEvent(const json& e) {
  std::string s = e.value("time", "") + "  " + e.value("type", "");
  const auto& p = e["payload"];
  if (p.contains("phase")) s += " " + p["phase"].get<std::string>();
  if (p.contains("instance_id")) s += " [" + p["instance_id"].get<std::string>() + "]";
  if (p.contains("exit_code")) s += " exit=" + p["exit_code"].dump();
  if (e.contains("status")) s += "  -> " + e.value("status", "") + "/" + e.value("secondary_status", "");
  return s;
}

bool CopyToStdout(const char* d, size_t n) {
  fwrite(d, 1, n, stdout);
  fflush(stdout);
  return true;
}

// Follows a job: status changes from the event stream (to stderr), log lines from
// the log stream (to stdout, with show_logs). Returns the job's final JSON.
std::optional<json> Follow(KilndClient& kilnd, const std::string& id, bool show_logs) {
  std::thread logs;
  if (show_logs) {
    logs = std::thread([&] {
      // The log stream ends with the job; a broken one only loses output, and the
      // job's outcome still comes from the event stream below.
      kilnd.Stream("/v1/jobs/" + id + "/logs?follow=true", {}, CopyToStdout);
    });
  }
  std::string last;
  SseParser parser([&](const SseEvent& e) {
    std::string st = e.data.value("status", "") + "/" + e.data.value("secondary_status", "");
    if (e.data.contains("status") && st != last) {
      fprintf(stderr, "==> %s  %s\n", e.data.value("time", "").c_str(), st.c_str());
      last = st;
    }
    return true;
  });
  // Whether the stream ended or broke, the job's state is re-read below.
  kilnd.Stream("/v1/jobs/" + id + "/events", {}, [&](const char* d, size_t n) { return parser.Feed(d, n); });
  if (logs.joinable()) logs.join();
  return kilnd.Call("GET", "/v1/jobs/" + id);
}

int ExitFor(const json& job) {
  std::string s = job.value("status", "");
  return s == "Completed" ? 0 : 1;
}

void PrintOutcome(const json& job) {
  fprintf(stderr, "==> %s %s", job["status"].get<std::string>().c_str(),
          job["secondary_status"].get<std::string>().c_str());
  if (!job["failure_reason"].get<std::string>().empty())
    fprintf(stderr, ": %s", job["failure_reason"].get<std::string>().c_str());
  fprintf(stderr, "\n");
  if (job["model_artifact"].is_string())
    fprintf(stderr, "==> model artifact: %s\n", job["model_artifact"].get<std::string>().c_str());
}

void PrintJson(const json& j) {
  std::cout << j.dump(2) << "\n";
}

}  // namespace

int RunJob(Context& ctx, const RunOptions& o) {
  auto spec = LoadSpecFile(o.spec_path);
  if (!spec.ok()) {
    fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  if (!o.name_override.empty()) (*spec)["name"] = o.name_override;
  auto job = ctx.kilnd.Call("POST", "/v1/jobs", spec->dump());
  if (!job) return 2;
  std::string jid = (*job)["id"];
  const bool as_json = ctx.output == Output::kJson;
  if (!o.follow) {
    if (as_json)
      PrintJson(*job);
    else
      std::cout << jid << "\n";
    return 0;
  }
  fprintf(stderr, "==> submitted %s (%s)\n", jid.c_str(), (*job)["name"].get<std::string>().c_str());
  auto final_job = Follow(ctx.kilnd, jid, !as_json);
  if (!final_job) return 2;
  if (as_json)
    PrintJson(*final_job);
  else
    PrintOutcome(*final_job);
  return ExitFor(*final_job);
}

int ListJobs(Context& ctx, const ListJobsOptions& o) {
  std::string q = "/v1/jobs?limit=" + std::to_string(o.limit);
  if (!o.status.empty()) q += "&status=" + UrlEscape(o.status);
  if (!o.name.empty()) q += "&name=" + UrlEscape(o.name);
  if (!o.tag.empty()) q += "&tag=" + UrlEscape(o.tag);
  if (!o.page_token.empty()) q += "&page_token=" + UrlEscape(o.page_token);
  auto r = ctx.kilnd.Call("GET", q);
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    PrintJson(*r);
  } else {
    PrintJobTable((*r)["jobs"]);
    if ((*r)["next_page_token"].is_string())
      std::cout << "(more: --page-token " << (*r)["next_page_token"].get<std::string>() << ")\n";
  }
  return 0;
}

int DescribeJob(Context& ctx, const std::string& id) {
  auto r = ctx.kilnd.Call("GET", "/v1/jobs/" + UrlEscape(id));
  if (!r) return 2;
  if (ctx.output == Output::kJson)
    PrintJson(*r);
  else
    PrintJob(*r);
  return 0;
}

int StopJob(Context& ctx, const std::string& id) {
  auto r = ctx.kilnd.Call("POST", "/v1/jobs/" + UrlEscape(id) + "/stop");
  if (!r) return 2;
  if (ctx.output == Output::kJson)
    PrintJson(*r);
  else
    std::cout << "stopping " << (*r)["id"].get<std::string>() << " (" << (*r)["status"].get<std::string>() << ")\n";
  return 0;
}

int PrintJobLogs(Context& ctx, const JobLogsOptions& o) {
  auto j = ctx.kilnd.Call("GET", "/v1/jobs/" + UrlEscape(o.id));
  if (!j) return 2;
  std::string path = "/v1/jobs/" + (*j)["id"].get<std::string>() + "/logs" + (o.follow ? "?follow=true" : "");
  return ctx.kilnd.Stream(path, {}, CopyToStdout) ? 0 : 2;
}

int PrintJobMetrics(Context& ctx, const JobMetricsOptions& o) {
  auto r = ctx.kilnd.Call(
      "GET", "/v1/jobs/" + UrlEscape(o.id) + "/metrics" + (o.name.empty() ? "" : "?name=" + UrlEscape(o.name)));
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    PrintJson(*r);
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

int PrintJobEvents(Context& ctx, const JobEventsOptions& o) {
  auto j = ctx.kilnd.Call("GET", "/v1/jobs/" + UrlEscape(o.id));
  if (!j) return 2;
  SseParser parser([&](const SseEvent& e) {
    if (ctx.output == Output::kJson)
      std::cout << e.data.dump() << "\n";
    else
      std::cout << Pad(std::to_string(e.data.value("job_seq", 0)), 4) << DescribeEvent(e.data) << "\n";
    std::cout.flush();
    return true;
  });
  std::string path = "/v1/jobs/" + (*j)["id"].get<std::string>() + "/events?follow=" + (o.follow ? "true" : "false");
  httplib::Headers h;
  if (o.after > 0) h.emplace("Last-Event-ID", std::to_string(o.after));
  return ctx.kilnd.Stream(path, h, [&](const char* d, size_t n) { return parser.Feed(d, n); }) ? 0 : 2;
}

int PrintSageMakerRequest(const SageMakerRequestOptions& o) {
  auto j = LoadSpecFile(o.spec_path);
  if (!j.ok()) {
    fprintf(stderr, "kiln: %s\n", j.status().ToString().c_str());
    return 2;
  }
  auto spec = ParseSpec(*j, nullptr);
  if (!spec.ok()) {
    fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  SageMakerTarget t{o.role_arn, o.s3_output, o.runtime_url, o.image.empty() ? spec->image : o.image, 30};
  std::cout << BuildCreateTrainingJob(*spec, "j-dryrun", "<instance token>", t).dump(2) << "\n";
  return 0;
}

}  // namespace kiln::cli
