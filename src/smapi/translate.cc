#include "smapi/translate.h"

#include <cmath>
#include <map>
#include <set>

#include "common/user_regex.h"

namespace kiln::smapi {
namespace {

using nlohmann::json;

double Seconds(TimeMs t) {
  return static_cast<double>(t) / 1000.0;
}

Status Unsupported(const std::string& field, const std::string& why) {
  return InvalidArgument(field, field + ": " + why);
}

// Hyperparameter values from the SageMaker Python SDK are JSON-encoded strings
// ("\"s3://...\""); plain strings are taken as they are.
std::string HpValue(const json& v) {
  if (!v.is_string()) return v.dump();
  std::string s = v;
  if (s.size() >= 2 && s.front() == '"') {
    json d = json::parse(s, nullptr, false);
    if (d.is_string()) return d;
  }
  return s;
}

Status Tags(const json& req, JobSpec* s) {
  if (!req.contains("Tags")) return Status::Ok();
  for (size_t i = 0; i < req["Tags"].size(); ++i) {
    std::string k = req["Tags"][i]["Key"], v = req["Tags"][i].value("Value", "");
    if (k.rfind("aws:", 0) == 0)
      return InvalidArgument("Tags[" + std::to_string(i) + "].Key",
                             "Tags[" + std::to_string(i) + "].Key: the aws: prefix is reserved");
    if (s->tags.count(k))
      return InvalidArgument("Tags[" + std::to_string(i) + "].Key", "duplicate tag key '" + k + "'");
    s->tags[k] = v;
  }
  return Status::Ok();
}

// InstanceType, InstanceCount and VolumeSizeInGB of a ResourceConfig or ClusterConfig.
Status Resources(const std::string& field, const json& rc, const Context& c, JobSpec* s) {
  const std::string type = rc["InstanceType"];
  const int64_t count = rc["InstanceCount"];
  if (c.catalog && !c.catalog->FindType(type)) {
    std::string known;
    for (const auto& [n, t] : c.catalog->types()) known += (known.empty() ? "" : ", ") + n;
    return InvalidArgument(field + ".InstanceType", field + ".InstanceType: '" + type +
                                                        "' is not an instance type of this Kiln (" + known + ")");
  }
  if (count > kMaxInstanceCount)
    return InvalidArgument(field + ".InstanceCount",
                           field + ".InstanceCount: at most " + std::to_string(kMaxInstanceCount) + " instances");
  s->instance_type = type;
  s->instance_count = static_cast<int>(count);
  if (rc.contains("VolumeSizeInGB")) {
    const int64_t gb = rc["VolumeSizeInGB"];
    if (gb < 1 || gb > kMaxVolumeGb)
      return InvalidArgument(field + ".VolumeSizeInGB",
                             field + ".VolumeSizeInGB: must be 1.." + std::to_string(kMaxVolumeGb));
    s->volume_gb = static_cast<int>(gb);
  }
  return Status::Ok();
}

// ContainerEntrypoint replaces the image's entrypoint and its default `train`
// argument; ContainerArguments follow it (or the image's entrypoint).
Status Command(const json& app, const char* entry, const char* args, const std::vector<std::string>& default_args,
               JobSpec* s) {
  if (app.contains(entry))
    for (const auto& e : app[entry]) s->command.push_back(e);
  if (app.contains(args)) {
    for (const auto& a : app[args]) s->command.push_back(a);
  } else if (!app.contains(entry)) {
    s->command.insert(s->command.end(), default_args.begin(), default_args.end());
  }
  return Status::Ok();
}

Status MetricDefs(const json& defs, const std::string& field, JobSpec* s) {
  for (size_t i = 0; i < defs.size(); ++i) {
    std::string f = field + "[" + std::to_string(i) + "].Regex";
    std::string re = defs[i]["Regex"];
    if (auto r = UserRegex::Compile(re, f); !r.ok()) return InvalidArgument(f, f + ": " + r.status().message());
    s->metric_definitions.emplace_back(defs[i]["Name"], re);
  }
  return Status::Ok();
}

Status MaxRuntime(const json& req, int64_t limit, JobSpec* s) {
  if (!req.contains("StoppingCondition") || !req["StoppingCondition"].contains("MaxRuntimeInSeconds"))
    return Status::Ok();
  int64_t v = req["StoppingCondition"]["MaxRuntimeInSeconds"];
  if (v > limit)
    return InvalidArgument("StoppingCondition.MaxRuntimeInSeconds",
                           "StoppingCondition.MaxRuntimeInSeconds: " + std::to_string(v) + " is more than the " +
                               std::to_string(limit) + " seconds SageMaker allows");
  s->max_runtime_seconds = v;
  return Status::Ok();
}

// Native validation of the translated spec, for whatever the model cannot say.
// The translated spec is built directly; it is validated once, here, by the same
// rules as a native spec (no JSON round trip).
Result<JobSpec> Recheck(const JobSpec& s) {
  KILN_RETURN_IF_ERROR(ValidateSpec(s, nullptr));
  return s;
}

json Transitions(const Job& job) {
  json out = json::array();
  for (const auto& t : job.transitions) {
    json e = {{"Status", ToString(t.status)}, {"StartTime", Seconds(t.start)}};
    if (t.end) e["EndTime"] = Seconds(t.end);
    if (!t.message.empty()) e["StatusMessage"] = t.message;
    out.push_back(e);
  }
  return out;
}

TimeMs LastModified(const Job& job) {
  TimeMs t = job.created_at;
  for (const auto& tr : job.transitions) t = std::max({t, tr.start, tr.end});
  return std::max(t, job.ended_at);
}

TimeMs Phase(const Job& job, const char* name) {
  auto it = job.phase_times.find(name);
  return it == job.phase_times.end() ? 0 : it->second;
}

void CopyIf(const json& from, json& to, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (from.contains(k)) to[k] = from[k];
}

}  // namespace

const char* SageMakerStatus(JobStatus s) {
  return ToString(s);
}
std::optional<JobStatus> ParseSageMakerStatus(const std::string& s) {
  return ParseJobStatus(s);
}

std::string Arn(const Context& c, const char* resource, const std::string& name) {
  // SageMaker lower-cases the name in ARNs; Kiln keeps it as given so an ARN
  // always finds its job (names are case-sensitive).
  return "arn:aws:sagemaker:" + c.region + ":" + c.account + ":" + resource + "/" + name;
}

Result<std::pair<std::string, std::string>> ParseArn(const std::string& arn) {
  // arn:aws:sagemaker:<region>:<account>:<resource>/<name>
  size_t pos = 0;
  for (int i = 0; i < 5; ++i) {
    pos = arn.find(':', pos);
    if (pos == std::string::npos) break;
    ++pos;
  }
  if (arn.rfind("arn:aws", 0) != 0 || pos == std::string::npos || pos == 0)
    return InvalidArgument("ResourceArn", "ResourceArn: '" + arn + "' is not a SageMaker ARN");
  std::string res = arn.substr(pos);
  size_t slash = res.find('/');
  if (slash == std::string::npos || slash + 1 == res.size())
    return InvalidArgument("ResourceArn", "ResourceArn: '" + arn + "' names no resource");
  return std::make_pair(res.substr(0, slash), res.substr(slash + 1));
}

Result<JobSpec> TrainingSpec(const json& req, const Context& c, const std::string& team) {
  JobSpec s;
  s.kind = JobKind::kTraining;
  s.name = req["TrainingJobName"];
  s.team = team;
  const json& alg = req["AlgorithmSpecification"];
  if (!alg.contains("TrainingImage"))
    return Unsupported("AlgorithmSpecification.TrainingImage",
                       "required: Kiln runs container images (AlgorithmName is not supported)");
  if (alg.contains("AlgorithmName"))
    return Unsupported("AlgorithmSpecification.AlgorithmName", "not supported by Kiln; give TrainingImage only");
  if (alg.value("TrainingInputMode", "File") == "Pipe")
    return Unsupported("AlgorithmSpecification.TrainingInputMode", "Pipe mode is not supported; use File or FastFile");
  s.image = alg["TrainingImage"];
  KILN_RETURN_IF_ERROR(Command(alg, "ContainerEntrypoint", "ContainerArguments", {"train"}, &s));
  if (alg.contains("MetricDefinitions"))
    KILN_RETURN_IF_ERROR(MetricDefs(alg["MetricDefinitions"], "AlgorithmSpecification.MetricDefinitions", &s));
  if (req.contains("HyperParameters")) {
    s.hyperparameters = req["HyperParameters"];
    if (s.hyperparameters.contains("sagemaker_submit_directory")) {
      std::string dir = HpValue(s.hyperparameters["sagemaker_submit_directory"]);
      if (dir.rfind("s3://", 0) == 0) {
        auto p = c.s3.ToPath(dir, "HyperParameters.sagemaker_submit_directory");
        if (!p.ok()) return p.status();
        s.code_archive = *p;
      }
    }
  }
  if (req.contains("Environment"))
    for (auto it = req["Environment"].begin(); it != req["Environment"].end(); ++it)
      s.environment[it.key()] = it.value();
  std::set<std::string> channels;
  if (req.contains("InputDataConfig")) {
    const json& in = req["InputDataConfig"];
    for (size_t i = 0; i < in.size(); ++i) {
      std::string f = "InputDataConfig[" + std::to_string(i) + "]";
      std::string name = in[i]["ChannelName"];
      if (name == "." || name == "..")
        return InvalidArgument(f + ".ChannelName", StrCat(f, ".ChannelName: '", name, "' is not a channel name"));
      if (!channels.insert(name).second)
        return InvalidArgument(f + ".ChannelName", StrCat(f, ".ChannelName: duplicate channel '", name, "'"));
      if (in[i].value("InputMode", "File") == "Pipe")
        return Unsupported(f + ".InputMode", "Pipe mode is not supported; use File or FastFile");
      const json& ds = in[i]["DataSource"];
      if (!ds.contains("S3DataSource"))
        return Unsupported(f + ".DataSource", "only S3DataSource is supported (mapped to Kiln's artifact store)");
      const json& s3 = ds["S3DataSource"];
      if (s3["S3DataType"] != "S3Prefix")
        return Unsupported(f + ".DataSource.S3DataSource.S3DataType", "only S3Prefix is supported");
      auto p = c.s3.ToPath(s3["S3Uri"], f + ".DataSource.S3DataSource.S3Uri");
      if (!p.ok()) return p.status();
      s.inputs[name] = *p;
      if (s3.value("S3DataDistributionType", "FullyReplicated") == "ShardedByS3Key") s.sharded_channels.push_back(name);
    }
  }
  auto out = c.s3.ToPath(req["OutputDataConfig"]["S3OutputPath"], "OutputDataConfig.S3OutputPath");
  if (!out.ok()) return out.status();
  s.output = *out;
  const json& rc = req["ResourceConfig"];
  if (rc.contains("InstanceGroups"))
    return Unsupported("ResourceConfig.InstanceGroups", "heterogeneous clusters are not supported");
  if (!rc.contains("InstanceType") || !rc.contains("InstanceCount"))
    return InvalidArgument("ResourceConfig.InstanceType",
                           "ResourceConfig: InstanceType and InstanceCount are required");
  KILN_RETURN_IF_ERROR(Resources("ResourceConfig", rc, c, &s));
  if (rc.contains("KeepAlivePeriodInSeconds")) {
    const json& keep = rc["KeepAlivePeriodInSeconds"];
    if (!keep.is_number_integer() || keep.get<int64_t>() < 0 || keep.get<int64_t>() > kMaxKeepAliveSeconds)
      return InvalidArgument(
          "ResourceConfig.KeepAlivePeriodInSeconds",
          "ResourceConfig.KeepAlivePeriodInSeconds: must be 0.." + std::to_string(kMaxKeepAliveSeconds));
    s.keep_alive_seconds = keep.get<int64_t>();
  }
  KILN_RETURN_IF_ERROR(MaxRuntime(req, kMaxRuntimeSeconds, &s));
  if (req.contains("RetryStrategy")) s.retry_attempts = req["RetryStrategy"]["MaximumRetryAttempts"];
  if (req.contains("CheckpointConfig")) {
    const json& cc = req["CheckpointConfig"];
    if (cc.value("LocalPath", "/opt/ml/checkpoints") != "/opt/ml/checkpoints")
      return Unsupported("CheckpointConfig.LocalPath", "only /opt/ml/checkpoints is supported");
    auto p = c.s3.ToPath(cc["S3Uri"], "CheckpointConfig.S3Uri");
    if (!p.ok()) return p.status();
    s.checkpoint_dir = *p;
  }
  KILN_RETURN_IF_ERROR(Tags(req, &s));
  s.pack_output_data = true;
  s.network_isolation = req.value("EnableNetworkIsolation", false);
  s.stop_grace_seconds = 120;
  s.sagemaker = req;
  s.sagemaker.erase("Tags");  // tags live in the job's tag set (AddTags/DeleteTags change them)
  return Recheck(s);
}

Result<JobSpec> ProcessingSpec(const json& req, const Context& c, const std::string& team) {
  JobSpec s;
  s.kind = JobKind::kProcessing;
  s.name = req["ProcessingJobName"];
  s.team = team;
  const json& app = req["AppSpecification"];
  s.image = app["ImageUri"];
  KILN_RETURN_IF_ERROR(Command(app, "ContainerEntrypoint", "ContainerArguments", {}, &s));
  if (s.command.empty()) {
    const ImageEnv* img = c.catalog ? c.catalog->FindImage(s.image) : nullptr;
    if (!img || img->prefix.empty())
      return InvalidArgument("AppSpecification.ContainerEntrypoint",
                             "AppSpecification.ContainerEntrypoint: required, image '" + s.image +
                                 "' has no entrypoint in Kiln's image catalog");
  }
  if (req.contains("Environment"))
    for (auto it = req["Environment"].begin(); it != req["Environment"].end(); ++it)
      s.environment[it.key()] = it.value();
  std::set<std::string> names, paths;
  if (req.contains("ProcessingInputs")) {
    const json& in = req["ProcessingInputs"];
    for (size_t i = 0; i < in.size(); ++i) {
      std::string f = "ProcessingInputs[" + std::to_string(i) + "]";
      if (!names.insert(in[i]["InputName"].get<std::string>()).second)
        return InvalidArgument(f + ".InputName", f + ".InputName: duplicate input name");
      if (!in[i].contains("S3Input")) return Unsupported(f, "only S3Input is supported (DatasetDefinition is not)");
      const json& s3 = in[i]["S3Input"];
      if (s3.value("S3InputMode", "File") == "Pipe")
        return Unsupported(f + ".S3Input.S3InputMode", "Pipe mode is not supported");
      if (s3["S3DataType"] != "S3Prefix") return Unsupported(f + ".S3Input.S3DataType", "only S3Prefix is supported");
      if (!s3.contains("LocalPath"))
        return InvalidArgument(f + ".S3Input.LocalPath", f + ".S3Input.LocalPath: required");
      std::string lp = s3["LocalPath"];
      if (lp.rfind("/opt/ml/processing/", 0) != 0)
        return InvalidArgument(f + ".S3Input.LocalPath", f + ".S3Input.LocalPath: must be under /opt/ml/processing/");
      if (!paths.insert(lp).second)
        return InvalidArgument(f + ".S3Input.LocalPath", f + ".S3Input.LocalPath: used twice");
      auto p = c.s3.ToPath(s3["S3Uri"], f + ".S3Input.S3Uri");
      if (!p.ok()) return p.status();
      DataMount m{*p, lp,
                  s3.value("S3DataDistributionType", "FullyReplicated") == "ShardedByS3Key"
                      ? Distribution::kShardedByKey
                      : Distribution::kFullyReplicated};
      s.mounts.push_back(m);
    }
  }
  if (req.contains("ProcessingOutputConfig")) {
    const json& outs = req["ProcessingOutputConfig"]["Outputs"];
    for (size_t i = 0; i < outs.size(); ++i) {
      std::string f = "ProcessingOutputConfig.Outputs[" + std::to_string(i) + "]";
      if (!names.insert(outs[i]["OutputName"].get<std::string>()).second)
        return InvalidArgument(f + ".OutputName", f + ".OutputName: duplicate output name");
      if (!outs[i].contains("S3Output")) return Unsupported(f, "only S3Output is supported");
      const json& s3 = outs[i]["S3Output"];
      std::string lp = s3["LocalPath"];
      if (lp.rfind("/opt/ml/processing/", 0) != 0)
        return InvalidArgument(f + ".S3Output.LocalPath", f + ".S3Output.LocalPath: must be under /opt/ml/processing/");
      auto p = c.s3.ToPath(s3["S3Uri"], f + ".S3Output.S3Uri");
      if (!p.ok()) return p.status();
      s.uploads.push_back({lp, *p});
    }
  }
  const json& cc = req["ProcessingResources"]["ClusterConfig"];
  KILN_RETURN_IF_ERROR(Resources("ProcessingResources.ClusterConfig", cc, c, &s));
  s.max_runtime_seconds = 86400;
  if (req.contains("NetworkConfig")) s.network_isolation = req["NetworkConfig"].value("EnableNetworkIsolation", false);
  KILN_RETURN_IF_ERROR(MaxRuntime(req, 777600, &s));
  KILN_RETURN_IF_ERROR(Tags(req, &s));
  s.stop_grace_seconds = 120;
  s.sagemaker = req;
  s.sagemaker.erase("Tags");
  return Recheck(s);
}

namespace {

// What of a CreateHyperParameterTuningJob request Kiln does not take.
Status CheckTuningRequest(const json& req) {
  if (req.contains("TrainingJobDefinitions"))
    return Unsupported("TrainingJobDefinitions",
                       "multiple training job definitions are not supported; use TrainingJobDefinition");
  if (!req.contains("TrainingJobDefinition"))
    return InvalidArgument("TrainingJobDefinition", "TrainingJobDefinition: required");
  const json& cfg = req["HyperParameterTuningJobConfig"];
  const json& def = req["TrainingJobDefinition"];
  if (!cfg.contains("HyperParameterTuningJobObjective"))
    return InvalidArgument("HyperParameterTuningJobConfig.HyperParameterTuningJobObjective",
                           "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective: required");
  for (const char* unsupported : {"HyperParameterRanges", "HyperParameterTuningResourceConfig", "TuningObjective"})
    if (def.contains(unsupported))
      return Unsupported(std::string("TrainingJobDefinition.") + unsupported, "not supported by Kiln");
  return Status::Ok();
}

// The trial template: a CreateTrainingJob request made of the definition.
Result<json> TrainingRequestOf(const json& req, const std::string& name) {
  const json& def = req["TrainingJobDefinition"];
  json train = {{"TrainingJobName", name},
                {"RoleArn", def["RoleArn"]},
                {"AlgorithmSpecification", def["AlgorithmSpecification"]},
                {"OutputDataConfig", def["OutputDataConfig"]},
                {"StoppingCondition", def["StoppingCondition"]}};
  if (!def.contains("ResourceConfig"))
    return InvalidArgument("TrainingJobDefinition.ResourceConfig", "TrainingJobDefinition.ResourceConfig: required");
  CopyIf(def, train,
         {"ResourceConfig", "InputDataConfig", "CheckpointConfig", "RetryStrategy", "VpcConfig",
          "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining"});
  if (def.contains("StaticHyperParameters")) train["HyperParameters"] = def["StaticHyperParameters"];
  if (req.contains("Tags")) train["Tags"] = req["Tags"];
  return train;
}

// An Integer or Continuous range at `f` as a native one; SageMaker sends the
// bounds as strings.
Result<json> NativeNumericRange(const json& r, const std::string& kind, const std::string& f) {
  json p = {{"type", kind == "IntegerParameterRanges" ? "Integer" : "Continuous"},
            {"scaling", r.value("ScalingType", "Auto")}};
  for (const char* b : {"MinValue", "MaxValue"}) {
    std::string v = r[b];
    char* end = nullptr;
    double d = strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(d))
      return InvalidArgument(StrCat(f, ".", b), StrCat(f, ".", b, ": '", v, "' is not a number"));
    p[std::string(b) == "MinValue" ? "min" : "max"] = d;
  }
  return p;
}

// ParameterRanges as the native spec's parameters.
Result<json> NativeParameters(const json& cfg) {
  json params = json::object();
  const json& pr = cfg.value("ParameterRanges", json::object());
  for (const char* kind : {"IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges"}) {
    if (!pr.contains(kind)) continue;
    for (size_t i = 0; i < pr[kind].size(); ++i) {
      const json& r = pr[kind][i];
      std::string f =
          std::string("HyperParameterTuningJobConfig.ParameterRanges.") + kind + "[" + std::to_string(i) + "]";
      std::string n = r["Name"];
      if (params.contains(n)) return InvalidArgument(f + ".Name", StrCat(f, ".Name: '", n, "' appears twice"));
      if (std::string(kind) == "CategoricalParameterRanges") {
        params[n] = {{"type", "Categorical"}, {"values", r["Values"]}};
        continue;
      }
      auto p = NativeNumericRange(r, kind, f);
      if (!p.ok()) return p.status();
      params[n] = *p;
    }
  }
  return params;
}

// The native tuning spec (tuning::ParseTuningSpec validates it) of the request,
// given its translated parts.
json NativeTuningSpec(const json& req, const std::string& name, const std::string& team, const json& params,
                      const json& trial, const std::map<std::string, std::string>& tags) {
  const json& cfg = req["HyperParameterTuningJobConfig"];
  const json& obj = cfg["HyperParameterTuningJobObjective"];
  json native = {{"name", name},
                 {"strategy", cfg["Strategy"]},
                 {"objective", {{"metric", obj["MetricName"]}, {"type", obj["Type"]}}},
                 {"max_parallel", cfg["ResourceLimits"]["MaxParallelTrainingJobs"]},
                 {"max_trials", cfg["ResourceLimits"].value("MaxNumberOfTrainingJobs", 10)},
                 {"early_stopping", cfg.value("TrainingJobEarlyStoppingType", "Off")},
                 {"parameters", params},
                 {"team", team},
                 {"trial", trial}};
  if (cfg["ResourceLimits"].contains("MaxRuntimeInSeconds"))
    native["max_runtime_seconds"] = cfg["ResourceLimits"]["MaxRuntimeInSeconds"];
  if (cfg.contains("TuningJobCompletionCriteria")) {
    const json& cc = cfg["TuningJobCompletionCriteria"];
    if (cc.contains("TargetObjectiveMetricValue")) native["target"] = cc["TargetObjectiveMetricValue"];
    if (cc.contains("BestObjectiveNotImproving") &&
        cc["BestObjectiveNotImproving"].contains("MaxNumberOfTrainingJobsNotImproving"))
      native["max_not_improving"] = cc["BestObjectiveNotImproving"]["MaxNumberOfTrainingJobsNotImproving"];
  }
  if (cfg.contains("StrategyConfig") && cfg["StrategyConfig"].contains("HyperbandStrategyConfig")) {
    const json& h = cfg["StrategyConfig"]["HyperbandStrategyConfig"];
    native["hyperband"] = {{"min_resource", h.value("MinResource", 1)}, {"max_resource", h.value("MaxResource", 0)}};
  }
  if (req.contains("WarmStartConfig")) {
    json parents = json::array();
    for (const auto& p : req["WarmStartConfig"]["ParentHyperParameterTuningJobs"])
      parents.push_back(p.value("HyperParameterTuningJobName", ""));
    native["warm_start"] = {{"type", req["WarmStartConfig"]["WarmStartType"]}, {"parents", parents}};
  }
  // The tuning job keeps the request's tags as its own (the trials have them too,
  // through the trial template); they live in spec.tags, which AddTags/DeleteTags change.
  native["tags"] = tags;
  native["sagemaker"] = req;
  native["sagemaker"].erase("Tags");
  return native;
}

// An error of the native spec, naming the request's field instead.
Status RequestError(const Status& native) {
  static const std::map<std::string, std::string> kFields = {
      {"objective.metric", "HyperParameterTuningJobConfig.HyperParameterTuningJobObjective.MetricName"},
      {"max_trials", "HyperParameterTuningJobConfig.ResourceLimits.MaxNumberOfTrainingJobs"},
      {"max_parallel", "HyperParameterTuningJobConfig.ResourceLimits.MaxParallelTrainingJobs"},
      {"early_stopping", "HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType"},
      {"warm_start.parents", "WarmStartConfig.ParentHyperParameterTuningJobs"},
      {"warm_start.type", "WarmStartConfig.WarmStartType"}};
  std::string f = native.field();
  auto it = kFields.find(f);
  if (it != kFields.end())
    f = it->second;
  else if (f.rfind("parameters.", 0) == 0)
    f = "HyperParameterTuningJobConfig.ParameterRanges";
  else if (f.rfind("hyperband.", 0) == 0)
    f = "HyperParameterTuningJobConfig.StrategyConfig.HyperbandStrategyConfig";
  else if (f.rfind("tags", 0) == 0)
    f = "Tags";
  return InvalidArgument(f, f + ": " + native.message());
}

}  // namespace

Result<tuning::TuningSpec> TuningSpecFromRequest(const json& req, const Context& c, const std::string& team) {
  KILN_RETURN_IF_ERROR(CheckTuningRequest(req));
  const std::string name = req["HyperParameterTuningJobName"];
  auto train = TrainingRequestOf(req, name);
  if (!train.ok()) return train.status();
  JobSpec tagged;  // the request's tags, checked here so that errors name Tags, not the trial definition
  KILN_RETURN_IF_ERROR(Tags(req, &tagged));
  auto trial = TrainingSpec(*train, c, team);
  if (!trial.ok()) {
    std::string f = "TrainingJobDefinition." + trial.status().field();
    return InvalidArgument(f, "TrainingJobDefinition: " + trial.status().message());
  }
  json t = trial->ToJson();
  t.erase("name");
  auto params = NativeParameters(req["HyperParameterTuningJobConfig"]);
  if (!params.ok()) return params.status();
  auto spec = tuning::ParseTuningSpec(NativeTuningSpec(req, name, team, *params, t, tagged.tags), nullptr);
  if (!spec.ok()) return RequestError(spec.status());
  return spec;
}

namespace {

json Counters(const std::vector<tuning::TrialView>& trials, json* objective) {
  json c = {{"Completed", 0}, {"InProgress", 0}, {"RetryableError", 0}, {"NonRetryableError", 0}, {"Stopped", 0}};
  json o = {{"Succeeded", 0}, {"Pending", 0}, {"Failed", 0}};
  for (const auto& t : trials) {
    switch (t.status) {
      case JobStatus::kCompleted:
        c["Completed"] = c["Completed"].get<int>() + 1;
        break;
      case JobStatus::kFailed:
        c["NonRetryableError"] = c["NonRetryableError"].get<int>() + 1;
        break;
      case JobStatus::kStopped:
        c["Stopped"] = c["Stopped"].get<int>() + 1;
        break;
      default:
        c["InProgress"] = c["InProgress"].get<int>() + 1;
    }
    const char* os = tuning::Objective(t) ? "Succeeded" : IsTerminal(t.status) ? "Failed" : "Pending";
    o[os] = o[os].get<int>() + 1;
  }
  *objective = o;
  return c;
}

}  // namespace

json TrialSummary(const tuning::TuningJob& job, const tuning::TrialView& t, const Context& c) {
  json tuned = json::object();
  for (const auto& p : job.spec.ranges)
    if (t.hyperparameters.contains(p.name)) tuned[p.name] = t.hyperparameters[p.name];
  auto o = tuning::Objective(t);
  json s = {{"TrainingJobName", t.name},
            {"TrainingJobArn", Arn(c, "training-job", t.name)},
            {"TuningJobName", job.spec.name},
            {"CreationTime", Seconds(t.created)},
            {"TrainingJobStatus", SageMakerStatus(t.status)},
            {"TunedHyperParameters", tuned},
            {"ObjectiveStatus", o                      ? "Succeeded"
                                : IsTerminal(t.status) ? "Failed"
                                                       : "Pending"}};
  if (t.ended) s["TrainingEndTime"] = Seconds(t.ended);
  if (o)
    s["FinalHyperParameterTuningJobObjectiveMetric"] = {
        {"Type", job.spec.direction == hpo::Direction::kMaximize ? "Maximize" : "Minimize"},
        {"MetricName", job.spec.objective_metric},
        {"Value", *o}};
  return s;
}

json DescribeTuningJob(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials, const Context& c) {
  const json& r = job.spec.sagemaker;
  json objective;
  json d = {{"HyperParameterTuningJobName", job.spec.name},
            {"HyperParameterTuningJobArn", Arn(c, "hyper-parameter-tuning-job", job.spec.name)},
            {"HyperParameterTuningJobConfig", r.value("HyperParameterTuningJobConfig", json::object())},
            {"HyperParameterTuningJobStatus", tuning::ToString(job.state.status)},
            {"CreationTime", Seconds(job.state.created)},
            {"LastModifiedTime", Seconds(std::max(job.state.created, job.state.ended))},
            {"TrainingJobStatusCounters", Counters(trials, &objective)},
            {"ObjectiveStatusCounters", objective}};
  CopyIf(r, d, {"TrainingJobDefinition", "WarmStartConfig"});
  if (job.state.ended) d["HyperParameterTuningEndTime"] = Seconds(job.state.ended);
  if (job.state.status == tuning::TuningStatus::kFailed) d["FailureReason"] = job.state.reason;
  int best = tuning::BestTrial(job.spec, trials);
  if (best >= 0) d["BestTrainingJob"] = TrialSummary(job, trials[static_cast<size_t>(best)], c);
  return d;
}

json TuningJobSummary(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials, const Context& c) {
  json objective;
  json s = {{"HyperParameterTuningJobName", job.spec.name},
            {"HyperParameterTuningJobArn", Arn(c, "hyper-parameter-tuning-job", job.spec.name)},
            {"HyperParameterTuningJobStatus", tuning::ToString(job.state.status)},
            {"Strategy", tuning::ToString(job.spec.strategy)},
            {"CreationTime", Seconds(job.state.created)},
            {"LastModifiedTime", Seconds(std::max(job.state.created, job.state.ended))},
            {"TrainingJobStatusCounters", Counters(trials, &objective)},
            {"ObjectiveStatusCounters", objective},
            {"ResourceLimits",
             {{"MaxNumberOfTrainingJobs", job.spec.max_trials}, {"MaxParallelTrainingJobs", job.spec.max_parallel}}}};
  if (job.state.ended) s["HyperParameterTuningEndTime"] = Seconds(job.state.ended);
  return s;
}

json FinalMetrics(const Job& job, const std::vector<MetricPoint>& points) {
  json out = json::array();
  for (const auto& [name, re] : job.spec.metric_definitions) {
    const MetricPoint* last = nullptr;
    for (const auto& p : points)
      if (p.name == name && (!last || p.time >= last->time)) last = &p;
    if (last) out.push_back({{"MetricName", name}, {"Value", last->value}, {"Timestamp", Seconds(last->time)}});
  }
  return out;
}

json DescribeTrainingJob(const Job& job, const Context& c, const std::vector<MetricPoint>& points) {
  const json& r = job.spec.sagemaker;
  json d = {{"TrainingJobName", job.spec.name},
            {"TrainingJobArn", Arn(c, "training-job", job.spec.name)},
            {"ModelArtifacts", {{"S3ModelArtifacts", ""}}},
            {"TrainingJobStatus", SageMakerStatus(job.status)},
            {"SecondaryStatus", ToString(job.secondary)},
            {"CreationTime", Seconds(job.created_at)},
            {"LastModifiedTime", Seconds(LastModified(job))},
            {"SecondaryStatusTransitions", Transitions(job)}};
  CopyIf(
      r, d,
      {"AlgorithmSpecification", "RoleArn", "HyperParameters", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
       "StoppingCondition", "VpcConfig", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption",
       "EnableManagedSpotTraining", "CheckpointConfig", "Environment", "RetryStrategy", "ExperimentConfig"});
  if (!job.model_artifact.empty() && r.contains("OutputDataConfig")) {
    std::string base = r["OutputDataConfig"]["S3OutputPath"];
    while (!base.empty() && base.back() == '/') base.pop_back();
    d["ModelArtifacts"]["S3ModelArtifacts"] = base + "/" + job.spec.name + "/output/model.tar.gz";
  }
  if (!job.failure_reason.empty()) d["FailureReason"] = job.failure_reason.substr(0, 1024);
  // A tuning job's trial names its tuning job, as SageMaker's do.
  if (!job.spec.tuning_job.empty()) d["TuningJobArn"] = Arn(c, "hyper-parameter-tuning-job", job.spec.tuning_job);
  TimeMs start = Phase(job, "InstanceReady");
  if (start) d["TrainingStartTime"] = Seconds(start);
  if (job.ended_at) d["TrainingEndTime"] = Seconds(job.ended_at);
  if (start && job.ended_at) {
    int64_t secs = std::max<int64_t>(1, (job.ended_at - start + 999) / 1000);
    d["TrainingTimeInSeconds"] = secs;
    d["BillableTimeInSeconds"] = secs;
  }
  json fm = FinalMetrics(job, points);
  if (!fm.empty()) d["FinalMetricDataList"] = fm;
  if (d.contains("ResourceConfig") && job.warm_pool.status != WarmPoolStatus::kNone)
    d["ResourceConfig"]["KeepAlivePeriodInSeconds"] = job.warm_pool.keep_alive_seconds;  // as UpdateTrainingJob left it
  if (auto w = WarmPoolStatusOf(job); !w.is_null()) d["WarmPoolStatus"] = w;
  return d;
}

json WarmPoolStatusOf(const Job& job) {
  const WarmPool& w = job.warm_pool;
  if (w.status == WarmPoolStatus::kNone) return nullptr;
  json out = {{"Status", ToString(w.status)}};
  if (w.available_at) out["ResourceRetainedBillableTimeInSeconds"] = w.RetainedSeconds(RealClock::Get().NowMs());
  if (!w.reused_by_name.empty()) out["ReusedByJob"] = w.reused_by_name;
  return out;
}

json TrainingJobSummary(const Job& job, const Context& c) {
  json s = {{"TrainingJobName", job.spec.name},
            {"TrainingJobArn", Arn(c, "training-job", job.spec.name)},
            {"CreationTime", Seconds(job.created_at)},
            {"LastModifiedTime", Seconds(LastModified(job))},
            {"TrainingJobStatus", SageMakerStatus(job.status)}};
  if (job.ended_at) s["TrainingEndTime"] = Seconds(job.ended_at);
  if (auto w = WarmPoolStatusOf(job); !w.is_null()) s["WarmPoolStatus"] = w;
  return s;
}

json DescribeProcessingJob(const Job& job, const Context& c) {
  const json& r = job.spec.sagemaker;
  json d = {{"ProcessingJobName", job.spec.name},
            {"ProcessingJobArn", Arn(c, "processing-job", job.spec.name)},
            {"ProcessingJobStatus", SageMakerStatus(job.status)},
            {"CreationTime", Seconds(job.created_at)},
            {"LastModifiedTime", Seconds(LastModified(job))}};
  CopyIf(r, d,
         {"ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources", "StoppingCondition", "AppSpecification",
          "Environment", "NetworkConfig", "RoleArn", "ExperimentConfig"});
  if (!job.failure_reason.empty()) d["FailureReason"] = job.failure_reason.substr(0, 1024);
  if (!job.exit_message.empty()) d["ExitMessage"] = job.exit_message;
  if (TimeMs start = Phase(job, "InstanceReady")) d["ProcessingStartTime"] = Seconds(start);
  if (job.ended_at) d["ProcessingEndTime"] = Seconds(job.ended_at);
  return d;
}

json ProcessingJobSummary(const Job& job, const Context& c) {
  json s = {{"ProcessingJobName", job.spec.name},
            {"ProcessingJobArn", Arn(c, "processing-job", job.spec.name)},
            {"CreationTime", Seconds(job.created_at)},
            {"LastModifiedTime", Seconds(LastModified(job))},
            {"ProcessingJobStatus", SageMakerStatus(job.status)}};
  if (job.ended_at) s["ProcessingEndTime"] = Seconds(job.ended_at);
  if (!job.failure_reason.empty()) s["FailureReason"] = job.failure_reason.substr(0, 1024);
  if (!job.exit_message.empty()) s["ExitMessage"] = job.exit_message;
  return s;
}

}  // namespace kiln::smapi
