#include "compute/backend.h"

namespace kiln {

Event ExitEvent(const std::string& job_id, const std::string& instance_id, int exit_code, int signal, bool oom,
                const std::string& failure, const std::string& model_artifact, TimeMs now) {
  Event e;
  e.job_id = job_id;
  e.type = EventType::kInstanceExited;
  e.source = "backend";
  e.time = now;
  e.dedup_key = "exit:" + instance_id;
  e.payload = {
      {"instance_id", instance_id}, {"exit_code", exit_code}, {"signal", signal}, {"oom", oom}, {"failure", failure}};
  if (!model_artifact.empty()) e.payload["model_artifact"] = model_artifact;
  return e;
}

}  // namespace kiln
