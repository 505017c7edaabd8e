// Pools: the config's errors name their field; the router sends each instance
// type to its pool's backend and each handle back to the backend that made it.
#include "compute/pools/pool_router.h"

#include <gtest/gtest.h>

#include "compute/fake/fake_backend.h"

namespace kiln {
namespace {

using nlohmann::json;

TEST(ParsePools, NoPoolsIsOneDefaultPoolOnTheBackendFlag) {
  auto pools = ParsePools(json(), "local", Catalog::Defaults());
  ASSERT_TRUE(pools.ok());
  ASSERT_EQ(pools->size(), 1u);
  EXPECT_EQ((*pools)[0].name, "default");
  EXPECT_EQ((*pools)[0].backend, "local");
}

TEST(ParsePools, ErrorsNameTheField) {
  const Catalog c = Catalog::Defaults();
  auto field = [&](const json& j) { return ParsePools(j, "local", c).status().field(); };
  EXPECT_EQ(field(json::object()), "pools");
  EXPECT_EQ(field(json::array({json{{"backend", "slurm"}}})), "pools[0].name");
  EXPECT_EQ(field(json::array({json{{"name", "a b"}}})), "pools[0].name");
  EXPECT_EQ(field(json::array({json{{"name", "a"}, {"backend", "k8s"}}})), "pools[0].backend");
  EXPECT_EQ(field(json::array({json{{"name", "a"}, {"instance_types", {"ml.nope"}}}})), "pools[0].instance_types");
  EXPECT_EQ(field(json::array({json{{"name", "a"}, {"instance_types", {"ml.m5.large"}}},
                               json{{"name", "b"}, {"instance_types", {"ml.m5.large"}}}})),
            "pools[1].instance_types");
  EXPECT_EQ(field(json::array({json{{"name", "a"}}, json{{"name", "a"}, {"instance_types", {"ml.m5.large"}}}})),
            "pools[1].name");
  EXPECT_EQ(field(json::array({json{{"name", "a"}}, json{{"name", "b"}}})), "pools");
  EXPECT_EQ(field(json::array({json{{"name", "a"}, {"backend", "slurm"}, {"slurm", 3}}})), "pools[0].slurm");
}

TEST(ParsePools, TypedPoolsGetAnImplicitDefault) {
  auto pools = ParsePools(json::array({json{{"name", "hpc"},
                                            {"backend", "slurm"},
                                            {"instance_types", {"ml.m5.large"}},
                                            {"slurm", {{"partition", "gpu"}}}}}),
                          "local", Catalog::Defaults());
  ASSERT_TRUE(pools.ok()) << pools.status().ToString();
  ASSERT_EQ(pools->size(), 2u);
  EXPECT_EQ((*pools)[0].settings["partition"], "gpu");
  EXPECT_EQ((*pools)[1].name, "default");
  EXPECT_TRUE((*pools)[1].instance_types.empty());
}

class CountingSink : public EventSink {
 public:
  Status Post(Event) override { return Status::Ok(); }
};

TEST(PoolRouter, RoutesByInstanceTypeAndHandle) {
  FakeClock clock(1000);
  auto a = std::make_unique<FakeBackend>(clock, 1), b = std::make_unique<FakeBackend>(clock, 2);
  FakeBackend* local = a.get();
  FakeBackend* hpc = b.get();
  std::vector<PoolRouter::Pool> pools;
  pools.push_back({{"default", "local", {}, json::object()}, std::move(a)});
  pools.push_back({{"hpc", "slurm", {"ml.p3.2xlarge"}, json::object()}, std::move(b)});
  PoolRouter router(std::move(pools));

  LaunchRequest on_local, on_hpc;
  on_local.instance_id = "j1.1.0";
  on_local.job_id = "j1";
  on_local.type.name = "ml.m5.large";
  on_hpc.instance_id = "j2.1.0";
  on_hpc.job_id = "j2";
  on_hpc.type.name = "ml.p3.2xlarge";
  auto h1 = router.Launch(on_local);
  auto h2 = router.Launch(on_hpc);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(h1->rfind("pool:", 0), std::string::npos) << "the default pool's handles stay as they were";
  EXPECT_EQ(h2->rfind("pool:hpc:", 0), 0u) << *h2;
  EXPECT_EQ(local->instances().count("j1.1.0"), 1u);
  EXPECT_EQ(hpc->instances().count("j2.1.0"), 1u);
  EXPECT_EQ(local->instances().count("j2.1.0"), 0u);

  // A restarted kilnd knows nothing but the handle.
  std::vector<PoolRouter::Pool> again;
  again.push_back({{"default", "local", {}, json::object()}, std::make_unique<FakeBackend>(clock, 3)});
  auto fresh_hpc = std::make_unique<FakeBackend>(clock, 4);
  FakeBackend* hpc2 = fresh_hpc.get();
  again.push_back({{"hpc", "slurm", {"ml.p3.2xlarge"}, json::object()}, std::move(fresh_hpc)});
  PoolRouter restarted(std::move(again));
  EXPECT_EQ(restarted.Recover("j2.1.0", *h2).code(), Code::kNotFound) << "asked the hpc pool, which never saw it";
  EXPECT_TRUE(hpc2->instances().empty());
  EXPECT_EQ(restarted.Pools().size(), 2u);
  EXPECT_TRUE(restarted.Pools()[0].is_default);
  EXPECT_EQ(restarted.Find("hpc"), hpc2);
  EXPECT_EQ(restarted.Find("nope"), nullptr);
}

}  // namespace
}  // namespace kiln
