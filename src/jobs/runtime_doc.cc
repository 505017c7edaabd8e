#include "jobs/runtime_doc.h"

#include <climits>

namespace kiln {
namespace {

using nlohmann::json;

Status Bad(const std::string& field, const std::string& what) {
  return InvalidArgument(field, "runtime document: " + field + " " + what);
}

std::string Path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "." + key;
}

// Spelled here rather than through ToString(JobKind): that lives in spec.cc, whose
// static initializers kiln-entrypoint would then run at every instance start.
const char* KindName(JobKind k) {
  return k == JobKind::kProcessing ? "processing" : "training";
}

// One Decode per value type: `v` is the value at `field` (a dotted path, for errors).
// The structs' are declared first so that the templates below find them.
Status Decode(const json& v, const std::string& field, RuntimeResourceConfig& out);
Status Decode(const json& v, const std::string& field, RuntimeStatsd& out);
Status Decode(const json& v, const std::string& field, RuntimeMetricDefinition& out);
Status Decode(const json& v, const std::string& field, RuntimeUpload& out);

Status Decode(const json& v, const std::string& field, std::string& out) {
  if (!v.is_string()) return Bad(field, "must be a string");
  out = v.get<std::string>();
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, bool& out) {
  if (!v.is_boolean()) return Bad(field, "must be a boolean");
  out = v.get<bool>();
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, int& out) {
  if (!v.is_number_integer()) return Bad(field, "must be an integer");
  const bool fits = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(INT_MAX)
                                           : v.get<int64_t>() >= INT_MIN && v.get<int64_t>() <= INT_MAX;
  if (!fits) return Bad(field, "is out of range");
  out = v.get<int>();
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, uint64_t& out) {
  if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
    return Bad(field, "must be a non-negative integer");
  out = v.get<uint64_t>();
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, JobKind& out) {
  if (v == KindName(JobKind::kTraining)) {
    out = JobKind::kTraining;
  } else if (v == KindName(JobKind::kProcessing)) {
    out = JobKind::kProcessing;
  } else {
    return Bad(field, "must be \"training\" or \"processing\"");
  }
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, std::map<std::string, std::string>& out) {
  if (!v.is_object()) return Bad(field, "must be an object of strings");
  out.clear();
  for (const auto& [k, e] : v.items()) KILN_RETURN_IF_ERROR(Decode(e, Path(field, k), out[k]));
  return Status::Ok();
}

template <typename T>
Status Decode(const json& v, const std::string& field, std::vector<T>& out) {
  if (!v.is_array()) return Bad(field, "must be a list");
  out.assign(v.size(), T{});
  for (size_t i = 0; i < v.size(); ++i)
    KILN_RETURN_IF_ERROR(Decode(v[i], field + "[" + std::to_string(i) + "]", out[i]));
  return Status::Ok();
}

// A required field of object `obj` (at `prefix`).
template <typename T>
Status Field(const json& obj, const std::string& prefix, const char* key, T& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(Path(prefix, key), "is missing");
  return Decode(*it, Path(prefix, key), out);
}

// A required field that may be null (nullopt).
template <typename T>
Status NullableField(const json& obj, const std::string& prefix, const char* key, std::optional<T>& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(Path(prefix, key), "is missing");
  out.reset();
  if (it->is_null()) return Status::Ok();
  return Decode(*it, Path(prefix, key), out.emplace());
}

// A field that may be absent (or null): nullopt.
template <typename T>
Status OptionalField(const json& obj, const std::string& prefix, const char* key, std::optional<T>& out) {
  out.reset();
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status::Ok();
  return Decode(*it, Path(prefix, key), out.emplace());
}

Status RequireObject(const json& v, const std::string& field) {
  if (!v.is_object())
    return field.empty() ? Bad("(document)", "must be a JSON object") : Bad(field, "must be an object");
  return Status::Ok();
}

Status Decode(const json& v, const std::string& field, RuntimeResourceConfig& out) {
  KILN_RETURN_IF_ERROR(RequireObject(v, field));
  KILN_RETURN_IF_ERROR(Field(v, field, "current_host", out.current_host));
  KILN_RETURN_IF_ERROR(Field(v, field, "hosts", out.hosts));
  KILN_RETURN_IF_ERROR(Field(v, field, "current_instance_type", out.current_instance_type));
  return Field(v, field, "network_interface_name", out.network_interface_name);
}

Status Decode(const json& v, const std::string& field, RuntimeStatsd& out) {
  KILN_RETURN_IF_ERROR(RequireObject(v, field));
  KILN_RETURN_IF_ERROR(Field(v, field, "host", out.host));
  KILN_RETURN_IF_ERROR(Field(v, field, "port", out.port));
  return NullableField(v, field, "socket", out.socket);
}

Status Decode(const json& v, const std::string& field, RuntimeMetricDefinition& out) {
  KILN_RETURN_IF_ERROR(RequireObject(v, field));
  KILN_RETURN_IF_ERROR(Field(v, field, "name", out.name));
  return Field(v, field, "regex", out.regex);
}

Status Decode(const json& v, const std::string& field, RuntimeUpload& out) {
  KILN_RETURN_IF_ERROR(RequireObject(v, field));
  KILN_RETURN_IF_ERROR(Field(v, field, "local_path", out.local_path));
  return Field(v, field, "staged", out.staged);
}

// "hyperparameters" with "hyperparameters_url" and "hyperparameters_bytes".
Status DecodeHyperparameters(const json& j, RuntimeDoc& doc) {
  std::optional<std::string> url;
  KILN_RETURN_IF_ERROR(OptionalField(j, "", "hyperparameters_url", url));
  auto it = j.find("hyperparameters");
  if (it == j.end()) return Bad("hyperparameters", "is missing");
  if (url) {
    if (!it->is_null()) return Bad("hyperparameters", "must be null when hyperparameters_url is set");
    doc.hyperparameters = json::object();
    StagedHyperparameters& staged = doc.staged_hyperparameters.emplace();
    staged.url = std::move(*url);
    return OptionalField(j, "", "hyperparameters_bytes", staged.bytes);
  }
  if (!it->is_object()) return Bad("hyperparameters", "must be an object");
  doc.hyperparameters = *it;
  doc.staged_hyperparameters.reset();
  return Status::Ok();
}

}  // namespace

json ToJson(const RuntimeResourceConfig& rc) {
  json j = json::object();
  j["current_host"] = rc.current_host;
  j["hosts"] = rc.hosts;
  j["current_instance_type"] = rc.current_instance_type;
  j["network_interface_name"] = rc.network_interface_name;
  return j;
}

json ToJson(const RuntimeDoc& doc) {
  json j = json::object();
  j["job_id"] = doc.job_id;
  j["job_name"] = doc.job_name;
  j["instance_id"] = doc.instance_id;
  j["index"] = doc.index;
  j["attempt"] = doc.attempt;
  j["kind"] = KindName(doc.kind);
  j["hyperparameters"] = doc.staged_hyperparameters ? json(nullptr) : doc.hyperparameters;
  if (doc.staged_hyperparameters) {
    j["hyperparameters_url"] = doc.staged_hyperparameters->url;
    if (doc.staged_hyperparameters->bytes) j["hyperparameters_bytes"] = *doc.staged_hyperparameters->bytes;
  }
  j["environment"] = doc.environment;
  j["channels"] = doc.channels;
  j["sharded_channels"] = doc.sharded_channels;
  j["num_cpus"] = doc.num_cpus;
  j["num_gpus"] = doc.num_gpus;
  j["resource_config"] = ToJson(doc.resource_config);
  j["output_dir"] = doc.output_dir;
  j["statsd"] = nullptr;
  if (doc.statsd) {
    j["statsd"] = {{"host", doc.statsd->host}, {"port", doc.statsd->port}};
    j["statsd"]["socket"] = doc.statsd->socket ? json(*doc.statsd->socket) : json(nullptr);
  }
  j["secrets"] = doc.secrets;
  j["metric_definitions"] = json::array();
  for (const auto& d : doc.metric_definitions)
    j["metric_definitions"].push_back({{"name", d.name}, {"regex", d.regex}});
  j["pack_output_data"] = doc.pack_output_data;
  j["uploads"] = json::array();
  for (const auto& u : doc.uploads) j["uploads"].push_back({{"local_path", u.local_path}, {"staged", u.staged}});
  if (doc.script_mode_python) j["script_mode_python"] = *doc.script_mode_python;
  return j;
}

Result<RuntimeDoc> RuntimeDocFromJson(const json& j) {
  KILN_RETURN_IF_ERROR(RequireObject(j, ""));
  RuntimeDoc doc;
  KILN_RETURN_IF_ERROR(Field(j, "", "job_id", doc.job_id));
  KILN_RETURN_IF_ERROR(Field(j, "", "job_name", doc.job_name));
  KILN_RETURN_IF_ERROR(Field(j, "", "instance_id", doc.instance_id));
  KILN_RETURN_IF_ERROR(Field(j, "", "index", doc.index));
  KILN_RETURN_IF_ERROR(Field(j, "", "attempt", doc.attempt));
  KILN_RETURN_IF_ERROR(Field(j, "", "kind", doc.kind));
  KILN_RETURN_IF_ERROR(DecodeHyperparameters(j, doc));
  KILN_RETURN_IF_ERROR(Field(j, "", "environment", doc.environment));
  KILN_RETURN_IF_ERROR(Field(j, "", "channels", doc.channels));
  KILN_RETURN_IF_ERROR(Field(j, "", "sharded_channels", doc.sharded_channels));
  KILN_RETURN_IF_ERROR(Field(j, "", "num_cpus", doc.num_cpus));
  KILN_RETURN_IF_ERROR(Field(j, "", "num_gpus", doc.num_gpus));
  KILN_RETURN_IF_ERROR(Field(j, "", "resource_config", doc.resource_config));
  KILN_RETURN_IF_ERROR(Field(j, "", "output_dir", doc.output_dir));
  KILN_RETURN_IF_ERROR(NullableField(j, "", "statsd", doc.statsd));
  KILN_RETURN_IF_ERROR(Field(j, "", "secrets", doc.secrets));
  KILN_RETURN_IF_ERROR(Field(j, "", "metric_definitions", doc.metric_definitions));
  KILN_RETURN_IF_ERROR(Field(j, "", "pack_output_data", doc.pack_output_data));
  KILN_RETURN_IF_ERROR(Field(j, "", "uploads", doc.uploads));
  KILN_RETURN_IF_ERROR(OptionalField(j, "", "script_mode_python", doc.script_mode_python));
  return doc;
}

}  // namespace kiln
