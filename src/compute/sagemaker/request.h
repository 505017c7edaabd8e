#pragma once
// Builds the CreateTrainingJob request (botocore's SageMaker model, 2017-07-24)
// for a Kiln job. Pure.
#include <nlohmann/json.hpp>
#include <string>

#include "jobs/spec.h"

namespace kiln {

struct SageMakerTarget {
  std::string role_arn;        // execution role
  std::string s3_output_path;  // s3://bucket/prefix
  std::string runtime_url;     // kilnd as reachable from SageMaker
  std::string image_uri;       // ECR image holding kiln-entrypoint and the job's code
  int volume_size_gb = 30;
};

// `token` is the instance token the entrypoint presents; `job_id` is Kiln's id.
nlohmann::json BuildCreateTrainingJob(const JobSpec& spec, const std::string& job_id, const std::string& token,
                                      const SageMakerTarget& target);

}  // namespace kiln
