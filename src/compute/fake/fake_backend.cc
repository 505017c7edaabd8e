#include "compute/fake/fake_backend.h"

namespace kiln {

Result<std::string> FakeBackend::Launch(const LaunchRequest& req) {
  std::uniform_real_distribution<double> u(0, 1);
  auto it = inst_.find(req.instance_id);
  if (it != inst_.end()) return "fake:" + req.instance_id;
  if (u(rng_) < faults_.launch_error) return Internal("injected launch failure");
  Inst in;
  in.job_id = req.job_id;
  in.starts = 1;
  in.outcome = script_ ? script_(req) : FakeOutcome{};
  in.ends_at = clock_.NowMs() + in.outcome.duration_ms;
  if (faults_.queue_ms > 0) {
    const TimeMs queued = std::uniform_int_distribution<TimeMs>(0, faults_.queue_ms)(rng_);
    in.ends_at += queued;
    for (const char* reason : {"Priority", "Resources"}) {
      Event e;
      e.job_id = req.job_id;
      e.type = EventType::kInstanceWaiting;
      e.source = "backend";
      e.time = clock_.NowMs();
      e.dedup_key = std::string("waiting:") + req.instance_id + ":" + reason;
      e.payload = ToJson(LaunchFailedReport{req.instance_id, std::string("Slurm (pool sim): ") + reason});
      outbox_.push_back(std::move(e));
    }
  }
  inst_[req.instance_id] = in;
  if (u(rng_) < faults_.launch_ambiguous) return Status(Code::kUnavailable, "injected: launch outcome unknown");
  return "fake:" + req.instance_id;
}

Status FakeBackend::Stop(const std::string& id, const std::string&, int64_t grace_ms) {
  auto it = inst_.find(id);
  if (it == inst_.end() || it->second.exited) return Status::Ok();
  auto& in = it->second;
  TimeMs term_at = clock_.NowMs() + std::uniform_int_distribution<int64_t>(0, 50)(rng_);
  if (term_at < in.ends_at) {
    in.ends_at = term_at;
    in.outcome.exit_code = 143;
    in.outcome.signal = 15;
    in.outcome.oom = false;
  }
  return Status::Ok();
}

Status FakeBackend::Cleanup(const std::string& id, const std::string&) {
  auto it = inst_.find(id);
  if (it != inst_.end()) it->second.cleaned = true;
  return Status::Ok();
}

ExitReport FakeBackend::Report(const std::string& id, const FakeOutcome& o) {
  ExitReport r;
  r.instance_id = id;
  r.exit_code = o.exit_code;
  r.signal = o.signal;
  r.oom = o.oom;
  if (o.exit_code == 0) r.model_artifact = "/fake/" + id + "/model.tar.gz";
  return r;
}

Status FakeBackend::Recover(const std::string& id, const std::string&) {
  auto it = inst_.find(id);
  if (it == inst_.end()) return NotFound("no fake instance " + id);
  if (it->second.exited) {
    outbox_.push_back(ExitEvent(it->second.job_id, Report(id, it->second.outcome), clock_.NowMs()));
  }
  return Status::Ok();
}

void FakeBackend::AdvanceToNow() {
  TimeMs now = clock_.NowMs();
  for (auto& [id, in] : inst_) {
    if (in.exited || in.ends_at > now) continue;
    in.exited = true;
    outbox_.push_back(ExitEvent(in.job_id, Report(id, in.outcome), in.ends_at));
  }
}

bool FakeBackend::DeliverOne(double dup, double drop) {
  if (outbox_.empty() || !sink_) return false;
  std::uniform_real_distribution<double> u(0, 1);
  size_t i = std::uniform_int_distribution<size_t>(0, outbox_.size() - 1)(rng_);
  Event e = outbox_[i];
  outbox_.erase(outbox_.begin() + static_cast<long>(i));
  if (u(rng_) < drop) return true;
  // A delivery the sink refuses is lost, as a dropped one is: the simulation checks
  // that the resync repairs both.
  sink_->Post(e).IgnoreError();
  if (u(rng_) < dup) sink_->Post(e).IgnoreError();
  return true;
}

bool FakeBackend::AnyRunning() const {
  for (auto& [id, in] : inst_)
    if (!in.exited) return true;
  return false;
}

}  // namespace kiln
