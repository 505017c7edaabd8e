#pragma once
// The runtime document: what kilnd tells one instance's kiln-entrypoint about its
// job (GET /v1/runtime, authenticated with the instance's KILN_TOKEN). This header is
// the contract between the API that builds it and the entrypoint that decodes it;
// neither side reads it by key anywhere else. docs/runtime-contract.md says what the
// entrypoint makes of each field inside the instance.
//
// Wire format: one JSON object, the field names below as keys. Every field is
// always present unless marked optional. Fields may be added; a decoder ignores
// keys it does not know, so an older entrypoint keeps working with a newer kilnd.
// A field that is absent (and not optional) or of another type is an error naming
// the field, e.g. "resource_config.hosts[1]".
//
// Kept free of calls into the rest of kiln_jobs: kiln-entrypoint links this file
// alone, and every instance start pays for what it pulls in.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/spec.h"

namespace kiln {

// resourceconfig.json as SageMaker writes it; also the value of SM_RESOURCE_CONFIG.
struct RuntimeResourceConfig {
  std::string current_host;  // "algo-<index+1>", this instance's host name
  // "algo-1" ... "algo-<instance_count>", in index order.
  std::vector<std::string> hosts;
  std::string current_instance_type;   // spec.instance_type, e.g. "ml.m5.large"
  std::string network_interface_name;  // "lo": every instance shares the host's network

  friend bool operator==(const RuntimeResourceConfig&, const RuntimeResourceConfig&) = default;
};

// This instance's own StatsD/DogStatsD endpoints on kilnd's metrics gateway.
struct RuntimeStatsd {
  std::string host;  // "127.0.0.1"
  int port = 0;      // the instance's own UDP port
  // The instance's Unix datagram socket as the job sees it ("/run/kiln/metrics/statsd.sock"),
  // or nullopt (null on the wire) when the backend gives instances none.
  std::optional<std::string> socket;

  friend bool operator==(const RuntimeStatsd&, const RuntimeStatsd&) = default;
};

// spec.metric_definitions[i] (SageMaker's MetricDefinitions).
struct RuntimeMetricDefinition {
  std::string name;
  std::string regex;  // ECMAScript; its first capture group is the value

  friend bool operator==(const RuntimeMetricDefinition&, const RuntimeMetricDefinition&) = default;
};

// spec.uploads[i]: copied out once the command exits 0.
struct RuntimeUpload {
  std::string local_path;  // in the instance, under /opt/ml/ (spec.uploads[i].local_path)
  std::string staged;      // in the instance, where the backend bound the destination: "/opt/ml/.kiln/uploads/<i>"

  friend bool operator==(const RuntimeUpload&, const RuntimeUpload&) = default;
};

// Hyperparameters too large to keep in the job record (spec.hyperparameters_file set):
// the entrypoint GETs `url` and writes the body, unparsed, to hyperparameters.json.
struct StagedHyperparameters {
  std::string url;  // "/v1/runtime/hyperparameters"; wire key "hyperparameters_url"
  // Size of the staged file; wire key "hyperparameters_bytes", optional (absent
  // when kilnd could not stat the file).
  std::optional<uint64_t> bytes;

  friend bool operator==(const StagedHyperparameters&, const StagedHyperparameters&) = default;
};

struct RuntimeDoc {
  std::string job_id;                 // "j-..."
  std::string job_name;               // spec.name
  std::string instance_id;            // "<job_id>.<attempt>.<index>"
  int index = 0;                      // the instance's index, 0-based; 0 packs the model
  int attempt = 1;                    // the attempt the instance belongs to, 1-based
  JobKind kind = JobKind::kTraining;  // wire: "training" | "processing"

  // spec.hyperparameters, a JSON object, values with their JSON types. When the
  // hyperparameters were staged it is {} here and `staged_hyperparameters` is set;
  // on the wire "hyperparameters" is then null and "hyperparameters_url" (and
  // "hyperparameters_bytes") are present.
  nlohmann::json hyperparameters = nlohmann::json::object();
  std::optional<StagedHyperparameters> staged_hyperparameters;

  std::map<std::string, std::string> environment;  // spec.environment
  // spec.inputs: channel name -> its source path on the kilnd host (the backend binds
  // it at /opt/ml/input/data/<channel>; without a sandbox the entrypoint copies it).
  std::map<std::string, std::string> channels;
  std::vector<std::string> sharded_channels;  // spec.sharded_channels (ShardedByS3Key)

  int num_cpus = 1;  // vCPUs of the instance type, truncated to an integer (1 if the type is unknown)
  int num_gpus = 0;  // GPUs of the instance type (0 if unknown)
  RuntimeResourceConfig resource_config;

  std::string output_dir;  // the job's output directory on the host (and, bound, in the instance); "" if none
  std::optional<RuntimeStatsd> statsd;  // nullopt (null on the wire) when the gateway gave the instance no port
  // spec.secrets: name -> value (UTF-8, invalid sequences replaced), for the team's
  // secrets only. Values go to the command's environment, never to a file or a log.
  std::map<std::string, std::string> secrets;
  std::vector<RuntimeMetricDefinition> metric_definitions;  // spec.metric_definitions, in order
  bool pack_output_data = false;                            // spec.pack_output_data
  std::vector<RuntimeUpload> uploads;                       // spec.uploads, in order
  // The image's interpreter for SageMaker script mode (catalog ImageEnv::python);
  // optional on the wire: absent when the image has none.
  std::optional<std::string> script_mode_python;

  friend bool operator==(const RuntimeDoc&, const RuntimeDoc&) = default;
};

nlohmann::json ToJson(const RuntimeResourceConfig& rc);
// The wire form; RuntimeDocFromJson(ToJson(d)) == d.
nlohmann::json ToJson(const RuntimeDoc& doc);
// kInvalidArgument naming the first field (a dotted path) that is missing or mistyped.
Result<RuntimeDoc> RuntimeDocFromJson(const nlohmann::json& j);

}  // namespace kiln
