#include "entrypoint/contract.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

namespace kiln {
namespace {

using nlohmann::json;
using sandbox::Rebase;

// The name part of an environment variable: letters and digits upper-cased, any
// other character '_' ("learning-rate" -> LEARNING_RATE).
std::string ToUpperName(const std::string& s) {
  std::string o;
  for (char c : s) o.push_back(isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(toupper(c)) : '_');
  return o;
}

// A hyperparameter value in the environment: strings as they are, others as JSON.
std::string HpString(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

// A hyperparameter value as the SageMaker toolkit sees it: JSON-decoded when it
// is a JSON document ("\"train.py\"" -> train.py, "0.1" -> 0.1), else the string.
json DecodeHp(const json& v) {
  if (!v.is_string()) return v;
  json d = json::parse(v.get<std::string>(), nullptr, false);
  return d.is_discarded() ? v : d;
}

// inputdataconfig.json, also SM_INPUT_DATA_CONFIG.
json InputDataConfig(const RuntimeDoc& doc) {
  json idc = json::object();
  for (const auto& [ch, src] : doc.channels) {
    const auto& sharded = doc.sharded_channels;
    const bool is_sharded = std::find(sharded.begin(), sharded.end(), ch) != sharded.end();
    idc[ch] = {{"TrainingInputMode", "File"},
               {"S3DistributionType", is_sharded ? "ShardedByS3Key" : "FullyReplicated"},
               {"RecordWrapperType", "None"}};
  }
  return idc;
}

// The contract files and the directories the command expects to find.
void PlanFiles(const RuntimeDoc& doc, const std::string& root, std::string hps_text, ContractPlan& plan) {
  plan.directories = {Rebase(root, sandbox::kInputConfigDir), Rebase(root, sandbox::kModelDir),
                      Rebase(root, sandbox::kOutputDataDir), Rebase(root, sandbox::kCheckpointsDir)};
  plan.files = {{Rebase(root, sandbox::kHyperparametersFile), std::move(hps_text)},
                {Rebase(root, sandbox::kResourceConfigFile), ToJson(doc.resource_config).dump()},
                {Rebase(root, sandbox::kInputDataConfigFile), InputDataConfig(doc).dump()}};
  for (const auto& [ch, src] : doc.channels)
    plan.channel_copies.push_back({src, Rebase(root, sandbox::kInputDataDir) + "/" + ch});
}

// SM_HP_*, SM_HPS and SM_USER_ARGS as the SageMaker toolkit sets them, unless they
// would not fit in a process environment: then hyperparameters.json is the source.
void HyperparameterEnv(const RuntimeDoc& doc, const std::string& root, const std::string& hps_text,
                       ContractPlan& plan) {
  if (doc.staged_hyperparameters || hps_text.size() > kMaxHyperparameterEnvBytes) {
    plan.log_lines.push_back("hyperparameters are " + std::to_string(hps_text.size()) +
                             " bytes: SM_HP_*/SM_HPS not set, read " + Rebase(root, sandbox::kHyperparametersFile));
    return;
  }
  auto& env = plan.environment;
  const json& hps = doc.hyperparameters;
  for (auto& [k, v] : hps.items()) env.push_back("SM_HP_" + ToUpperName(k) + "=" + HpString(v));
  env.push_back("SM_HPS=" + hps_text);
  json user_args = json::array();
  for (auto& [k, v] : hps.items()) {
    if (k.rfind("sagemaker_", 0) == 0) continue;
    user_args.push_back("--" + k);
    user_args.push_back(HpString(v));
  }
  env.push_back("SM_USER_ARGS=" + user_args.dump());
}

// StatsD and DogStatsD clients report to kilnd's gateway, attributed to this job.
void StatsdEnv(const RuntimeDoc& doc, bool socket_exists, std::vector<std::string>& env) {
  if (!doc.statsd) return;
  const std::string port = std::to_string(doc.statsd->port);
  env.push_back("STATSD_HOST=" + doc.statsd->host);
  env.push_back("STATSD_PORT=" + port);
  env.push_back("DD_AGENT_HOST=" + doc.statsd->host);
  env.push_back("DD_DOGSTATSD_PORT=" + port);
  const std::string socket = doc.statsd->socket.value_or("");
  if (!socket.empty() && socket_exists) env.push_back("DD_DOGSTATSD_SOCKET=" + socket);
}

// The contract's variables in the order of docs/runtime-contract.md §3 (a later one
// wins): SM_CHANNEL_*, secrets, spec.environment, the other SM_* variables, StatsD.
void ContractEnv(const RuntimeDoc& doc, const ContractInput& in, const std::string& hps_text, ContractPlan& plan) {
  const std::string& root = in.root;
  auto& env = plan.environment;
  json channels = json::array();
  for (const auto& [ch, src] : doc.channels) {
    channels.push_back(ch);
    env.push_back("SM_CHANNEL_" + ToUpperName(ch) + "=" + Rebase(root, sandbox::kInputDataDir) + "/" + ch);
  }
  // Secrets become environment variables of the user command only; nothing logs them.
  for (const auto& [k, v] : doc.secrets) env.push_back(StrCat(k, "=", v));
  for (const auto& [k, v] : doc.environment) env.push_back(StrCat(k, "=", v));
  HyperparameterEnv(doc, root, hps_text, plan);
  const RuntimeResourceConfig& rc = doc.resource_config;
  env.push_back("SM_CHANNELS=" + channels.dump());
  env.push_back("SM_MODEL_DIR=" + Rebase(root, sandbox::kModelDir));
  env.push_back("SM_OUTPUT_DIR=" + Rebase(root, sandbox::kOutputDir));
  env.push_back("SM_OUTPUT_DATA_DIR=" + Rebase(root, sandbox::kOutputDataDir));
  env.push_back("SM_INPUT_DIR=" + Rebase(root, sandbox::kInputDir));
  env.push_back("SM_INPUT_CONFIG_DIR=" + Rebase(root, sandbox::kInputConfigDir));
  env.push_back("SM_CHECKPOINT_DIR=" + Rebase(root, sandbox::kCheckpointsDir));
  env.push_back("SM_CURRENT_HOST=" + rc.current_host);
  env.push_back("SM_HOSTS=" + json(rc.hosts).dump());
  env.push_back("SM_NUM_CPUS=" + std::to_string(doc.num_cpus));
  env.push_back("SM_NUM_GPUS=" + std::to_string(doc.num_gpus));
  env.push_back("SM_RESOURCE_CONFIG=" + ToJson(rc).dump());
  env.push_back("SM_NETWORK_INTERFACE_NAME=" + rc.network_interface_name);
  env.push_back("SM_CURRENT_INSTANCE_TYPE=" + rc.current_instance_type);
  env.push_back("SM_OUTPUT_INTERMEDIATE_DIR=" + Rebase(root, sandbox::kOutputIntermediateDir));
  env.push_back("SM_LOG_LEVEL=20");
  env.push_back("SM_FRAMEWORK_PARAMS={}");
  StatsdEnv(doc, in.statsd_socket_exists, env);
  env.push_back("SM_INPUT_DATA_CONFIG=" + InputDataConfig(doc).dump());
}

// Script mode, as sagemaker-training-toolkit runs it: the command is `train`, the
// image is a framework image (kilnd says which interpreter), and the inline
// hyperparameters name the user's program. Runs `python <program> --k v ...` from
// /opt/ml/code with the toolkit's SM_USER_ARGS / SM_HPS, set after all others.
bool ScriptMode(const RuntimeDoc& doc, const std::string& root, std::vector<std::string>& cmd,
                std::vector<std::string>& env) {
  const json& hps = doc.hyperparameters;
  if (!doc.script_mode_python || doc.script_mode_python->empty() || doc.staged_hyperparameters ||
      cmd != std::vector<std::string>{"train"} || !hps.contains("sagemaker_program"))
    return false;
  json program = DecodeHp(hps["sagemaker_program"]);
  std::string prog = program.is_string() ? program.get<std::string>() : program.dump();
  json user_args = json::array();
  json decoded = json::object();
  for (auto& [k, v] : hps.items()) {
    if (k.rfind("sagemaker_", 0) == 0) continue;
    json d = DecodeHp(v);
    decoded[k] = d;
    user_args.push_back("--" + k);
    user_args.push_back(d.is_string() ? d.get<std::string>() : d.dump());
  }
  cmd = {*doc.script_mode_python, prog};
  for (const auto& a : user_args) cmd.push_back(a);
  env.push_back("SM_USER_ARGS=" + user_args.dump());
  env.push_back("SM_HPS=" + decoded.dump());
  for (auto& [k, v] : decoded.items()) env.push_back("SM_HP_" + ToUpperName(k) + "=" + HpString(v));
  env.push_back("SM_USER_ENTRY_POINT=" + prog);
  env.push_back("SM_MODULE_NAME=" + prog.substr(0, prog.rfind('.')));
  env.push_back("SM_MODULE_DIR=" + Rebase(root, sandbox::kCodeDir));
  env.push_back("SM_FRAMEWORK_MODULE=");
  env.push_back("PYTHONUNBUFFERED=1");
  return true;
}

// SM_TRAINING_ENV: the SM_* variables of `env` as one JSON document, keyed as
// sagemaker-training-toolkit writes it. Later entries of `env` win (script mode
// overrides SM_HPS and SM_USER_ARGS).
std::string TrainingEnv(const RuntimeDoc& doc, const std::vector<std::string>& env) {
  std::map<std::string, std::string> sm;
  for (const auto& e : env) {
    size_t eq = e.find('=');
    if (e.rfind("SM_", 0) == 0 && eq != std::string::npos) sm[e.substr(3, eq - 3)] = e.substr(eq + 1);
  }
  auto as_json = [&](const char* k, json dflt) {
    auto it = sm.find(k);
    if (it == sm.end()) return dflt;
    json j = json::parse(it->second, nullptr, false);
    return j.is_discarded() ? json(it->second) : j;
  };
  auto str = [&](const char* k) { return sm.count(k) ? sm[k] : std::string(); };
  json channel_dirs = json::object();
  for (const auto& [k, v] : sm)
    if (k.rfind("CHANNEL_", 0) == 0) {
      std::string ch = k.substr(8);
      for (auto& c : ch) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
      channel_dirs[ch] = v;
    }
  json hosts = as_json("HOSTS", json::array({"algo-1"}));
  const std::string master = hosts.empty() ? std::string("algo-1") : hosts[0].get<std::string>();
  json te = {{"additional_framework_parameters", json::object()},
             {"channel_input_dirs", channel_dirs},
             {"current_host", str("CURRENT_HOST")},
             {"current_instance_type", str("CURRENT_INSTANCE_TYPE")},
             {"framework_module", str("FRAMEWORK_MODULE")},
             {"hosts", hosts},
             {"hyperparameters", as_json("HPS", json::object())},
             {"input_config_dir", str("INPUT_CONFIG_DIR")},
             {"input_data_config", as_json("INPUT_DATA_CONFIG", json::object())},
             {"input_dir", str("INPUT_DIR")},
             {"is_master", str("CURRENT_HOST") == master},
             {"job_name", doc.job_name},
             {"log_level", 20},
             {"master_hostname", master},
             {"model_dir", str("MODEL_DIR")},
             {"module_dir", str("MODULE_DIR")},
             {"module_name", str("MODULE_NAME")},
             {"network_interface_name", str("NETWORK_INTERFACE_NAME")},
             {"num_cpus", atoi(str("NUM_CPUS").c_str())},
             {"num_gpus", atoi(str("NUM_GPUS").c_str())},
             {"output_data_dir", str("OUTPUT_DATA_DIR")},
             {"output_dir", str("OUTPUT_DIR")},
             {"output_intermediate_dir", str("OUTPUT_INTERMEDIATE_DIR")},
             {"resource_config", as_json("RESOURCE_CONFIG", json::object())},
             {"user_entry_point", str("USER_ENTRY_POINT")}};
  return "SM_TRAINING_ENV=" + te.dump();
}

// base, then KILN_RUNTIME, then `extra`: one entry per name, the last one winning
// (as with putenv), sorted by name.
std::vector<std::string> MergeEnvironment(const std::vector<std::string>& base, RuntimeContext context,
                                          const std::vector<std::string>& extra) {
  std::map<std::string, std::string> merged;
  auto put = [&](const std::string& entry) { merged[entry.substr(0, entry.find('='))] = entry; };
  for (const auto& e : base) put(e);
  put(std::string("KILN_RUNTIME=") + ToString(context));
  for (const auto& e : extra) put(e);
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (auto& [name, entry] : merged) out.push_back(std::move(entry));
  return out;
}

}  // namespace

ContractPlan PrepareContract(ContractInput in) {
  ContractPlan plan;
  plan.command = std::move(in.command);
  if (in.runtime) {
    const RuntimeDoc& doc = *in.runtime;
    // Staged (large) hyperparameters arrive raw and are written as they are; they
    // are too big for SM_HP_* anyway, so they are never parsed here.
    std::string hps_text =
        doc.staged_hyperparameters ? std::move(in.staged_hyperparameters) : doc.hyperparameters.dump();
    ContractEnv(doc, in, hps_text, plan);
    if (in.files == ContractFiles::kWrite) PlanFiles(doc, in.root, std::move(hps_text), plan);
    plan.script_mode = ScriptMode(doc, in.root, plan.command, plan.environment);
    plan.environment.push_back(TrainingEnv(doc, plan.environment));
  }
  plan.environment = MergeEnvironment(in.base_environment, in.context, plan.environment);
  return plan;
}

}  // namespace kiln
