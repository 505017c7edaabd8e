#pragma once
// One function per `kiln` subcommand. cli.cc declares the flags (CLI11), fills
// the subcommand's options and calls its function, which prints the result (a
// table, or JSON with --json) and returns the process's exit code:
//   0  done (for --follow: the job or tuning job completed);
//   1  a followed job or tuning job ended without completing;
//   2  the request failed or a spec file was unusable (the error already printed).
#include <cstdint>
#include <string>

#include "cli/client.h"

namespace kiln::cli {

enum class Output { kTable, kJson };

// What every subcommand that talks to kilnd shares.
struct Context {
  KilndClient& kilnd;  // at the endpoint from --endpoint / --data-dir / $KILN_ENDPOINT
  Output output = Output::kTable;
};

// Left-aligns `s` in a column `w` wide (cut with a '~' if longer), then two spaces.
inline std::string Pad(std::string s, size_t w) {
  if (s.size() > w) s = s.substr(0, w - 1) + "~";
  return s + std::string(w - s.size(), ' ') + "  ";
}

// --- jobs (job_commands.cc) ---
struct RunOptions {
  std::string spec_path;
  std::string name_override;
  bool follow = false;
};
int RunJob(Context& ctx, const RunOptions& o);

struct ListJobsOptions {
  std::string status, name, tag, page_token;
  int limit = 50;
};
int ListJobs(Context& ctx, const ListJobsOptions& o);
int DescribeJob(Context& ctx, const std::string& id);
// kiln pools list (account_commands.cc).
int ListPools(Context& ctx);
struct CreateScheduleOptions {
  std::string name, cron, overlap = "skip", spec_path;
  int prewarm_seconds = 0;           // 0: no pre-warming
  std::vector<std::string> preload;  // with prewarm_seconds
};
// kiln schedules create NAME --cron EXPR [--overlap skip|queue|replace]
//   [--prewarm SECONDS [--preload MODULE]...] SPEC
int CreateSchedule(Context& ctx, const CreateScheduleOptions& o);
int ListSchedules(Context& ctx);
int DescribeSchedule(Context& ctx, const std::string& name);
int DeleteSchedule(Context& ctx, const std::string& name);
// kiln pools warm list [--status S]: the jobs whose warm pool is S (Available).
int ListWarmPools(Context& ctx, const std::string& status);
// kiln pools warm update JOB --keep-alive N (0 terminates an Available pool).
int UpdateKeepAlive(Context& ctx, const std::string& job, int64_t seconds);
// One line about a job's warm_pool object (describe, warm list).
std::string WarmPoolLine(const nlohmann::json& w);
int StopJob(Context& ctx, const std::string& id);

struct JobLogsOptions {
  std::string id;
  bool follow = false;
};
int PrintJobLogs(Context& ctx, const JobLogsOptions& o);

struct JobMetricsOptions {
  std::string id;
  std::string name;  // only this metric; empty: all
};
int PrintJobMetrics(Context& ctx, const JobMetricsOptions& o);

struct JobEventsOptions {
  std::string id;
  bool follow = false;
  int64_t after = 0;  // resume after this job_seq
};
int PrintJobEvents(Context& ctx, const JobEventsOptions& o);

// The dry run needs no kilnd.
struct SageMakerRequestOptions {
  std::string spec_path;
  std::string role_arn = "arn:aws:iam::123456789012:role/kiln-training";
  std::string s3_output = "s3://kiln-artifacts/jobs";
  std::string runtime_url = "https://kilnd.example.com:8470";
  std::string image;  // empty: the spec's image
};
int PrintSageMakerRequest(const SageMakerRequestOptions& o);

// --- secrets and access keys (account_commands.cc) ---
struct SecretOptions {
  std::string team, name;
  std::string from_file;  // set: read the value from this file, not stdin
};
int SetSecret(Context& ctx, const SecretOptions& o);
int ListSecrets(Context& ctx, const std::string& team);
int DeleteSecret(Context& ctx, const SecretOptions& o);

struct CreateKeyOptions {
  std::string team;
  std::string role = "member";  // admin, team-admin, member, viewer
  bool admin = false;           // the same as role admin
};
int CreateKey(Context& ctx, const CreateKeyOptions& o);
int ListKeys(Context& ctx, const std::string& team);  // empty team: all teams
int DeleteKey(Context& ctx, const std::string& key_id);

// --- who is calling: login, API tokens, audit (account_commands.cc) ---
struct LoginOptions {
  std::string token;  // empty: read from stdin
};
int Login(Context& ctx, const LoginOptions& o);
int Logout(Context& ctx, bool revoke);
int WhoAmI(Context& ctx);

struct CreateTokenOptions {
  std::string name, team, role = "member";
  int64_t ttl_seconds = 0;
};
int CreateToken(Context& ctx, const CreateTokenOptions& o);
int ListTokens(Context& ctx, const std::string& team);
int RevokeToken(Context& ctx, const std::string& id);

struct AuditOptions {
  std::string team;
  int64_t after = 0;
  int limit = 100;
};
int PrintAudit(Context& ctx, const AuditOptions& o);

// --- tuning jobs (tuning_commands.cc) ---
struct TuneOptions {
  std::string spec_path;
  bool follow = false;
};
int Tune(Context& ctx, const TuneOptions& o);

struct DescribeTuningOptions {
  std::string name;
  bool follow = false;
};
int DescribeTuning(Context& ctx, const DescribeTuningOptions& o);
int ListTuningJobs(Context& ctx);
int StopTuning(Context& ctx, const std::string& name);

}  // namespace kiln::cli
