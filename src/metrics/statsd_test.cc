#include "metrics/statsd.h"

#include <gtest/gtest.h>

#include "metrics/aggregator.h"

namespace kiln {
namespace {

TEST(Statsd, ParsesEachType) {
  StatsdSample s;
  ASSERT_EQ(ParseStatsdLine("gorets:1|c", &s), StatsdError::kOk);
  EXPECT_EQ(s.name, "gorets");
  EXPECT_EQ(s.kind, MetricKind::kCounter);
  EXPECT_EQ(s.value, 1);
  ASSERT_EQ(ParseStatsdLine("glork:320|ms|@0.1", &s), StatsdError::kOk);
  EXPECT_EQ(s.kind, MetricKind::kTimer);
  EXPECT_DOUBLE_EQ(s.sample_rate, 0.1);
  ASSERT_EQ(ParseStatsdLine("validation:accuracy:0.5|g", &s), StatsdError::kOk);  // SageMaker metric names
  EXPECT_EQ(s.name, "validation:accuracy");
  ASSERT_EQ(ParseStatsdLine("gaugor:-10|g", &s), StatsdError::kOk);
  EXPECT_TRUE(s.relative);
  EXPECT_EQ(s.value, -10);
  ASSERT_EQ(ParseStatsdLine("gaugor:+4.5|g", &s), StatsdError::kOk);
  EXPECT_TRUE(s.relative);
  EXPECT_EQ(s.value, 4.5);
  ASSERT_EQ(ParseStatsdLine("uniques:765|s", &s), StatsdError::kOk);
  EXPECT_EQ(s.member, "765");
  ASSERT_EQ(ParseStatsdLine("page.views:1|h|#env:prod,canary|c:abc|T1656581400", &s), StatsdError::kOk);
  EXPECT_EQ(s.kind, MetricKind::kHistogram);
  ASSERT_EQ(s.tags.size(), 2u);
  EXPECT_EQ(s.tags[0], (std::pair<std::string, std::string>{"env", "prod"}));
  EXPECT_EQ(s.tags[1], (std::pair<std::string, std::string>{"canary", ""}));
  ASSERT_EQ(ParseStatsdLine("lat:2|d|@0.5|#a:b", &s), StatsdError::kOk);
  EXPECT_EQ(s.kind, MetricKind::kHistogram);
}

TEST(Statsd, RefusesBadLines) {
  StatsdSample s;
  struct Case {
    std::string line;
    StatsdError want;
  };
  std::vector<Case> cases = {
      {"", StatsdError::kEmpty},
      {"novalue", StatsdError::kNoValue},
      {"x|c", StatsdError::kNoValue},
      {"x:1", StatsdError::kNoType},
      {"x:1|q", StatsdError::kBadType},
      {"x:abc|c", StatsdError::kBadValue},
      {"x:|c", StatsdError::kBadValue},
      {"x:nan|g", StatsdError::kBadValue},
      {"x:1|c|@0", StatsdError::kBadSampleRate},
      {"x:1|c|@1.5", StatsdError::kBadSampleRate},
      {":1|c", StatsdError::kBadName},
      {"x\xff:1|c", StatsdError::kNotUtf8},
      {std::string(kMaxStatsdLine + 1, 'a'), StatsdError::kTooLong},
  };
  for (const auto& c : cases) EXPECT_EQ(ParseStatsdLine(c.line, &s), c.want) << c.line.substr(0, 40);
}

TEST(Statsd, PacketKeepsGoodLinesAroundBadOnes) {
  int good = 0, bad = 0;
  ParseStatsdPacket(
      "a:1|c\nbroken\nb:2|g\r\n\nc:x|ms", [&](const StatsdSample&) { ++good; }, [&](StatsdError) { ++bad; });
  EXPECT_EQ(good, 2);
  EXPECT_EQ(bad, 2);
}

TEST(Aggregator, CountersGaugesTimersSets) {
  Aggregator a;
  StatsdSample s;
  std::vector<std::pair<std::string, std::string>> attr = {{"job_id", "j-1"}, {"team", "risk"}};
  for (const char* line : {"hits:1|c", "hits:2|c|@0.5", "temp:10|g", "temp:+5|g", "u:a|s", "u:b|s", "u:a|s"}) {
    ASSERT_EQ(ParseStatsdLine(line, &s), StatsdError::kOk);
    a.Add("j-1", attr, s);
  }
  for (int i = 1; i <= 100; ++i) {
    ASSERT_EQ(ParseStatsdLine("lat:" + std::to_string(i) + "|ms", &s), StatsdError::kOk);
    a.Add("j-1", attr, s);
  }
  auto pts = a.Flush(1000);
  std::map<std::string, double> got;
  for (auto& p : pts) {
    got[p.name + "." + p.stat] = p.value;
    EXPECT_EQ(p.job_id, "j-1");
    EXPECT_EQ(p.tags, "job_id:j-1,team:risk");
  }
  EXPECT_EQ(got["hits.count"], 5);  // 1 + 2/0.5
  EXPECT_EQ(got["temp.value"], 15);
  EXPECT_EQ(got["u.unique"], 2);
  EXPECT_EQ(got["lat.count"], 100);
  EXPECT_EQ(got["lat.p50"], 50);
  EXPECT_EQ(got["lat.p90"], 90);
  EXPECT_EQ(got["lat.p99"], 99);
  EXPECT_EQ(got["lat.min"], 1);
  EXPECT_EQ(got["lat.max"], 100);
  // After a flush nothing idle is emitted again: counters reset, timers and sets
  // empty, and a gauge that was not set keeps its value without a new point.
  EXPECT_TRUE(a.Flush(2000).empty());
  // A relative update starts from the kept value.
  StatsdSample rel;
  ASSERT_EQ(ParseStatsdLine("temp:+5|g", &rel), StatsdError::kOk);
  a.Add("j-1", attr, rel);
  auto again = a.Flush(3000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].name, "temp");
  EXPECT_EQ(again[0].value, 20);
}

TEST(Aggregator, AttributionOverridesSelfReportedJobTag) {
  Aggregator a;
  StatsdSample s;
  ASSERT_EQ(ParseStatsdLine("x:1|c|#job_id:forged,env:dev", &s), StatsdError::kOk);
  a.Add("j-real", {{"job_id", "j-real"}}, s);
  auto pts = a.Flush(1);
  ASSERT_EQ(pts.size(), 1u);
  EXPECT_EQ(pts[0].tags, "env:dev,job_id:j-real");
}

TEST(Aggregator, SeriesPerJobAreCappedAndOtherJobsAreNotAffected) {
  Aggregator a;
  a.set_max_series_per_job(3);
  int kept = 0;
  for (int i = 0; i < 10; ++i) {  // a request id in a tag: a new series per sample
    StatsdSample s;
    ASSERT_EQ(ParseStatsdLine("req:1|c|#id:" + std::to_string(i), &s), StatsdError::kOk);
    kept += a.Add("j-noisy", {{"job_id", "j-noisy"}}, s) ? 1 : 0;
  }
  EXPECT_EQ(kept, 3);
  StatsdSample again;
  ASSERT_EQ(ParseStatsdLine("req:1|c|#id:0", &again), StatsdError::kOk);
  EXPECT_TRUE(a.Add("j-noisy", {{"job_id", "j-noisy"}}, again));  // an existing series still counts
  StatsdSample other;
  ASSERT_EQ(ParseStatsdLine("loss:1|g", &other), StatsdError::kOk);
  EXPECT_TRUE(a.Add("j-quiet", {{"job_id", "j-quiet"}}, other));
  EXPECT_EQ(a.series(), 4u);
  a.DropJob("j-noisy");
  EXPECT_TRUE(a.Add("j-noisy", {{"job_id", "j-noisy"}}, other));  // the count went with the job
}

}  // namespace
}  // namespace kiln
