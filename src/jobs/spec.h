#pragma once
// The job spec users submit (YAML or JSON, converted to JSON by the caller), its
// validation, and its stored form. Three ways in, by where the spec comes from:
//   ParseSpec(json, catalog)   untrusted input (API bodies, CLI spec files): decode
//                              and validate; the first problem is a
//                              kInvalidArgument Status whose field() is the dotted
//                              path ("instance.count") and whose message says why.
//   ValidateSpec(spec, catalog) the same rules on a JobSpec built in code (the
//                              SageMaker translators, tuning trials).
//   DecodeStoredSpec(json)     the store's own JobSpec::ToJson() output: typed reads,
//                              no validation, so tightening a rule never turns a
//                              stored job into a corrupt one.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/catalog.h"

namespace kiln {

enum class JobKind { kTraining, kProcessing };
const char* ToString(JobKind k);

enum class Distribution { kFullyReplicated, kShardedByKey };

// Data placed in the instance before the command starts.
struct DataMount {
  std::string source;  // absolute host path (file or directory)
  std::string target;  // absolute path inside the instance, under /opt/ml
  Distribution distribution = Distribution::kFullyReplicated;

  friend bool operator==(const DataMount&, const DataMount&) = default;
};

// A directory copied out of the instance after the command succeeds.
struct OutputUpload {
  std::string local_path;   // inside the instance, under /opt/ml
  std::string destination;  // absolute host directory

  friend bool operator==(const OutputUpload&, const OutputUpload&) = default;
};

struct JobSpec {
  std::string name;
  JobKind kind = JobKind::kTraining;
  std::string image = "host";
  std::vector<std::string> command;
  std::string code_dir;  // absolute path or empty
  std::string instance_type = "ml.m5.large";
  int instance_count = 1;
  // Each instance's /opt/ml, in GB (SageMaker's VolumeSizeInGB); 0: the
  // backend's default. The local backend enforces it as a disk quota.
  int volume_gb = 0;
  // Warm pools: how long the job's instances are kept after it ends, for a
  // matching job of its team to take over (SageMaker's KeepAlivePeriodInSeconds);
  // 0: none. kilnd's warm_pools.max_keep_alive_seconds bounds it further.
  int64_t keep_alive_seconds = 0;
  nlohmann::json hyperparameters = nlohmann::json::object();
  // Set by kilnd when hyperparameters were too large to keep inline: the staged
  // JSON file in the artifact store (then `hyperparameters` is empty).
  std::string hyperparameters_file;
  std::map<std::string, std::string> environment;
  std::map<std::string, std::string> inputs;  // channel -> absolute path
  std::string output;                         // absolute directory, empty = server default
  int64_t max_runtime_seconds = 86400;
  int retry_attempts = 0;
  int64_t stop_grace_seconds = 120;
  // Among its team's jobs waiting for quota or capacity, a higher priority starts
  // first (kMinPriority..kMaxPriority); across teams, fair share decides.
  int priority = 0;
  std::map<std::string, std::string> tags;
  std::string team = "default";      // owns the job's secrets and metrics attribution
  std::vector<std::string> secrets;  // names, exported to the job as environment variables
  // SageMaker's MetricDefinitions: the first capture group of `regex` on a log
  // line is a value of metric `name` (same series model as StatsD gauges).
  std::vector<std::pair<std::string, std::string>> metric_definitions;  // name, regex
  // Channels under `inputs` split across instances by file (ShardedByS3Key).
  std::vector<std::string> sharded_channels;
  std::vector<DataMount> mounts;      // e.g. ProcessingInputs
  std::vector<OutputUpload> uploads;  // e.g. ProcessingOutputs (EndOfJob)
  std::string checkpoint_dir;         // host directory kept in sync with /opt/ml/checkpoints
  std::string code_archive;           // tar.gz unpacked into /opt/ml/code before the command
  bool pack_output_data = false;      // /opt/ml/output/data -> output.tar.gz beside model.tar.gz
  // No outbound network access, whatever kilnd's sandbox.egress would give the
  // job (SageMaker's EnableNetworkIsolation).
  bool network_isolation = false;
  // Jobs created through the SageMaker API keep the request as received, so
  // Describe* answers with it. Null for native jobs.
  nlohmann::json sagemaker;
  // Set on trials: the tuning job that launched this job.
  std::string tuning_job;

  nlohmann::json ToJson() const;
  friend bool operator==(const JobSpec&, const JobSpec&) = default;
};

inline constexpr int kMaxInstanceCount = 64;
inline constexpr int kMaxVolumeGb = 16384;              // SageMaker's limit
inline constexpr int64_t kMaxKeepAliveSeconds = 21600;  // SageMaker's API model
inline constexpr int64_t kMaxRuntimeSeconds = 28 * 24 * 3600;
inline constexpr int kMaxRetryAttempts = 30;
inline constexpr int kMinPriority = -1000;
inline constexpr int kMaxPriority = 1000;
inline constexpr int64_t kMaxStopGraceSeconds = 3600;
inline constexpr size_t kMaxTags = 50;
inline constexpr size_t kMaxTagKeyLength = 128;
inline constexpr size_t kMaxTagValueLength = 256;

// Decodes and validates an untrusted spec against the schema and `catalog`
// (instance types and images). Refuses the fields only kilnd sets
// (hyperparameters_file, sagemaker, tuning_job) as unknown. Pure: paths are checked
// for shape (absolute or file://) only; existence is the caller's business. Fields
// are checked in a fixed order (unknown fields, kind, name, image, command, ...,
// the ValidateSpec order; entries of a list or map in turn) and the first bad one
// is reported: a shape error from decoding, else the rule ValidateSpec would break
// first. Thread-safe.
Result<JobSpec> ParseSpec(const nlohmann::json& j, const Catalog& catalog);

// The semantic rules of ParseSpec (name, ranges, counts, lengths, paths, channel
// and secret names, metric regexes, catalog membership unless `catalog` is null) on
// a spec built in code, with the same field() and messages; Ok or the first
// kInvalidArgument. Every spec ParseSpec returns passes it. Thread-safe.
Status ValidateSpec(const JobSpec& spec, const Catalog* catalog);

// The inverse of JobSpec::ToJson(), for specs read back from the store: typed reads
// and no validation, so a spec stored under older, looser rules still decodes.
// Unknown fields are ignored and missing optional ones keep JobSpec's defaults;
// only name and command are required. A missing required field, a wrong type, an
// unknown enum spelling or an integer out of its C++ type's range is kDataLoss
// (the record cannot be repaired by retrying). Thread-safe.
Result<JobSpec> DecodeStoredSpec(const nlohmann::json& j);

// DEPRECATED: the old single entry point, kept only until its callers move:
//   catalog != nullptr: same as ParseSpec(j, *catalog);
//   catalog == nullptr: ParseSpec's rules without the catalog checks, and also
//     accepting hyperparameters_file, sagemaker and tuning_job (it used to re-read
//     stored specs). Untrusted input should use ParseSpec(j, catalog), stored specs
//     DecodeStoredSpec, specs built in code ValidateSpec.
Result<JobSpec> ParseSpec(const nlohmann::json& j, const Catalog* catalog);

bool IsValidJobName(const std::string& name);

// A tag map ({key: value}) as job specs take it: at most kMaxTags entries, keys
// up to kMaxTagKeyLength, values (strings, numbers or booleans) up to
// kMaxTagValueLength. Errors name `field` or `field.<key>`.
Status ParseTags(const nlohmann::json& j, const std::string& field, std::map<std::string, std::string>* out);

}  // namespace kiln
