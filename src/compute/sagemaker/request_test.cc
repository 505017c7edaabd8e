#include "compute/sagemaker/request.h"

#include <gtest/gtest.h>

namespace kiln {
TEST(SageMakerRequest, CarriesOnlyAPointer) {
  JobSpec s;
  s.name = "train-big";
  s.command = {"python3", "train.py"};
  s.instance_type = "ml.m5.xlarge";
  s.instance_count = 2;
  s.retry_attempts = 2;
  for (int i = 0; i < 10000; ++i) s.hyperparameters["k" + std::to_string(i)] = std::string(500, 'v');
  for (int i = 0; i < 500; ++i) s.environment["E" + std::to_string(i)] = "x";
  s.tags = {{"team", "risk"}};
  SageMakerTarget t{"arn:aws:iam::123456789012:role/kiln", "s3://b/p", "https://kilnd.example:8470",
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1", 30};
  auto r = BuildCreateTrainingJob(s, "j-1", "j-1.1.0.abc", t);
  EXPECT_EQ(r["Environment"].size(), 3u);
  EXPECT_FALSE(r.contains("HyperParameters"));
  EXPECT_EQ(r["Environment"]["KILN_API_URL"], "https://kilnd.example:8470");
  EXPECT_EQ(r["ResourceConfig"]["InstanceCount"], 2);
  EXPECT_EQ(r["RetryStrategy"]["MaximumRetryAttempts"], 2);
  EXPECT_EQ(r["AlgorithmSpecification"]["ContainerArguments"][1], "train.py");
  EXPECT_LT(r.dump().size(), 4096u);
}
}  // namespace kiln
