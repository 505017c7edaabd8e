#pragma once
// A typed client of slurmrestd's JSON API (openapi/v0.0.38, what Debian 12's
// Slurm 22.05 serves), with the HS256 tokens that slurmctld's auth/jwt accepts
// minted from its key file: kilnd never shells out to sbatch or scontrol.
//
// Errors are values, mapped from what slurmrestd answers:
//   no answer / connection refused      -> kUnavailable
//   401 (no or malformed token)         -> kUnauthenticated
//   slurmctld hung up (5005): also what a token signed with another key gets,
//   since slurmrestd passes tokens through to slurmctld -> kUnavailable, saying so
//   "Invalid job id specified" (2017)   -> kNotFound
//   anything else Slurm refuses         -> kInvalidArgument with Slurm's message
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace kiln::slurm {

struct RestOptions {
  std::string url;           // e.g. "http://127.0.0.1:6820"
  std::string jwt_key_file;  // slurmctld's AuthAltParameters=jwt_key
  std::string user = "root";
  int timeout_ms = 10000;
  int token_lifetime_s = 600;
};

struct JobRequest {
  std::string name;
  std::string partition;  // empty: the cluster's default
  std::string account, qos;
  std::string script;  // "#!/bin/sh\n..."
  std::string working_directory;
  std::string standard_output;  // a path; %j is the job id
  std::map<std::string, std::string> environment;
  int nodes = 1;
  int tasks = 1;  // in all (one per node for Kiln's instances)
  int cpus_per_task = 1;
  int64_t memory_per_node_mib = 0;  // 0: the partition's default
  int time_limit_minutes = 0;       // 0: the partition's
};

enum class JobState {
  kPending,
  kRunning,
  kSuspended,
  kCompleting,
  kCompleted,
  kCancelled,
  kFailed,
  kTimeout,
  kNodeFail,
  kPreempted,
  kOutOfMemory,
  kBootFail,
  kDeadline,
  kOther,
};
JobState ParseJobState(const std::string& s);
const char* ToString(JobState s);
// Whether the job has ended (nothing of it runs any more).
bool IsFinal(JobState s);

struct JobInfo {
  int64_t id = 0;
  std::string name;
  JobState state = JobState::kOther;
  std::string state_text;  // Slurm's own, e.g. "PENDING"
  std::string reason;      // why pending (Resources, Priority, ...) or why it ended
  int exit_code = 0;       // from the wait status Slurm reports
  int signal = 0;
  TimeMs submit_ms = 0, start_ms = 0, end_ms = 0;
  std::string nodes;
  int tasks = 0;
};

// One entry of slurmrestd's "jobs" array; a missing or mistyped field is its zero.
JobInfo JobInfoFromJson(const nlohmann::json& j);

class RestClient {
 public:
  // Reads the key file (32 bytes or more).
  static Result<std::unique_ptr<RestClient>> Create(RestOptions opts, Clock& clock);
  ~RestClient();

  // slurmrestd answers and slurmctld behind it is up.
  Status Ping();
  // Queues a batch job; its Slurm job id.
  Result<int64_t> Submit(const JobRequest& req);
  Result<JobInfo> GetJob(int64_t id);
  // Every job slurmctld still knows (queued, running, and ended within MinJobAge);
  // with `since` (unix seconds) > 0, only those changed since then.
  Result<std::vector<JobInfo>> ListJobs(int64_t since = 0);
  // Cancels (SIGKILL after Slurm's KillWait); a job already ended is Ok.
  Status Cancel(int64_t id);
  // Sends `signal` ("SIGTERM") to the job's batch script and steps; ended: Ok;
  // still pending: kFailedPrecondition (nothing runs to signal: Cancel it).
  Status Signal(int64_t id, const std::string& signal);

  // A token for `user`, valid for token_lifetime_s (exposed for tests).
  std::string MintToken() const;

 private:
  RestClient(RestOptions opts, Clock& clock, std::string key);
  struct Http;
  struct Answer;  // slurmrestd's JSON body and HTTP status (slurm_rest.cc)
  Result<Answer> Call(const char* method, const std::string& path, const std::string& body);

  RestOptions opts_;
  Clock& clock_;
  std::string key_;
  std::unique_ptr<Http> http_;
};

}  // namespace kiln::slurm
