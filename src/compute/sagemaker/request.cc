#include "compute/sagemaker/request.h"

namespace kiln {

nlohmann::json BuildCreateTrainingJob(const JobSpec& spec, const std::string& job_id, const std::string& token,
                                      const SageMakerTarget& target) {
  using nlohmann::json;
  json entry = json::array({"/usr/local/bin/kiln-entrypoint", "--"});
  json args = json::array();
  for (const auto& c : spec.command) args.push_back(c);
  json req = {
      {"TrainingJobName", spec.name},
      {"AlgorithmSpecification",
       {{"TrainingImage", target.image_uri},
        {"TrainingInputMode", "File"},
        {"ContainerEntrypoint", entry},
        {"ContainerArguments", args}}},
      {"RoleArn", target.role_arn},
      {"OutputDataConfig", {{"S3OutputPath", target.s3_output_path}}},
      {"ResourceConfig",
       {{"InstanceType", spec.instance_type},
        {"InstanceCount", spec.instance_count},
        {"VolumeSizeInGB", target.volume_size_gb}}},
      {"StoppingCondition", {{"MaxRuntimeInSeconds", spec.max_runtime_seconds}}},
      // A pointer, not the payload: hyperparameters, environment and secrets are
      // fetched by kiln-entrypoint from kilnd at start.
      {"Environment", {{"KILN_API_URL", target.runtime_url}, {"KILN_TOKEN", token}, {"KILN_JOB_ID", job_id}}},
  };
  if (spec.retry_attempts > 0) req["RetryStrategy"] = {{"MaximumRetryAttempts", spec.retry_attempts}};
  json tags = json::array();
  for (const auto& [k, v] : spec.tags) tags.push_back({{"Key", k}, {"Value", v}});
  tags.push_back({{"Key", "kiln:job-id"}, {"Value", job_id}});
  if (tags.size() <= 50) req["Tags"] = tags;
  return req;
}

}  // namespace kiln
