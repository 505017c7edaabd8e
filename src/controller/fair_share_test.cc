// FairShare on its own: quotas with their reasons, weighted fair share across
// teams, priority and age within a team, the quota config's errors, and the
// order a large queue drains in.
#include "controller/fair_share.h"

#include <gtest/gtest.h>

#include <map>

namespace kiln {
namespace {

Usage OneInstance(double vcpus = 2, int64_t memory_mib = 4096) {
  Usage u;
  u.instances = 1;
  u.vcpus = vcpus;
  u.memory_mib = memory_mib;
  return u;
}

Waiter W(const std::string& id, const std::string& team, int priority = 0, TimeMs created = 0,
         Usage need = OneInstance()) {
  return Waiter{id, "j-" + id, team, priority, created, need};
}

TEST(FairShare, AQuotaAdmitsUpToItsLimitAndSaysWhichLimitAndWhere) {
  QuotaConfig cfg;
  cfg.teams["ads"].instances = 2;
  cfg.teams["ads"].vcpus = 3;
  FairShare fs(cfg);
  EXPECT_EQ(fs.OverQuota(W("a1", "ads")), "");
  fs.Charge("a1", "ads", OneInstance());
  EXPECT_EQ(fs.OverQuota(W("a2", "ads")),
            "team quota: team ads uses 2 of its 3 vCPUs and this needs 2 more (quotas.teams.ads.vcpus)");
  EXPECT_EQ(fs.OverQuota(W("a2", "ads", 0, 0, OneInstance(1))), "");
  fs.Charge("a2", "ads", OneInstance(1));
  EXPECT_EQ(fs.OverQuota(W("a3", "ads", 0, 0, OneInstance(0))),
            "team quota: team ads uses 2 of its 2 instances and this needs 1 more (quotas.teams.ads.instances)");
  // Another team has no quota (the default is none).
  EXPECT_EQ(fs.OverQuota(W("w1", "web")), "");
  // Charges are idempotent; releases free exactly what was charged.
  fs.Charge("a1", "ads", OneInstance());
  EXPECT_EQ(fs.UsageOf("ads").instances, 2);
  fs.Release("a1");
  fs.Release("a1");
  EXPECT_EQ(fs.UsageOf("ads").instances, 1);
  EXPECT_DOUBLE_EQ(fs.UsageOf("ads").vcpus, 1);
  EXPECT_EQ(fs.OverQuota(W("a3", "ads")), "");
}

TEST(FairShare, TrialsAndNotebooksHaveQuotasOfTheirOwn) {
  QuotaConfig cfg;
  cfg.defaults.trials = 1;
  FairShare fs(cfg);
  Usage trial = OneInstance();
  trial.trials = 1;
  fs.Charge("t1", "ads", trial);
  EXPECT_NE(fs.OverQuota(W("t2", "ads", 0, 0, trial)).find("running tuning trials"), std::string::npos);
  EXPECT_EQ(fs.OverQuota(W("plain", "ads")), "");  // not a trial
}

TEST(FairShare, TeamsTakeTurnsByWeightedShareAndWithinATeamByPriorityThenAge) {
  QuotaConfig cfg;
  cfg.teams["big"].weight = 2;
  FairShare fs(cfg);
  for (int i = 0; i < 6; ++i) fs.Add(W("big" + std::to_string(i), "big", 0, 100 + i));
  for (int i = 0; i < 6; ++i) fs.Add(W("small" + std::to_string(i), "small", 0, 100 + i));
  fs.Add(W("small-urgent", "small", 5, 999));  // newest, but first within its team
  std::vector<std::string> order;
  while (auto w = fs.PopNext()) {
    order.push_back(w->instance_id);
    fs.Charge(w->instance_id, w->team, w->need);
    fs.Served(w->team);
    if (order.size() == 6) break;
  }
  // Shares (vCPUs / weight): big starts (name order on a tie), then small,
  // then big gets two for each of small's since its weight is 2.
  EXPECT_EQ(order, (std::vector<std::string>{"big0", "small-urgent", "big1", "small0", "big2", "big3"}));
  EXPECT_EQ(fs.UsageOf("big").instances, 4);
  EXPECT_EQ(fs.UsageOf("small").instances, 2);
  EXPECT_EQ(fs.waiting(), 7u);
}

TEST(FairShare, ATeamAtItsQuotaIsSkippedWithoutItsSmallerJobsJumpingAhead) {
  QuotaConfig cfg;
  cfg.teams["ads"].vcpus = 4;
  FairShare fs(cfg);
  fs.Charge("running", "ads", OneInstance(2));
  fs.Add(W("ads-big", "ads", 1, 1, OneInstance(4)));    // over: 2 + 4 > 4
  fs.Add(W("ads-small", "ads", 0, 2, OneInstance(1)));  // would fit, but comes after ads-big
  fs.Add(W("web-1", "web", 0, 3));
  auto next = fs.PopNext();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->instance_id, "web-1");
  EXPECT_FALSE(fs.PopNext());  // ads waits for its quota, in its order
  fs.Release("running");
  next = fs.PopNext();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->instance_id, "ads-big");
}

TEST(FairShare, RemoveTakesAWaiterOutAndAddReplacesIt) {
  FairShare fs;
  fs.Add(W("x", "ads", 0, 5));
  fs.Add(W("x", "ads", 9, 5));  // replaced, not doubled
  EXPECT_EQ(fs.waiting(), 1u);
  EXPECT_TRUE(fs.Waiting("x"));
  EXPECT_TRUE(fs.Remove("x"));
  EXPECT_FALSE(fs.Remove("x"));
  EXPECT_FALSE(fs.PopNext());
}

TEST(FairShare, TenThousandWaitersOfAHundredTeamsDrainInFairShareOrder) {
  FairShare fs;
  for (int i = 0; i < 10000; ++i) {
    const std::string team = "team" + std::to_string(i % 100);
    fs.Add(W("i" + std::to_string(i), team, 0, i));
  }
  // The first 100 launches go one to each team; the next 100 again one to each.
  std::map<std::string, int> per_team;
  for (int n = 0; n < 200; ++n) {
    auto w = fs.PopNext();
    ASSERT_TRUE(w);
    fs.Charge(w->instance_id, w->team, w->need);
    fs.Served(w->team);
    ++per_team[w->team];
    if (n == 99) {
      EXPECT_EQ(per_team.size(), 100u);
      for (const auto& [t, c] : per_team) EXPECT_EQ(c, 1) << t;
    }
  }
  for (const auto& [t, c] : per_team) EXPECT_EQ(c, 2) << t;
  EXPECT_EQ(fs.waiting(), 9800u);
}

TEST(QuotaConfig, ParsesDefaultsAndTeamsAndNamesTheBadField) {
  auto c = QuotaConfigFromJson(nlohmann::json::parse(
      R"({"default": {"instances": 8, "memory_gib": 64}, "teams": {"ads": {"vcpus": 16, "weight": 3}}})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->For("web").instances, 8);
  EXPECT_EQ(c->For("ads").instances, 8);  // inherited from the default
  EXPECT_EQ(c->For("ads").memory_mib, 64 * 1024);
  EXPECT_DOUBLE_EQ(c->For("ads").vcpus, 16);
  EXPECT_DOUBLE_EQ(c->For("ads").weight, 3);
  EXPECT_DOUBLE_EQ(c->For("web").vcpus, -1);  // none
  struct Bad {
    const char* json;
    const char* field;
  };
  for (const Bad& b :
       {Bad{R"({"teams": {"ads": {"weight": 0}}})", "quotas.teams.ads.weight"},
        Bad{R"({"teams": {"ads": {"instances": -1}}})", "quotas.teams.ads.instances"},
        Bad{R"({"teams": {"ads": {"cpus": 4}}})", "quotas.teams.ads.cpus"},
        Bad{R"({"default": {"gpus": "2"}})", "quotas.default.gpus"}, Bad{R"({"teams": []})", "quotas.teams"},
        Bad{R"({"team": {}})", "quotas.team"}, Bad{R"([1])", "quotas"}}) {
    auto r = QuotaConfigFromJson(nlohmann::json::parse(b.json));
    ASSERT_FALSE(r.ok()) << b.json;
    EXPECT_EQ(r.status().field(), b.field) << b.json << ": " << r.status().ToString();
  }
}

}  // namespace
}  // namespace kiln
