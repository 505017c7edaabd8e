#include "jobs/spec.h"

#include <cstdint>
#include <limits>
#include <regex>
#include <set>
#include <utility>

#include "common/fsutil.h"
#include "common/user_regex.h"

namespace kiln {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------
// Rules. Each rule is one function, applied both by the untrusted decoder (as it
// reads, so the first error is the first one in reading order) and by ValidateSpec
// (to a JobSpec built in code), so the two cannot drift apart.

constexpr size_t kMaxChannels = 20;
constexpr size_t kMaxMetricDefinitions = 40;
constexpr size_t kMaxMetricNameLength = 255;
constexpr size_t kMaxMetricRegexLength = 500;
constexpr size_t kMaxSecrets = 100;
constexpr size_t kMaxMounts = 20;
constexpr size_t kMaxUploads = 20;

constexpr const char* kJobNameRule =
    "must be 1-63 letters, digits or hyphens, starting and ending with a letter or digit";
constexpr const char* kTeamRule = "must be 1-63 letters, digits or hyphens";
constexpr const char* kImageRule = "must be a non-empty string";
constexpr const char* kMetricNameRule = "required, 1-255 characters";
constexpr const char* kMetricRegexRule = "required, 1-500 characters";
constexpr const char* kSecretRule = "must be a name matching [A-Za-z_][A-Za-z0-9_]*";
constexpr const char* kShardedChannelRule = "must name a channel under inputs";
constexpr const char* kMountsRule = "must be a list of at most 20 mounts";
constexpr const char* kUploadsRule = "must be a list of at most 20 uploads";

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

// An integer field and its inclusive range.
struct IntRule {
  const char* field;
  int64_t lo;
  int64_t hi;
};
constexpr IntRule kInstanceCountRule{"instance.count", 1, kMaxInstanceCount};
constexpr IntRule kVolumeRule{"instance.volume_gb", 1, kMaxVolumeGb};
constexpr IntRule kKeepAliveRule{"instance.keep_alive_seconds", 0, kMaxKeepAliveSeconds};
constexpr IntRule kMaxRuntimeRule{"max_runtime_seconds", 1, kMaxRuntimeSeconds};
constexpr IntRule kRetryAttemptsRule{"retry_attempts", 0, kMaxRetryAttempts};
constexpr IntRule kStopGraceRule{"stop_grace_seconds", 0, kMaxStopGraceSeconds};
constexpr IntRule kPriorityRule{"priority", kMinPriority, kMaxPriority};

Status CheckInt(const IntRule& r, int64_t v) {
  if (v < r.lo || v > r.hi)
    return InvalidArgument(r.field, "must be between " + std::to_string(r.lo) + " and " + std::to_string(r.hi));
  return Status::Ok();
}

// A map of strings (environment, tags): its size, its keys and its values.
struct MapRules {
  bool (*key_ok)(const std::string&);  // null: any key
  const char* key_rule;                // the message is "key <key_rule>"
  size_t max_entries;
  size_t max_key;
  size_t max_value;
};
const MapRules kEnvironmentRules{IsEnvKey, "must match [A-Za-z_][A-Za-z0-9_]*", SIZE_MAX, 512, 1 << 20};
const MapRules kTagRules{nullptr, "", kMaxTags, kMaxTagKeyLength, kMaxTagValueLength};

Status CheckMapSize(const MapRules& r, const std::string& field, size_t n) {
  if (n > r.max_entries) return InvalidArgument(field, "at most " + std::to_string(r.max_entries) + " entries");
  return Status::Ok();
}

Status CheckMapKey(const MapRules& r, const std::string& f, const std::string& key) {
  if (r.key_ok && !r.key_ok(key)) return InvalidArgument(f, std::string("key ") + r.key_rule);
  if (key.size() > r.max_key) return InvalidArgument(f, "key longer than " + std::to_string(r.max_key));
  return Status::Ok();
}

Status CheckMapValue(const MapRules& r, const std::string& f, const std::string& value) {
  if (value.size() > r.max_value) return InvalidArgument(f, "value longer than " + std::to_string(r.max_value));
  return Status::Ok();
}

Status CheckStringMap(const MapRules& r, const std::string& field, const std::map<std::string, std::string>& m) {
  KILN_RETURN_IF_ERROR(CheckMapSize(r, field, m.size()));
  for (const auto& [k, v] : m) {
    std::string f = StrCat(field, ".", k);
    KILN_RETURN_IF_ERROR(CheckMapKey(r, f, k));
    KILN_RETURN_IF_ERROR(CheckMapValue(r, f, v));
  }
  return Status::Ok();
}

// A host path, already decoded from its file:// form.
Status CheckHostPath(const std::string& p, const std::string& field) {
  if (p.empty() || p[0] != '/') return InvalidArgument(field, "must be an absolute path");
  if (p.find('\0') != std::string::npos) return InvalidArgument(field, "contains NUL");
  return Status::Ok();
}

// A path inside the instance: absolute, under /opt/ml, no "." or ".." segments.
Status CheckInstancePath(const std::string& p, const std::string& field) {
  if (p.rfind("/opt/ml/", 0) != 0 || p.size() > 256)
    return InvalidArgument(field, "must be an absolute path under /opt/ml/ (at most 256 characters)");
  if (p.find("/./") != std::string::npos || p.find("/../") != std::string::npos || p.find('\0') != std::string::npos ||
      (p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0) ||
      (p.size() >= 2 && p.compare(p.size() - 2, 2, "/.") == 0))
    return InvalidArgument(field, "must not contain '.' or '..' segments");
  for (const char* reserved : {"/opt/ml/.kiln", "/opt/ml/code", "/opt/ml/input/config"})
    if (p == reserved || p.rfind(std::string(reserved) + "/", 0) == 0)
      return InvalidArgument(field, std::string(reserved) + " is reserved");
  return Status::Ok();
}

Status CheckChannelCount(size_t n) {
  if (n > kMaxChannels) return InvalidArgument("inputs", "at most 20 channels");
  return Status::Ok();
}

Status CheckChannelName(const std::string& name, const std::string& f) {
  if (!IsChannelName(name)) return InvalidArgument(f, "channel name must be letters, digits, '_', '-' or '.'");
  return Status::Ok();
}

Status CheckMetricDefinitionCount(size_t n) {
  if (n > kMaxMetricDefinitions) return InvalidArgument("metric_definitions", "at most 40 metric definitions");
  return Status::Ok();
}

// `f` is the definition's path, "metric_definitions[3]".
Status CheckMetricName(const std::string& name, const std::string& f) {
  if (name.empty() || name.size() > kMaxMetricNameLength) return InvalidArgument(f + ".name", kMetricNameRule);
  return Status::Ok();
}

Status CheckMetricRegex(const std::string& regex, const std::string& f) {
  if (regex.empty() || regex.size() > kMaxMetricRegexLength) return InvalidArgument(f + ".regex", kMetricRegexRule);
  auto re = UserRegex::Compile(regex, f + ".regex");
  return re.ok() ? Status::Ok() : re.status();
}

Status CheckSecretCount(size_t n) {
  if (n > kMaxSecrets) return InvalidArgument("secrets", "at most 100 secrets");
  return Status::Ok();
}

std::string Indexed(const char* field, size_t i) {
  return std::string(field) + "[" + std::to_string(i) + "]";
}

// ---------------------------------------------------------------------------
// Field validators on a built JobSpec, in the order ParseSpec reads the fields.

Status ValidateName(const JobSpec& s) {
  if (!IsValidJobName(s.name)) return InvalidArgument("name", kJobNameRule);
  return Status::Ok();
}

Status ValidateImage(const JobSpec& s, const Catalog* catalog) {
  if (s.image.empty()) return InvalidArgument("image", kImageRule);
  if (catalog && !catalog->FindImage(s.image))
    return InvalidArgument("image", "unknown image '" + s.image + "': not in kilnd's image catalog");
  return Status::Ok();
}

Status ValidateCommand(const JobSpec& s) {
  if (s.command.empty()) return InvalidArgument("command", "must not be empty");
  if (s.command[0].empty()) return InvalidArgument("command[0]", "must not be empty");
  return Status::Ok();
}

// Optional host paths (code_dir, output, ...): empty means unset.
Status ValidateOptionalHostPath(const std::string& p, const char* field) {
  return p.empty() ? Status::Ok() : CheckHostPath(p, field);
}

Status ValidateInstance(const JobSpec& s, const Catalog* catalog) {
  KILN_RETURN_IF_ERROR(CheckInt(kInstanceCountRule, s.instance_count));
  if (s.volume_gb != 0) KILN_RETURN_IF_ERROR(CheckInt(kVolumeRule, s.volume_gb));
  KILN_RETURN_IF_ERROR(CheckInt(kKeepAliveRule, s.keep_alive_seconds));
  if (catalog && !catalog->FindType(s.instance_type))
    return InvalidArgument("instance.type", "unknown instance type '" + s.instance_type + "'");
  return Status::Ok();
}

Status ValidateParameters(const JobSpec& s) {
  if (!s.hyperparameters.is_object()) return InvalidArgument("hyperparameters", "must be an object");
  return CheckStringMap(kEnvironmentRules, "environment", s.environment);
}

Status ValidateInputs(const JobSpec& s) {
  KILN_RETURN_IF_ERROR(CheckChannelCount(s.inputs.size()));
  for (const auto& [channel, path] : s.inputs) {
    std::string f = "inputs." + channel;
    KILN_RETURN_IF_ERROR(CheckChannelName(channel, f));
    KILN_RETURN_IF_ERROR(CheckHostPath(path, f));
  }
  return Status::Ok();
}

Status ValidateLimits(const JobSpec& s) {
  KILN_RETURN_IF_ERROR(CheckInt(kMaxRuntimeRule, s.max_runtime_seconds));
  KILN_RETURN_IF_ERROR(CheckInt(kRetryAttemptsRule, s.retry_attempts));
  KILN_RETURN_IF_ERROR(CheckInt(kStopGraceRule, s.stop_grace_seconds));
  return CheckInt(kPriorityRule, s.priority);
}

Status ValidateTeam(const JobSpec& s) {
  if (!IsValidJobName(s.team)) return InvalidArgument("team", kTeamRule);
  return Status::Ok();
}

Status ValidateMetricDefinitions(const JobSpec& s) {
  KILN_RETURN_IF_ERROR(CheckMetricDefinitionCount(s.metric_definitions.size()));
  for (size_t i = 0; i < s.metric_definitions.size(); ++i) {
    std::string f = Indexed("metric_definitions", i);
    KILN_RETURN_IF_ERROR(CheckMetricName(s.metric_definitions[i].first, f));
    KILN_RETURN_IF_ERROR(CheckMetricRegex(s.metric_definitions[i].second, f));
  }
  return Status::Ok();
}

Status ValidateSecrets(const JobSpec& s) {
  KILN_RETURN_IF_ERROR(CheckSecretCount(s.secrets.size()));
  for (size_t i = 0; i < s.secrets.size(); ++i)
    if (!IsEnvKey(s.secrets[i])) return InvalidArgument(Indexed("secrets", i), kSecretRule);
  return Status::Ok();
}

Status ValidateShardedChannels(const JobSpec& s) {
  for (size_t i = 0; i < s.sharded_channels.size(); ++i)
    if (!s.inputs.count(s.sharded_channels[i]))
      return InvalidArgument(Indexed("sharded_channels", i), kShardedChannelRule);
  return Status::Ok();
}

Status ValidateMounts(const JobSpec& s) {
  if (s.mounts.size() > kMaxMounts) return InvalidArgument("mounts", kMountsRule);
  for (size_t i = 0; i < s.mounts.size(); ++i) {
    std::string f = Indexed("mounts", i);
    KILN_RETURN_IF_ERROR(CheckHostPath(s.mounts[i].source, f + ".source"));
    KILN_RETURN_IF_ERROR(CheckInstancePath(s.mounts[i].target, f + ".target"));
  }
  return Status::Ok();
}

Status ValidateUploads(const JobSpec& s) {
  if (s.uploads.size() > kMaxUploads) return InvalidArgument("uploads", kUploadsRule);
  for (size_t i = 0; i < s.uploads.size(); ++i) {
    std::string f = Indexed("uploads", i);
    KILN_RETURN_IF_ERROR(CheckInstancePath(s.uploads[i].local_path, f + ".local_path"));
    KILN_RETURN_IF_ERROR(CheckHostPath(s.uploads[i].destination, f + ".destination"));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// The untrusted decoder. Each Parse* function reads one group of fields in
// ParseSpec's order, checking the JSON's shape; right after each field it runs
// that field's validator, so ParseSpec's first error is ValidateSpec's rule for
// the first bad field. Where a rule applies per entry of a list or map, the
// decoder applies it to each entry as it reads it (the validator then re-checks).

// The fields only kilnd writes, accepted by the deprecated pointer overload.
enum class KilnFields { kRefuse, kAccept };

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
                                            "priority",
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
                                            "pack_output_data",
                                            "network_isolation"};

bool IsKilnSetField(const std::string& key) {
  return key == "hyperparameters_file" || key == "sagemaker" || key == "tuning_job";
}

// The member `key` of object `j`, or null when absent.
const json* Field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

Status DecodeInt(const json& j, const IntRule& r, int64_t* out) {
  if (!j.is_number_integer()) return InvalidArgument(r.field, "must be an integer");
  int64_t v = j.get<int64_t>();
  KILN_RETURN_IF_ERROR(CheckInt(r, v));  // before any narrowing by the caller
  *out = v;
  return Status::Ok();
}

Status DecodeHostPath(const json& j, const std::string& field, std::string* out) {
  if (!j.is_string() || j.get_ref<const std::string&>().empty())
    return InvalidArgument(field, "must be a non-empty path or file:// URI");
  auto p = FileUriToPath(j.get<std::string>());
  if (!p.ok()) return InvalidArgument(field, p.status().message());
  KILN_RETURN_IF_ERROR(CheckHostPath(*p, field));
  *out = std::move(*p);
  return Status::Ok();
}

Status DecodeInstancePath(const json& j, const std::string& field, std::string* out) {
  if (!j.is_string()) return InvalidArgument(field, "must be a string");
  KILN_RETURN_IF_ERROR(CheckInstancePath(j.get<std::string>(), field));
  *out = j.get<std::string>();
  return Status::Ok();
}

// Values may be strings, numbers or booleans (kept as their JSON text).
Status DecodeStringMap(const json& j, const std::string& field, const MapRules& r,
                       std::map<std::string, std::string>* out) {
  if (!j.is_object()) return InvalidArgument(field, "must be a map of strings");
  KILN_RETURN_IF_ERROR(CheckMapSize(r, field, j.size()));
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string f = field + "." + it.key();
    KILN_RETURN_IF_ERROR(CheckMapKey(r, f, it.key()));
    std::string v;
    if (it.value().is_string()) {
      v = it.value().get<std::string>();
    } else if (it.value().is_number() || it.value().is_boolean()) {
      v = it.value().dump();
    } else {
      return InvalidArgument(f, "must be a string");
    }
    KILN_RETURN_IF_ERROR(CheckMapValue(r, f, v));
    (*out)[it.key()] = std::move(v);
  }
  return Status::Ok();
}

// Unknown fields, kind, the kilnd-set fields, name and image.
Status ParseIdentity(const json& j, const Catalog* catalog, KilnFields kiln_fields, JobSpec* s) {
  const bool accept_kiln_fields = kiln_fields == KilnFields::kAccept;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnownFields.count(it.key()) && !(accept_kiln_fields && IsKilnSetField(it.key())))
      return InvalidArgument(it.key(), "unknown field");
  if (const json* kind = Field(j, "kind")) {
    if (*kind == "training") {
      s->kind = JobKind::kTraining;
    } else if (*kind == "processing") {
      s->kind = JobKind::kProcessing;
    } else {
      return InvalidArgument("kind", "must be training or processing");
    }
  }
  if (accept_kiln_fields) {  // never refused: kilnd wrote them
    if (const json* v = Field(j, "sagemaker")) s->sagemaker = *v;
    if (const json* v = Field(j, "tuning_job"); v && v->is_string()) s->tuning_job = *v;
    if (const json* v = Field(j, "hyperparameters_file"); v && v->is_string()) s->hyperparameters_file = *v;
  }
  const json* name = Field(j, "name");
  if (name == nullptr) return InvalidArgument("name", "required");
  if (!name->is_string()) return InvalidArgument("name", "must be a string");
  s->name = *name;
  KILN_RETURN_IF_ERROR(ValidateName(*s));
  if (const json* image = Field(j, "image")) {
    if (!image->is_string()) return InvalidArgument("image", kImageRule);
    s->image = *image;
  }
  return ValidateImage(*s, catalog);
}

// command (a list, or a string run under /bin/sh -c) and code_dir.
Status ParseCommand(const json& j, JobSpec* s) {
  const json* cmd = Field(j, "command");
  if (cmd == nullptr) return InvalidArgument("command", "required");
  if (cmd->is_string()) {
    if (cmd->get_ref<const std::string&>().empty()) return InvalidArgument("command", "must not be empty");
    s->command = {"/bin/sh", "-c", cmd->get<std::string>()};
  } else if (cmd->is_array()) {
    for (size_t i = 0; i < cmd->size(); ++i) {
      if (!(*cmd)[i].is_string()) return InvalidArgument(Indexed("command", i), "must be a string");
      s->command.push_back((*cmd)[i].get<std::string>());
    }
  } else {
    return InvalidArgument("command", "must be a list of strings or a string");
  }
  KILN_RETURN_IF_ERROR(ValidateCommand(*s));
  if (const json* v = Field(j, "code_dir")) KILN_RETURN_IF_ERROR(DecodeHostPath(*v, "code_dir", &s->code_dir));
  return ValidateOptionalHostPath(s->code_dir, "code_dir");
}

Status ParseInstance(const json& j, const Catalog* catalog, JobSpec* s) {
  if (const json* in = Field(j, "instance")) {
    if (!in->is_object())
      return InvalidArgument("instance", "must be an object with type, count, volume_gb and keep_alive_seconds");
    for (auto it = in->begin(); it != in->end(); ++it)
      if (it.key() != "type" && it.key() != "count" && it.key() != "volume_gb" && it.key() != "keep_alive_seconds")
        return InvalidArgument("instance." + it.key(), "unknown field");
    if (const json* type = Field(*in, "type")) {
      if (!type->is_string()) return InvalidArgument("instance.type", "must be a string");
      s->instance_type = *type;
    }
    if (const json* count = Field(*in, "count")) {
      int64_t c = 0;
      KILN_RETURN_IF_ERROR(DecodeInt(*count, kInstanceCountRule, &c));
      s->instance_count = static_cast<int>(c);
    }
    if (const json* volume = Field(*in, "volume_gb")) {
      int64_t v = 0;
      KILN_RETURN_IF_ERROR(DecodeInt(*volume, kVolumeRule, &v));
      s->volume_gb = static_cast<int>(v);
    }
    if (const json* keep = Field(*in, "keep_alive_seconds"))
      KILN_RETURN_IF_ERROR(DecodeInt(*keep, kKeepAliveRule, &s->keep_alive_seconds));
  }
  return ValidateInstance(*s, catalog);
}

// hyperparameters and environment.
Status ParseParameters(const json& j, JobSpec* s) {
  if (const json* h = Field(j, "hyperparameters")) {
    if (!h->is_object()) return InvalidArgument("hyperparameters", "must be an object");
    s->hyperparameters = *h;
  }
  if (const json* env = Field(j, "environment"))
    KILN_RETURN_IF_ERROR(DecodeStringMap(*env, "environment", kEnvironmentRules, &s->environment));
  return ValidateParameters(*s);
}

// inputs (channel -> host path) and output.
Status ParseInputs(const json& j, JobSpec* s) {
  if (const json* in = Field(j, "inputs")) {
    if (!in->is_object()) return InvalidArgument("inputs", "must be a map of channel to path");
    KILN_RETURN_IF_ERROR(CheckChannelCount(in->size()));
    for (auto it = in->begin(); it != in->end(); ++it) {
      std::string f = "inputs." + it.key();
      KILN_RETURN_IF_ERROR(CheckChannelName(it.key(), f));
      KILN_RETURN_IF_ERROR(DecodeHostPath(it.value(), f, &s->inputs[it.key()]));
    }
  }
  KILN_RETURN_IF_ERROR(ValidateInputs(*s));
  if (const json* v = Field(j, "output")) KILN_RETURN_IF_ERROR(DecodeHostPath(*v, "output", &s->output));
  return ValidateOptionalHostPath(s->output, "output");
}

// max_runtime_seconds, retry_attempts, stop_grace_seconds and priority.
Status ParseLimits(const json& j, JobSpec* s) {
  if (const json* v = Field(j, "max_runtime_seconds"))
    KILN_RETURN_IF_ERROR(DecodeInt(*v, kMaxRuntimeRule, &s->max_runtime_seconds));
  if (const json* v = Field(j, "retry_attempts")) {
    int64_t r = 0;
    KILN_RETURN_IF_ERROR(DecodeInt(*v, kRetryAttemptsRule, &r));
    s->retry_attempts = static_cast<int>(r);
  }
  if (const json* v = Field(j, "stop_grace_seconds"))
    KILN_RETURN_IF_ERROR(DecodeInt(*v, kStopGraceRule, &s->stop_grace_seconds));
  if (const json* v = Field(j, "priority")) {
    int64_t p = 0;
    KILN_RETURN_IF_ERROR(DecodeInt(*v, kPriorityRule, &p));
    s->priority = static_cast<int>(p);
  }
  return ValidateLimits(*s);
}

Status DecodeMetricDefinitions(const json& md, JobSpec* s) {
  if (!md.is_array()) return InvalidArgument("metric_definitions", "must be a list of {name, regex}");
  KILN_RETURN_IF_ERROR(CheckMetricDefinitionCount(md.size()));
  for (size_t i = 0; i < md.size(); ++i) {
    std::string f = Indexed("metric_definitions", i);
    const json* name = md[i].is_object() ? Field(md[i], "name") : nullptr;
    if (name == nullptr || !name->is_string()) return InvalidArgument(f + ".name", kMetricNameRule);
    KILN_RETURN_IF_ERROR(CheckMetricName(name->get<std::string>(), f));
    const json* regex = Field(md[i], "regex");
    if (regex == nullptr || !regex->is_string()) return InvalidArgument(f + ".regex", kMetricRegexRule);
    KILN_RETURN_IF_ERROR(CheckMetricRegex(regex->get<std::string>(), f));
    s->metric_definitions.emplace_back(name->get<std::string>(), regex->get<std::string>());
  }
  return Status::Ok();
}

Status DecodeSecrets(const json& sec, JobSpec* s) {
  if (!sec.is_array()) return InvalidArgument("secrets", "must be a list of secret names");
  KILN_RETURN_IF_ERROR(CheckSecretCount(sec.size()));
  for (size_t i = 0; i < sec.size(); ++i) {
    if (!sec[i].is_string() || !IsEnvKey(sec[i].get<std::string>()))
      return InvalidArgument(Indexed("secrets", i), kSecretRule);
    s->secrets.push_back(sec[i].get<std::string>());
  }
  return Status::Ok();
}

// team, metric_definitions, secrets and tags.
Status ParseOwnership(const json& j, JobSpec* s) {
  if (const json* team = Field(j, "team")) {
    if (!team->is_string()) return InvalidArgument("team", kTeamRule);
    s->team = *team;
  }
  KILN_RETURN_IF_ERROR(ValidateTeam(*s));
  // The regexes compile twice (here and in the validator); at most 40 of them.
  if (const json* md = Field(j, "metric_definitions")) KILN_RETURN_IF_ERROR(DecodeMetricDefinitions(*md, s));
  KILN_RETURN_IF_ERROR(ValidateMetricDefinitions(*s));
  if (const json* sec = Field(j, "secrets")) KILN_RETURN_IF_ERROR(DecodeSecrets(*sec, s));
  KILN_RETURN_IF_ERROR(ValidateSecrets(*s));
  if (const json* tags = Field(j, "tags")) KILN_RETURN_IF_ERROR(ParseTags(*tags, "tags", &s->tags));
  return CheckStringMap(kTagRules, "tags", s->tags);
}

Status DecodeShardedChannels(const json& sc, JobSpec* s) {
  if (!sc.is_array()) return InvalidArgument("sharded_channels", "must be a list of channel names");
  for (size_t i = 0; i < sc.size(); ++i) {
    if (!sc[i].is_string() || !s->inputs.count(sc[i].get<std::string>()))
      return InvalidArgument(Indexed("sharded_channels", i), kShardedChannelRule);
    s->sharded_channels.push_back(sc[i].get<std::string>());
  }
  return Status::Ok();
}

Status DecodeMounts(const json& m, JobSpec* s) {
  if (!m.is_array() || m.size() > kMaxMounts) return InvalidArgument("mounts", kMountsRule);
  for (size_t i = 0; i < m.size(); ++i) {
    std::string f = Indexed("mounts", i);
    if (!m[i].is_object()) return InvalidArgument(f, "must be {source, target, distribution}");
    DataMount d;
    KILN_RETURN_IF_ERROR(DecodeHostPath(m[i].value("source", json()), f + ".source", &d.source));
    KILN_RETURN_IF_ERROR(DecodeInstancePath(m[i].value("target", json()), f + ".target", &d.target));
    const json dist = m[i].value("distribution", json("FullyReplicated"));
    if (dist == "ShardedByS3Key" || dist == "sharded") {
      d.distribution = Distribution::kShardedByKey;
    } else if (dist != "FullyReplicated" && dist != "replicated") {
      return InvalidArgument(f + ".distribution", "must be FullyReplicated or ShardedByS3Key");
    }
    s->mounts.push_back(std::move(d));
  }
  return Status::Ok();
}

Status DecodeUploads(const json& u, JobSpec* s) {
  if (!u.is_array() || u.size() > kMaxUploads) return InvalidArgument("uploads", kUploadsRule);
  for (size_t i = 0; i < u.size(); ++i) {
    std::string f = Indexed("uploads", i);
    if (!u[i].is_object()) return InvalidArgument(f, "must be {local_path, destination}");
    OutputUpload o;
    KILN_RETURN_IF_ERROR(DecodeInstancePath(u[i].value("local_path", json()), f + ".local_path", &o.local_path));
    KILN_RETURN_IF_ERROR(DecodeHostPath(u[i].value("destination", json()), f + ".destination", &o.destination));
    s->uploads.push_back(std::move(o));
  }
  return Status::Ok();
}

// sharded_channels, mounts, uploads, checkpoint_dir, code_archive, pack_output_data,
// network_isolation.
Status ParsePlacement(const json& j, JobSpec* s) {
  if (const json* sc = Field(j, "sharded_channels")) KILN_RETURN_IF_ERROR(DecodeShardedChannels(*sc, s));
  KILN_RETURN_IF_ERROR(ValidateShardedChannels(*s));
  if (const json* m = Field(j, "mounts")) KILN_RETURN_IF_ERROR(DecodeMounts(*m, s));
  KILN_RETURN_IF_ERROR(ValidateMounts(*s));
  if (const json* u = Field(j, "uploads")) KILN_RETURN_IF_ERROR(DecodeUploads(*u, s));
  KILN_RETURN_IF_ERROR(ValidateUploads(*s));
  if (const json* v = Field(j, "checkpoint_dir"))
    KILN_RETURN_IF_ERROR(DecodeHostPath(*v, "checkpoint_dir", &s->checkpoint_dir));
  KILN_RETURN_IF_ERROR(ValidateOptionalHostPath(s->checkpoint_dir, "checkpoint_dir"));
  if (const json* v = Field(j, "code_archive"))
    KILN_RETURN_IF_ERROR(DecodeHostPath(*v, "code_archive", &s->code_archive));
  KILN_RETURN_IF_ERROR(ValidateOptionalHostPath(s->code_archive, "code_archive"));
  for (auto [key, field] :
       {std::pair{"pack_output_data", &s->pack_output_data}, std::pair{"network_isolation", &s->network_isolation}}) {
    if (const json* v = Field(j, key)) {
      if (!v->is_boolean()) return InvalidArgument(key, "must be true or false");
      *field = *v;
    }
  }
  return Status::Ok();
}

Result<JobSpec> DecodeAndValidate(const json& j, const Catalog* catalog, KilnFields kiln_fields) {
  if (!j.is_object()) return InvalidArgument("", "spec must be a JSON/YAML object");
  JobSpec s;
  KILN_RETURN_IF_ERROR(ParseIdentity(j, catalog, kiln_fields, &s));
  KILN_RETURN_IF_ERROR(ParseCommand(j, &s));
  KILN_RETURN_IF_ERROR(ParseInstance(j, catalog, &s));
  KILN_RETURN_IF_ERROR(ParseParameters(j, &s));
  KILN_RETURN_IF_ERROR(ParseInputs(j, &s));
  KILN_RETURN_IF_ERROR(ParseLimits(j, &s));
  KILN_RETURN_IF_ERROR(ParseOwnership(j, &s));
  KILN_RETURN_IF_ERROR(ParsePlacement(j, &s));
  return s;
}

// ---------------------------------------------------------------------------
// The stored form: typed reads of what JobSpec::ToJson() writes, no rules.

Status Corrupt(const std::string& field, const std::string& what) {
  return DataLoss("stored job spec: " + field + " " + what);
}

// One overload per stored type; declared first so the templates below see them all.
Status Read(const json& v, const std::string& f, std::string* out);
Status Read(const json& v, const std::string& f, bool* out);
Status Read(const json& v, const std::string& f, int* out);
Status Read(const json& v, const std::string& f, int64_t* out);
Status Read(const json& v, const std::string& f, json* out);
Status Read(const json& v, const std::string& f, std::map<std::string, std::string>* out);
Status Read(const json& v, const std::string& f, JobKind* out);
Status Read(const json& v, const std::string& f, Distribution* out);
Status Read(const json& v, const std::string& f, std::pair<std::string, std::string>* metric_definition);
Status Read(const json& v, const std::string& f, DataMount* out);
Status Read(const json& v, const std::string& f, OutputUpload* out);

template <typename T>
Status Read(const json& v, const std::string& f, std::vector<T>* out) {
  if (!v.is_array()) return Corrupt(f, "is not a list");
  out->clear();
  for (size_t i = 0; i < v.size(); ++i) {
    T e{};
    KILN_RETURN_IF_ERROR(Read(v[i], Indexed(f.c_str(), i), &e));
    out->push_back(std::move(e));
  }
  return Status::Ok();
}

// `prefix` is the enclosing object's path with its trailing dot ("instance."), or "".
template <typename T>
Status ReadOptional(const json& obj, const std::string& prefix, const char* key, T* out) {
  const json* v = Field(obj, key);
  return v == nullptr ? Status::Ok() : Read(*v, prefix + key, out);
}

template <typename T>
Status ReadRequired(const json& obj, const std::string& prefix, const char* key, T* out) {
  const json* v = Field(obj, key);
  return v == nullptr ? Corrupt(prefix + key, "is missing") : Read(*v, prefix + key, out);
}

Status Read(const json& v, const std::string& f, std::string* out) {
  if (!v.is_string()) return Corrupt(f, "is not a string");
  *out = v.get<std::string>();
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, bool* out) {
  if (!v.is_boolean()) return Corrupt(f, "is not a boolean");
  *out = v.get<bool>();
  return Status::Ok();
}

template <typename Int>
Status ReadInteger(const json& v, const std::string& f, Int* out) {
  if (!v.is_number_integer()) return Corrupt(f, "is not an integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<Int>::max())) return Corrupt(f, "is out of range");
    *out = static_cast<Int>(u);
    return Status::Ok();
  }
  const int64_t i = v.get<int64_t>();
  if (i < std::numeric_limits<Int>::min() || i > std::numeric_limits<Int>::max()) return Corrupt(f, "is out of range");
  *out = static_cast<Int>(i);
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, int* out) {
  return ReadInteger(v, f, out);
}

Status Read(const json& v, const std::string& f, int64_t* out) {
  return ReadInteger(v, f, out);
}

Status Read(const json& v, const std::string& f, json* out) {
  *out = v;
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, std::map<std::string, std::string>* out) {
  if (!v.is_object()) return Corrupt(f, "is not a map");
  out->clear();
  for (auto it = v.begin(); it != v.end(); ++it)
    KILN_RETURN_IF_ERROR(Read(it.value(), f + "." + it.key(), &(*out)[it.key()]));
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, JobKind* out) {
  if (v == "training") {
    *out = JobKind::kTraining;
  } else if (v == "processing") {
    *out = JobKind::kProcessing;
  } else {
    return Corrupt(f, "is not training or processing");
  }
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, Distribution* out) {
  if (v == "FullyReplicated") {
    *out = Distribution::kFullyReplicated;
  } else if (v == "ShardedByS3Key") {
    *out = Distribution::kShardedByKey;
  } else {
    return Corrupt(f, "is not FullyReplicated or ShardedByS3Key");
  }
  return Status::Ok();
}

Status Read(const json& v, const std::string& f, std::pair<std::string, std::string>* metric_definition) {
  if (!v.is_object()) return Corrupt(f, "is not an object");
  KILN_RETURN_IF_ERROR(ReadRequired(v, f + ".", "name", &metric_definition->first));
  return ReadRequired(v, f + ".", "regex", &metric_definition->second);
}

Status Read(const json& v, const std::string& f, DataMount* out) {
  if (!v.is_object()) return Corrupt(f, "is not an object");
  KILN_RETURN_IF_ERROR(ReadRequired(v, f + ".", "source", &out->source));
  KILN_RETURN_IF_ERROR(ReadRequired(v, f + ".", "target", &out->target));
  return ReadOptional(v, f + ".", "distribution", &out->distribution);
}

Status Read(const json& v, const std::string& f, OutputUpload* out) {
  if (!v.is_object()) return Corrupt(f, "is not an object");
  KILN_RETURN_IF_ERROR(ReadRequired(v, f + ".", "local_path", &out->local_path));
  return ReadRequired(v, f + ".", "destination", &out->destination);
}

// Every field of the stored form, in ToJson()'s order.
Status DecodeStoredFields(const json& j, JobSpec* s) {
  KILN_RETURN_IF_ERROR(ReadRequired(j, "", "name", &s->name));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "image", &s->image));
  KILN_RETURN_IF_ERROR(ReadRequired(j, "", "command", &s->command));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "code_dir", &s->code_dir));
  if (const json* in = Field(j, "instance")) {
    if (!in->is_object()) return Corrupt("instance", "is not an object");
    KILN_RETURN_IF_ERROR(ReadOptional(*in, "instance.", "type", &s->instance_type));
    KILN_RETURN_IF_ERROR(ReadOptional(*in, "instance.", "count", &s->instance_count));
    KILN_RETURN_IF_ERROR(ReadOptional(*in, "instance.", "volume_gb", &s->volume_gb));
    KILN_RETURN_IF_ERROR(ReadOptional(*in, "instance.", "keep_alive_seconds", &s->keep_alive_seconds));
  }
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "hyperparameters", &s->hyperparameters));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "hyperparameters_file", &s->hyperparameters_file));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "environment", &s->environment));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "inputs", &s->inputs));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "output", &s->output));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "max_runtime_seconds", &s->max_runtime_seconds));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "retry_attempts", &s->retry_attempts));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "stop_grace_seconds", &s->stop_grace_seconds));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "priority", &s->priority));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "tags", &s->tags));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "team", &s->team));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "secrets", &s->secrets));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "metric_definitions", &s->metric_definitions));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "kind", &s->kind));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "sharded_channels", &s->sharded_channels));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "mounts", &s->mounts));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "uploads", &s->uploads));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "checkpoint_dir", &s->checkpoint_dir));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "code_archive", &s->code_archive));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "pack_output_data", &s->pack_output_data));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "network_isolation", &s->network_isolation));
  KILN_RETURN_IF_ERROR(ReadOptional(j, "", "sagemaker", &s->sagemaker));
  return ReadOptional(j, "", "tuning_job", &s->tuning_job);
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
  return DecodeStringMap(j, field, kTagRules, out);
}

Result<JobSpec> ParseSpec(const json& j, const Catalog& catalog) {
  return DecodeAndValidate(j, &catalog, KilnFields::kRefuse);
}

Result<JobSpec> ParseSpec(const json& j, const Catalog* catalog) {
  return DecodeAndValidate(j, catalog, catalog == nullptr ? KilnFields::kAccept : KilnFields::kRefuse);
}

Status ValidateSpec(const JobSpec& s, const Catalog* catalog) {
  KILN_RETURN_IF_ERROR(ValidateName(s));
  KILN_RETURN_IF_ERROR(ValidateImage(s, catalog));
  KILN_RETURN_IF_ERROR(ValidateCommand(s));
  KILN_RETURN_IF_ERROR(ValidateOptionalHostPath(s.code_dir, "code_dir"));
  KILN_RETURN_IF_ERROR(ValidateInstance(s, catalog));
  KILN_RETURN_IF_ERROR(ValidateParameters(s));
  KILN_RETURN_IF_ERROR(ValidateInputs(s));
  KILN_RETURN_IF_ERROR(ValidateOptionalHostPath(s.output, "output"));
  KILN_RETURN_IF_ERROR(ValidateLimits(s));
  KILN_RETURN_IF_ERROR(ValidateTeam(s));
  KILN_RETURN_IF_ERROR(ValidateMetricDefinitions(s));
  KILN_RETURN_IF_ERROR(ValidateSecrets(s));
  KILN_RETURN_IF_ERROR(CheckStringMap(kTagRules, "tags", s.tags));
  KILN_RETURN_IF_ERROR(ValidateShardedChannels(s));
  KILN_RETURN_IF_ERROR(ValidateMounts(s));
  KILN_RETURN_IF_ERROR(ValidateUploads(s));
  KILN_RETURN_IF_ERROR(ValidateOptionalHostPath(s.checkpoint_dir, "checkpoint_dir"));
  return ValidateOptionalHostPath(s.code_archive, "code_archive");
}

Result<JobSpec> DecodeStoredSpec(const json& j) {
  if (!j.is_object()) return DataLoss("stored job spec is not a JSON object");
  JobSpec s;
  try {
    KILN_RETURN_IF_ERROR(DecodeStoredFields(j, &s));
  } catch (const json::exception& e) {  // not expected: every read above checks its type first
    return DataLoss(std::string("stored job spec: ") + e.what());
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
  if (volume_gb != 0) j["instance"]["volume_gb"] = volume_gb;
  if (keep_alive_seconds != 0) j["instance"]["keep_alive_seconds"] = keep_alive_seconds;
  j["hyperparameters"] = hyperparameters;
  if (!hyperparameters_file.empty()) j["hyperparameters_file"] = hyperparameters_file;
  j["environment"] = environment;
  j["inputs"] = inputs;
  if (!output.empty()) j["output"] = output;
  j["max_runtime_seconds"] = max_runtime_seconds;
  j["retry_attempts"] = retry_attempts;
  j["stop_grace_seconds"] = stop_grace_seconds;
  if (priority != 0) j["priority"] = priority;
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
  if (network_isolation) j["network_isolation"] = true;
  if (!sagemaker.is_null()) j["sagemaker"] = sagemaker;
  if (!tuning_job.empty()) j["tuning_job"] = tuning_job;
  return j;
}

}  // namespace kiln
