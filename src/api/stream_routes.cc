// Streams: a job's logs (text, optionally followed) and events (Server-Sent Events).
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string_view>
#include <vector>

#include "api/http_helpers.h"
#include "api/native_api.h"

namespace kiln {
namespace {

using api_internal::BoolParam;
using nlohmann::json;
using LogRange = NativeApi::LogRange;

// What one log read holds in memory at a time, however large the log.
constexpr size_t kLogChunkBytes = 1 << 20;

// Events read from the store per query; a full batch is followed by another at once.
constexpr int kEventBatch = 500;

std::string SseFrame(const std::string& id, const std::string& type, const std::string& data) {
  return "id: " + id + "\nevent: " + type + "\ndata: " + data + "\n\n";
}

// Where an event stream resumes: Last-Event-ID, else ?after=, else 0; -1 if not an integer.
int64_t ResumePoint(const httplib::Request& req) {
  std::string v = req.get_header_value("Last-Event-ID");
  if (v.empty()) v = req.get_param_value("after");
  if (v.empty()) return 0;
  try {
    return std::stoll(v);
  } catch (...) {
    return -1;
  }
}

// A job's event stream (job_id set) or the global log of the events a caller
// may see: each Step sends what the store has after the cursor, 500 at a time.
class EventStream : public http::StreamSource {
 public:
  EventStream(Store& store, std::string job_id, int64_t after, bool follow, Principal who,
              std::function<std::string(const std::string&)> team_of, const std::atomic<bool>& shutting_down,
              std::shared_ptr<void> slot)
      : store_(store),
        job_id_(std::move(job_id)),
        cursor_(after),
        follow_(follow),
        who_(std::move(who)),
        team_of_(std::move(team_of)),
        shutting_down_(shutting_down),
        slot_(std::move(slot)) {}

  http::StreamStep Step(std::string& out) override {
    // A job that had ended before this read has all its events in the store (or
    // pruned by retention): what the read returns is the rest of the stream.
    bool ended_before = false;
    if (!job_id_.empty()) {
      auto j = store_.GetJob(job_id_);
      if (!j.ok()) return http::StreamStep::kDone;
      ended_before = IsTerminal(j->status);
    }
    auto events = job_id_.empty() ? store_.EventsAfter(cursor_, kEventBatch)
                                  : store_.JobEventsAfter(job_id_, cursor_, kEventBatch);
    if (!events.ok()) return http::StreamStep::kDone;
    bool ended = false;
    for (const auto& e : *events) {
      const int64_t id = job_id_.empty() ? e.seq : e.job_seq;
      cursor_ = id;
      if (job_id_.empty() && !who_.Sees(team_of_(e.job_id))) continue;
      out += SseFrame(std::to_string(id), ToString(e.type),
                      ToJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!job_id_.empty() && !e.status_after.empty() && IsTerminal(*ParseJobStatus(e.status_after))) ended = true;
    }
    if (events->size() == static_cast<size_t>(kEventBatch)) return http::StreamStep::kMore;
    if (ended || ended_before || !follow_ || shutting_down_) return http::StreamStep::kDone;
    return http::StreamStep::kWait;
  }
  // A job's stream wakes on that job's changes; the global log on every job's.
  std::string wake_key() const override { return job_id_.empty() ? "*" : job_id_; }
  int keep_alive_ms() const override { return 15000; }
  std::string keep_alive() const override { return ": keep-alive\n\n"; }

 private:
  Store& store_;
  const std::string job_id_;
  int64_t cursor_;
  const bool follow_;
  const Principal who_;
  std::function<std::string(const std::string&)> team_of_;
  const std::atomic<bool>& shutting_down_;
  std::shared_ptr<void> slot_;  // released with the stream
};

// A job's output: its instances' logs in launch order, at most 1 MiB a step. A
// followed log is read again on the job's changes and every 250 ms (log writes
// are not events), in whole lines, until the job has ended and all is sent.
class LogStream : public http::StreamSource {
 public:
  LogStream(Store& store, std::function<std::string(const std::string&)> log_path, std::string job_id, bool follow,
            LogRange range, const std::atomic<bool>& shutting_down, std::shared_ptr<void> slot)
      : store_(store),
        log_path_(std::move(log_path)),
        job_id_(std::move(job_id)),
        follow_(follow),
        range_(range),
        shutting_down_(shutting_down),
        slot_(std::move(slot)) {}

  http::StreamStep Step(std::string& out) override {
    auto j = store_.GetJob(job_id_);
    if (!j.ok()) return http::StreamStep::kDone;
    const bool ended = IsTerminal(j->status);  // before reading: what it wrote last is read below
    const bool full = ReadNewOutput(*j, out);
    if (full) return http::StreamStep::kMore;
    if (!follow_ || ended || shutting_down_ || range_.budget == 0) return http::StreamStep::kDone;
    return http::StreamStep::kWait;
  }
  std::string wake_key() const override { return job_id_; }
  int poll_ms() const override { return follow_ ? 250 : 0; }

 private:
  // Appends up to kLogChunkBytes of output not yet sent; true when that filled it.
  bool ReadNewOutput(const Job& job, std::string& out) {
    std::vector<char> buf(kLogChunkBytes);
    for (const auto& in : job.instances) {
      const std::string path = log_path_ ? log_path_(in.id) : "";
      if (path.empty()) continue;
      std::ifstream f(path, std::ios::binary);
      if (!f) continue;
      auto& off = offsets_[path];
      f.seekg(off);
      while (range_.budget > 0 && out.size() < kLogChunkBytes) {
        f.read(buf.data(), static_cast<std::streamsize>(kLogChunkBytes - out.size()));
        const size_t n = static_cast<size_t>(f.gcount());
        if (n == 0) break;
        size_t take = n;
        if (follow_) {  // whole lines only while following (a line longer than a chunk goes as it is)
          const size_t nl = std::string_view(buf.data(), n).rfind('\n');
          if (nl == std::string_view::npos && out.size() + n < kLogChunkBytes) break;
          if (nl != std::string_view::npos) take = nl + 1;
        }
        off += static_cast<std::streamoff>(take);
        size_t from = 0;
        if (range_.skip > 0) {
          from = static_cast<size_t>(std::min<uint64_t>(range_.skip, take));
          range_.skip -= from;
        }
        const size_t send = static_cast<size_t>(std::min<uint64_t>(take - from, range_.budget));
        out.append(buf.data() + from, send);
        range_.budget -= send;
        if (take < n) break;  // the rest is a partial line: next step
      }
      if (out.size() >= kLogChunkBytes) return true;
    }
    return false;
  }

  Store& store_;
  std::function<std::string(const std::string&)> log_path_;
  const std::string job_id_;
  const bool follow_;
  LogRange range_;
  std::map<std::string, std::streamoff> offsets_;  // per log path
  const std::atomic<bool>& shutting_down_;
  std::shared_ptr<void> slot_;
};

// A stream route's error answer: in `res`, and no stream.
std::shared_ptr<http::StreamSource> Refuse(httplib::Response& res, const Status& st) {
  SendApiError(res, st);
  return nullptr;
}

}  // namespace

// GET /v1/jobs/{id}/logs[?follow=true][&offset=&limit=]: the instances' output,
// in launch order; follow streams until the job ends.
// GET /v1/jobs/{id}/events, GET /v1/events: Server-Sent Events, resumable with
// Last-Event-ID (or ?after=); follow (default true) keeps the stream open.
void NativeApi::RegisterLogsAndEvents(Router& r) {
  r.Stream(R"(/v1/jobs/([^/]+)/logs)", Access::kViewer,
           [this](const httplib::Request& req, httplib::Response& res,
                  const Principal& who) -> std::shared_ptr<http::StreamSource> {
             auto job = VisibleJob(req.matches[1], who);
             if (!job.ok()) return Refuse(res, job.status());
             const bool follow = BoolParam(req, "follow", false);
             LogRange range;
             for (const char* p : {"offset", "limit"}) {
               if (!req.has_param(p)) continue;
               const std::string v = req.get_param_value(p);
               char* end = nullptr;
               errno = 0;
               const unsigned long long n = strtoull(v.c_str(), &end, 10);
               if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0)
                 return Refuse(res, InvalidArgument(p, "must be a byte count (a non-negative integer)"));
               if (follow) return Refuse(res, InvalidArgument(p, "is for reads without follow"));
               (std::string(p) == "offset" ? range.skip : range.budget) = n;
             }
             auto slot = streams_.Acquire(who.id);
             if (!slot.ok()) return Refuse(res, slot.status());
             res.set_header("Content-Type", "text/plain; charset=utf-8");
             return std::make_shared<LogStream>(store_, opts_.log_path, job->id, follow, range, shutting_down_, *slot);
           });

  r.Stream(R"(/v1/jobs/([^/]+)/events)", Access::kViewer,
           [this](const httplib::Request& req, httplib::Response& res,
                  const Principal& who) -> std::shared_ptr<http::StreamSource> {
             auto job = VisibleJob(req.matches[1], who);
             if (!job.ok()) return Refuse(res, job.status());
             return StreamEvents(req, res, job->id, who);
           });
  // The global log: the events of the jobs the caller may see (every job's for an admin).
  r.Stream(
      "/v1/events", Access::kViewer,
      [this](const httplib::Request& req, httplib::Response& res,
             const Principal& who) -> std::shared_ptr<http::StreamSource> { return StreamEvents(req, res, "", who); });
}

// Ids are global sequence numbers on /v1/events and per-job ones on a job's stream.
std::shared_ptr<http::StreamSource> NativeApi::StreamEvents(const httplib::Request& req, httplib::Response& res,
                                                            const std::string& job_id, const Principal& who) {
  const int64_t after = ResumePoint(req);
  if (after < 0) return Refuse(res, InvalidArgument("Last-Event-ID", "must be an integer sequence number"));
  const bool follow = BoolParam(req, "follow", true);
  auto slot = streams_.Acquire(who.id);
  if (!slot.ok()) return Refuse(res, slot.status());
  res.set_header("Cache-Control", "no-cache");
  res.set_header("Content-Type", "text/event-stream");
  auto teams = std::make_shared<std::map<std::string, std::string>>();  // job -> team, for the global log
  auto team_of = [this, teams](const std::string& id) { return TeamOfJob(id, *teams); };
  return std::make_shared<EventStream>(store_, job_id, after, follow, who, team_of, shutting_down_, *slot);
}

}  // namespace kiln
