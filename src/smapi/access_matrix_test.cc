// The SageMaker API's access matrix, generated from the operations it serves:
// every operation x every role (viewer, member, team-admin, admin) x the
// caller's own team / another team, plus every operation without a credential.
// Each cell runs against fresh resources of team "ads" and checks the outcome:
// allowed cells succeed; a viewer's change is 403 AccessDenied; another team's
// resource answers exactly as a missing one does; another team's lists do not
// show it. An operation served without a probe here fails the test.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "compute/fake/fake_backend.h"
#include "smapi/server.h"
#include "store/memory_store.h"

namespace kiln::smapi {
namespace {

using nlohmann::json;

json TrainingRequest(const std::string& name) {
  return {
      {"TrainingJobName", name},
      {"RoleArn", "arn:aws:iam::123456789012:role/Kiln"},
      {"AlgorithmSpecification", {{"TrainingImage", "sagemaker-scikit-learn:1.2-1"}, {"TrainingInputMode", "File"}}},
      {"OutputDataConfig", {{"S3OutputPath", "s3://models/out/"}}},
      {"ResourceConfig", {{"InstanceType", "ml.m5.large"}, {"InstanceCount", 1}, {"VolumeSizeInGB", 1}}},
      {"StoppingCondition", {{"MaxRuntimeInSeconds", 600}}}};
}

json ProcessingRequest(const std::string& name) {
  return {{"ProcessingJobName", name},
          {"RoleArn", "arn:aws:iam::123456789012:role/Kiln"},
          {"AppSpecification",
           {{"ImageUri", "sagemaker-scikit-learn:1.2-1"},
            {"ContainerEntrypoint", {"python3", "/opt/ml/processing/code/p.py"}}}},
          {"ProcessingResources",
           {{"ClusterConfig", {{"InstanceCount", 1}, {"InstanceType", "ml.m5.large"}, {"VolumeSizeInGB", 1}}}}}};
}

json TuningRequest(const std::string& name) {
  json t = TrainingRequest("unused");
  return {{"HyperParameterTuningJobName", name},
          {"HyperParameterTuningJobConfig",
           {{"Strategy", "Random"},
            {"HyperParameterTuningJobObjective", {{"Type", "Maximize"}, {"MetricName", "acc"}}},
            {"ResourceLimits", {{"MaxNumberOfTrainingJobs", 2}, {"MaxParallelTrainingJobs", 1}}},
            {"ParameterRanges",
             {{"IntegerParameterRanges", {{{"Name", "depth"}, {"MinValue", "1"}, {"MaxValue", "8"}}}}}}}},
          {"TrainingJobDefinition",
           {{"AlgorithmSpecification",
             {{"TrainingImage", "sagemaker-scikit-learn:1.2-1"},
              {"TrainingInputMode", "File"},
              {"MetricDefinitions", {{{"Name", "acc"}, {"Regex", "acc=([0-9.]+)"}}}}}},
            {"RoleArn", t["RoleArn"]},
            {"OutputDataConfig", t["OutputDataConfig"]},
            {"ResourceConfig", t["ResourceConfig"]},
            {"StoppingCondition", t["StoppingCondition"]}}}};
}

enum class Kind {
  kCreate,  // makes a resource in the caller's own team
  kRead,    // reads one named resource
  kList,    // lists: must not show another team's
  kChange,  // changes one named resource
};

// The team "ads" resources a probe works on (fresh for each cell).
struct Resources {
  std::string training, processing, tuning;
};

struct Probe {
  Kind kind;
  // The request; `missing` names resources that do not exist instead.
  std::function<json(const Resources&, const std::string& unique)> body;
};

class SageMakerAccessMatrix : public ::testing::Test {
 protected:
  SageMakerAccessMatrix()
      : store_(NewMemoryStore()),
        fake_(clock_, 3),
        timers_(clock_),
        box_(SecretBox::FromKey(std::string(32, 'k'))),
        keys_(*store_, box_, clock_) {
    ControllerOptions copts;
    copts.threading = Threading::kManual;
    copts.artifacts_dir = "/artifacts";
    ctl_ = std::make_unique<Controller>(*store_, clock_, timers_, catalog_, copts);
    fake_.SetSink(ctl_.get());
    ctl_->SetBackend(&fake_);
    EXPECT_TRUE(ctl_->Start().ok());
    tuner_ = std::make_unique<tuning::TuningService>(*store_, *ctl_, clock_, tuning::ServiceOptions{});
    ApiOptions o;
    o.ctx.catalog = &catalog_;
    o.ctx.s3 = S3Map("/var/tmp/kiln-access-matrix-s3", {});
    api_ = std::make_unique<SageMakerApi>(*ctl_, *store_, keys_, clock_, o);
    api_->SetTuning(tuner_.get());
    owner_ = *keys_.Create("ads", Role::kAdmin);
  }

  Resources Fresh(int n) {
    const std::string s = std::to_string(n);
    Resources r{"ads-train-" + s, "ads-proc-" + s, "ads-tune-" + s};
    EXPECT_EQ(api_->Dispatch("CreateTrainingJob", TrainingRequest(r.training), owner_).http_status, 200);
    EXPECT_EQ(api_->Dispatch("CreateProcessingJob", ProcessingRequest(r.processing), owner_).http_status, 200);
    auto t = api_->Dispatch("CreateHyperParameterTuningJob", TuningRequest(r.tuning), owner_);
    EXPECT_EQ(t.http_status, 200) << t.body.dump();
    return r;
  }
  std::string Arn(const std::string& type, const std::string& name) const {
    return "arn:aws:sagemaker:us-east-1:000000000000:" + type + "/" + name;
  }

  std::map<std::string, Probe> Probes() {
    auto named = [](const char* field, std::string Resources::*which) {
      return [field, which](const Resources& r, const std::string&) { return json{{field, r.*which}}; };
    };
    auto tags = [this](const Resources& r, const std::string&) {
      return json{{"ResourceArn", Arn("training-job", r.training)}, {"Tags", {{{"Key", "k"}, {"Value", "v"}}}}};
    };
    std::map<std::string, Probe> p;
    p["CreateTrainingJob"] = {Kind::kCreate, [](const Resources&, const std::string& u) { return TrainingRequest(u); }};
    p["CreateProcessingJob"] = {Kind::kCreate,
                                [](const Resources&, const std::string& u) { return ProcessingRequest(u); }};
    p["CreateHyperParameterTuningJob"] = {Kind::kCreate,
                                          [](const Resources&, const std::string& u) { return TuningRequest(u); }};
    p["DescribeTrainingJob"] = {Kind::kRead, named("TrainingJobName", &Resources::training)};
    p["DescribeProcessingJob"] = {Kind::kRead, named("ProcessingJobName", &Resources::processing)};
    p["DescribeHyperParameterTuningJob"] = {Kind::kRead, named("HyperParameterTuningJobName", &Resources::tuning)};
    p["ListTrainingJobsForHyperParameterTuningJob"] = {Kind::kRead,
                                                       named("HyperParameterTuningJobName", &Resources::tuning)};
    p["ListTags"] = {Kind::kRead, [this](const Resources& r, const std::string&) {
                       return json{{"ResourceArn", Arn("training-job", r.training)}};
                     }};
    // Lists filtered to the cell's resource: present for its team, absent for another.
    auto contains = [](std::string Resources::*which) {
      return [which](const Resources& r, const std::string&) { return json{{"NameContains", r.*which}}; };
    };
    p["ListTrainingJobs"] = {Kind::kList, contains(&Resources::training)};
    p["ListProcessingJobs"] = {Kind::kList, contains(&Resources::processing)};
    p["ListHyperParameterTuningJobs"] = {Kind::kList, contains(&Resources::tuning)};
    p["StopTrainingJob"] = {Kind::kChange, named("TrainingJobName", &Resources::training)};
    p["StopProcessingJob"] = {Kind::kChange, named("ProcessingJobName", &Resources::processing)};
    p["StopHyperParameterTuningJob"] = {Kind::kChange, named("HyperParameterTuningJobName", &Resources::tuning)};
    p["UpdateTrainingJob"] = {Kind::kChange, named("TrainingJobName", &Resources::training)};
    p["AddTags"] = {Kind::kChange, tags};
    p["DeleteTags"] = {Kind::kChange, [this](const Resources& r, const std::string&) {
                         return json{{"ResourceArn", Arn("training-job", r.training)}, {"TagKeys", {"k"}}};
                       }};
    return p;
  }

  FakeClock clock_;
  Catalog catalog_ = Catalog::Defaults();
  std::unique_ptr<Store> store_;
  FakeBackend fake_;
  ManualTimerService timers_;
  SecretBox box_;
  AccessKeys keys_;
  std::unique_ptr<Controller> ctl_;
  std::unique_ptr<tuning::TuningService> tuner_;
  std::unique_ptr<SageMakerApi> api_;
  AccessKey owner_;
};

// Replaces `from` with `to` everywhere in `s` (to compare two refusals).
std::string Swap(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

TEST_F(SageMakerAccessMatrix, EveryOperationRoleAndTeamIsDecidedAndEveryDenialHolds) {
  auto probes = Probes();
  for (const std::string& op : SageMakerApi::ServedOperations())
    ASSERT_TRUE(probes.count(op)) << op << " is served but has no access rule in this matrix";
  int cells = 0, must_deny = 0, denied = 0, n = 0;
  for (const auto& [op, probe] : probes) {
    for (Role role : {Role::kViewer, Role::kMember, Role::kTeamAdmin, Role::kAdmin}) {
      for (const char* team : {"ads", "web"}) {
        ++cells;
        const bool own = std::string(team) == "ads" || role == Role::kAdmin;
        const Resources r = Fresh(++n);
        AccessKey caller = *keys_.Create(team, role);
        const std::string unique = std::string(team) + "-new-" + std::to_string(n);
        Reply got = api_->Dispatch(op, probe.body(r, unique), caller);
        const std::string cell = op + " as " + ToString(role) + " of " + team + ": " + got.body.dump();
        const bool viewer_change =
            role == Role::kViewer && (probe.kind == Kind::kCreate || probe.kind == Kind::kChange);
        if (viewer_change) {
          ++must_deny;
          EXPECT_EQ(got.http_status, 403) << cell;
          EXPECT_EQ(got.error_type, "AccessDeniedException") << cell;
          denied += got.http_status == 403;
          continue;
        }
        if (probe.kind == Kind::kCreate) {
          EXPECT_EQ(got.http_status, 200) << cell;  // created in the caller's own team
          continue;
        }
        if (probe.kind == Kind::kList) {
          EXPECT_EQ(got.http_status, 200) << cell;
          const bool shows = got.body.dump().find(r.training) != std::string::npos ||
                             got.body.dump().find(r.processing) != std::string::npos ||
                             got.body.dump().find(r.tuning) != std::string::npos;
          if (!own) {
            ++must_deny;
            EXPECT_FALSE(shows) << cell;
            denied += !shows;
          } else {
            EXPECT_TRUE(shows) << cell;
          }
          continue;
        }
        if (own) {
          EXPECT_EQ(got.http_status, 200) << cell;
          continue;
        }
        // Another team's resource: exactly what a missing one gets.
        ++must_deny;
        const Resources none{"gone-train-" + std::to_string(n), "gone-proc-" + std::to_string(n),
                             "gone-tune-" + std::to_string(n)};
        Reply missing = api_->Dispatch(op, probe.body(none, unique), caller);
        EXPECT_GE(got.http_status, 400) << cell;
        EXPECT_EQ(got.http_status, missing.http_status) << cell;
        EXPECT_EQ(got.error_type, missing.error_type) << cell;
        std::string msg = got.body.dump();
        for (auto [a, b] : {std::pair{r.training, none.training}, std::pair{r.processing, none.processing},
                            std::pair{r.tuning, none.tuning}})
          msg = Swap(msg, a, b);
        EXPECT_EQ(msg, missing.body.dump()) << cell;
        denied += got.http_status >= 400 && got.error_type == missing.error_type;
      }
    }
  }
  // No credential: every operation, refused before anything is looked at.
  for (const auto& [op, probe] : probes) {
    ++cells;
    ++must_deny;
    SigV4Request unsigned_req;
    unsigned_req.method = "POST";
    unsigned_req.path = "/";
    unsigned_req.headers = {
        {"Host", "localhost"}, {"X-Amz-Target", "SageMaker." + op}, {"Content-Type", "application/x-amz-json-1.1"}};
    unsigned_req.body = probe.body(Fresh(++n), "anon-" + std::to_string(n)).dump();
    Reply got = api_->Handle(unsigned_req);
    EXPECT_EQ(got.http_status, 403) << op;
    EXPECT_EQ(got.error_type, "MissingAuthenticationTokenException") << op << ": " << got.body.dump();
    denied += got.http_status == 403;
  }
  printf("SageMaker access matrix: %zu operations, %d cells, %d must be denied, %d denied\n", probes.size(), cells,
         must_deny, denied);
  EXPECT_EQ(denied, must_deny);
  EXPECT_EQ(cells, static_cast<int>(probes.size()) * 9);
}

}  // namespace
}  // namespace kiln::smapi
