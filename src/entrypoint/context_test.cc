#include "entrypoint/context.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace kiln {
namespace {

struct Case {
  std::map<std::string, std::string> env;
  std::set<std::string> files;
  RuntimeContext want;
  bool error = false;
};

TEST(Context, DetectsFromMarkers) {
  std::vector<Case> cases = {
      {{}, {}, RuntimeContext::kDev},
      {{{"KILN_API_URL", "http://x"}}, {}, RuntimeContext::kKilnLocal},
      {{{"KILN_API_URL", "http://x"}, {"SLURM_JOB_ID", "7"}}, {}, RuntimeContext::kKilnSlurm},
      {{{"SLURM_JOB_ID", "7"}}, {}, RuntimeContext::kDev},
      {{{"TRAINING_JOB_NAME", "t"}, {"KILN_API_URL", "http://x"}}, {}, RuntimeContext::kSageMaker},
      {{}, {"/opt/ml/config/processingjobconfig.json"}, RuntimeContext::kSageMaker},
      {{{"KUBERNETES_SERVICE_HOST", "10.0.0.1"}}, {}, RuntimeContext::kKubernetes},
      {{}, {"/var/run/secrets/kubernetes.io/serviceaccount/token"}, RuntimeContext::kKubernetes},
      {{{"KILN_RUNTIME", "kubernetes"}, {"TRAINING_JOB_NAME", "t"}}, {}, RuntimeContext::kKubernetes},
      {{{"KILN_RUNTIME", "dev"}, {"KILN_API_URL", "http://x"}}, {}, RuntimeContext::kDev},
      {{{"KILN_RUNTIME", "mars"}}, {}, RuntimeContext::kDev, true},
  };
  for (const auto& c : cases) {
    bool err = false;
    auto d = DetectContext(
        [&](const char* k) -> const char* {
          auto it = c.env.find(k);
          return it == c.env.end() ? nullptr : it->second.c_str();
        },
        [&](const std::string& p) { return c.files.count(p) > 0; }, &err);
    EXPECT_EQ(d.context, c.want) << d.marker;
    EXPECT_EQ(err, c.error) << d.marker;
    EXPECT_FALSE(d.marker.empty());
  }
}

TEST(Context, Plans) {
  EXPECT_TRUE(PlanFor(RuntimeContext::kKilnLocal, true).fetch_runtime);
  EXPECT_TRUE(PlanFor(RuntimeContext::kKilnLocal, true).upload_model);
  EXPECT_FALSE(PlanFor(RuntimeContext::kSageMaker, true).upload_model);
  EXPECT_FALSE(PlanFor(RuntimeContext::kSageMaker, true).write_contract);
  EXPECT_TRUE(PlanFor(RuntimeContext::kSageMaker, true).fetch_runtime);
  EXPECT_FALSE(PlanFor(RuntimeContext::kKubernetes, false).fetch_runtime);
  auto dev = PlanFor(RuntimeContext::kDev, true);
  EXPECT_FALSE(dev.fetch_runtime || dev.write_contract || dev.report_phases || dev.upload_model);
}

}  // namespace
}  // namespace kiln
