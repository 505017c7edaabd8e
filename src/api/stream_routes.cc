// Streams: a job's logs (text, optionally followed) and events (Server-Sent Events).
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

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

}  // namespace

// GET /v1/jobs/{id}/logs[?follow=true]: the instances' output, in launch order;
// follow streams until the job ends.
// GET /v1/jobs/{id}/events, GET /v1/events: Server-Sent Events, resumable with
// Last-Event-ID (or ?after=); follow (default true) keeps the stream open.
void NativeApi::RegisterLogsAndEvents(Router& r) {
  r.Get(R"(/v1/jobs/([^/]+)/logs)", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto job = VisibleJob(req.matches[1], who);
          if (!job.ok()) return SendApiError(res, job.status());
          const std::string job_id = job->id;
          const bool follow = BoolParam(req, "follow", false);
          auto range = std::make_shared<LogRange>();
          for (const char* p : {"offset", "limit"}) {
            if (!req.has_param(p)) continue;
            const std::string v = req.get_param_value(p);
            char* end = nullptr;
            errno = 0;
            const unsigned long long n = strtoull(v.c_str(), &end, 10);
            if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0)
              return SendApiError(res, InvalidArgument(p, "must be a byte count (a non-negative integer)"));
            if (follow) return SendApiError(res, InvalidArgument(p, "is for reads without follow"));
            (std::string(p) == "offset" ? range->skip : range->budget) = n;
          }
          auto slot = streams_.Acquire(who.id);
          if (!slot.ok()) return SendApiError(res, slot.status());
          auto offsets = std::make_shared<LogOffsets>();
          auto tail = [this, job_id, follow, offsets, range, slot = *slot](size_t, httplib::DataSink& sink) {
            int ino = follow ? inotify_init1(IN_CLOEXEC | IN_NONBLOCK) : -1;
            TailLogs(job_id, follow, ino, *offsets, *range, sink);
            if (ino >= 0) close(ino);
            sink.done();
            return true;
          };
          res.set_chunked_content_provider("text/plain; charset=utf-8", tail);
        });

  r.Get(R"(/v1/jobs/([^/]+)/events)", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto job = VisibleJob(req.matches[1], who);
          if (!job.ok()) return SendApiError(res, job.status());
          StreamEvents(req, res, job->id, who);
        });
  // The global log: the events of the jobs the caller may see (every job's for an admin).
  r.Get("/v1/events", Access::kViewer,
        [this](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          StreamEvents(req, res, "", who);
        });
}

void NativeApi::TailLogs(const std::string& job_id, bool follow, int inotify_fd, LogOffsets& offsets, LogRange& range,
                         httplib::DataSink& sink) {
  std::set<std::string> watched;
  for (;;) {
    auto j = store_.GetJob(job_id);
    if (!j.ok()) return;
    bool terminal = IsTerminal(j->status);
    int64_t seen = ctl_.version();
    if (!CopyNewLogOutput(*j, follow, inotify_fd, watched, offsets, range, sink)) return;
    if (!follow || terminal || shutting_down_) return;
    // Wake on a log write (inotify) or a job change (controller), whichever first.
    pollfd p{inotify_fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0) {
      char buf[4096];
      while (read(inotify_fd, buf, sizeof(buf)) > 0) {
      }
    } else {
      ctl_.WaitForChange(seen, 400);
    }
  }
}

bool NativeApi::CopyNewLogOutput(const Job& job, bool follow, int inotify_fd, std::set<std::string>& watched,
                                 LogOffsets& offsets, LogRange& range, httplib::DataSink& sink) {
  std::vector<char> buf(kLogChunkBytes);
  for (const auto& in : job.instances) {
    std::string path = opts_.log_path ? opts_.log_path(in.id) : "";
    if (path.empty()) continue;
    if (inotify_fd >= 0 && !watched.count(path) && std::filesystem::exists(path)) {
      inotify_add_watch(inotify_fd, path.c_str(), IN_MODIFY);
      watched.insert(path);
    }
    std::ifstream f(path, std::ios::binary);
    if (!f) continue;
    auto& off = offsets[path];
    f.seekg(off);
    while (range.budget > 0) {
      f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      size_t n = static_cast<size_t>(f.gcount());
      if (n == 0) break;
      size_t take = n;
      if (follow) {  // whole lines only while following (a line longer than a chunk goes as it is)
        size_t nl = std::string_view(buf.data(), n).rfind('\n');
        if (nl == std::string_view::npos && n < buf.size()) break;
        if (nl != std::string_view::npos) take = nl + 1;
      }
      off += static_cast<std::streamoff>(take);
      size_t from = 0;
      if (range.skip > 0) {
        from = static_cast<size_t>(std::min<uint64_t>(range.skip, take));
        range.skip -= from;
      }
      const size_t send = static_cast<size_t>(std::min<uint64_t>(take - from, range.budget));
      if (send > 0 && !sink.write(buf.data() + from, send)) return false;
      range.budget -= send;
      if (take < n) break;  // the rest is a partial line: next pass
    }
  }
  return true;
}

void NativeApi::StreamEvents(const httplib::Request& req, httplib::Response& res, const std::string& job_id,
                             const Principal& who) {
  int64_t after = ResumePoint(req);
  if (after < 0) return SendApiError(res, InvalidArgument("Last-Event-ID", "must be an integer sequence number"));
  const bool follow = BoolParam(req, "follow", true);
  auto slot = streams_.Acquire(who.id);
  if (!slot.ok()) return SendApiError(res, slot.status());
  res.set_header("Cache-Control", "no-cache");
  auto write = [this, job_id, after, follow, who, slot = *slot](size_t, httplib::DataSink& sink) {
    WriteEvents(job_id, after, follow, who, sink);
    sink.done();
    return true;
  };
  res.set_chunked_content_provider("text/event-stream", write);
}

// Ids are global sequence numbers on /v1/events and per-job ones on a job's stream.
void NativeApi::WriteEvents(const std::string& job_id, int64_t after, bool follow, const Principal& who,
                            httplib::DataSink& sink) {
  int64_t cursor = after;
  int idle_ms = 0;
  std::map<std::string, std::string> teams;  // job -> team, for the global log
  for (;;) {
    int64_t seen = ctl_.version();
    auto events =
        job_id.empty() ? store_.EventsAfter(cursor, kEventBatch) : store_.JobEventsAfter(job_id, cursor, kEventBatch);
    if (!events.ok()) return;
    bool ended = false;
    for (const auto& e : *events) {
      int64_t id = job_id.empty() ? e.seq : e.job_seq;
      cursor = id;
      if (job_id.empty() && !who.Sees(TeamOfJob(e.job_id, teams))) continue;
      std::string frame = SseFrame(std::to_string(id), ToString(e.type),
                                   ToJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!sink.write(frame.data(), frame.size())) return;
      if (!job_id.empty() && !e.status_after.empty() && IsTerminal(*ParseJobStatus(e.status_after))) ended = true;
    }
    if (events->size() == static_cast<size_t>(kEventBatch)) continue;
    if (ended || !follow || shutting_down_) return;
    if (!job_id.empty()) {
      auto j = store_.GetJob(job_id);
      if (j.ok() && IsTerminal(j->status) && j->last_job_seq <= cursor) return;
    }
    if (ctl_.WaitForChange(seen, 1000) == seen) {
      idle_ms += 1000;
      if (idle_ms >= 15000) {  // keep-alive comment; also detects a gone client
        idle_ms = 0;
        if (!sink.write(": keep-alive\n\n", 14)) return;
      }
    }
  }
}

}  // namespace kiln
