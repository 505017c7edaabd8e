#include "jobs/spec.h"

#include <gtest/gtest.h>

#include <functional>

#include "jobs/model.h"

namespace kiln {
namespace {
using nlohmann::json;

json Valid() {
  return json{{"name", "train-1"},
              {"command", {"/usr/bin/python3", "train.py"}},
              {"instance", {{"type", "ml.m5.large"}, {"count", 2}, {"volume_gb", 50}, {"keep_alive_seconds", 900}}},
              {"hyperparameters", {{"lr", 0.1}, {"layers", {1, 2, 3}}}},
              {"environment", {{"A", "1"}}},
              {"inputs", {{"train", "file:///data/train"}}},
              {"tags", {{"team", "risk"}}}};
}

TEST(Spec, ParsesValidSpec) {
  Catalog c = Catalog::Defaults();
  auto r = ParseSpec(Valid(), c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->instance_count, 2);
  EXPECT_EQ(r->inputs.at("train"), "/data/train");
  EXPECT_EQ(r->hyperparameters["layers"][2], 3);
  EXPECT_EQ(r->stop_grace_seconds, 120);
  EXPECT_TRUE(ValidateSpec(*r, &c).ok());
  // Round trip through the stored form.
  auto again = DecodeStoredSpec(r->ToJson());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, *r);
}

TEST(Spec, StringCommandRunsUnderShell) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j["command"] = "echo hi";
  auto r = ParseSpec(j, c);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->command, (std::vector<std::string>{"/bin/sh", "-c", "echo hi"}));
}

struct BadCase {
  const char* json_patch;  // merged into Valid()
  const char* field;
};

class SpecInvalid : public ::testing::TestWithParam<BadCase> {};

TEST_P(SpecInvalid, NamesTheField) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j.merge_patch(json::parse(GetParam().json_patch));
  auto r = ParseSpec(j, c);
  ASSERT_FALSE(r.ok()) << GetParam().json_patch;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().field(), GetParam().field) << r.status().ToString();
  EXPECT_FALSE(r.status().message().empty());
  // The deprecated pointer overload answers the same.
  auto old = ParseSpec(j, &c);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().ToString(), r.status().ToString());
}

INSTANTIATE_TEST_SUITE_P(
    Table, SpecInvalid,
    ::testing::Values(
        BadCase{R"({"name": null})", "name"}, BadCase{R"({"name": "-bad"})", "name"},
        BadCase{R"({"name": "a_b"})", "name"}, BadCase{R"({"name": 5})", "name"},
        BadCase{R"({"command": []})", "command"}, BadCase{R"({"command": [1]})", "command[0]"},
        BadCase{R"({"command": {"a": 1}})", "command"}, BadCase{R"({"instance": {"count": 0}})", "instance.count"},
        BadCase{R"({"instance": {"count": 65}})", "instance.count"},
        BadCase{R"({"instance": {"count": "2"}})", "instance.count"},
        BadCase{R"({"instance": {"type": "ml.nope"}})", "instance.type"},
        BadCase{R"({"instance": {"cpus": 2}})", "instance.cpus"},
        BadCase{R"({"instance": {"volume_gb": 0}})", "instance.volume_gb"},
        BadCase{R"({"network_isolation": "yes"})", "network_isolation"},
        BadCase{R"({"instance": {"volume_gb": 16385}})", "instance.volume_gb"},
        BadCase{R"({"instance": {"volume_gb": "30"}})", "instance.volume_gb"},
        BadCase{R"({"instance": {"keep_alive_seconds": -1}})", "instance.keep_alive_seconds"},
        BadCase{R"({"instance": {"keep_alive_seconds": 21601}})", "instance.keep_alive_seconds"},
        BadCase{R"({"hyperparameters": [1]})", "hyperparameters"},
        BadCase{R"({"environment": {"1BAD": "x"}})", "environment.1BAD"},
        BadCase{R"({"environment": {"OK": {"x": 1}}})", "environment.OK"},
        BadCase{R"({"inputs": {"train": "relative/path"}})", "inputs.train"},
        BadCase{R"({"inputs": {"../x": "/data"}})", "inputs.../x"},
        BadCase{R"({"inputs": {"train": "s3://bucket/key"}})", "inputs.train"},
        BadCase{R"({"max_runtime_seconds": 0})", "max_runtime_seconds"},
        BadCase{R"({"max_runtime_seconds": 2419201})", "max_runtime_seconds"},
        BadCase{R"({"retry_attempts": -1})", "retry_attempts"},
        BadCase{R"({"stop_grace_seconds": 1.5})", "stop_grace_seconds"},
        BadCase{R"({"image": "nope:latest"})", "image"}, BadCase{R"({"comand": ["x"]})", "comand"},
        BadCase{R"({"output": "relative"})", "output"}, BadCase{R"({"team": "a b"})", "team"},
        BadCase{R"({"secrets": "X"})", "secrets"}, BadCase{R"({"secrets": ["OK", "1bad"]})", "secrets[1]"},
        BadCase{R"j({"metric_definitions": [{"name": "acc", "regex": "acc=[0-9.]+"}]})j",
                "metric_definitions[0].regex"},
        BadCase{R"j({"metric_definitions": [{"name": "acc", "regex": "acc=([0-9.]+"}]})j",
                "metric_definitions[0].regex"},
        BadCase{R"j({"metric_definitions": [{"regex": "acc=([0-9.]+)"}]})j", "metric_definitions[0].name"}));

TEST(Spec, NameRequired) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j.erase("name");
  EXPECT_EQ(ParseSpec(j, c).status().field(), "name");
}

TEST(Spec, HyperparametersHaveNoSizeCap) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  for (int i = 0; i < 10000; ++i) j["hyperparameters"]["k" + std::to_string(i)] = std::string(100, 'x');
  EXPECT_TRUE(ParseSpec(j, c).ok());
}

TEST(Spec, TooManyTags) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  for (int i = 0; i < 51; ++i) j["tags"]["t" + std::to_string(i)] = "v";
  EXPECT_EQ(ParseSpec(j, c).status().field(), "tags");
}

// Fields are checked in a fixed order; within a list or map, entry by entry.
TEST(Spec, FirstErrorIsTheFirstBadFieldInReadingOrder) {
  Catalog c = Catalog::Defaults();
  auto first = [&](const char* patch) {
    json j = Valid();
    j.merge_patch(json::parse(patch));
    return ParseSpec(j, c).status().field();
  };
  EXPECT_EQ(first(R"({"name": "-bad", "command": []})"), "name");
  EXPECT_EQ(first(R"({"image": "", "name": "ok"})"), "image");
  EXPECT_EQ(first(R"({"command": ["", 5]})"), "command[1]");
  EXPECT_EQ(first(R"({"environment": {"1BAD": "x", "OK": {"a": 1}}})"), "environment.1BAD");
  EXPECT_EQ(first(R"({"instance": {"count": 65, "type": 5}})"), "instance.type");
  EXPECT_EQ(first(R"({"instance": {"count": 65, "type": "ml.nope"}})"), "instance.count");
  EXPECT_EQ(first(R"j({"metric_definitions": [{"name": "a", "regex": "a"}, {"regex": "(a)"}]})j"),
            "metric_definitions[0].regex");
  EXPECT_EQ(first(R"({"team": "a b", "secrets": ["1bad"]})"), "team");
}

TEST(Spec, MountDistributionMustBeAKnownString) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  for (json dist : {json(5), json("Replicated")}) {
    j["mounts"] = json::array({{{"source", "/data/x"}, {"target", "/opt/ml/processing/x"}, {"distribution", dist}}});
    EXPECT_EQ(ParseSpec(j, c).status().field(), "mounts[0].distribution") << dist;
  }
}

TEST(Spec, OnlyTheDeprecatedNullCatalogOverloadTakesKilnSetFields) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j["tuning_job"] = "tj-1";
  j["sagemaker"] = {{"TrainingJobName", "x"}};
  j["hyperparameters_file"] = "/artifacts/hp.json";
  EXPECT_EQ(ParseSpec(j, c).status().field(), "hyperparameters_file");
  EXPECT_EQ(ParseSpec(j, &c).status().field(), "hyperparameters_file");
  auto r = ParseSpec(j, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tuning_job, "tj-1");
  EXPECT_EQ(r->sagemaker["TrainingJobName"], "x");
  EXPECT_EQ(r->hyperparameters_file, "/artifacts/hp.json");
  // Without a catalog, nothing is looked up in one.
  j["image"] = "nope:latest";
  EXPECT_TRUE(ParseSpec(j, nullptr).ok());
}

// The spec ParseSpec(Valid()) returns, built in code.
JobSpec Built() {
  JobSpec s;
  s.name = "train-1";
  s.command = {"/usr/bin/python3", "train.py"};
  s.instance_type = "ml.m5.large";
  s.instance_count = 2;
  s.volume_gb = 50;
  s.keep_alive_seconds = 900;
  s.hyperparameters = {{"lr", 0.1}, {"layers", {1, 2, 3}}};
  s.environment = {{"A", "1"}};
  s.inputs = {{"train", "/data/train"}};
  s.tags = {{"team", "risk"}};
  return s;
}

// What the SageMaker translators build: every optional part set.
JobSpec SageMakerish() {
  JobSpec s = Built();
  s.name = "sm-proc-1";
  s.kind = JobKind::kProcessing;
  s.image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1";
  s.command = {"python3", "/opt/ml/processing/input/code/preprocess.py"};
  s.code_dir = "/srv/code";
  s.hyperparameters = json::object();
  s.hyperparameters_file = "/artifacts/staged/hp-1.json";
  s.inputs = {{"train", "/data/s3/train"}, {"validation", "/data/s3/validation"}};
  s.sharded_channels = {"train"};
  s.output = "/srv/models/out";
  s.max_runtime_seconds = 600;
  s.retry_attempts = 2;
  s.stop_grace_seconds = 30;
  s.team = "ads";
  s.secrets = {"DB_PASSWORD"};
  s.metric_definitions = {{"train:loss", "loss=([0-9.]+)"}, {"validation:acc", "acc: (\\d+\\.\\d+)"}};
  s.mounts = {{"/data/s3/raw", "/opt/ml/processing/input/raw", Distribution::kShardedByKey},
              {"/data/s3/lookup", "/opt/ml/processing/input/lookup", Distribution::kFullyReplicated}};
  s.uploads = {{"/opt/ml/processing/output/train", "/data/s3/out/train"}};
  s.checkpoint_dir = "/data/s3/ckpt/sm-proc-1";
  s.code_archive = "/data/s3/code/sourcedir.tar.gz";
  s.pack_output_data = true;
  s.sagemaker = {{"ProcessingJobName", "sm-proc-1"}, {"RoleArn", "arn:aws:iam::1:role/x"}};
  s.tuning_job = "tj-7";
  return s;
}

TEST(Spec, BuiltSpecMatchesParsedOne) {
  Catalog c = Catalog::Defaults();
  auto r = ParseSpec(Valid(), c);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, Built());
  EXPECT_TRUE(ValidateSpec(Built(), &c).ok());
  EXPECT_TRUE(ValidateSpec(SageMakerish(), nullptr).ok()) << ValidateSpec(SageMakerish(), nullptr).ToString();
}

TEST(StoredSpec, RoundTrips) {
  JobSpec minimal;
  minimal.name = "m";
  minimal.command = {"true"};
  JobSpec training = SageMakerish();
  training.kind = JobKind::kTraining;
  training.mounts.clear();
  training.uploads.clear();
  JobSpec nested = Built();
  nested.hyperparameters = {{"a", {{"b", json::array({1, "two", nullptr, 3.5})}}}, {"big", 1ULL << 63}};
  for (const JobSpec& spec : {minimal, Built(), SageMakerish(), training, nested}) {
    auto back = DecodeStoredSpec(spec.ToJson());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, spec) << spec.ToJson().dump();
    EXPECT_EQ(back->ToJson(), spec.ToJson());
  }
}

TEST(StoredSpec, DecodesWhatValidationWouldNowRefuse) {
  JobSpec s = SageMakerish();
  s.instance_count = kMaxInstanceCount + 1;
  s.name = "old_name_with_underscores";
  s.team = "a team";
  s.max_runtime_seconds = kMaxRuntimeSeconds * 2;
  s.metric_definitions = {{"acc", "acc=[0-9.]+"}};  // no capture group
  s.sharded_channels = {"gone"};
  s.mounts[0].target = "/opt/ml/code/x";
  s.image = "";
  ASSERT_FALSE(ValidateSpec(s, nullptr).ok());
  ASSERT_FALSE(ParseSpec(s.ToJson(), nullptr).ok());
  auto back = DecodeStoredSpec(s.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, s);
}

TEST(StoredSpec, MissingOptionalFieldsTakeDefaultsAndUnknownOnesAreIgnored) {
  json old = {{"name", "j"}, {"command", {"run"}}, {"added_in_a_later_version", {1, 2}}};
  auto back = DecodeStoredSpec(old);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  JobSpec want;
  want.name = "j";
  want.command = {"run"};
  EXPECT_EQ(*back, want);
}

TEST(StoredSpec, GarbageIsDataLoss) {
  json base = Built().ToJson();
  auto patched = [&](const char* patch) {
    json j = base;
    j.merge_patch(json::parse(patch));
    return j;
  };
  json no_name = base;
  no_name.erase("name");
  json no_command = base;
  no_command.erase("command");
  for (const json& j : {json(nullptr),
                        json("spec"),
                        json::array({1}),
                        json::object(),
                        no_name,
                        no_command,
                        patched(R"({"name": 5})"),
                        patched(R"({"command": "echo hi"})"),
                        patched(R"({"command": ["a", 1]})"),
                        patched(R"({"instance": "ml.m5.large"})"),
                        patched(R"({"instance": {"count": "2"}})"),
                        patched(R"({"instance": {"count": 1e3}})"),
                        patched(R"({"instance": {"count": 4294967296}})"),
                        patched(R"({"retry_attempts": -3000000000})"),
                        patched(R"({"max_runtime_seconds": 18446744073709551615})"),
                        patched(R"({"kind": "batch"})"),
                        patched(R"({"environment": {"A": 1}})"),
                        patched(R"({"inputs": ["/data"]})"),
                        patched(R"({"tags": {"k": [1]}})"),
                        patched(R"({"secrets": "X"})"),
                        patched(R"({"metric_definitions": [{"name": "a"}]})"),
                        patched(R"({"metric_definitions": ["a"]})"),
                        patched(R"({"mounts": [{"source": "/a", "target": "/opt/ml/x", "distribution": "odd"}]})"),
                        patched(R"({"mounts": [{"target": "/opt/ml/x"}]})"),
                        patched(R"({"uploads": [{"local_path": "/opt/ml/x"}]})"),
                        patched(R"({"pack_output_data": "yes"})"),
                        patched(R"({"tuning_job": 7})")}) {
    auto r = DecodeStoredSpec(j);
    ASSERT_FALSE(r.ok()) << j.dump();
    EXPECT_EQ(r.status().code(), Code::kDataLoss) << j.dump() << ": " << r.status().ToString();
    EXPECT_FALSE(r.status().message().empty());
  }
}

TEST(StoredSpec, JobRecordWithUndecodableSpecIsDataLoss) {
  Job job;
  job.id = "j-1";
  job.spec = SageMakerish();
  job.spec.instance_count = kMaxInstanceCount + 1;  // refused today, stored under older rules
  json record = ToJson(job);
  auto back = JobFromJson(record);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->spec, job.spec);

  record["spec"]["command"] = 42;
  EXPECT_EQ(JobFromJson(record).status().code(), Code::kDataLoss);
  EXPECT_EQ(JobFromJson(json::array()).status().code(), Code::kDataLoss);
  record.erase("spec");
  EXPECT_EQ(JobFromJson(record).status().code(), Code::kDataLoss);
}

// A rule broken by a JobSpec built in code is reported on the same field (and
// with the same message) as by ParseSpec on the equivalent JSON.
struct BuiltCase {
  std::string json_patch;                // merged into Valid()
  std::function<void(JobSpec*)> mutate;  // applied to Built()
  const char* field;
};

class ValidateBuilt : public ::testing::TestWithParam<BuiltCase> {};

TEST_P(ValidateBuilt, SameFieldAsParseSpec) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j.merge_patch(json::parse(GetParam().json_patch));
  auto parsed = ParseSpec(j, c);
  ASSERT_FALSE(parsed.ok()) << GetParam().json_patch;
  JobSpec s = Built();
  GetParam().mutate(&s);
  Status validated = ValidateSpec(s, &c);
  ASSERT_FALSE(validated.ok()) << GetParam().json_patch;
  EXPECT_EQ(validated.code(), Code::kInvalidArgument);
  EXPECT_EQ(parsed.status().field(), GetParam().field) << parsed.status().ToString();
  EXPECT_EQ(validated.field(), GetParam().field) << validated.ToString();
  EXPECT_EQ(validated.message(), parsed.status().message());
}

INSTANTIATE_TEST_SUITE_P(
    Table, ValidateBuilt,
    ::testing::Values(
        BuiltCase{R"({"name": "-bad"})", [](JobSpec* s) { s->name = "-bad"; }, "name"},
        BuiltCase{R"({"image": ""})", [](JobSpec* s) { s->image = ""; }, "image"},
        BuiltCase{R"({"image": "nope:latest"})", [](JobSpec* s) { s->image = "nope:latest"; }, "image"},
        BuiltCase{R"({"command": []})", [](JobSpec* s) { s->command.clear(); }, "command"},
        BuiltCase{R"({"command": [""]})", [](JobSpec* s) { s->command = {""}; }, "command[0]"},
        BuiltCase{R"({"code_dir": "rel"})", [](JobSpec* s) { s->code_dir = "rel"; }, "code_dir"},
        BuiltCase{R"({"instance": {"count": 65}})", [](JobSpec* s) { s->instance_count = kMaxInstanceCount + 1; },
                  "instance.count"},
        BuiltCase{R"({"instance": {"type": "ml.nope"}})", [](JobSpec* s) { s->instance_type = "ml.nope"; },
                  "instance.type"},
        BuiltCase{R"({"environment": {"1BAD": "x"}})", [](JobSpec* s) { s->environment["1BAD"] = "x"; },
                  "environment.1BAD"},
        BuiltCase{R"({"inputs": {"train": "relative/path"}})", [](JobSpec* s) { s->inputs["train"] = "relative/path"; },
                  "inputs.train"},
        BuiltCase{R"({"inputs": {"../x": "/data"}})", [](JobSpec* s) { s->inputs["../x"] = "/data"; }, "inputs.../x"},
        BuiltCase{R"({"max_runtime_seconds": 0})", [](JobSpec* s) { s->max_runtime_seconds = 0; },
                  "max_runtime_seconds"},
        BuiltCase{R"({"retry_attempts": 31})", [](JobSpec* s) { s->retry_attempts = 31; }, "retry_attempts"},
        BuiltCase{R"({"team": "a b"})", [](JobSpec* s) { s->team = "a b"; }, "team"},
        BuiltCase{R"j({"metric_definitions": [{"name": "acc", "regex": "acc=[0-9.]+"}]})j",
                  [](JobSpec* s) {
                    s->metric_definitions = {{"acc", "acc=[0-9.]+"}};
                  },
                  "metric_definitions[0].regex"},
        BuiltCase{R"j({"metric_definitions": [{"name": "", "regex": "acc=([0-9.]+)"}]})j",
                  [](JobSpec* s) {
                    s->metric_definitions = {{"", "acc=([0-9.]+)"}};
                  },
                  "metric_definitions[0].name"},
        BuiltCase{R"({"secrets": ["OK", "1bad"]})",
                  [](JobSpec* s) {
                    s->secrets = {"OK", "1bad"};
                  },
                  "secrets[1]"},
        BuiltCase{R"({"tags": {"k": ")" + std::string(kMaxTagValueLength + 1, 'v') + R"("}})",
                  [](JobSpec* s) { s->tags["k"] = std::string(kMaxTagValueLength + 1, 'v'); }, "tags.k"},
        BuiltCase{R"({"sharded_channels": ["nope"]})", [](JobSpec* s) { s->sharded_channels = {"nope"}; },
                  "sharded_channels[0]"},
        BuiltCase{R"({"mounts": [{"source": "/data/x", "target": "/opt/ml/code"}]})",
                  [](JobSpec* s) {
                    s->mounts = {{"/data/x", "/opt/ml/code"}};
                  },
                  "mounts[0].target"},
        BuiltCase{R"({"mounts": [{"source": "rel", "target": "/opt/ml/processing/x"}]})",
                  [](JobSpec* s) {
                    s->mounts = {{"rel", "/opt/ml/processing/x"}};
                  },
                  "mounts[0].source"},
        BuiltCase{R"({"uploads": [{"local_path": "/opt/ml/../etc", "destination": "/out"}]})",
                  [](JobSpec* s) {
                    s->uploads = {{"/opt/ml/../etc", "/out"}};
                  },
                  "uploads[0].local_path"},
        BuiltCase{R"({"checkpoint_dir": "ckpt"})", [](JobSpec* s) { s->checkpoint_dir = "ckpt"; }, "checkpoint_dir"}));

TEST(ValidateSpec, WithoutCatalogSkipsCatalogChecks) {
  JobSpec s = Built();
  s.image = "nope:latest";
  s.instance_type = "ml.nope";
  EXPECT_TRUE(ValidateSpec(s, nullptr).ok());
  Catalog c = Catalog::Defaults();
  EXPECT_EQ(ValidateSpec(s, &c).field(), "image");
}

TEST(ValidateSpec, RefusesWhatOnlyABuiltSpecCanHold) {
  JobSpec s = Built();
  s.hyperparameters = json::array({1});
  EXPECT_EQ(ValidateSpec(s, nullptr).field(), "hyperparameters");
  s = Built();
  for (int i = 0; i < 21; ++i) s.mounts.push_back({"/data/x", "/opt/ml/processing/m" + std::to_string(i)});
  EXPECT_EQ(ValidateSpec(s, nullptr).field(), "mounts");
  s = Built();
  for (int i = 0; i < 21; ++i) s.inputs["c" + std::to_string(i)] = "/data/x";
  EXPECT_EQ(ValidateSpec(s, nullptr).field(), "inputs");
}

TEST(Catalog, ImageMatchesWithoutTag) {
  auto c = Catalog::FromJson(json::parse(R"({"images": {"repo/train": {"kind": "host"}}})"));
  ASSERT_TRUE(c.ok());
  EXPECT_NE(c->FindImage("repo/train:1.2"), nullptr);
  EXPECT_EQ(c->FindImage("repo/other:1.2"), nullptr);
  auto bad = Catalog::FromJson(json::parse(R"({"instance_types": [{"name": "x", "vcpus": 0}]})"));
  EXPECT_EQ(bad.status().field(), "instance_types[0].vcpus");
}

}  // namespace
}  // namespace kiln
