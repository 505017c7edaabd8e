// kiln_fill_store DB N: writes N finished jobs (with their event histories) into
// the store at DB, through the Store interface, as kilnd would have left them.
#include <cstdio>
#include <cstdlib>

#include "common/clock.h"
#include "jobs/state_machine.h"
#include "store/store.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: kiln_fill_store DB N\n");
    return 2;
  }
  auto store = kiln::OpenSqliteStore(argv[1]);
  if (!store.ok()) {
    fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  long n = atol(argv[2]);
  kiln::TimeMs t0 = kiln::RealClock::Get().NowMs() - n * 10;
  int64_t start = kiln::MonotonicNs();
  for (long i = 0; i < n; ++i) {
    kiln::Job job;
    job.id = "j-fill" + std::to_string(i);
    job.spec.name = "fill-" + std::to_string(i);
    job.spec.command = {"/bin/true"};
    job.spec.tags = {{"team", i % 2 ? "a" : "b"}};
    job.spec.hyperparameters = {{"lr", 0.1}, {"depth", i % 7}};
    job.created_at = t0 + i * 10;
    job.output_dir = "/tmp/artifacts/" + job.spec.name + "/output";
    kiln::Event created;
    created.type = kiln::EventType::kJobCreated;
    created.source = "api";
    created.time = job.created_at;
    if (auto st = (*store)->CreateJob(job, created); !st.ok()) {
      fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    auto evs = (*store)->UnappliedEvents(job.id);
    kiln::Transition(job, (*evs)[0]);
    std::string iid = kiln::InstanceId(job.id, 1, 0);
    std::vector<kiln::Event> applied = *evs;
    for (auto [type, payload] : std::vector<std::pair<kiln::EventType, nlohmann::json>>{
             {kiln::EventType::kInstanceLaunched, {{"instance_id", iid}, {"handle", "{}"}}},
             {kiln::EventType::kInstanceExited, {{"instance_id", iid}, {"exit_code", 0}}}}) {
      kiln::Event e;
      e.job_id = job.id;
      e.type = type;
      e.payload = payload;
      e.source = "backend";
      e.time = job.created_at + 5;
      auto r = (*store)->AppendEvent(e);
      kiln::Transition(job, *r);
      applied.push_back(*r);
    }
    for (auto& e : applied) {
      e.status_after = kiln::ToString(job.status);
      e.secondary_after = kiln::ToString(job.secondary);
    }
    if (auto st = (*store)->CommitTransition(job, applied); !st.ok()) {
      fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  fprintf(stderr, "wrote %ld jobs in %.1f s\n", n, (kiln::MonotonicNs() - start) / 1e9);
  return 0;
}
