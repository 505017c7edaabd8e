#include "jobs/events.h"

#include "common/json_fields.h"

namespace kiln {
namespace {

using nlohmann::json;

Status RequireObject(const json& j) {
  if (!j.is_object()) return InvalidArgument("payload", "event payload is not an object");
  return Status::Ok();
}

}  // namespace

json ToJson(const ExitReport& r) {
  json j = {{"instance_id", r.instance_id},
            {"exit_code", r.exit_code},
            {"signal", r.signal},
            {"oom", r.oom},
            {"failure", r.failure}};
  if (!r.message.empty()) j["message"] = r.message;
  if (!r.model_artifact.empty()) j["model_artifact"] = r.model_artifact;
  if (r.peak_memory_bytes) j["peak_memory_bytes"] = *r.peak_memory_bytes;
  return j;
}

Result<ExitReport> ExitReportFromJson(const json& j) {
  KILN_RETURN_IF_ERROR(RequireObject(j));
  ExitReport r;
  KILN_RETURN_IF_ERROR(ReadField(j, "instance_id", r.instance_id));
  KILN_RETURN_IF_ERROR(ReadField(j, "exit_code", r.exit_code));
  KILN_RETURN_IF_ERROR(ReadField(j, "signal", r.signal));
  KILN_RETURN_IF_ERROR(ReadField(j, "oom", r.oom));
  KILN_RETURN_IF_ERROR(ReadField(j, "failure", r.failure));
  KILN_RETURN_IF_ERROR(ReadField(j, "message", r.message));
  KILN_RETURN_IF_ERROR(ReadField(j, "model_artifact", r.model_artifact));
  int64_t peak = -1;
  KILN_RETURN_IF_ERROR(ReadField(j, "peak_memory_bytes", peak));
  if (peak >= 0) r.peak_memory_bytes = peak;
  return r;
}

json ToJson(const LaunchedReport& r) {
  json j = {{"instance_id", r.instance_id}, {"handle", r.handle}};
  if (r.acquire_ms) j["acquire_ms"] = *r.acquire_ms;
  return j;
}

Result<LaunchedReport> LaunchedReportFromJson(const json& j) {
  KILN_RETURN_IF_ERROR(RequireObject(j));
  LaunchedReport r;
  KILN_RETURN_IF_ERROR(ReadField(j, "instance_id", r.instance_id));
  KILN_RETURN_IF_ERROR(ReadField(j, "handle", r.handle));
  if (j.contains("acquire_ms")) {
    int64_t ms = 0;
    KILN_RETURN_IF_ERROR(ReadField(j, "acquire_ms", ms));
    if (ms >= 0) r.acquire_ms = ms;
  }
  return r;
}

json ToJson(const LaunchFailedReport& r) {
  return {{"instance_id", r.instance_id}, {"reason", r.reason}};
}

Result<LaunchFailedReport> LaunchFailedReportFromJson(const json& j) {
  KILN_RETURN_IF_ERROR(RequireObject(j));
  LaunchFailedReport r;
  KILN_RETURN_IF_ERROR(ReadField(j, "instance_id", r.instance_id));
  KILN_RETURN_IF_ERROR(ReadField(j, "reason", r.reason));
  if (r.reason.empty()) r.reason = "unknown";
  return r;
}

const char* ToString(Phase p) {
  switch (p) {
    case Phase::kDownloading:
      return "Downloading";
    case Phase::kTraining:
      return "Training";
    case Phase::kFirstLine:
      return "FirstLine";
    case Phase::kUploading:
      return "Uploading";
    case Phase::kUploaded:
      return "Uploaded";
  }
  return "?";
}

std::optional<Phase> ParsePhase(const std::string& s) {
  for (Phase p : {Phase::kDownloading, Phase::kTraining, Phase::kFirstLine, Phase::kUploading, Phase::kUploaded})
    if (s == ToString(p)) return p;
  return std::nullopt;
}

json ToJson(const PhaseReport& r) {
  json j = {{"instance_id", r.instance_id}, {"phase", ToString(r.phase)}};
  if (r.time_ms) j["time_ms"] = *r.time_ms;
  if (!r.model_artifact.empty()) j["model_artifact"] = r.model_artifact;
  if (!r.start.empty()) j["start"] = r.start;
  if (!r.start_note.empty()) j["start_note"] = r.start_note;
  return j;
}

Result<PhaseReport> PhaseReportFromJson(const json& j) {
  KILN_RETURN_IF_ERROR(RequireObject(j));
  PhaseReport r;
  KILN_RETURN_IF_ERROR(ReadField(j, "instance_id", r.instance_id));
  std::string phase;
  KILN_RETURN_IF_ERROR(ReadField(j, "phase", phase));
  auto p = ParsePhase(phase);
  if (!p) return InvalidArgument("phase", "unknown phase '" + phase + "'");
  r.phase = *p;
  TimeMs at = 0;
  if (j.contains("time_ms")) {
    KILN_RETURN_IF_ERROR(ReadField(j, "time_ms", at));
    r.time_ms = at;
  }
  KILN_RETURN_IF_ERROR(ReadField(j, "model_artifact", r.model_artifact));
  KILN_RETURN_IF_ERROR(ReadField(j, "start", r.start));
  KILN_RETURN_IF_ERROR(ReadField(j, "start_note", r.start_note));
  return r;
}

std::string PayloadInstanceId(const json& payload) {
  std::string id;
  if (payload.is_object()) ReadField(payload, "instance_id", id).IgnoreError();  // wrong type: no instance
  return id;
}

}  // namespace kiln
