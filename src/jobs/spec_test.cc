#include "jobs/spec.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {
using nlohmann::json;

json Valid() {
  return json{{"name", "train-1"},
              {"command", {"/usr/bin/python3", "train.py"}},
              {"instance", {{"type", "ml.m5.large"}, {"count", 2}}},
              {"hyperparameters", {{"lr", 0.1}, {"layers", {1, 2, 3}}}},
              {"environment", {{"A", "1"}}},
              {"inputs", {{"train", "file:///data/train"}}},
              {"tags", {{"team", "risk"}}}};
}

TEST(Spec, ParsesValidSpec) {
  Catalog c = Catalog::Defaults();
  auto r = ParseSpec(Valid(), &c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->instance_count, 2);
  EXPECT_EQ(r->inputs.at("train"), "/data/train");
  EXPECT_EQ(r->hyperparameters["layers"][2], 3);
  EXPECT_EQ(r->stop_grace_seconds, 120);
  // Round trip through the stored form.
  auto again = ParseSpec(r->ToJson(), nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ToJson(), r->ToJson());
}

TEST(Spec, StringCommandRunsUnderShell) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  j["command"] = "echo hi";
  auto r = ParseSpec(j, &c);
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
  auto r = ParseSpec(j, &c);
  ASSERT_FALSE(r.ok()) << GetParam().json_patch;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().field(), GetParam().field) << r.status().ToString();
  EXPECT_FALSE(r.status().message().empty());
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
  EXPECT_EQ(ParseSpec(j, &c).status().field(), "name");
}

TEST(Spec, HyperparametersHaveNoSizeCap) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  for (int i = 0; i < 10000; ++i) j["hyperparameters"]["k" + std::to_string(i)] = std::string(100, 'x');
  EXPECT_TRUE(ParseSpec(j, &c).ok());
}

TEST(Spec, TooManyTags) {
  Catalog c = Catalog::Defaults();
  json j = Valid();
  for (int i = 0; i < 51; ++i) j["tags"]["t" + std::to_string(i)] = "v";
  EXPECT_EQ(ParseSpec(j, &c).status().field(), "tags");
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
