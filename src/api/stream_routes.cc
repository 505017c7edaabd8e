// Streams: a job's logs (text, optionally followed) and events (Server-Sent Events).
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "api/http_helpers.h"
#include "api/native_api.h"

namespace kiln {
namespace {

using api_internal::BoolParam;
using nlohmann::json;

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
void NativeApi::RegisterLogsAndEvents(httplib::Server& s) {
  s.Get(R"(/v1/jobs/([^/]+)/logs)", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendApiError(res, job.status());
    const std::string job_id = job->id;
    const bool follow = BoolParam(req, "follow", false);
    auto offsets = std::make_shared<LogOffsets>();
    auto tail = [this, job_id, follow, offsets](size_t, httplib::DataSink& sink) {
      int ino = follow ? inotify_init1(IN_CLOEXEC | IN_NONBLOCK) : -1;
      TailLogs(job_id, follow, ino, *offsets, sink);
      if (ino >= 0) close(ino);
      sink.done();
      return true;
    };
    res.set_chunked_content_provider("text/plain; charset=utf-8", tail);
  });

  s.Get(R"(/v1/jobs/([^/]+)/events)", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = store_.GetJob(req.matches[1]);
    if (!job.ok()) return SendApiError(res, job.status());
    StreamEvents(req, res, job->id);
  });
  s.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) { StreamEvents(req, res, ""); });
}

void NativeApi::TailLogs(const std::string& job_id, bool follow, int inotify_fd, LogOffsets& offsets,
                         httplib::DataSink& sink) {
  std::set<std::string> watched;
  for (;;) {
    auto j = store_.GetJob(job_id);
    if (!j.ok()) return;
    bool terminal = IsTerminal(j->status);
    int64_t seen = ctl_.version();
    if (!CopyNewLogOutput(*j, follow, inotify_fd, watched, offsets, sink)) return;
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
                                 LogOffsets& offsets, httplib::DataSink& sink) {
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
    std::string chunk((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!follow || chunk.empty()) {
      if (!chunk.empty() && !sink.write(chunk.data(), chunk.size())) return false;
      off += static_cast<std::streamoff>(chunk.size());
      continue;
    }
    // Whole lines only while following.
    auto last_nl = chunk.rfind('\n');
    if (last_nl == std::string::npos) continue;
    if (!sink.write(chunk.data(), last_nl + 1)) return false;
    off += static_cast<std::streamoff>(last_nl + 1);
  }
  return true;
}

void NativeApi::StreamEvents(const httplib::Request& req, httplib::Response& res, const std::string& job_id) {
  int64_t after = ResumePoint(req);
  if (after < 0) return SendApiError(res, InvalidArgument("Last-Event-ID", "must be an integer sequence number"));
  const bool follow = BoolParam(req, "follow", true);
  res.set_header("Cache-Control", "no-cache");
  auto write = [this, job_id, after, follow](size_t, httplib::DataSink& sink) {
    WriteEvents(job_id, after, follow, sink);
    sink.done();
    return true;
  };
  res.set_chunked_content_provider("text/event-stream", write);
}

// Ids are global sequence numbers on /v1/events and per-job ones on a job's stream.
void NativeApi::WriteEvents(const std::string& job_id, int64_t after, bool follow, httplib::DataSink& sink) {
  int64_t cursor = after;
  int idle_ms = 0;
  for (;;) {
    int64_t seen = ctl_.version();
    auto events =
        job_id.empty() ? store_.EventsAfter(cursor, kEventBatch) : store_.JobEventsAfter(job_id, cursor, kEventBatch);
    if (!events.ok()) return;
    bool ended = false;
    for (const auto& e : *events) {
      int64_t id = job_id.empty() ? e.seq : e.job_seq;
      std::string frame = SseFrame(std::to_string(id), ToString(e.type),
                                   ToJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!sink.write(frame.data(), frame.size())) return;
      cursor = id;
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
