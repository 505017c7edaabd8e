// The entrypoint's side of the runtime document (src/jobs/runtime_doc.h): kilnd's
// wire format decodes, re-encodes byte for byte, and a bad field is named.
#include "jobs/runtime_doc.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace kiln {
namespace {

using nlohmann::json;

// A document as kilnd's GET /v1/runtime sends it.
json Wire() {
  return json::parse(R"json({
    "job_id": "j-0a1b2c3d4e5f6a7b", "job_name": "demo", "instance_id": "j-0a1b2c3d4e5f6a7b.2.1",
    "index": 1, "attempt": 2, "kind": "processing",
    "hyperparameters": {"epochs": 3, "nested": {"a": [1, 2.5, "x"]}, "optimizer": "adam"},
    "environment": {"PYTHONUNBUFFERED": "1"},
    "channels": {"train": "/data/train", "val": "/data/val.csv"},
    "sharded_channels": ["train"],
    "num_cpus": 2, "num_gpus": 0,
    "resource_config": {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"],
                        "current_instance_type": "ml.m5.large", "network_interface_name": "lo"},
    "output_dir": "/var/lib/kiln/artifacts/demo/output",
    "statsd": {"host": "127.0.0.1", "port": 40123, "socket": "/opt/ml/.kiln/statsd.sock"},
    "secrets": {"DB_PASSWORD": "hunter2"},
    "metric_definitions": [{"name": "acc", "regex": "acc=([0-9.]+)"}],
    "pack_output_data": true,
    "uploads": [{"local_path": "/opt/ml/processing/out", "staged": "/opt/ml/.kiln/uploads/0"}],
    "script_mode_python": "/usr/bin/python3"
  })json");
}

TEST(RuntimeDoc, DecodesKilndsDocument) {
  auto doc = RuntimeDocFromJson(Wire());
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ(doc->instance_id, "j-0a1b2c3d4e5f6a7b.2.1");
  EXPECT_EQ(doc->index, 1);
  EXPECT_EQ(doc->attempt, 2);
  EXPECT_EQ(doc->kind, JobKind::kProcessing);
  EXPECT_EQ(doc->hyperparameters["nested"]["a"][1], 2.5);
  EXPECT_FALSE(doc->staged_hyperparameters);
  EXPECT_EQ(doc->channels.at("val"), "/data/val.csv");
  EXPECT_EQ(doc->resource_config.hosts, (std::vector<std::string>{"algo-1", "algo-2"}));
  ASSERT_TRUE(doc->statsd);
  EXPECT_EQ(doc->statsd->port, 40123);
  EXPECT_EQ(doc->statsd->socket, "/opt/ml/.kiln/statsd.sock");
  EXPECT_EQ(doc->secrets.at("DB_PASSWORD"), "hunter2");
  EXPECT_EQ(doc->metric_definitions, (std::vector<RuntimeMetricDefinition>{{"acc", "acc=([0-9.]+)"}}));
  EXPECT_TRUE(doc->pack_output_data);
  EXPECT_EQ(doc->uploads, (std::vector<RuntimeUpload>{{"/opt/ml/processing/out", "/opt/ml/.kiln/uploads/0"}}));
  EXPECT_EQ(doc->script_mode_python, "/usr/bin/python3");
  // Same wire format both ways, so old and new binaries interoperate.
  EXPECT_EQ(ToJson(*doc).dump(), Wire().dump());
  EXPECT_EQ(RuntimeDocFromJson(ToJson(*doc)).value(), *doc);
}

TEST(RuntimeDoc, OptionalAndNullFields) {
  json j = Wire();
  j.erase("script_mode_python");
  j["statsd"] = nullptr;
  j["hyperparameters"] = nullptr;
  j["hyperparameters_url"] = "/v1/runtime/hyperparameters";
  j["hyperparameters_bytes"] = 70000;
  j["some_future_field"] = {1, 2};
  auto doc = RuntimeDocFromJson(j);
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_FALSE(doc->script_mode_python);
  EXPECT_FALSE(doc->statsd);
  ASSERT_TRUE(doc->staged_hyperparameters);
  EXPECT_EQ(doc->staged_hyperparameters->url, "/v1/runtime/hyperparameters");
  EXPECT_EQ(doc->staged_hyperparameters->bytes, 70000u);
  EXPECT_EQ(doc->hyperparameters, json::object());
  j.erase("some_future_field");
  EXPECT_EQ(ToJson(*doc).dump(), j.dump());

  j.erase("hyperparameters_bytes");  // kilnd could not stat the staged file
  j["statsd"] = {{"host", "127.0.0.1"}, {"port", 8125}, {"socket", nullptr}};
  doc = RuntimeDocFromJson(j);
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_FALSE(doc->staged_hyperparameters->bytes);
  EXPECT_FALSE(doc->statsd->socket);
  EXPECT_EQ(ToJson(*doc).dump(), j.dump());
}

TEST(RuntimeDoc, NamesTheBadField) {
  struct Case {
    std::function<void(json&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](json& j) { j = json::array(); }, "(document)"},
      {[](json& j) { j.erase("job_id"); }, "job_id"},
      {[](json& j) { j["index"] = "0"; }, "index"},
      {[](json& j) { j["attempt"] = 1.5; }, "attempt"},
      {[](json& j) { j["num_cpus"] = 1LL << 40; }, "num_cpus"},
      {[](json& j) { j["kind"] = "inference"; }, "kind"},
      {[](json& j) { j.erase("hyperparameters"); }, "hyperparameters"},
      {[](json& j) { j["hyperparameters"] = nullptr; }, "hyperparameters"},
      {[](json& j) { j["hyperparameters"] = json::array(); }, "hyperparameters"},
      {[](json& j) { j["hyperparameters_url"] = 7; }, "hyperparameters_url"},
      {[](json& j) { j["environment"]["N"] = 3; }, "environment.N"},
      {[](json& j) { j["channels"] = json::array(); }, "channels"},
      {[](json& j) {
         j["sharded_channels"] = {"train", 2};
       },
       "sharded_channels[1]"},
      {[](json& j) { j["resource_config"].erase("hosts"); }, "resource_config.hosts"},
      {[](json& j) { j["resource_config"]["hosts"][1] = nullptr; }, "resource_config.hosts[1]"},
      {[](json& j) { j.erase("output_dir"); }, "output_dir"},
      {[](json& j) { j.erase("statsd"); }, "statsd"},
      {[](json& j) { j["statsd"]["port"] = "8125"; }, "statsd.port"},
      {[](json& j) { j["statsd"].erase("socket"); }, "statsd.socket"},
      {[](json& j) { j["secrets"]["DB_PASSWORD"] = nullptr; }, "secrets.DB_PASSWORD"},
      {[](json& j) { j["metric_definitions"][0].erase("regex"); }, "metric_definitions[0].regex"},
      {[](json& j) { j["pack_output_data"] = 1; }, "pack_output_data"},
      {[](json& j) { j["uploads"][0]["staged"] = false; }, "uploads[0].staged"},
      {[](json& j) { j["script_mode_python"] = json::object(); }, "script_mode_python"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.field);
    json j = Wire();
    c.mutate(j);
    auto doc = RuntimeDocFromJson(j);
    ASSERT_FALSE(doc.ok());
    EXPECT_EQ(doc.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(doc.status().field(), c.field);
    EXPECT_NE(doc.status().message().find(c.field), std::string::npos) << doc.status().message();
  }
}

}  // namespace
}  // namespace kiln
