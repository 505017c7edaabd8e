// The conformance suite for Store implementations. Each case runs against every
// implementation returned by Factories().
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "jobs/state_machine.h"
#include "store/memory_store.h"
#include "store/store.h"

namespace kiln {
namespace {

Job MakeJob(const std::string& id, const std::string& name, TimeMs created, std::string team = "a") {
  Job j;
  j.id = id;
  j.spec.name = name;
  j.spec.command = {"true"};
  j.spec.tags = {{"team", team}};
  j.created_at = created;
  return j;
}

Event Created() {
  Event e;
  e.type = EventType::kJobCreated;
  e.source = "api";
  e.time = 1;
  return e;
}

// "sqlite_memory": SQLite ":memory:"; "sqlite_file": SQLite on a temporary file;
// "fake": NewMemoryStore().
class StoreConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "fake") {
      store_ = NewMemoryStore();
      return;
    }
    if (GetParam() == "sqlite_file") {
      path_ = (std::filesystem::temp_directory_path() / ("kiln-store-" + std::to_string(getpid()) + ".db")).string();
      std::filesystem::remove(path_);
    }
    auto s = OpenSqliteStore(path_.empty() ? ":memory:" : path_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s.value());
  }
  void TearDown() override {
    store_.reset();
    if (!path_.empty())
      for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  }
  std::string path_;  // sqlite_file only
  std::unique_ptr<Store> store_;
};

TEST_P(StoreConformance, CreateIsAtomicAndNamesAreUnique) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "a", 10), Created()).ok());
  Status dup = store_->CreateJob(MakeJob("j-2", "a", 11), Created());
  EXPECT_EQ(dup.code(), Code::kAlreadyExists);
  EXPECT_EQ(dup.field(), "name");
  EXPECT_EQ(store_->GetJob("j-2").status().code(), Code::kNotFound);
  // The rejected create left no event behind.
  auto ev = store_->UnappliedEvents("j-2");
  ASSERT_TRUE(ev.ok());
  EXPECT_TRUE(ev->empty());
  auto byname = store_->GetJob("a");
  ASSERT_TRUE(byname.ok());
  EXPECT_EQ(byname->id, "j-1");
}

TEST_P(StoreConformance, EventsAreSequencedAndDeduplicated) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "a", 10), Created()).ok());
  Event e;
  e.job_id = "j-1";
  e.type = EventType::kInstanceExited;
  e.dedup_key = "exit:x";
  auto r1 = store_->AppendEvent(e);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->job_seq, 2);
  EXPECT_EQ(store_->AppendEvent(e).status().code(), Code::kAlreadyExists);
  e.job_id = "nope";
  e.dedup_key.clear();
  EXPECT_EQ(store_->AppendEvent(e).status().code(), Code::kNotFound);
  auto un = store_->UnappliedEvents("j-1");
  ASSERT_TRUE(un.ok());
  ASSERT_EQ(un->size(), 2u);
  EXPECT_EQ((*un)[0].type, EventType::kJobCreated);
  EXPECT_LT((*un)[0].seq, (*un)[1].seq);
  // Nothing is visible to streams until applied.
  EXPECT_TRUE(store_->EventsAfter(0, 100)->empty());
  Job j = *store_->GetJob("j-1");
  Transition(j, (*un)[0]);
  (*un)[0].status_after = "InProgress";
  ASSERT_TRUE(store_->CommitTransition(j, {(*un)[0]}).ok());
  auto all = store_->EventsAfter(0, 100);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].status_after, "InProgress");
  EXPECT_EQ(store_->UnappliedEvents("j-1")->size(), 1u);
  auto inst = store_->ListInstances("j-1");
  ASSERT_EQ(inst->size(), 1u);
  EXPECT_EQ((*inst)[0].state, InstanceState::kLaunching);
}

TEST_P(StoreConformance, ListFiltersAndPaginates) {
  for (int i = 0; i < 25; ++i)
    ASSERT_TRUE(store_
                    ->CreateJob(MakeJob("j-" + std::to_string(100 + i), "job-" + std::to_string(i), 1000 + i / 2,
                                        i % 2 ? "odd" : "even"),
                                Created())
                    .ok());
  ListQuery q;
  q.limit = 10;
  std::vector<std::string> seen;
  for (int page = 0; page < 5; ++page) {
    auto p = store_->ListJobs(q);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    for (auto& j : p->jobs) seen.push_back(j.id);
    if (p->next_page_token.empty()) break;
    q.page_token = p->next_page_token;
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "j-124");  // newest first
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  ListQuery t;
  t.tag_key = "team";
  t.tag_value = "odd";
  t.limit = 100;
  EXPECT_EQ(store_->ListJobs(t)->jobs.size(), 12u);
  ListQuery n;
  n.name_contains = "job-2";
  EXPECT_EQ(store_->ListJobs(n)->jobs.size(), 6u);  // job-2, job-20..24
  ListQuery s;
  s.status = JobStatus::kCompleted;
  EXPECT_TRUE(store_->ListJobs(s)->jobs.empty());
  ListQuery bad;
  bad.page_token = "garbage";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, ListOrdersKindsAndTimeFilters) {
  for (int i = 0; i < 7; ++i) {
    Job j = MakeJob("j-" + std::to_string(100 + i), "n" + std::to_string((i * 3) % 7), 1000 + i);
    if (i == 6) j.spec.kind = JobKind::kProcessing;
    ASSERT_TRUE(store_->CreateJob(j, Created()).ok());
  }
  auto names = [&](ListQuery q) {
    std::vector<std::string> out;
    for (int guard = 0; guard < 20; ++guard) {
      auto p = store_->ListJobs(q);
      EXPECT_TRUE(p.ok()) << p.status().ToString();
      if (!p.ok()) break;
      for (auto& j : p->jobs) out.push_back(j.spec.name);
      if (p->next_page_token.empty()) break;
      q.page_token = p->next_page_token;
    }
    return out;
  };
  ListQuery q;
  q.limit = 2;
  q.kind = JobKind::kTraining;
  q.order = ListOrder::kNameAsc;
  EXPECT_EQ(names(q), (std::vector<std::string>{"n0", "n1", "n2", "n3", "n5", "n6"}));
  q.order = ListOrder::kOldestFirst;
  EXPECT_EQ(names(q), (std::vector<std::string>{"n0", "n3", "n6", "n2", "n5", "n1"}));
  q.kind = JobKind::kProcessing;
  EXPECT_EQ(names(q), (std::vector<std::string>{"n4"}));
  ListQuery t;
  t.created_after = 1001;
  t.created_before = 1004;
  EXPECT_EQ(names(t), (std::vector<std::string>{"n2", "n6"}));
  ListQuery p;
  p.name_prefix = "n1";
  EXPECT_EQ(names(p), (std::vector<std::string>{"n1"}));
  ListQuery bad;
  bad.order = ListOrder::kNameDesc;
  bad.page_token = "x:1";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), Code::kInvalidArgument);
}

TEST_P(StoreConformance, TagUpdatesSurviveTransitions) {
  Job j = MakeJob("j-1", "tagged", 1000);
  ASSERT_TRUE(store_->CreateJob(j, Created()).ok());
  ASSERT_TRUE(store_->UpdateTags("j-1", {{"project", "x"}, {"team", "b"}}, {}).ok());
  ASSERT_TRUE(store_->UpdateTags("j-1", {}, {"project", "absent"}).ok());
  j.status = JobStatus::kCompleted;  // the controller's copy still has the old tags
  ASSERT_TRUE(store_->CommitTransition(j, {}).ok());
  auto got = store_->GetJob("j-1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->status, JobStatus::kCompleted);
  EXPECT_EQ(got->spec.tags, (std::map<std::string, std::string>{{"team", "b"}}));
  ListQuery q;
  q.tag_key = "team";
  q.tag_value = "b";
  EXPECT_EQ(store_->ListJobs(q)->jobs.size(), 1u);
  EXPECT_EQ(store_->UpdateTags("nope", {{"a", "b"}}, {}).code(), Code::kNotFound);
}

TEST_P(StoreConformance, TuningJobs) {
  ASSERT_TRUE(store_->CreateTuningJob({"t1", "InProgress", 10, "{\"a\":1}", "{}"}).ok());
  ASSERT_TRUE(store_->CreateTuningJob({"t2", "InProgress", 20, "{}", "{}"}).ok());
  EXPECT_EQ(store_->CreateTuningJob({"t1", "InProgress", 30, "{}", "{}"}).code(), Code::kAlreadyExists);
  ASSERT_TRUE(store_->UpdateTuningJob("t1", "Completed", "{\"best\":\"x\"}").ok());
  auto t = store_->GetTuningJob("t1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->status, "Completed");
  EXPECT_EQ(t->spec, "{\"a\":1}");
  EXPECT_EQ(t->state, "{\"best\":\"x\"}");
  EXPECT_EQ(store_->UpdateTuningJob("nope", "Completed", "{}").code(), Code::kNotFound);
  auto all = store_->ListTuningJobs("", "", 10, 0);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "t2");
  EXPECT_EQ(store_->ListTuningJobs("", "Completed", 10, 0)->size(), 1u);
  EXPECT_EQ(store_->ListTuningJobs("2", "", 10, 0)->size(), 1u);
  EXPECT_EQ(store_->ListTuningJobs("", "", 10, 1)->size(), 1u);
}

TEST_P(StoreConformance, TuningTagUpdatesChangeOnlyTheSpecTags) {
  ASSERT_TRUE(store_->CreateTuningJob({"t1", "InProgress", 10, R"({"name":"t1","max_trials":3})", "{}"}).ok());
  ASSERT_TRUE(store_->UpdateTuningTags("t1", {{"project", "x"}, {"owner", "b"}}, {}).ok());
  ASSERT_TRUE(store_->UpdateTuningTags("t1", {{"owner", "c"}}, {"project", "absent"}).ok());
  ASSERT_TRUE(store_->UpdateTuningJob("t1", "Completed", R"({"reason":"done"})").ok());  // state only
  auto t = store_->GetTuningJob("t1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->status, "Completed");
  EXPECT_EQ(t->state, R"({"reason":"done"})");
  auto spec = nlohmann::json::parse(t->spec);
  EXPECT_EQ(spec["tags"], (nlohmann::json{{"owner", "c"}}));
  EXPECT_EQ(spec["name"], "t1");
  EXPECT_EQ(spec["max_trials"], 3);
  ASSERT_TRUE(store_->UpdateTuningTags("t1", {}, {"owner"}).ok());
  EXPECT_EQ(nlohmann::json::parse(store_->GetTuningJob("t1")->spec)["tags"], nlohmann::json::object());
  EXPECT_EQ(store_->UpdateTuningTags("nope", {{"a", "b"}}, {}).code(), Code::kNotFound);
}

TEST_P(StoreConformance, ApiTokensStoreHashesAndRevokeOnce) {
  ASSERT_TRUE(store_->PutApiToken({"T1", "ana", "ads", "member", "h1", 5, 0, 0}).ok());
  ASSERT_TRUE(store_->PutApiToken({"T2", "ops", "default", "admin", "h2", 6, 100, 0}).ok());
  EXPECT_EQ(store_->PutApiToken({"T1", "x", "other", "viewer", "h3", 7, 0, 0}).code(), Code::kAlreadyExists);
  auto t = store_->GetApiToken("T1");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->name, "ana");
  EXPECT_EQ(t->team, "ads");
  EXPECT_EQ(t->role, "member");
  EXPECT_EQ(t->hash, "h1");
  EXPECT_EQ(t->revoked, 0);
  EXPECT_EQ(store_->GetApiToken("T2")->expires, 100);
  EXPECT_EQ(store_->ListApiTokens("ads")->size(), 1u);
  ASSERT_EQ(store_->ListApiTokens("")->size(), 2u);
  EXPECT_EQ(store_->ListApiTokens("")->front().id, "T1");  // oldest first
  EXPECT_TRUE(store_->RevokeApiToken("T1", 50).ok());
  EXPECT_TRUE(store_->RevokeApiToken("T1", 60).ok());
  EXPECT_EQ(store_->GetApiToken("T1")->revoked, 50);  // the first revoke stands
  EXPECT_EQ(store_->RevokeApiToken("nope", 1).code(), Code::kNotFound);
  EXPECT_EQ(store_->GetApiToken("nope").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, EventRetentionPrunesOldEventsOfEndedJobsOnly) {
  // j-old ended; j-live runs. Each has its JobCreated event (time 1) and one more.
  for (const char* id : {"j-old", "j-live"}) {
    ASSERT_TRUE(store_->CreateJob(MakeJob(id, id, 10), Created()).ok());
    Event e;
    e.job_id = id;
    e.type = EventType::kInstanceExited;
    e.time = 500;
    e.dedup_key = std::string("exit:") + id;
    ASSERT_TRUE(store_->AppendEvent(e).ok());
    auto un = store_->UnappliedEvents(id);
    Job j = *store_->GetJob(id);
    j.status = std::string(id) == "j-old" ? JobStatus::kCompleted : JobStatus::kInProgress;
    ASSERT_TRUE(store_->CommitTransition(j, *un).ok());
  }
  ASSERT_EQ(store_->EventsAfter(0, 100)->size(), 4u);
  // Older than 100: only the ended job's first event.
  EXPECT_EQ(*store_->PruneEvents(100, 10), 1);
  EXPECT_EQ(*store_->PruneEvents(100, 10), 0);
  // Older than 1000, one at a time.
  EXPECT_EQ(*store_->PruneEvents(1000, 1), 1);
  EXPECT_EQ(*store_->PruneEvents(1000, 1), 0);
  EXPECT_TRUE(store_->JobEventsAfter("j-old", 0, 100)->empty());
  EXPECT_EQ(store_->JobEventsAfter("j-live", 0, 100)->size(), 2u);
  auto all = store_->EventsAfter(0, 100);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].job_id, "j-live");
  // The ended job itself stays, with its final state.
  EXPECT_EQ(store_->GetJob("j-old")->status, JobStatus::kCompleted);
}

TEST_P(StoreConformance, MetricRetentionPrunesOldPointsInBoundedBatches) {
  std::vector<MetricPoint> pts;
  for (int i = 0; i < 10; ++i) pts.push_back({"j1", "loss", "", "value", 100 + i, static_cast<double>(i)});
  pts.push_back({"j2", "acc", "", "value", 500, 1.0});
  ASSERT_TRUE(store_->AppendMetricPoints(pts).ok());
  auto first = store_->PruneMetricPoints(105, 3);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 3);
  EXPECT_EQ(*store_->PruneMetricPoints(105, 3), 2);
  EXPECT_EQ(*store_->PruneMetricPoints(105, 3), 0);
  auto left = store_->JobMetrics("j1", "");
  ASSERT_EQ(left->size(), 5u);
  EXPECT_EQ(left->front().time, 105);
  EXPECT_EQ(store_->JobMetrics("j2", "")->size(), 1u);
}

TEST_P(StoreConformance, AuditIsAppendOnlyAndFiltersByTeam) {
  auto a = store_->AppendAudit({0, 10, "T1", "ana", "ads", "POST", "/v1/jobs", "127.0.0.1", 201});
  auto b = store_->AppendAudit({0, 11, "T2", "bo", "web", "DELETE", "/v1/secrets/web/x", "10.0.0.2", 404});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_LT(*a, *b);
  auto all = store_->ListAudit(0, "", 10);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].path, "/v1/secrets/web/x");
  EXPECT_EQ((*all)[1].status, 404);
  EXPECT_EQ((*all)[1].source, "10.0.0.2");
  auto web = store_->ListAudit(0, "web", 10);
  ASSERT_EQ(web->size(), 1u);
  EXPECT_EQ(web->front().name, "bo");
  EXPECT_EQ(store_->ListAudit(*a, "", 10)->size(), 1u);
  EXPECT_EQ(store_->ListAudit(0, "", 1)->size(), 1u);
}

TEST_P(StoreConformance, AccessKeys) {
  ASSERT_TRUE(store_->PutAccessKey({"AKIA1", "ads", "team", std::string("se\0aled", 7), 5}).ok());
  ASSERT_TRUE(store_->PutAccessKey({"AKIA2", "default", "admin", "x", 6}).ok());
  EXPECT_EQ(store_->PutAccessKey({"AKIA1", "other", "team", "y", 7}).code(), Code::kAlreadyExists);
  auto k = store_->GetAccessKey("AKIA1");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->team, "ads");
  EXPECT_EQ(k->sealed_secret, std::string("se\0aled", 7));
  EXPECT_EQ(store_->ListAccessKeys("ads")->size(), 1u);
  EXPECT_EQ(store_->ListAccessKeys("")->size(), 2u);
  EXPECT_TRUE(store_->DeleteAccessKey("AKIA1").ok());
  EXPECT_EQ(store_->DeleteAccessKey("AKIA1").code(), Code::kNotFound);
  EXPECT_EQ(store_->GetAccessKey("AKIA1").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, MetricPointsRoundTrip) {
  ASSERT_TRUE(store_
                  ->AppendMetricPoints({{"j-1", "loss", "job_id:j-1", "value", 10, 0.5},
                                        {"j-1", "loss", "job_id:j-1", "value", 20, 0.25},
                                        {"j-1", "acc", "job_id:j-1", "value", 20, 0.9},
                                        {"j-2", "loss", "job_id:j-2", "value", 20, 9}})
                  .ok());
  auto all = store_->JobMetrics("j-1", "");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].name, "acc");
  auto loss = store_->JobMetrics("j-1", "loss");
  ASSERT_EQ(loss->size(), 2u);
  EXPECT_EQ((*loss)[1].value, 0.25);
  EXPECT_EQ((*loss)[1].time, 20);
}

TEST_P(StoreConformance, SecretsArePerTeam) {
  const std::string sealed = std::string(1, '\0') + "\x01" + "binary" + "\xff";
  ASSERT_TRUE(store_->PutSecret("risk", "TOKEN", sealed, 1).ok());
  EXPECT_EQ(*store_->GetSecret("risk", "TOKEN"), sealed);
  EXPECT_EQ(store_->GetSecret("ads", "TOKEN").status().code(), Code::kNotFound);
  ASSERT_TRUE(store_->PutSecret("risk", "TOKEN", "v2", 2).ok());
  EXPECT_EQ(*store_->GetSecret("risk", "TOKEN"), "v2");
  auto list = store_->ListSecrets("risk");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].first, "TOKEN");
  EXPECT_EQ((*list)[0].second, 2);
  EXPECT_TRUE(store_->DeleteSecret("risk", "TOKEN").ok());
  EXPECT_EQ(store_->DeleteSecret("risk", "TOKEN").code(), Code::kNotFound);
}

TEST_P(StoreConformance, AttentionListsLiveJobs) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "a", 10), Created()).ok());
  auto ids = store_->JobsNeedingAttention();
  ASSERT_EQ(ids->size(), 1u);
}

// An ended job whose warm pool is Available needs attention (its expiry is a
// timer), and lists filter by warm pool status.
TEST_P(StoreConformance, AvailableWarmPoolsNeedAttentionAndFilterLists) {
  for (const char* id : {"j-1", "j-2", "j-3"}) ASSERT_TRUE(store_->CreateJob(MakeJob(id, id, 10), Created()).ok());
  for (auto [id, w] : {std::pair{"j-1", WarmPoolStatus::kAvailable}, std::pair{"j-2", WarmPoolStatus::kReused},
                       std::pair{"j-3", WarmPoolStatus::kNone}}) {
    Job j = *store_->GetJob(id);
    auto un = store_->UnappliedEvents(id);
    j.status = JobStatus::kCompleted;
    j.warm_pool.status = w;
    j.warm_pool.keep_alive_seconds = 60;
    ASSERT_TRUE(store_->CommitTransition(j, *un).ok());
  }
  EXPECT_EQ(*store_->JobsNeedingAttention(), (std::vector<std::string>{"j-1"}));
  ListQuery q;
  q.warm_pool_status = WarmPoolStatus::kReused;
  auto page = store_->ListJobs(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].id, "j-2");
  EXPECT_EQ(page->jobs[0].warm_pool.status, WarmPoolStatus::kReused);
  EXPECT_EQ(page->jobs[0].warm_pool.keep_alive_seconds, 60);
}

TEST_P(StoreConformance, SchedulesUpdateStateByVersion) {
  ASSERT_TRUE(store_->CreateSchedule({"nightly", "ads", 5, R"({"cron":"@daily"})", "{}", 0}).ok());
  ASSERT_TRUE(store_->CreateSchedule({"hourly", "web", 6, "{}", "{}", 0}).ok());
  EXPECT_EQ(store_->CreateSchedule({"nightly", "web", 7, "{}", "{}", 0}).code(), Code::kAlreadyExists);
  ASSERT_TRUE(store_->UpdateScheduleState("nightly", 0, R"({"next":1})").ok());
  EXPECT_EQ(store_->UpdateScheduleState("nightly", 0, R"({"next":2})").code(), Code::kFailedPrecondition);  // stale
  auto got = store_->GetSchedule("nightly");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state, R"({"next":1})");
  EXPECT_EQ(got->version, 1);
  EXPECT_EQ(got->team, "ads");
  EXPECT_EQ(got->spec, R"({"cron":"@daily"})");
  EXPECT_EQ(store_->ListSchedules("")->size(), 2u);
  ASSERT_EQ(store_->ListSchedules("web")->size(), 1u);
  EXPECT_EQ((*store_->ListSchedules("web"))[0].name, "hourly");
  ASSERT_TRUE(store_->DeleteSchedule("nightly").ok());
  EXPECT_EQ(store_->DeleteSchedule("nightly").code(), Code::kNotFound);
  EXPECT_EQ(store_->UpdateScheduleState("nightly", 1, "{}").code(), Code::kNotFound);
  EXPECT_EQ(store_->GetSchedule("nightly").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, RejectedCreateEventLeavesNothing) {
  Event created = Created();
  created.dedup_key = "create:x";
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "a", 10), created).ok());
  EXPECT_EQ(store_->CreateJob(MakeJob("j-2", "b", 11), created).code(), Code::kAlreadyExists);
  EXPECT_EQ(store_->GetJob("j-2").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetJob("b").status().code(), Code::kNotFound);
  created.dedup_key = "create:y";
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-2", "b", 11), created).ok());
  auto un = store_->UnappliedEvents("j-2");
  ASSERT_TRUE(un.ok());
  ASSERT_EQ(un->size(), 1u);
  EXPECT_EQ((*un)[0].job_seq, 1);
  EXPECT_EQ((*un)[0].job_id, "j-2");
}

TEST_P(StoreConformance, GetJobPrefersIdOverName) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "b", 10), Created()).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("b", "c", 11), Created()).ok());
  auto j = store_->GetJob("b");
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->spec.name, "c");
  EXPECT_EQ(store_->GetJob("c")->id, "b");
  EXPECT_EQ(store_->GetJob("nope").status().code(), Code::kNotFound);
}

TEST_P(StoreConformance, StreamsSeeAppliedEventsOnly) {
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-1", "a", 10), Created()).ok());
  ASSERT_TRUE(store_->CreateJob(MakeJob("j-2", "b", 11), Created()).ok());
  Event e;
  e.job_id = "j-1";
  e.type = EventType::kStopRequested;
  e.payload = {{"reason", "user"}, {"n", 3}};
  e.dedup_key = "k";
  ASSERT_TRUE(store_->AppendEvent(e).ok());
  e.job_id = "j-2";
  EXPECT_EQ(store_->AppendEvent(e).status().code(), Code::kAlreadyExists);  // dedup keys are global
  auto un1 = store_->UnappliedEvents("j-1");
  auto un2 = store_->UnappliedEvents("j-2");
  ASSERT_EQ(un1->size(), 2u);
  ASSERT_EQ(un2->size(), 1u);
  EXPECT_EQ((*un1)[1].payload, e.payload);
  EXPECT_EQ((*un1)[1].job_seq, 2);
  EXPECT_TRUE((*un1)[1].status_after.empty());
  const int64_t s1 = (*un1)[0].seq, s2 = (*un2)[0].seq, s3 = (*un1)[1].seq;
  ASSERT_LT(s1, s2);
  ASSERT_LT(s2, s3);

  Job j1 = *store_->GetJob("j-1");
  for (auto& ev : *un1) {
    ev.status_after = "InProgress";
    ev.secondary_after = "Starting";
  }
  ASSERT_TRUE(store_->CommitTransition(j1, *un1).ok());
  // The global stream stops at j-2's unapplied event; the job stream does not wait.
  auto all = store_->EventsAfter(0, 100);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].seq, s1);
  EXPECT_EQ((*all)[0].secondary_after, "Starting");
  auto job1 = store_->JobEventsAfter("j-1", 0, 100);
  ASSERT_EQ(job1->size(), 2u);
  EXPECT_EQ((*job1)[1].type, EventType::kStopRequested);
  EXPECT_EQ((*job1)[1].payload, e.payload);
  EXPECT_EQ(store_->JobEventsAfter("j-1", 1, 100)->size(), 1u);
  EXPECT_EQ(store_->JobEventsAfter("j-1", 0, 1)->size(), 1u);
  EXPECT_TRUE(store_->JobEventsAfter("j-2", 0, 100)->empty());
  EXPECT_TRUE(store_->UnappliedEvents("j-1")->empty());

  // A terminal job with an unapplied event still needs attention.
  Job j2 = *store_->GetJob("j-2");
  j2.status = JobStatus::kCompleted;
  ASSERT_TRUE(store_->CommitTransition(j2, {}).ok());
  j1.status = JobStatus::kFailed;
  ASSERT_TRUE(store_->CommitTransition(j1, {}).ok());
  auto ids = store_->JobsNeedingAttention();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<std::string>{"j-2"}));
  (*un2)[0].status_after = "Completed";
  ASSERT_TRUE(store_->CommitTransition(j2, *un2).ok());
  EXPECT_TRUE(store_->JobsNeedingAttention()->empty());
  all = store_->EventsAfter(0, 100);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[1].status_after, "Completed");
  EXPECT_EQ(store_->EventsAfter(0, 2)->size(), 2u);
  auto tail = store_->EventsAfter(s2, 100);
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].seq, s3);
}

TEST_P(StoreConformance, TransitionsUpsertInstances) {
  Job j = MakeJob("j-1", "a", 10);
  ASSERT_TRUE(store_->CreateJob(j, Created()).ok());
  for (int i = 0; i < 2; ++i) {
    Instance in;
    in.id = "j-1.1." + std::to_string(i);
    in.job_id = "j-1";
    in.index = i;
    in.handle = "h" + std::to_string(i);
    j.instances.push_back(in);
  }
  ASSERT_TRUE(store_->CommitTransition(j, {}).ok());
  j.instances[0].state = InstanceState::kExited;
  j.instances[0].exit_code = 3;
  ASSERT_TRUE(store_->CommitTransition(j, {}).ok());
  auto list = store_->ListInstances("j-1");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "j-1.1.1");  // newest first, by first save
  EXPECT_EQ((*list)[1].exit_code, 3);
  EXPECT_EQ(store_->ListInstances("")->size(), 2u);
  EXPECT_TRUE(store_->ListInstances("j-2")->empty());
  auto in = store_->GetInstance("j-1.1.0");
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->state, InstanceState::kExited);
  EXPECT_EQ(in->handle, "h0");
  EXPECT_EQ(store_->GetInstance("nope").status().code(), Code::kNotFound);
  auto got = store_->GetJob("j-1");
  ASSERT_EQ(got->instances.size(), 2u);
  EXPECT_EQ(got->instances[0].exit_code, 3);
}

TEST_P(StoreConformance, ListOrdersByStatusAndFiltersByTeam) {
  const std::vector<std::pair<JobStatus, std::string>> jobs = {{JobStatus::kInProgress, "ads"},
                                                               {JobStatus::kCompleted, "risk"},
                                                               {JobStatus::kFailed, "ads"},
                                                               {JobStatus::kCompleted, "ads"},
                                                               {JobStatus::kStopping, "risk"}};
  for (size_t i = 0; i < jobs.size(); ++i) {
    Job j = MakeJob("j-" + std::to_string(i), "n" + std::to_string(i), 1000 + static_cast<TimeMs>(i));
    j.spec.team = jobs[i].second;
    ASSERT_TRUE(store_->CreateJob(j, Created()).ok());
    j.status = jobs[i].first;
    ASSERT_TRUE(store_->CommitTransition(j, {}).ok());
  }
  auto ids = [&](ListQuery q) {
    std::vector<std::string> out;
    for (int guard = 0; guard < 20; ++guard) {
      auto p = store_->ListJobs(q);
      EXPECT_TRUE(p.ok()) << p.status().ToString();
      if (!p.ok()) break;
      for (auto& j : p->jobs) out.push_back(j.id);
      if (p->next_page_token.empty()) break;
      q.page_token = p->next_page_token;
    }
    return out;
  };
  ListQuery q;
  q.limit = 2;
  q.order = ListOrder::kStatusAsc;  // Completed, Failed, InProgress, Stopping; newest first within
  EXPECT_EQ(ids(q), (std::vector<std::string>{"j-3", "j-1", "j-2", "j-0", "j-4"}));
  q.order = ListOrder::kStatusDesc;
  EXPECT_EQ(ids(q), (std::vector<std::string>{"j-4", "j-0", "j-2", "j-3", "j-1"}));
  q.order = ListOrder::kNameDesc;
  q.team = "ads";
  EXPECT_EQ(ids(q), (std::vector<std::string>{"j-3", "j-2", "j-0"}));
  q.order = ListOrder::kNewestFirst;
  q.status = JobStatus::kCompleted;
  EXPECT_EQ(ids(q), (std::vector<std::string>{"j-3"}));
  ListQuery all;
  all.limit = 5;
  auto page = store_->ListJobs(all);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->jobs.size(), 5u);
  EXPECT_TRUE(page->next_page_token.empty());
}

INSTANTIATE_TEST_SUITE_P(Store, StoreConformance, ::testing::Values("sqlite_memory", "sqlite_file", "fake"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// SQLite only: the fake keeps nothing across instances.

TEST(SqliteStore, SurvivesReopen) {
  auto path = (std::filesystem::temp_directory_path() / ("kiln-reopen-" + std::to_string(getpid()) + ".db")).string();
  std::filesystem::remove(path);
  {
    auto s = OpenSqliteStore(path);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->CreateJob(MakeJob("j-1", "a", 10), Created()).ok());
  }
  auto s = OpenSqliteStore(path);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->GetJob("j-1").ok());
  for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

}  // namespace
}  // namespace kiln
