#include <gtest/gtest.h>

#include "smapi/s3map.h"
#include "smapi/service_model.h"
#include "smapi/translate.h"

namespace kiln::smapi {
namespace {

using nlohmann::json;

json TrainingRequest() {
  return json::parse(R"JSON({
    "TrainingJobName": "sk-1",
    "RoleArn": "arn:aws:iam::123456789012:role/Kiln",
    "AlgorithmSpecification": {"TrainingImage": "sagemaker-scikit-learn:1.2-1", "TrainingInputMode": "File",
      "MetricDefinitions": [{"Name": "acc", "Regex": "acc=([0-9.]+)"}]},
    "HyperParameters": {"n_estimators": "50", "sagemaker_program": "\"train.py\"",
                        "sagemaker_submit_directory": "\"s3://code/sk/sourcedir.tar.gz\""},
    "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
      "S3Uri": "s3://data/iris/train", "S3DataDistributionType": "ShardedByS3Key"}}}],
    "OutputDataConfig": {"S3OutputPath": "s3://models/out/"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
    "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    "CheckpointConfig": {"S3Uri": "s3://ckpt/sk-1"},
    "Tags": [{"Key": "project", "Value": "iris"}]
  })JSON");
}

Context Ctx(const Catalog& cat) {
  Context c;
  c.s3 = S3Map("/data/s3", {{"models", "/srv/models"}});
  c.catalog = &cat;
  return c;
}

TEST(ServiceModel, AcceptsAValidRequest) {
  EXPECT_TRUE(ServiceModel::SageMaker().ValidateInput("CreateTrainingJob", TrainingRequest()).ok());
}

TEST(ServiceModel, NamesTheFieldAndTheConstraint) {
  const auto& m = ServiceModel::SageMaker();
  auto check = [&](json req, const std::string& field, const std::string& text) {
    Status st = m.ValidateInput("CreateTrainingJob", req);
    EXPECT_FALSE(st.ok()) << field;
    EXPECT_EQ(st.field(), field);
    EXPECT_NE(st.message().find(text), std::string::npos) << st.message();
  };
  json r = TrainingRequest();
  r["TrainingJobName"] = "bad_name!";
  check(r, "TrainingJobName", "regular expression pattern");
  r = TrainingRequest();
  r["TrainingJobName"] = std::string(64, 'a');
  check(r, "TrainingJobName", "less than or equal to 63");
  r = TrainingRequest();
  r.erase("RoleArn");
  check(r, "RoleArn", "must not be null");
  r = TrainingRequest();
  r["ResourceConfig"]["InstanceCount"] = "2";
  check(r, "ResourceConfig.InstanceCount", "must be of type integer");
  r = TrainingRequest();
  for (int i = 0; i < 101; ++i) r["HyperParameters"]["h" + std::to_string(i)] = "1";
  check(r, "HyperParameters", "at most 100");
  r = TrainingRequest();
  r["HyperParameters"]["big"] = std::string(2501, 'x');
  check(r, "HyperParameters.big", "less than or equal to 2500");
  r = TrainingRequest();
  for (int i = 0; i < 21; ++i) r["InputDataConfig"].push_back(r["InputDataConfig"][0]);
  check(r, "InputDataConfig", "less than or equal to 20");
  r = TrainingRequest();
  r["AlgorithmSpecification"]["TrainingInputMode"] = "Stream";
  check(r, "AlgorithmSpecification.TrainingInputMode", "enum value set");
  r = TrainingRequest();
  r["Surprise"] = 1;
  check(r, "Surprise", "Unknown parameter");
  r = TrainingRequest();
  r["InputDataConfig"][0]["ChannelName"] = "a/b";
  check(r, "InputDataConfig[0].ChannelName", "regular expression");
}

TEST(Translate, TrainingRequestToSpec) {
  Catalog cat = Catalog::Defaults();
  auto s = TrainingSpec(TrainingRequest(), Ctx(cat), "ads");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->kind, JobKind::kTraining);
  EXPECT_EQ(s->team, "ads");
  EXPECT_EQ(s->command, (std::vector<std::string>{"train"}));
  EXPECT_EQ(s->inputs.at("train"), "/data/s3/data/iris/train");
  EXPECT_EQ(s->sharded_channels, (std::vector<std::string>{"train"}));
  EXPECT_EQ(s->output, "/srv/models/out");
  EXPECT_EQ(s->checkpoint_dir, "/data/s3/ckpt/sk-1");
  EXPECT_EQ(s->code_archive, "/data/s3/code/sk/sourcedir.tar.gz");
  EXPECT_EQ(s->instance_count, 2);
  EXPECT_EQ(s->volume_gb, 1);  // ResourceConfig.VolumeSizeInGB: the instance's disk quota
  EXPECT_FALSE(s->network_isolation);
  json isolated = TrainingRequest();
  isolated["EnableNetworkIsolation"] = true;
  auto iso = TrainingSpec(isolated, Ctx(cat), "ads");
  ASSERT_TRUE(iso.ok()) << iso.status().ToString();
  EXPECT_TRUE(iso->network_isolation);
  EXPECT_TRUE(DecodeStoredSpec(iso->ToJson())->network_isolation);  // kept with the stored job
  EXPECT_EQ(s->max_runtime_seconds, 600);
  EXPECT_EQ(s->tags.at("project"), "iris");
  EXPECT_TRUE(s->pack_output_data);
  ASSERT_EQ(s->metric_definitions.size(), 1u);
  // The stored spec round-trips through the native parser.
  auto again = ParseSpec(s->ToJson(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->sagemaker, s->sagemaker);
  EXPECT_EQ(again->checkpoint_dir, s->checkpoint_dir);
}

TEST(Translate, RefusesWhatKilnCannotDo) {
  Catalog cat = Catalog::Defaults();
  auto refuse = [&](json r, const std::string& field) {
    auto s = TrainingSpec(r, Ctx(cat), "t");
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.status().field(), field) << s.status().ToString();
  };
  json r = TrainingRequest();
  r["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://data/../etc";
  refuse(r, "InputDataConfig[0].DataSource.S3DataSource.S3Uri");
  r = TrainingRequest();
  r["InputDataConfig"][0]["ChannelName"] = "..";
  refuse(r, "InputDataConfig[0].ChannelName");
  r = TrainingRequest();
  r["InputDataConfig"].push_back(r["InputDataConfig"][0]);
  refuse(r, "InputDataConfig[1].ChannelName");
  r = TrainingRequest();
  r["StoppingCondition"]["MaxRuntimeInSeconds"] = 28 * 86400 + 1;
  refuse(r, "StoppingCondition.MaxRuntimeInSeconds");
  r = TrainingRequest();
  r["ResourceConfig"]["InstanceType"] = "ml.p4d.24xlarge";
  refuse(r, "ResourceConfig.InstanceType");
  r = TrainingRequest();
  r["OutputDataConfig"]["S3OutputPath"] = "https://example.com/x";
  refuse(r, "OutputDataConfig.S3OutputPath");
  r = TrainingRequest();
  r["AlgorithmSpecification"]["MetricDefinitions"][0]["Regex"] = "no group";
  refuse(r, "AlgorithmSpecification.MetricDefinitions[0].Regex");
}

TEST(Translate, ProcessingPathsStayUnderProcessing) {
  Catalog cat = Catalog::Defaults();
  json r = json::parse(R"JSON({
    "ProcessingJobName": "score",
    "RoleArn": "arn:aws:iam::123456789012:role/Kiln",
    "AppSpecification": {"ImageUri": "host", "ContainerEntrypoint": ["python3", "/opt/ml/processing/code/score.py"]},
    "ProcessingInputs": [{"InputName": "data", "S3Input": {"S3Uri": "s3://data/x", "LocalPath": "/opt/ml/processing/input",
       "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
    "ProcessingOutputConfig": {"Outputs": [{"OutputName": "out", "S3Output": {"S3Uri": "s3://data/y",
       "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
    "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}}
  })JSON");
  ASSERT_TRUE(ServiceModel::SageMaker().ValidateInput("CreateProcessingJob", r).ok());
  auto s = ProcessingSpec(r, Ctx(cat), "t");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->volume_gb, 1);
  ASSERT_EQ(s->mounts.size(), 1u);
  EXPECT_EQ(s->mounts[0].target, "/opt/ml/processing/input");
  ASSERT_EQ(s->uploads.size(), 1u);
  EXPECT_EQ(s->uploads[0].destination, "/data/s3/data/y");
  json bad = r;
  bad["ProcessingInputs"][0]["S3Input"]["LocalPath"] = "/opt/ml/processing/../../etc";
  EXPECT_FALSE(ProcessingSpec(bad, Ctx(cat), "t").ok());
  bad = r;
  bad["ProcessingInputs"][0]["S3Input"]["LocalPath"] = "/etc";
  EXPECT_EQ(ProcessingSpec(bad, Ctx(cat), "t").status().field(), "ProcessingInputs[0].S3Input.LocalPath");
}

json TuningRequest() {
  json t = TrainingRequest();
  return {{"HyperParameterTuningJobName", "hpo-1"},
          {"HyperParameterTuningJobConfig",
           {{"Strategy", "Random"},
            {"HyperParameterTuningJobObjective", {{"Type", "Maximize"}, {"MetricName", "acc"}}},
            {"ResourceLimits", {{"MaxNumberOfTrainingJobs", 4}, {"MaxParallelTrainingJobs", 2}}},
            {"ParameterRanges",
             {{"IntegerParameterRanges", {{{"Name", "depth"}, {"MinValue", "1"}, {"MaxValue", "8"}}}}}}}},
          {"TrainingJobDefinition",
           {{"StaticHyperParameters", t["HyperParameters"]},
            {"AlgorithmSpecification", t["AlgorithmSpecification"]},
            {"RoleArn", t["RoleArn"]},
            {"InputDataConfig", t["InputDataConfig"]},
            {"OutputDataConfig", t["OutputDataConfig"]},
            {"ResourceConfig", t["ResourceConfig"]},
            {"StoppingCondition", t["StoppingCondition"]}}},
          {"Tags", {{{"Key", "project"}, {"Value", "iris"}}, {{"Key", "owner"}, {"Value", "ml"}}}}};
}

TEST(Translate, TuningRequestTagsTheTuningJobAndItsTrials) {
  Catalog cat = Catalog::Defaults();
  json req = TuningRequest();
  ASSERT_TRUE(ServiceModel::SageMaker().ValidateInput("CreateHyperParameterTuningJob", req).ok());
  auto s = TuningSpecFromRequest(req, Ctx(cat), "ads");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const std::map<std::string, std::string> want = {{"project", "iris"}, {"owner", "ml"}};
  EXPECT_EQ(s->tags, want);
  EXPECT_EQ(s->trial.tags, want);
  EXPECT_FALSE(s->sagemaker.contains("Tags"));  // the tags live in spec.tags only
  auto again = tuning::ParseTuningSpec(s->ToJson(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->tags, want);
  // No Tags: no tags.
  req.erase("Tags");
  auto bare = TuningSpecFromRequest(req, Ctx(cat), "ads");
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  EXPECT_TRUE(bare->tags.empty());
  // The aws: prefix is refused, naming the tag.
  req["Tags"] = {{{"Key", "aws:x"}, {"Value", "1"}}};
  auto bad = TuningSpecFromRequest(req, Ctx(cat), "ads");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().field(), "Tags[0].Key") << bad.status().ToString();
}

TEST(S3Map, MapsBucketsAndRefusesTraversal) {
  S3Map m("/d/s3", {{"special", "/mnt/special"}});
  EXPECT_EQ(*m.ToPath("s3://bucket/a/b.csv", "f"), "/d/s3/bucket/a/b.csv");
  EXPECT_EQ(*m.ToPath("s3://special/x/", "f"), "/mnt/special/x");
  EXPECT_EQ(*m.ToPath("s3://bucket", "f"), "/d/s3/bucket");
  for (const char* bad : {"s3://bucket/../x", "s3://bucket/a/./b", "s3://../x", "s3://Bucket/x", "file:///etc",
                          "s3://b/x", "s3://bucket/a/.."})
    EXPECT_FALSE(m.ToPath(bad, "f").ok()) << bad;
}

TEST(Translate, ArnsRoundTrip) {
  Context c;
  std::string arn = Arn(c, "training-job", "My-Job");
  auto p = ParseArn(arn);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->first, "training-job");
  EXPECT_EQ(p->second, "My-Job");
  EXPECT_FALSE(ParseArn("not-an-arn").ok());
}

}  // namespace
}  // namespace kiln::smapi
