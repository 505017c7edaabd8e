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

json FdBindJson(const FdBind& b) {
  json j = {{"root", b.root}, {"relative", b.relative}};
  if (b.as_job_user) j["as_job_user"] = true;
  if (!b.forbidden.empty()) j["forbidden"] = b.forbidden;
  if (!b.allowed.empty()) j["allowed"] = b.allowed;
  return j;
}

json FdBindsJson(const std::vector<FdBind>& binds) {
  json a = json::array();
  for (const auto& b : binds) a.push_back(FdBindJson(b));
  return a;
}

json TransfersJson(const std::vector<Transfer>& transfers) {
  json a = json::array();
  for (const auto& t : transfers) a.push_back({{"scratch", t.scratch}, {"host", FdBindJson(t.host)}});
  return a;
}

Result<FdBind> DecodeFdBind(const json& b, const char* field) {
  FdBind fb;
  if (!b.is_object()) return InvalidArgument(field, std::string(field) + " entries must be objects");
  KILN_RETURN_IF_ERROR(RequireField(b, "root", fb.root));
  KILN_RETURN_IF_ERROR(ReadField(b, "relative", fb.relative));
  KILN_RETURN_IF_ERROR(ReadField(b, "as_job_user", fb.as_job_user));
  KILN_RETURN_IF_ERROR(ReadField(b, "forbidden", fb.forbidden));
  KILN_RETURN_IF_ERROR(ReadField(b, "allowed", fb.allowed));
  if (fb.root.empty() || fb.root[0] != '/')
    return InvalidArgument(field, std::string(field) + " roots must be absolute");
  return fb;
}

Status DecodeTransfers(const json& j, const char* field, std::vector<Transfer>& out) {
  if (!j.contains(field) || j[field].is_null()) return Status::Ok();
  if (!j[field].is_array()) return InvalidArgument(field, std::string(field) + " must be an array");
  for (const auto& t : j[field]) {
    Transfer tr;
    if (!t.is_object() || !t.contains("host")) return InvalidArgument(field, std::string(field) + " entries need host");
    KILN_RETURN_IF_ERROR(RequireField(t, "scratch", tr.scratch));
    if (tr.scratch.empty() || tr.scratch[0] == '/' || tr.scratch.find("..") != std::string::npos)
      return InvalidArgument(field, std::string(field) + " scratch paths are relative, without ..");
    auto host = DecodeFdBind(t["host"], field);
    if (!host.ok()) return host.status();
    tr.host = std::move(*host);
    out.push_back(std::move(tr));
  }
  return Status::Ok();
}

Status DecodeLink(const json& j, const char* key, std::optional<JobLink>& out) {
  if (!j.contains(key) || j[key].is_null()) return Status::Ok();
  const std::string k = key;
  JobLink l;
  KILN_RETURN_IF_ERROR(RequireField(j[key], "bridge", l.bridge));
  KILN_RETURN_IF_ERROR(RequireField(j[key], "host_veth", l.host_veth));
  KILN_RETURN_IF_ERROR(RequireField(j[key], "address", l.address));
  KILN_RETURN_IF_ERROR(ReadField(j[key], "prefix_len", l.prefix_len));
  KILN_RETURN_IF_ERROR(ReadField(j[key], "gateway", l.gateway));
  if (l.bridge.empty() || l.bridge.size() > 15 || l.host_veth.empty() || l.host_veth.size() > 13)
    return InvalidArgument(k, "interface names must be 1..15 (bridge) and 1..13 (veth) characters");
  if (l.prefix_len < 8 || l.prefix_len > 30) return InvalidArgument(k + ".prefix_len", "prefix_len must be 8..30");
  out = std::move(l);
  return Status::Ok();
}

json LinkJson(const std::optional<JobLink>& l) {
  if (!l) return nullptr;
  json j = {{"bridge", l->bridge}, {"host_veth", l->host_veth}, {"address", l->address}, {"prefix_len", l->prefix_len}};
  if (!l->gateway.empty()) j["gateway"] = l->gateway;
  return j;
}

Status DecodeIsolation(const json& j, LaunchFile& f) {
  KILN_RETURN_IF_ERROR(ReadField(j, "uid", f.uid));
  KILN_RETURN_IF_ERROR(ReadField(j, "gid", f.gid));
  std::string network = "host";
  KILN_RETURN_IF_ERROR(ReadField(j, "network", network));
  if (network != "host" && network != "private") return InvalidArgument("network", "network must be host or private");
  f.network = network == "private" ? NetworkMode::kPrivate : NetworkMode::kHost;
  KILN_RETURN_IF_ERROR(DecodeLink(j, "link", f.link));
  KILN_RETURN_IF_ERROR(DecodeLink(j, "egress", f.egress));
  if (f.egress && f.egress->gateway.empty()) return InvalidArgument("egress.gateway", "egress needs a gateway");
  KILN_RETURN_IF_ERROR(ReadField(j, "seccomp", f.seccomp));
  KILN_RETURN_IF_ERROR(ReadField(j, "pids_max", f.pids_max));
  KILN_RETURN_IF_ERROR(ReadField(j, "log_max_bytes", f.log_max_bytes));
  KILN_RETURN_IF_ERROR(ReadField(j, "report_url", f.report_url));
  KILN_RETURN_IF_ERROR(ReadField(j, "report_token", f.report_token));
  if (!f.report_url.empty() && f.report_url.rfind("http://", 0) != 0)
    return InvalidArgument("report_url", "report_url must be http://host:port");
  KILN_RETURN_IF_ERROR(ReadField(j, "scratch", f.scratch));
  KILN_RETURN_IF_ERROR(ReadField(j, "volume_bytes", f.volume_bytes));
  if (!f.scratch.empty() && f.scratch[0] != '/') return InvalidArgument("scratch", "scratch must be absolute");
  KILN_RETURN_IF_ERROR(DecodeTransfers(j, "seed", f.seed));
  KILN_RETURN_IF_ERROR(DecodeTransfers(j, "publish", f.publish));
  if ((!f.seed.empty() || !f.publish.empty()) && f.scratch.empty())
    return InvalidArgument("scratch", "seed and publish need a scratch volume");
  if (j.contains("fd_binds") && !j["fd_binds"].is_null()) {
    if (!j["fd_binds"].is_array()) return InvalidArgument("fd_binds", "fd_binds must be an array");
    for (const auto& b : j["fd_binds"]) {
      auto fb = DecodeFdBind(b, "fd_binds");
      if (!fb.ok()) return fb.status();
      f.fd_binds.push_back(std::move(*fb));
    }
  }
  return Status::Ok();
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
               {"cwd", f.cwd},
               {"uid", f.uid},
               {"gid", f.gid},
               {"network", f.network == NetworkMode::kPrivate ? "private" : "host"},
               {"link", LinkJson(f.link)},
               {"egress", LinkJson(f.egress)},
               {"seccomp", f.seccomp},
               {"pids_max", f.pids_max},
               {"log_max_bytes", f.log_max_bytes},
               {"fd_binds", FdBindsJson(f.fd_binds)},
               {"scratch", f.scratch},
               {"volume_bytes", f.volume_bytes},
               {"seed", TransfersJson(f.seed)},
               {"publish", TransfersJson(f.publish)},
               {"report_url", f.report_url},
               {"report_token", f.report_token},
               {"warm", f.warm}});
}

Result<LaunchFile> DecodeLaunchFile(const std::string& text) {
  auto j = ParseVersioned(text, kLaunchFile);
  if (!j.ok()) return j.status();
  LaunchFile f;
  f.version = 1;  // files written before the field existed
  KILN_RETURN_IF_ERROR(ReadField(*j, "version", f.version));
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
  KILN_RETURN_IF_ERROR(DecodeIsolation(*j, f));
  KILN_RETURN_IF_ERROR(ReadField(*j, "warm", f.warm));
  return f;
}

std::string Encode(const AssignFile& f) {
  json binds = json::array();
  for (const auto& b : f.binds)
    binds.push_back({{"source", FdBindJson(b.source)}, {"dest", b.dest}, {"writable", b.writable}});
  return Dump({{"version", f.version},
               {"instance_id", f.instance_id},
               {"dir", f.dir},
               {"scratch", f.scratch},
               {"volume_bytes", f.volume_bytes},
               {"command", f.command},
               {"env", f.env},
               {"binds", binds},
               {"seed", TransfersJson(f.seed)},
               {"publish", TransfersJson(f.publish)},
               {"grace_ms", f.grace_ms},
               {"report_url", f.report_url},
               {"report_token", f.report_token}});
}

Result<AssignFile> DecodeAssignFile(const std::string& text) {
  auto j = ParseVersioned(text, kAssignFile);
  if (!j.ok()) return j.status();
  AssignFile f;
  KILN_RETURN_IF_ERROR(ReadField(*j, "version", f.version));
  KILN_RETURN_IF_ERROR(RequireField(*j, "instance_id", f.instance_id));
  KILN_RETURN_IF_ERROR(RequireField(*j, "dir", f.dir));
  if (f.dir.empty() || f.dir[0] != '/') return InvalidArgument("dir", "dir must be absolute");
  KILN_RETURN_IF_ERROR(ReadField(*j, "scratch", f.scratch));
  if (!f.scratch.empty() && f.scratch[0] != '/') return InvalidArgument("scratch", "scratch must be absolute");
  KILN_RETURN_IF_ERROR(ReadField(*j, "volume_bytes", f.volume_bytes));
  KILN_RETURN_IF_ERROR(RequireField(*j, "command", f.command));
  if (f.command.empty()) return InvalidArgument("command", "command must not be empty");
  KILN_RETURN_IF_ERROR(ReadField(*j, "env", f.env));
  if (j->contains("binds") && !(*j)["binds"].is_null()) {
    if (!(*j)["binds"].is_array()) return InvalidArgument("binds", "binds must be an array");
    for (const auto& b : (*j)["binds"]) {
      if (!b.is_object() || !b.contains("source")) return InvalidArgument("binds", "binds entries need source");
      Bind bind;
      auto source = DecodeFdBind(b["source"], "binds");
      if (!source.ok()) return source.status();
      bind.source = std::move(*source);
      KILN_RETURN_IF_ERROR(RequireField(b, "dest", bind.dest));
      KILN_RETURN_IF_ERROR(ReadField(b, "writable", bind.writable));
      if (bind.dest.empty() || bind.dest[0] != '/' || bind.dest.find("/..") != std::string::npos)
        return InvalidArgument("binds", "bind destinations are absolute, without ..");
      f.binds.push_back(std::move(bind));
    }
  }
  KILN_RETURN_IF_ERROR(DecodeTransfers(*j, "seed", f.seed));
  KILN_RETURN_IF_ERROR(DecodeTransfers(*j, "publish", f.publish));
  if ((!f.seed.empty() || !f.publish.empty()) && f.scratch.empty())
    return InvalidArgument("scratch", "seed and publish need a scratch volume");
  KILN_RETURN_IF_ERROR(ReadField(*j, "grace_ms", f.grace_ms));
  KILN_RETURN_IF_ERROR(ReadField(*j, "report_url", f.report_url));
  KILN_RETURN_IF_ERROR(ReadField(*j, "report_token", f.report_token));
  if (!f.report_url.empty() && f.report_url.rfind("http://", 0) != 0)
    return InvalidArgument("report_url", "report_url must be http://host:port");
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
  f.version = 1;
  KILN_RETURN_IF_ERROR(ReadField(*j, "version", f.version));
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
