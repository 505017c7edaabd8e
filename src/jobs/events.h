#pragma once
// Event payloads: one struct and one codec per event type. This header is the
// contract between whoever posts an event (backends, the entrypoint's reports via
// the API, the controller) and the state machine that folds it; nothing reads a
// payload by key anywhere else.
//
// Stored events keep the encoded JSON, so a payload written by an earlier build is
// decoded by the codec of a later one: fields are only ever added, an absent field
// decodes to its default, and a field of the wrong type is an error (the event is
// then folded as if the field were absent, and the reason is noted).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace kiln {

// InstanceExited: how an instance ended, as its backend recorded it. This is the
// one representation of an exit status between the process that ended (a wait
// status, decoded once where it is reaped) and the state machine.
struct ExitReport {
  std::string instance_id;
  int exit_code = -1;          // the user command's exit code; 128+N when killed by signal N; -1 unknown
  int signal = 0;              // the signal that ended it, 0 if it exited
  bool oom = false;            // the kernel's OOM killer ended it (memory limit of the instance type)
  std::string failure;         // a reason the instance gave (/opt/ml/output/failure) or a backend's, "" if none
  std::string message;         // /opt/ml/output/message (ExitMessage), "" if none
  std::string model_artifact;  // model.tar.gz the instance uploaded, "" if none
  std::optional<int64_t> peak_memory_bytes;  // when the backend measured it

  bool Failed() const { return oom || signal != 0 || exit_code != 0; }
};
nlohmann::json ToJson(const ExitReport& r);
Result<ExitReport> ExitReportFromJson(const nlohmann::json& j);

// InstanceLaunched: the backend started the instance; `handle` is opaque to all
// but that backend and is persisted for Recover.
struct LaunchedReport {
  std::string instance_id;
  std::string handle;
  // How long the backend's Launch took to hand the instance over (a sandbox made,
  // or a warm one taken; for Slurm, the submit), if measured.
  std::optional<int64_t> acquire_ms;
};
nlohmann::json ToJson(const LaunchedReport& r);
Result<LaunchedReport> LaunchedReportFromJson(const nlohmann::json& j);

// InstanceLaunchFailed: nothing runs for the instance; `reason` becomes its failure.
struct LaunchFailedReport {
  std::string instance_id;
  std::string reason;
};
nlohmann::json ToJson(const LaunchFailedReport& r);
Result<LaunchFailedReport> LaunchFailedReportFromJson(const nlohmann::json& j);

// PhaseReported: the entrypoint reached a phase.
enum class Phase { kDownloading, kTraining, kFirstLine, kUploading, kUploaded };
const char* ToString(Phase p);
std::optional<Phase> ParsePhase(const std::string& s);
struct PhaseReport {
  std::string instance_id;
  Phase phase = Phase::kDownloading;
  std::optional<TimeMs> time_ms;  // when the instance reached it (its clock), if it said
  std::string model_artifact;     // Uploaded: where model.tar.gz went, "" if not said
  // Training: how the instance started, "" if not said: "cold" (a sandbox made
  // for the job), "warm" (a pre-started sandbox), "warm-runtime" (a pre-started
  // sandbox whose preloaded interpreter became the job); and why a warm runtime
  // was not used.
  std::string start;
  std::string start_note;
};
nlohmann::json ToJson(const PhaseReport& r);
Result<PhaseReport> PhaseReportFromJson(const nlohmann::json& j);

// The instance an event is about ("" for job-level events): every instance
// payload above carries it under the same key.
std::string PayloadInstanceId(const nlohmann::json& payload);

}  // namespace kiln
