#pragma once
// SageMaker requests to Kiln job specs, and Kiln jobs to SageMaker responses.
// Pure: no I/O. Inputs are already validated against the service model; these
// functions add what the model cannot express (cross-field rules, SageMaker's
// documented limits, path traversal, the catalog) and say which field is wrong.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "jobs/catalog.h"
#include "jobs/model.h"
#include "metrics/aggregator.h"
#include "smapi/s3map.h"
#include "tuning/tuning.h"

namespace kiln::smapi {

struct Context {
  std::string region = "us-east-1";
  std::string account = "000000000000";
  S3Map s3;
  const Catalog* catalog = nullptr;
};

std::string Arn(const Context& c, const char* resource, const std::string& name);
// "training-job"/"processing-job" and the name, from an ARN; kInvalidArgument otherwise.
Result<std::pair<std::string, std::string>> ParseArn(const std::string& arn);

Result<JobSpec> TrainingSpec(const nlohmann::json& req, const Context& c, const std::string& team);
Result<JobSpec> ProcessingSpec(const nlohmann::json& req, const Context& c, const std::string& team);

// CreateHyperParameterTuningJob -> a tuning spec whose trial template is the
// translated TrainingJobDefinition.
Result<tuning::TuningSpec> TuningSpecFromRequest(const nlohmann::json& req, const Context& c, const std::string& team);
nlohmann::json DescribeTuningJob(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials,
                                 const Context& c);
nlohmann::json TuningJobSummary(const tuning::TuningJob& job, const std::vector<tuning::TrialView>& trials,
                                const Context& c);
nlohmann::json TrialSummary(const tuning::TuningJob& job, const tuning::TrialView& t, const Context& c);

// Latest value of each metric definition's series, for FinalMetricDataList.
nlohmann::json FinalMetrics(const Job& job, const std::vector<MetricPoint>& points);

nlohmann::json DescribeTrainingJob(const Job& job, const Context& c, const std::vector<MetricPoint>& points);
nlohmann::json TrainingJobSummary(const Job& job, const Context& c);
// WarmPoolStatus {Status, ResourceRetainedBillableTimeInSeconds, ReusedByJob},
// or null for a job without a warm pool.
nlohmann::json WarmPoolStatusOf(const Job& job);
nlohmann::json DescribeProcessingJob(const Job& job, const Context& c);
nlohmann::json ProcessingJobSummary(const Job& job, const Context& c);

// SageMaker's TrainingJobStatus/ProcessingJobStatus for a Kiln status.
const char* SageMakerStatus(JobStatus s);
std::optional<JobStatus> ParseSageMakerStatus(const std::string& s);

}  // namespace kiln::smapi
