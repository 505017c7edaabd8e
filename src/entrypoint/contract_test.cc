#include "entrypoint/contract.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace kiln {
namespace {

using nlohmann::json;

constexpr char kRc1[] = R"({"current_host":"algo-1","current_instance_type":"ml.m5.large","hosts":["algo-1"],)"
                        R"("network_interface_name":"lo"})";

RuntimeDoc BaseDoc() {
  RuntimeDoc d;
  d.job_id = "j-1";
  d.job_name = "demo";
  d.instance_id = "j-1.1.0";
  d.index = 0;
  d.attempt = 1;
  d.hyperparameters = {{"epochs", 3}, {"optimizer", "adam"}};
  d.num_cpus = 2;
  d.num_gpus = 0;
  d.resource_config = {"algo-1", {"algo-1"}, "ml.m5.large", "lo"};
  d.output_dir = "/out/demo/output";
  return d;
}

ContractInput BaseInput() {
  ContractInput in;
  in.context = RuntimeContext::kKilnLocal;
  in.files = ContractFiles::kWrite;
  in.root = "/r";
  in.command = {"python3", "train.py"};
  in.base_environment = {"PATH=/usr/bin:/bin", "HOME=/tmp", "KILN_JOB_ID=j-1"};
  in.runtime = BaseDoc();
  return in;
}

std::map<std::string, std::string> EnvMap(const std::vector<std::string>& env) {
  std::map<std::string, std::string> m;
  for (const auto& e : env) {
    auto eq = e.find('=');
    EXPECT_FALSE(m.count(e.substr(0, eq))) << "two entries for " << e;
    m[e.substr(0, eq)] = eq == std::string::npos ? "" : e.substr(eq + 1);
  }
  return m;
}

// The base case in full: every entry of the environment, the files, the directories.
TEST(PrepareContract, SingleInstanceInFull) {
  ContractPlan plan = PrepareContract(BaseInput());
  EXPECT_EQ(plan.directories,
            (std::vector<std::string>{"/r/input/config", "/r/model", "/r/output/data", "/r/checkpoints"}));
  EXPECT_EQ(plan.files, (std::vector<ContractFile>{
                            {"/r/input/config/hyperparameters.json", R"({"epochs":3,"optimizer":"adam"})"},
                            {"/r/input/config/resourceconfig.json", kRc1},
                            {"/r/input/config/inputdataconfig.json", "{}"},
                        }));
  EXPECT_TRUE(plan.channel_copies.empty());
  EXPECT_TRUE(plan.log_lines.empty());
  EXPECT_EQ(plan.command, (std::vector<std::string>{"python3", "train.py"}));
  EXPECT_FALSE(plan.script_mode);

  // SM_TRAINING_ENV compared as JSON, every other entry as text.
  std::vector<std::string> rest;
  json training_env;
  for (const auto& e : plan.environment) {
    if (e.rfind("SM_TRAINING_ENV=", 0) == 0)
      training_env = json::parse(e.substr(strlen("SM_TRAINING_ENV=")));
    else
      rest.push_back(e);
  }
  std::vector<std::string> want = {
      "HOME=/tmp",
      "KILN_JOB_ID=j-1",
      "KILN_RUNTIME=kiln-local",
      "PATH=/usr/bin:/bin",
      "SM_CHANNELS=[]",
      "SM_CHECKPOINT_DIR=/r/checkpoints",
      "SM_CURRENT_HOST=algo-1",
      "SM_CURRENT_INSTANCE_TYPE=ml.m5.large",
      "SM_FRAMEWORK_PARAMS={}",
      "SM_HOSTS=[\"algo-1\"]",
      "SM_HPS={\"epochs\":3,\"optimizer\":\"adam\"}",
      "SM_HP_EPOCHS=3",
      "SM_HP_OPTIMIZER=adam",
      "SM_INPUT_CONFIG_DIR=/r/input/config",
      "SM_INPUT_DATA_CONFIG={}",
      "SM_INPUT_DIR=/r/input",
      "SM_LOG_LEVEL=20",
      "SM_MODEL_DIR=/r/model",
      "SM_NETWORK_INTERFACE_NAME=lo",
      "SM_NUM_CPUS=2",
      "SM_NUM_GPUS=0",
      "SM_OUTPUT_DATA_DIR=/r/output/data",
      "SM_OUTPUT_DIR=/r/output",
      "SM_OUTPUT_INTERMEDIATE_DIR=/r/output/intermediate",
      std::string("SM_RESOURCE_CONFIG=") + kRc1,
      "SM_USER_ARGS=[\"--epochs\",\"3\",\"--optimizer\",\"adam\"]",
  };
  EXPECT_EQ(rest, want);
  EXPECT_EQ(training_env, json::parse(R"({
      "additional_framework_parameters": {}, "channel_input_dirs": {}, "current_host": "algo-1",
      "current_instance_type": "ml.m5.large", "framework_module": "", "hosts": ["algo-1"],
      "hyperparameters": {"epochs": 3, "optimizer": "adam"}, "input_config_dir": "/r/input/config",
      "input_data_config": {}, "input_dir": "/r/input", "is_master": true, "job_name": "demo", "log_level": 20,
      "master_hostname": "algo-1", "model_dir": "/r/model", "module_dir": "", "module_name": "",
      "network_interface_name": "lo", "num_cpus": 2, "num_gpus": 0, "output_data_dir": "/r/output/data",
      "output_dir": "/r/output", "output_intermediate_dir": "/r/output/intermediate",
      "resource_config": {"current_host": "algo-1", "current_instance_type": "ml.m5.large", "hosts": ["algo-1"],
                          "network_interface_name": "lo"},
      "user_entry_point": ""})"));
}

struct Case {
  std::string name;
  std::function<void(ContractInput&)> setup;  // applied to BaseInput()
  // Every file of the plan, by path under /r, with its exact content; nullopt: none planned.
  std::optional<std::map<std::string, std::string>> files = std::nullopt;
  std::map<std::string, std::string> env = {};  // entries the environment has, exactly
  std::vector<std::string> no_env = {};         // names it does not have
  std::vector<std::string> log_lines = {};
  std::vector<std::string> command = {"python3", "train.py"};
  std::vector<ChannelCopy> channel_copies = {};
};

std::map<std::string, std::string> BaseFiles() {
  return {{"input/config/hyperparameters.json", R"({"epochs":3,"optimizer":"adam"})"},
          {"input/config/resourceconfig.json", kRc1},
          {"input/config/inputdataconfig.json", "{}"}};
}

std::map<std::string, std::string> With(std::map<std::string, std::string> m, const std::string& k,
                                        const std::string& v) {
  m[k] = v;
  return m;
}

std::vector<Case> Cases() {
  const std::string big_value(300 << 10, 'x');
  const std::string staged_body = R"({"huge": "as staged, not re-encoded"})";
  return {
      {"multi_instance_second_host",
       [](ContractInput& in) {
         in.runtime->index = 1;
         in.runtime->instance_id = "j-1.1.1";
         in.runtime->resource_config = {"algo-2", {"algo-1", "algo-2", "algo-3"}, "ml.m5.large", "lo"};
       },
       With(BaseFiles(), "input/config/resourceconfig.json",
            R"({"current_host":"algo-2","current_instance_type":"ml.m5.large","hosts":["algo-1","algo-2","algo-3"],)"
            R"("network_interface_name":"lo"})"),
       {{"SM_CURRENT_HOST", "algo-2"},
        {"SM_HOSTS", R"(["algo-1","algo-2","algo-3"])"},
        {"SM_RESOURCE_CONFIG",
         R"({"current_host":"algo-2","current_instance_type":"ml.m5.large","hosts":["algo-1","algo-2","algo-3"],)"
         R"("network_interface_name":"lo"})"}}},
      {"channels_one_sharded",
       [](ContractInput& in) {
         in.runtime->channels = {{"train", "/data/train"}, {"my-val.1", "/data/val.csv"}};
         in.runtime->sharded_channels = {"train"};
       },
       With(BaseFiles(), "input/config/inputdataconfig.json",
            R"({"my-val.1":{"RecordWrapperType":"None","S3DistributionType":"FullyReplicated",)"
            R"("TrainingInputMode":"File"},"train":{"RecordWrapperType":"None",)"
            R"("S3DistributionType":"ShardedByS3Key","TrainingInputMode":"File"}})"),
       {{"SM_CHANNEL_TRAIN", "/r/input/data/train"},
        {"SM_CHANNEL_MY_VAL_1", "/r/input/data/my-val.1"},
        {"SM_CHANNELS", R"(["my-val.1","train"])"},
        {"SM_INPUT_DATA_CONFIG", R"({"my-val.1":{"RecordWrapperType":"None","S3DistributionType":"FullyReplicated",)"
                                 R"("TrainingInputMode":"File"},"train":{"RecordWrapperType":"None",)"
                                 R"("S3DistributionType":"ShardedByS3Key","TrainingInputMode":"File"}})"}},
       {},
       {},
       {"python3", "train.py"},
       {{"/data/val.csv", "/r/input/data/my-val.1"}, {"/data/train", "/r/input/data/train"}}},
      {"hyperparameters_inline_typed_values",
       [](ContractInput& in) {
         in.runtime->hyperparameters = {{"learning-rate", 0.5}, {"layers", {1, 2}}, {"sagemaker_program", "x.py"}};
       },
       With(BaseFiles(), "input/config/hyperparameters.json",
            R"({"layers":[1,2],"learning-rate":0.5,"sagemaker_program":"x.py"})"),
       {{"SM_HPS", R"({"layers":[1,2],"learning-rate":0.5,"sagemaker_program":"x.py"})"},
        {"SM_HP_LEARNING_RATE", "0.5"},
        {"SM_HP_LAYERS", "[1,2]"},
        {"SM_HP_SAGEMAKER_PROGRAM", "x.py"},
        {"SM_USER_ARGS", R"(["--layers","[1,2]","--learning-rate","0.5"])"}},
       {"SM_HP_EPOCHS"}},
      {"hyperparameters_from_file_staged",
       [staged_body](ContractInput& in) {
         in.runtime->hyperparameters = json::object();
         in.runtime->staged_hyperparameters = StagedHyperparameters{"/v1/runtime/hyperparameters", 37};
         in.staged_hyperparameters = staged_body;
       },
       With(BaseFiles(), "input/config/hyperparameters.json", staged_body),
       {},
       {"SM_HPS", "SM_HP_EPOCHS", "SM_HP_OPTIMIZER", "SM_USER_ARGS"},
       {"hyperparameters are 37 bytes: SM_HP_*/SM_HPS not set, read /r/input/config/hyperparameters.json"}},
      {"hyperparameters_inline_too_big_for_the_environment",
       [big_value](ContractInput& in) {
         in.runtime->hyperparameters = {{"blob", big_value}};
       },
       With(BaseFiles(), "input/config/hyperparameters.json", json{{"blob", big_value}}.dump()),
       {},
       {"SM_HPS", "SM_HP_BLOB", "SM_USER_ARGS"},
       {"hyperparameters are 307211 bytes: SM_HP_*/SM_HPS not set, read /r/input/config/hyperparameters.json"}},
      {"secrets_in_the_environment_only_and_spec_environment_wins",
       [](ContractInput& in) {
         in.runtime->secrets = {{"DB_PASSWORD", "s3=cr3t"}, {"API_KEY", "k1"}};
         in.runtime->environment = {{"API_KEY", "from-spec"}, {"PATH", "/opt/bin"}, {"SM_MODEL_DIR", "/elsewhere"}};
       },
       BaseFiles(),
       {{"DB_PASSWORD", "s3=cr3t"},
        {"API_KEY", "from-spec"},
        {"PATH", "/opt/bin"},
        // The other SM_* variables come after spec.environment and win.
        {"SM_MODEL_DIR", "/r/model"}}},
      {"statsd_with_socket",
       [](ContractInput& in) {
         in.runtime->statsd = RuntimeStatsd{"127.0.0.1", 9125, "/opt/ml/.kiln/statsd.sock"};
         in.statsd_socket_exists = true;
         in.runtime->environment = {{"STATSD_PORT", "1"}};
       },
       BaseFiles(),
       {{"STATSD_HOST", "127.0.0.1"},
        {"STATSD_PORT", "9125"},
        {"DD_AGENT_HOST", "127.0.0.1"},
        {"DD_DOGSTATSD_PORT", "9125"},
        {"DD_DOGSTATSD_SOCKET", "/opt/ml/.kiln/statsd.sock"}}},
      {"statsd_socket_named_but_missing",
       [](ContractInput& in) {
         in.runtime->statsd = RuntimeStatsd{"127.0.0.1", 9125, "/opt/ml/.kiln/statsd.sock"};
         in.statsd_socket_exists = false;
       },
       BaseFiles(),
       {{"STATSD_HOST", "127.0.0.1"}, {"STATSD_PORT", "9125"}},
       {"DD_DOGSTATSD_SOCKET"}},
      {"statsd_without_socket",
       [](ContractInput& in) {
         in.runtime->statsd = RuntimeStatsd{"127.0.0.1", 9125, std::nullopt};
       },
       BaseFiles(),
       {{"DD_AGENT_HOST", "127.0.0.1"}, {"DD_DOGSTATSD_PORT", "9125"}},
       {"DD_DOGSTATSD_SOCKET"}},
      {"statsd_absent",
       [](ContractInput& in) { in.runtime->statsd.reset(); },
       BaseFiles(),
       {},
       {"STATSD_HOST", "STATSD_PORT", "DD_AGENT_HOST", "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_SOCKET"}},
      {"script_mode",
       [](ContractInput& in) {
         in.command = {"train"};
         in.runtime->script_mode_python = "/usr/bin/python3";
         in.runtime->hyperparameters = {
             {"sagemaker_program", "\"train.py\""}, {"learning-rate", "0.2"}, {"optimizer", "\"adam\""}};
       },
       With(BaseFiles(), "input/config/hyperparameters.json",
            R"({"learning-rate":"0.2","optimizer":"\"adam\"","sagemaker_program":"\"train.py\""})"),
       {{"SM_USER_ARGS", R"(["--learning-rate","0.2","--optimizer","adam"])"},
        {"SM_HPS", R"({"learning-rate":0.2,"optimizer":"adam"})"},
        {"SM_HP_LEARNING_RATE", "0.2"},
        {"SM_HP_OPTIMIZER", "adam"},
        {"SM_HP_SAGEMAKER_PROGRAM", "\"train.py\""},
        {"SM_USER_ENTRY_POINT", "train.py"},
        {"SM_MODULE_NAME", "train"},
        {"SM_MODULE_DIR", "/r/code"},
        {"SM_FRAMEWORK_MODULE", ""},
        {"PYTHONUNBUFFERED", "1"}},
       {},
       {},
       {"/usr/bin/python3", "train.py", "--learning-rate", "0.2", "--optimizer", "adam"}},
      {"script_mode_needs_the_train_command",
       [](ContractInput& in) {
         in.runtime->script_mode_python = "/usr/bin/python3";
         in.runtime->hyperparameters = {{"sagemaker_program", "train.py"}};
       },
       With(BaseFiles(), "input/config/hyperparameters.json", R"({"sagemaker_program":"train.py"})"),
       {{"SM_USER_ARGS", "[]"}},
       {"SM_USER_ENTRY_POINT", "PYTHONUNBUFFERED"}},
      {"sagemaker_context_skips_the_files",
       [](ContractInput& in) {
         in.context = RuntimeContext::kSageMaker;
         in.files = ContractFiles::kSkip;
         in.runtime->channels = {{"train", "/data/train"}};
       },
       std::nullopt,
       {{"KILN_RUNTIME", "sagemaker"}, {"SM_CHANNEL_TRAIN", "/r/input/data/train"}, {"SM_HP_EPOCHS", "3"}}},
      {"no_runtime_document",
       [](ContractInput& in) {
         in.context = RuntimeContext::kDev;
         in.runtime.reset();
         in.base_environment.push_back("KILN_RUNTIME=stale");
       },
       std::nullopt,
       {{"KILN_RUNTIME", "dev"}, {"PATH", "/usr/bin:/bin"}, {"HOME", "/tmp"}},
       {"SM_MODEL_DIR", "SM_HPS", "SM_TRAINING_ENV"}},
  };
}

TEST(PrepareContract, Table) {
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.name);
    ContractInput in = BaseInput();
    c.setup(in);
    ContractPlan plan = PrepareContract(std::move(in));
    std::map<std::string, std::string> files;
    for (const auto& f : plan.files) {
      ASSERT_EQ(f.path.rfind("/r/", 0), 0u) << f.path;
      files[f.path.substr(3)] = f.content;
    }
    if (c.files) {
      EXPECT_EQ(files, *c.files);
      EXPECT_EQ(plan.directories.size(), 4u);
      EXPECT_EQ(plan.channel_copies, c.channel_copies);
    } else {
      EXPECT_TRUE(files.empty());
      EXPECT_TRUE(plan.directories.empty());
      EXPECT_TRUE(plan.channel_copies.empty());
    }
    EXPECT_TRUE(std::is_sorted(plan.environment.begin(), plan.environment.end()));
    const auto env = EnvMap(plan.environment);
    for (const auto& [k, v] : c.env) {
      auto it = env.find(k);
      if (it == env.end()) {
        ADD_FAILURE() << k << " is not set";
        continue;
      }
      EXPECT_EQ(it->second, v) << k;
    }
    for (const auto& k : c.no_env) EXPECT_FALSE(env.count(k)) << k << " is set";
    EXPECT_EQ(plan.log_lines, c.log_lines);
    EXPECT_EQ(plan.command, c.command);
    EXPECT_EQ(plan.script_mode, (c.command != std::vector<std::string>{"python3", "train.py"}));
  }
}

// Secrets reach the environment only: no planned file and no log line holds them.
TEST(PrepareContract, SecretsAreNotWritten) {
  ContractInput in = BaseInput();
  in.runtime->secrets = {{"TOKEN", "very-secret-value"}};
  in.runtime->channels = {{"train", "/data/train"}};
  ContractPlan plan = PrepareContract(std::move(in));
  for (const auto& f : plan.files) EXPECT_EQ(f.content.find("very-secret-value"), std::string::npos) << f.path;
  for (const auto& l : plan.log_lines) EXPECT_EQ(l.find("very-secret-value"), std::string::npos) << l;
  EXPECT_EQ(EnvMap(plan.environment).at("TOKEN"), "very-secret-value");
}

}  // namespace
}  // namespace kiln
