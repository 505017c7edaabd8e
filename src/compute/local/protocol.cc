#include "compute/local/protocol.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/json_fields.h"

namespace kiln::supervisor {
namespace {

using nlohmann::json;

std::string Dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Parses `text` as an object of a version this build reads.
Result<json> ParseVersioned(const std::string& text, const char* what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument(what, std::string(what) + " is not a JSON object");
  int version = 1;  // files written before the field existed
  KILN_RETURN_IF_ERROR(ReadField(j, "version", version));
  if (version < 1 || version > kProtocolVersion)
    return Status(Code::kFailedPrecondition, std::string(what) + " has protocol version " + std::to_string(version) +
                                                 "; this build reads 1.." + std::to_string(kProtocolVersion));
  return j;
}

}  // namespace

std::string Encode(const LaunchFile& f) {
  return Dump({{"version", f.version},
               {"instance_id", f.instance_id},
               {"argv", f.argv},
               {"env", f.env},
               {"memory_bytes", f.memory_bytes},
               {"cpus", f.cpus},
               {"grace_ms", f.grace_ms},
               {"log", f.log},
               {"cwd", f.cwd}});
}

Result<LaunchFile> DecodeLaunchFile(const std::string& text) {
  auto j = ParseVersioned(text, kLaunchFile);
  if (!j.ok()) return j.status();
  LaunchFile f;
  KILN_RETURN_IF_ERROR(RequireField(*j, "instance_id", f.instance_id));
  KILN_RETURN_IF_ERROR(RequireField(*j, "argv", f.argv));
  if (f.argv.empty() || f.argv[0].empty() || f.argv[0][0] != '/')
    return InvalidArgument("argv", "argv must start with an absolute path");
  KILN_RETURN_IF_ERROR(ReadField(*j, "env", f.env));
  KILN_RETURN_IF_ERROR(ReadField(*j, "memory_bytes", f.memory_bytes));
  KILN_RETURN_IF_ERROR(ReadField(*j, "cpus", f.cpus));
  KILN_RETURN_IF_ERROR(ReadField(*j, "grace_ms", f.grace_ms));
  KILN_RETURN_IF_ERROR(RequireField(*j, "log", f.log));
  KILN_RETURN_IF_ERROR(ReadField(*j, "cwd", f.cwd));
  return f;
}

std::string Encode(const StatusFile& f) {
  json j = ToJson(f.exit);
  j.erase("instance_id");  // the directory names the instance
  j["version"] = f.version;
  j["started_ms"] = f.started_ms;
  j["ended_ms"] = f.ended_ms;
  j["stopped"] = f.stopped;
  if (!f.limits_warning.empty()) j["limits_warning"] = f.limits_warning;
  return Dump(j);
}

Result<StatusFile> DecodeStatusFile(const std::string& text) {
  auto j = ParseVersioned(text, kStatusFile);
  if (!j.ok()) return j.status();
  StatusFile f;
  auto exit = ExitReportFromJson(*j);
  if (!exit.ok()) return exit.status();
  f.exit = std::move(*exit);
  KILN_RETURN_IF_ERROR(ReadField(*j, "started_ms", f.started_ms));
  KILN_RETURN_IF_ERROR(ReadField(*j, "ended_ms", f.ended_ms));
  KILN_RETURN_IF_ERROR(ReadField(*j, "stopped", f.stopped));
  KILN_RETURN_IF_ERROR(ReadField(*j, "limits_warning", f.limits_warning));
  return f;
}

std::string Encode(const PidFile& f) {
  return std::to_string(f.pid) + " " + std::to_string(f.start) + "\n";
}

Result<PidFile> DecodePidFile(const std::string& text) {
  PidFile f;
  if (sscanf(text.c_str(), "%d %llu", &f.pid, &f.start) != 2 || f.pid <= 0)
    return InvalidArgument(kPidFile, std::string("malformed ") + kPidFile);
  return f;
}

std::string Encode(const ReadyAnswer& a) {
  switch (a.kind) {
    case ReadyKind::kOk:
      return "ok\n";
    case ReadyKind::kBusy:
      return "busy\n";
    case ReadyKind::kError:
      break;
  }
  return "err " + a.error + "\n";
}

ReadyAnswer DecodeReady(const std::string& line) {
  std::string s = line;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s == "ok") return {ReadyKind::kOk, ""};
  if (s == "busy") return {ReadyKind::kBusy, ""};
  if (s.rfind("err ", 0) == 0) return {ReadyKind::kError, s.substr(4)};
  return {ReadyKind::kError, s.empty() ? "no answer" : "unexpected answer '" + s + "'"};
}

std::string Encode(const Handle& h) {
  return json{{"pid", h.pid}, {"start", h.start}, {"dir", h.dir}, {"job_id", h.job_id}}.dump();
}

Result<Handle> DecodeHandle(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("handle", "handle is not a JSON object");
  Handle h;
  KILN_RETURN_IF_ERROR(RequireField(j, "pid", h.pid));
  KILN_RETURN_IF_ERROR(ReadField(j, "start", h.start));
  KILN_RETURN_IF_ERROR(ReadField(j, "dir", h.dir));
  KILN_RETURN_IF_ERROR(ReadField(j, "job_id", h.job_id));
  return h;
}

}  // namespace kiln::supervisor
