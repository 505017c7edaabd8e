#pragma once
// How `kiln tune` and `kiln tuning describe` show a tuning job, and how they
// follow one until it ends.
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"

namespace kiln::cli {

// A tuning job's describe document (GET /v1/tuning-jobs/{name}) as printed: a
// header line naming it `name` and a table of its trials, or the JSON.
std::string RenderTuning(const nlohmann::json& doc, const std::string& name, Output output);

// Whether `job_name` has the shape of the name of a trial of tuning job `tuning`:
// "<tuning>-<index>-<8 hex digits>" (tuning::TrialName).
bool IsTrialName(const std::string& tuning, const std::string& job_name);

// Completed, Failed or Stopped.
bool IsFinalTuningStatus(const std::string& status);

struct FollowTuningOptions {
  // A tuning job's own changes (its completion, a stop) make no job event, so
  // it is also re-read when no event about one of its trials came for this long.
  std::chrono::milliseconds redraw_every{5000};
  // Reconnects to the event stream no sooner than this after the last connect,
  // so that a kilnd that refuses the stream is not asked in a tight loop.
  std::chrono::milliseconds min_reconnect{1000};
};

// Prints the tuning job, then re-reads it and prints it again when it changed,
// on each event of one of its trials on kilnd's event stream (GET /v1/events,
// resumed with Last-Event-ID across reconnects) and at least every
// `redraw_every`, until it ends. Each print ends with a blank line (table)
// or is the JSON document. Returns 0 if it completed, 1 if it failed or was
// stopped, 2 if it could not be read (the error printed).
int FollowTuning(Context& ctx, const std::string& name, const FollowTuningOptions& options = {});

}  // namespace kiln::cli
