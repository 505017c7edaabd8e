#include "compute/backend.h"

namespace kiln {

const char* ToString(BackendHealth::State s) {
  return s == BackendHealth::State::kHealthy ? "healthy" : "unhealthy";
}

Event ExitEvent(const std::string& job_id, const ExitReport& report, TimeMs now) {
  Event e;
  e.job_id = job_id;
  e.type = EventType::kInstanceExited;
  e.source = "backend";
  e.time = now;
  e.dedup_key = "exit:" + report.instance_id;
  e.payload = ToJson(report);
  return e;
}

Event LostEvent(const std::string& job_id, const std::string& instance_id, const std::string& why, TimeMs now) {
  ExitReport r;
  r.instance_id = instance_id;
  r.failure = "InstanceLost: " + why;
  return ExitEvent(job_id, r, now);
}

}  // namespace kiln
