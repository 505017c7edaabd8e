#include "jobs/spec.h"

#include <regex>
#include <set>

#include "common/fsutil.h"

namespace kiln {
namespace {

using nlohmann::json;

bool IsEnvKey(const std::string& k) {
  if (k.empty() || k.size() > 512) return false;
  if (!(isalpha(static_cast<unsigned char>(k[0])) || k[0] == '_')) return false;
  for (char c : k)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

bool IsChannelName(const std::string& k) {
  if (k.empty() || k.size() > 64) return false;
  for (char c : k)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return k != "." && k != "..";
}

Status StringMap(const json& j, const std::string& field, std::map<std::string, std::string>* out,
                 bool (*key_ok)(const std::string&), const char* key_rule, size_t max_entries, size_t max_key,
                 size_t max_value) {
  if (!j.is_object()) return InvalidArgument(field, "must be a map of strings");
  if (j.size() > max_entries) return InvalidArgument(field, "at most " + std::to_string(max_entries) + " entries");
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string f = field + "." + it.key();
    if (key_ok && !key_ok(it.key())) return InvalidArgument(f, std::string("key ") + key_rule);
    if (it.key().size() > max_key) return InvalidArgument(f, "key longer than " + std::to_string(max_key));
    std::string v;
    if (it.value().is_string()) {
      v = it.value().get<std::string>();
    } else if (it.value().is_number() || it.value().is_boolean()) {
      v = it.value().dump();
    } else {
      return InvalidArgument(f, "must be a string");
    }
    if (v.size() > max_value) return InvalidArgument(f, "value longer than " + std::to_string(max_value));
    (*out)[it.key()] = v;
  }
  return Status::Ok();
}

Status Int(const json& j, const std::string& field, int64_t lo, int64_t hi, int64_t* out) {
  if (!j.is_number_integer()) return InvalidArgument(field, "must be an integer");
  int64_t v = j.get<int64_t>();
  if (v < lo || v > hi)
    return InvalidArgument(field, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  *out = v;
  return Status::Ok();
}

Status AbsPath(const json& j, const std::string& field, std::string* out) {
  if (!j.is_string() || j.get<std::string>().empty())
    return InvalidArgument(field, "must be a non-empty path or file:// URI");
  auto p = FileUriToPath(j.get<std::string>());
  if (!p.ok()) return InvalidArgument(field, p.status().message());
  if (p->empty() || (*p)[0] != '/') return InvalidArgument(field, "must be an absolute path");
  if (p->find('\0') != std::string::npos) return InvalidArgument(field, "contains NUL");
  *out = *p;
  return Status::Ok();
}

const std::set<std::string> kKnownFields = {"name",
                                            "image",
                                            "command",
                                            "code_dir",
                                            "instance",
                                            "hyperparameters",
                                            "environment",
                                            "inputs",
                                            "output",
                                            "max_runtime_seconds",
                                            "retry_attempts",
                                            "stop_grace_seconds",
                                            "tags",
                                            "kind",
                                            "team",
                                            "secrets",
                                            "metric_definitions",
                                            "sharded_channels",
                                            "mounts",
                                            "uploads",
                                            "checkpoint_dir",
                                            "code_archive",
                                            "pack_output_data"};

// A path inside the instance: absolute, under /opt/ml, no "." or ".." segments.
Status InstancePath(const json& j, const std::string& field, std::string* out) {
  if (!j.is_string()) return InvalidArgument(field, "must be a string");
  std::string p = j.get<std::string>();
  if (p.rfind("/opt/ml/", 0) != 0 || p.size() > 256)
    return InvalidArgument(field, "must be an absolute path under /opt/ml/ (at most 256 characters)");
  if (p.find("/./") != std::string::npos || p.find("/../") != std::string::npos || p.find('\0') != std::string::npos ||
      (p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0) ||
      (p.size() >= 2 && p.compare(p.size() - 2, 2, "/.") == 0))
    return InvalidArgument(field, "must not contain '.' or '..' segments");
  for (const char* reserved : {"/opt/ml/.kiln", "/opt/ml/code", "/opt/ml/input/config"})
    if (p == reserved || p.rfind(std::string(reserved) + "/", 0) == 0)
      return InvalidArgument(field, std::string(reserved) + " is reserved");
  *out = p;
  return Status::Ok();
}

}  // namespace

const char* ToString(JobKind k) {
  return k == JobKind::kProcessing ? "processing" : "training";
}

bool IsValidJobName(const std::string& name) {
  static const std::regex re("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$");
  return name.size() <= 63 && std::regex_match(name, re);
}

Status ParseTags(const json& j, const std::string& field, std::map<std::string, std::string>* out) {
  return StringMap(j, field, out, nullptr, "", kMaxTags, kMaxTagKeyLength, kMaxTagValueLength);
}

Result<JobSpec> ParseSpec(const json& j, const Catalog* catalog) {
  if (!j.is_object()) return InvalidArgument("", "spec must be a JSON/YAML object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnownFields.count(it.key()) && !(catalog == nullptr && (it.key() == "hyperparameters_file" ||
                                                                  it.key() == "sagemaker" || it.key() == "tuning_job")))
      return InvalidArgument(it.key(), "unknown field");
  JobSpec s;
  if (j.contains("kind")) {
    if (j["kind"] == "training") {
      s.kind = JobKind::kTraining;
    } else if (j["kind"] == "processing") {
      s.kind = JobKind::kProcessing;
    } else {
      return InvalidArgument("kind", "must be training or processing");
    }
  }
  if (catalog == nullptr && j.contains("sagemaker")) s.sagemaker = j["sagemaker"];
  if (catalog == nullptr && j.contains("tuning_job") && j["tuning_job"].is_string()) s.tuning_job = j["tuning_job"];

  if (!j.contains("name")) return InvalidArgument("name", "required");
  if (!j["name"].is_string()) return InvalidArgument("name", "must be a string");
  s.name = j["name"];
  if (!IsValidJobName(s.name))
    return InvalidArgument("name",
                           "must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit");

  if (j.contains("image")) {
    if (!j["image"].is_string() || j["image"].get<std::string>().empty())
      return InvalidArgument("image", "must be a non-empty string");
    s.image = j["image"];
  }
  if (catalog && !catalog->FindImage(s.image))
    return InvalidArgument("image", "unknown image '" + s.image + "': not in kilnd's image catalog");

  if (!j.contains("command")) return InvalidArgument("command", "required");
  const auto& cmd = j["command"];
  if (cmd.is_string()) {
    if (cmd.get<std::string>().empty()) return InvalidArgument("command", "must not be empty");
    s.command = {"/bin/sh", "-c", cmd.get<std::string>()};
  } else if (cmd.is_array()) {
    if (cmd.empty()) return InvalidArgument("command", "must not be empty");
    for (size_t i = 0; i < cmd.size(); ++i) {
      if (!cmd[i].is_string()) return InvalidArgument("command[" + std::to_string(i) + "]", "must be a string");
      s.command.push_back(cmd[i]);
    }
    if (s.command[0].empty()) return InvalidArgument("command[0]", "must not be empty");
  } else {
    return InvalidArgument("command", "must be a list of strings or a string");
  }

  if (j.contains("code_dir")) KILN_RETURN_IF_ERROR(AbsPath(j["code_dir"], "code_dir", &s.code_dir));

  if (j.contains("instance")) {
    const auto& in = j["instance"];
    if (!in.is_object()) return InvalidArgument("instance", "must be an object with type and count");
    for (auto it = in.begin(); it != in.end(); ++it)
      if (it.key() != "type" && it.key() != "count") return InvalidArgument("instance." + it.key(), "unknown field");
    if (in.contains("type")) {
      if (!in["type"].is_string()) return InvalidArgument("instance.type", "must be a string");
      s.instance_type = in["type"];
    }
    if (in.contains("count")) {
      int64_t c;
      KILN_RETURN_IF_ERROR(Int(in["count"], "instance.count", 1, kMaxInstanceCount, &c));
      s.instance_count = static_cast<int>(c);
    }
  }
  if (catalog && !catalog->FindType(s.instance_type))
    return InvalidArgument("instance.type", "unknown instance type '" + s.instance_type + "'");

  if (catalog == nullptr && j.contains("hyperparameters_file") && j["hyperparameters_file"].is_string())
    s.hyperparameters_file = j["hyperparameters_file"];
  if (j.contains("hyperparameters")) {
    if (!j["hyperparameters"].is_object()) return InvalidArgument("hyperparameters", "must be an object");
    s.hyperparameters = j["hyperparameters"];
  }
  if (j.contains("environment"))
    KILN_RETURN_IF_ERROR(StringMap(j["environment"], "environment", &s.environment, IsEnvKey,
                                   "must match [A-Za-z_][A-Za-z0-9_]*", SIZE_MAX, 512, 1 << 20));
  if (j.contains("inputs")) {
    const auto& in = j["inputs"];
    if (!in.is_object()) return InvalidArgument("inputs", "must be a map of channel to path");
    if (in.size() > 20) return InvalidArgument("inputs", "at most 20 channels");
    for (auto it = in.begin(); it != in.end(); ++it) {
      std::string f = "inputs." + it.key();
      if (!IsChannelName(it.key())) return InvalidArgument(f, "channel name must be letters, digits, '_', '-' or '.'");
      std::string p;
      KILN_RETURN_IF_ERROR(AbsPath(it.value(), f, &p));
      s.inputs[it.key()] = p;
    }
  }
  if (j.contains("output")) KILN_RETURN_IF_ERROR(AbsPath(j["output"], "output", &s.output));
  if (j.contains("max_runtime_seconds"))
    KILN_RETURN_IF_ERROR(
        Int(j["max_runtime_seconds"], "max_runtime_seconds", 1, kMaxRuntimeSeconds, &s.max_runtime_seconds));
  if (j.contains("retry_attempts")) {
    int64_t r;
    KILN_RETURN_IF_ERROR(Int(j["retry_attempts"], "retry_attempts", 0, kMaxRetryAttempts, &r));
    s.retry_attempts = static_cast<int>(r);
  }
  if (j.contains("stop_grace_seconds"))
    KILN_RETURN_IF_ERROR(
        Int(j["stop_grace_seconds"], "stop_grace_seconds", 0, kMaxStopGraceSeconds, &s.stop_grace_seconds));
  if (j.contains("team")) {
    if (!j["team"].is_string() || !IsValidJobName(j["team"].get<std::string>()))
      return InvalidArgument("team", "must be 1-63 letters, digits or hyphens");
    s.team = j["team"];
  }
  if (j.contains("metric_definitions")) {
    const auto& md = j["metric_definitions"];
    if (!md.is_array()) return InvalidArgument("metric_definitions", "must be a list of {name, regex}");
    if (md.size() > 40) return InvalidArgument("metric_definitions", "at most 40 metric definitions");
    for (size_t i = 0; i < md.size(); ++i) {
      std::string f = "metric_definitions[" + std::to_string(i) + "]";
      if (!md[i].is_object() || !md[i].contains("name") || !md[i]["name"].is_string() ||
          md[i]["name"].get<std::string>().empty() || md[i]["name"].get<std::string>().size() > 255)
        return InvalidArgument(f + ".name", "required, 1-255 characters");
      if (!md[i].contains("regex") || !md[i]["regex"].is_string() || md[i]["regex"].get<std::string>().empty() ||
          md[i]["regex"].get<std::string>().size() > 500)
        return InvalidArgument(f + ".regex", "required, 1-500 characters");
      try {
        std::regex re(md[i]["regex"].get<std::string>());
        if (re.mark_count() < 1) return InvalidArgument(f + ".regex", "needs a capture group around the value");
      } catch (const std::regex_error& e) {
        return InvalidArgument(f + ".regex", std::string("not a valid regular expression: ") + e.what());
      }
      s.metric_definitions.emplace_back(md[i]["name"], md[i]["regex"]);
    }
  }
  if (j.contains("secrets")) {
    const auto& sec = j["secrets"];
    if (!sec.is_array()) return InvalidArgument("secrets", "must be a list of secret names");
    if (sec.size() > 100) return InvalidArgument("secrets", "at most 100 secrets");
    for (size_t i = 0; i < sec.size(); ++i) {
      std::string f = "secrets[" + std::to_string(i) + "]";
      if (!sec[i].is_string() || !IsEnvKey(sec[i].get<std::string>()))
        return InvalidArgument(f, "must be a name matching [A-Za-z_][A-Za-z0-9_]*");
      s.secrets.push_back(sec[i]);
    }
  }
  if (j.contains("tags")) KILN_RETURN_IF_ERROR(ParseTags(j["tags"], "tags", &s.tags));
  if (j.contains("sharded_channels")) {
    const auto& sc = j["sharded_channels"];
    if (!sc.is_array()) return InvalidArgument("sharded_channels", "must be a list of channel names");
    for (size_t i = 0; i < sc.size(); ++i) {
      if (!sc[i].is_string() || !s.inputs.count(sc[i].get<std::string>()))
        return InvalidArgument("sharded_channels[" + std::to_string(i) + "]", "must name a channel under inputs");
      s.sharded_channels.push_back(sc[i]);
    }
  }
  if (j.contains("mounts")) {
    const auto& m = j["mounts"];
    if (!m.is_array() || m.size() > 20) return InvalidArgument("mounts", "must be a list of at most 20 mounts");
    for (size_t i = 0; i < m.size(); ++i) {
      std::string f = "mounts[" + std::to_string(i) + "]";
      if (!m[i].is_object()) return InvalidArgument(f, "must be {source, target, distribution}");
      DataMount d;
      KILN_RETURN_IF_ERROR(AbsPath(m[i].value("source", json()), f + ".source", &d.source));
      KILN_RETURN_IF_ERROR(InstancePath(m[i].value("target", json()), f + ".target", &d.target));
      std::string dist = m[i].value("distribution", "FullyReplicated");
      if (dist == "ShardedByS3Key" || dist == "sharded") {
        d.distribution = Distribution::kShardedByKey;
      } else if (dist != "FullyReplicated" && dist != "replicated") {
        return InvalidArgument(f + ".distribution", "must be FullyReplicated or ShardedByS3Key");
      }
      s.mounts.push_back(d);
    }
  }
  if (j.contains("uploads")) {
    const auto& u = j["uploads"];
    if (!u.is_array() || u.size() > 20) return InvalidArgument("uploads", "must be a list of at most 20 uploads");
    for (size_t i = 0; i < u.size(); ++i) {
      std::string f = "uploads[" + std::to_string(i) + "]";
      if (!u[i].is_object()) return InvalidArgument(f, "must be {local_path, destination}");
      OutputUpload o;
      KILN_RETURN_IF_ERROR(InstancePath(u[i].value("local_path", json()), f + ".local_path", &o.local_path));
      KILN_RETURN_IF_ERROR(AbsPath(u[i].value("destination", json()), f + ".destination", &o.destination));
      s.uploads.push_back(o);
    }
  }
  if (j.contains("checkpoint_dir"))
    KILN_RETURN_IF_ERROR(AbsPath(j["checkpoint_dir"], "checkpoint_dir", &s.checkpoint_dir));
  if (j.contains("code_archive")) KILN_RETURN_IF_ERROR(AbsPath(j["code_archive"], "code_archive", &s.code_archive));
  if (j.contains("pack_output_data")) {
    if (!j["pack_output_data"].is_boolean()) return InvalidArgument("pack_output_data", "must be true or false");
    s.pack_output_data = j["pack_output_data"];
  }
  return s;
}

nlohmann::json JobSpec::ToJson() const {
  json j;
  j["name"] = name;
  j["image"] = image;
  j["command"] = command;
  if (!code_dir.empty()) j["code_dir"] = code_dir;
  j["instance"] = {{"type", instance_type}, {"count", instance_count}};
  j["hyperparameters"] = hyperparameters;
  if (!hyperparameters_file.empty()) j["hyperparameters_file"] = hyperparameters_file;
  j["environment"] = environment;
  j["inputs"] = inputs;
  if (!output.empty()) j["output"] = output;
  j["max_runtime_seconds"] = max_runtime_seconds;
  j["retry_attempts"] = retry_attempts;
  j["stop_grace_seconds"] = stop_grace_seconds;
  j["tags"] = tags;
  j["team"] = team;
  j["secrets"] = secrets;
  j["metric_definitions"] = nlohmann::json::array();
  for (const auto& [n, r] : metric_definitions) j["metric_definitions"].push_back({{"name", n}, {"regex", r}});
  j["kind"] = ToString(kind);
  if (!sharded_channels.empty()) j["sharded_channels"] = sharded_channels;
  if (!mounts.empty()) {
    j["mounts"] = json::array();
    for (const auto& m : mounts)
      j["mounts"].push_back(
          {{"source", m.source},
           {"target", m.target},
           {"distribution", m.distribution == Distribution::kShardedByKey ? "ShardedByS3Key" : "FullyReplicated"}});
  }
  if (!uploads.empty()) {
    j["uploads"] = json::array();
    for (const auto& u : uploads)
      j["uploads"].push_back({{"local_path", u.local_path}, {"destination", u.destination}});
  }
  if (!checkpoint_dir.empty()) j["checkpoint_dir"] = checkpoint_dir;
  if (!code_archive.empty()) j["code_archive"] = code_archive;
  if (pack_output_data) j["pack_output_data"] = true;
  if (!sagemaker.is_null()) j["sagemaker"] = sagemaker;
  if (!tuning_job.empty()) j["tuning_job"] = tuning_job;
  return j;
}

}  // namespace kiln
