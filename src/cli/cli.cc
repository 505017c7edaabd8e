// The `kiln` command line: declares every subcommand's flags (CLI11), then calls
// the one subcommand given (commands.h).
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands.h"

namespace kiln {
namespace {

using cli::Context;

struct GlobalOptions {
  std::string endpoint, data_dir, token;
  bool as_json = false;
};

// What each subcommand runs once parsed.
struct Dispatch {
  std::vector<std::pair<CLI::App*, std::function<int()>>> offline;  // need no kilnd
  std::vector<std::pair<CLI::App*, std::function<int(Context&)>>> online;

  // Options are shared so that CLI11 can write into them until the handler runs.
  template <typename Options>
  void Add(CLI::App* sub, std::shared_ptr<Options> o, int (*run)(Context&, const Options&)) {
    online.emplace_back(sub, [o = std::move(o), run](Context& ctx) { return run(ctx, *o); });
  }
};

void AddGlobalOptions(CLI::App& app, GlobalOptions& g) {
  app.add_option("--endpoint", g.endpoint,
                 "kilnd address (HOST:PORT); default: $KILN_ENDPOINT or ./kiln-data/kilnd.addr");
  app.add_option("--data-dir", g.data_dir, "read kilnd's address from DIR/kilnd.addr (and, as root, its admin token)");
  app.add_option("--token", g.token,
                 "API token; default: $KILN_API_TOKEN, the `kiln login` token, or kilnd's admin.token on its host");
  app.add_flag("--json", g.as_json, "print JSON");
}

void AddRunCommand(CLI::App& app, Dispatch& d) {
  auto o = std::make_shared<cli::RunOptions>();
  auto* run = app.add_subcommand("run", "submit a job spec (YAML or JSON)");
  run->add_option("spec", o->spec_path, "job spec file")->required();
  run->add_option("--name", o->name_override, "override the spec's name");
  run->add_flag("-f,--follow", o->follow, "stream status and logs until the job ends; exit non-zero if it failed");
  d.Add(run, o, cli::RunJob);
}

// A subcommand whose only option is a required positional string.
void AddOneArgCommand(CLI::App* sub, const std::string& arg, const std::string& help, Dispatch& d,
                      int (*run)(Context&, const std::string&)) {
  auto value = std::make_shared<std::string>();
  sub->add_option(arg, *value, help)->required();
  d.online.emplace_back(sub, [value, run](Context& ctx) { return run(ctx, *value); });
}

void AddJobsCommands(CLI::App& app, Dispatch& d) {
  auto* jobs = app.add_subcommand("jobs", "inspect and control jobs");
  jobs->require_subcommand(1);
  auto list = std::make_shared<cli::ListJobsOptions>();
  auto* list_cmd = jobs->add_subcommand("list", "list jobs, newest first");
  list_cmd->add_option("--status", list->status);
  list_cmd->add_option("--name", list->name, "substring of the name");
  list_cmd->add_option("--tag", list->tag, "key=value");
  list_cmd->add_option("--limit", list->limit);
  list_cmd->add_option("--page-token", list->page_token);
  d.Add(list_cmd, list, cli::ListJobs);
  AddOneArgCommand(jobs->add_subcommand("describe", "show one job"), "id", "job id or name", d, cli::DescribeJob);
  AddOneArgCommand(jobs->add_subcommand("stop", "stop a job (SIGTERM, then SIGKILL after its grace period)"), "id", "",
                   d, cli::StopJob);
  auto logs = std::make_shared<cli::JobLogsOptions>();
  auto* logs_cmd = jobs->add_subcommand("logs", "print a job's output");
  logs_cmd->add_option("id", logs->id)->required();
  logs_cmd->add_flag("-f,--follow", logs->follow);
  d.Add(logs_cmd, logs, cli::PrintJobLogs);
  auto metrics = std::make_shared<cli::JobMetricsOptions>();
  auto* metrics_cmd = jobs->add_subcommand("metrics", "print a job's metric series (StatsD, log regexes)");
  metrics_cmd->add_option("id", metrics->id)->required();
  metrics_cmd->add_option("--name", metrics->name, "only this metric");
  d.Add(metrics_cmd, metrics, cli::PrintJobMetrics);
  auto events = std::make_shared<cli::JobEventsOptions>();
  auto* events_cmd = jobs->add_subcommand("events", "print a job's events");
  events_cmd->add_option("id", events->id)->required();
  events_cmd->add_flag("-f,--follow", events->follow);
  events_cmd->add_option("--after", events->after, "resume after this sequence number");
  d.Add(events_cmd, events, cli::PrintJobEvents);
}

void AddSecretsCommands(CLI::App& app, Dispatch& d) {
  auto* secrets = app.add_subcommand("secrets", "team secrets (values from stdin or a file, never argv)");
  secrets->require_subcommand(1);
  auto set = std::make_shared<cli::SecretOptions>();
  auto* set_cmd = secrets->add_subcommand("set", "store a secret; the value is read from stdin or --from-file");
  set_cmd->add_option("--team", set->team)->required();
  set_cmd->add_option("name", set->name)->required();
  set_cmd->add_option("--from-file", set->from_file, "read the value from this file");
  d.Add(set_cmd, set, cli::SetSecret);
  auto team = std::make_shared<std::string>();
  auto* list_cmd = secrets->add_subcommand("list", "list a team's secret names");
  list_cmd->add_option("--team", *team)->required();
  d.online.emplace_back(list_cmd, [team](Context& ctx) { return cli::ListSecrets(ctx, *team); });
  auto del = std::make_shared<cli::SecretOptions>();
  auto* del_cmd = secrets->add_subcommand("delete", "delete a secret");
  del_cmd->add_option("--team", del->team)->required();
  del_cmd->add_option("name", del->name)->required();
  d.Add(del_cmd, del, cli::DeleteSecret);
}

void AddTuningCommands(CLI::App& app, Dispatch& d) {
  auto tune = std::make_shared<cli::TuneOptions>();
  auto* tune_cmd = app.add_subcommand("tune", "start a hyperparameter tuning job (YAML or JSON tuning spec)");
  tune_cmd->add_option("spec", tune->spec_path, "tuning spec file")->required();
  tune_cmd->add_flag("-f,--follow", tune->follow,
                     "show the trials until the tuning job ends; exit non-zero unless it completed");
  d.Add(tune_cmd, tune, cli::Tune);
  auto* tuning = app.add_subcommand("tuning", "inspect and stop tuning jobs");
  tuning->require_subcommand(1);
  auto* list_cmd = tuning->add_subcommand("list", "list tuning jobs");
  d.online.emplace_back(list_cmd, [](Context& ctx) { return cli::ListTuningJobs(ctx); });
  auto describe = std::make_shared<cli::DescribeTuningOptions>();
  auto* describe_cmd = tuning->add_subcommand("describe", "a tuning job and its trials");
  describe_cmd->add_option("name", describe->name)->required();
  describe_cmd->add_flag("-f,--follow", describe->follow, "keep showing the trials until the tuning job ends");
  d.Add(describe_cmd, describe, cli::DescribeTuning);
  AddOneArgCommand(tuning->add_subcommand("stop", "stop a tuning job and its running trials"), "name", "", d,
                   cli::StopTuning);
}

void AddKeysCommands(CLI::App& app, Dispatch& d) {
  auto* keys = app.add_subcommand("keys", "access keys for the SageMaker-compatible API (SigV4)");
  keys->require_subcommand(1);
  auto create = std::make_shared<cli::CreateKeyOptions>();
  auto* create_cmd = keys->add_subcommand("create", "create a key pair for a team; the secret is shown once");
  create_cmd->add_option("--team", create->team)->required();
  create_cmd->add_option("--role", create->role, "admin, team-admin, member (default) or viewer");
  create_cmd->add_flag("--admin", create->admin, "the same as --role admin: every team's jobs");
  d.Add(create_cmd, create, cli::CreateKey);
  auto team = std::make_shared<std::string>();
  auto* list_cmd = keys->add_subcommand("list", "list key ids (all teams, or one)");
  list_cmd->add_option("--team", *team);
  d.online.emplace_back(list_cmd, [team](Context& ctx) { return cli::ListKeys(ctx, *team); });
  AddOneArgCommand(keys->add_subcommand("delete", "delete a key; requests signed with it are refused from then on"),
                   "id", "", d, cli::DeleteKey);
}

void AddScheduleCommands(CLI::App& app, Dispatch& d) {
  auto* sched = app.add_subcommand("schedules", "job specs run on a cron schedule (UTC)");
  sched->require_subcommand(1);
  auto sc = std::make_shared<cli::CreateScheduleOptions>();
  auto* sched_create = sched->add_subcommand("create", "run SPEC on a schedule; each run is <name>-<slot time>");
  sched_create->add_option("name", sc->name, "schedule name")->required();
  sched_create->add_option("spec", sc->spec_path, "job spec file (YAML or JSON; its name is ignored)")->required();
  sched_create->add_option("--cron", sc->cron, "\"*/15 * * * *\", @hourly, \"@every 90s\"")->required();
  sched_create->add_option("--overlap", sc->overlap, "when the last run still runs: skip (default), queue, replace");
  sched_create->add_option("--prewarm", sc->prewarm_seconds, "warm a sandbox this many seconds before each run");
  sched_create->add_option("--preload", sc->preload, "with --prewarm: a module its python runtime imports (repeat)");
  d.online.emplace_back(sched_create, [sc](Context& ctx) { return cli::CreateSchedule(ctx, *sc); });
  d.online.emplace_back(sched->add_subcommand("list", "schedules, their next slot and last run"),
                        [](Context& ctx) { return cli::ListSchedules(ctx); });
  auto sched_name = std::make_shared<std::string>();
  auto* sched_describe = sched->add_subcommand("describe", "a schedule and its run history");
  sched_describe->add_option("name", *sched_name)->required();
  d.online.emplace_back(sched_describe, [sched_name](Context& ctx) { return cli::DescribeSchedule(ctx, *sched_name); });
  auto* sched_delete = sched->add_subcommand("delete", "no more runs (running ones go on)");
  sched_delete->add_option("name", *sched_name)->required();
  d.online.emplace_back(sched_delete, [sched_name](Context& ctx) { return cli::DeleteSchedule(ctx, *sched_name); });
}

void AddIdentityCommands(CLI::App& app, Dispatch& d) {
  auto login = std::make_shared<cli::LoginOptions>();
  auto* login_cmd = app.add_subcommand("login", "check an API token and keep it for later commands (0600 file)");
  login_cmd->add_option("--with-token", login->token, "the token (default: read from stdin)");
  d.Add(login_cmd, login, cli::Login);
  auto revoke = std::make_shared<bool>(false);
  auto* logout_cmd = app.add_subcommand("logout", "forget the kept token");
  logout_cmd->add_flag("--revoke", *revoke, "also revoke it on kilnd");
  d.online.emplace_back(logout_cmd, [revoke](Context& ctx) { return cli::Logout(ctx, *revoke); });
  d.online.emplace_back(app.add_subcommand("whoami", "the user, team and role of the token in use"),
                        [](Context& ctx) { return cli::WhoAmI(ctx); });

  auto* pools = app.add_subcommand("pools", "compute pools: where jobs run");
  pools->require_subcommand(1);
  d.online.emplace_back(pools->add_subcommand("list", "each pool's backend, instance types, health and queue"),
                        [](Context& ctx) { return cli::ListPools(ctx); });
  auto* warm = pools->add_subcommand("warm", "warm pools: instances kept after a job, for the next matching job");
  warm->require_subcommand(1);
  auto warm_status = std::make_shared<std::string>("Available");
  auto* warm_list = warm->add_subcommand("list", "jobs whose warm pool has a status (default Available)");
  warm_list->add_option("--status", *warm_status, "InUse, Available, Reused or Terminated");
  d.online.emplace_back(warm_list, [warm_status](Context& ctx) { return cli::ListWarmPools(ctx, *warm_status); });
  auto warm_job = std::make_shared<std::string>();
  auto keep = std::make_shared<int64_t>(0);
  auto* warm_update = warm->add_subcommand("update", "change a job's keep-alive; 0 terminates its pool");
  warm_update->add_option("job", *warm_job, "job id or name")->required();
  warm_update->add_option("--keep-alive", *keep, "seconds")->required();
  d.online.emplace_back(warm_update,
                        [warm_job, keep](Context& ctx) { return cli::UpdateKeepAlive(ctx, *warm_job, *keep); });

  auto* tokens = app.add_subcommand("tokens", "API tokens of users and service accounts");
  tokens->require_subcommand(1);
  auto create = std::make_shared<cli::CreateTokenOptions>();
  auto* create_cmd = tokens->add_subcommand("create", "create a token; it is shown once");
  create_cmd->add_option("--name", create->name, "user or service account")->required();
  create_cmd->add_option("--team", create->team, "default: your own");
  create_cmd->add_option("--role", create->role, "admin, team-admin, member (default) or viewer");
  create_cmd->add_option("--ttl", create->ttl_seconds, "expires after this many seconds (default: never)");
  d.Add(create_cmd, create, cli::CreateToken);
  auto team = std::make_shared<std::string>();
  auto* list_cmd = tokens->add_subcommand("list", "list tokens (ids, names, roles; never the tokens)");
  list_cmd->add_option("--team", *team);
  d.online.emplace_back(list_cmd, [team](Context& ctx) { return cli::ListTokens(ctx, *team); });
  AddOneArgCommand(tokens->add_subcommand("revoke", "revoke a token; it is refused from the next request on"), "id", "",
                   d, cli::RevokeToken);

  auto audit = std::make_shared<cli::AuditOptions>();
  auto* audit_cmd =
      app.add_subcommand("audit", "the audit log: every request that changed or tried to change something");
  audit_cmd->add_option("--team", audit->team);
  audit_cmd->add_option("--after", audit->after, "records after this sequence number");
  audit_cmd->add_option("--limit", audit->limit);
  d.Add(audit_cmd, audit, cli::PrintAudit);
}

void AddSageMakerRequestCommand(CLI::App& app, Dispatch& d) {
  auto o = std::make_shared<cli::SageMakerRequestOptions>();
  auto* sub = app.add_subcommand(
      "sagemaker-request", "print the CreateTrainingJob request Kiln would send to SageMaker for a spec (dry run)");
  sub->add_option("spec", o->spec_path)->required();
  sub->add_option("--role-arn", o->role_arn);
  sub->add_option("--s3-output", o->s3_output);
  sub->add_option("--runtime-url", o->runtime_url);
  sub->add_option("--image", o->image, "ECR image URI (default: the spec's image)");
  d.offline.emplace_back(sub, [o] { return cli::PrintSageMakerRequest(*o); });
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"kiln: run training jobs on Kiln"};
  app.require_subcommand(1);
  app.fallthrough();  // global options (--json, --endpoint) may follow a subcommand
  GlobalOptions global;
  AddGlobalOptions(app, global);
  Dispatch dispatch;
  AddRunCommand(app, dispatch);
  AddJobsCommands(app, dispatch);
  AddSecretsCommands(app, dispatch);
  AddTuningCommands(app, dispatch);
  AddKeysCommands(app, dispatch);
  AddIdentityCommands(app, dispatch);
  AddScheduleCommands(app, dispatch);
  AddSageMakerRequestCommand(app, dispatch);

  CLI11_PARSE(app, argc, argv);
  for (auto& [sub, run] : dispatch.offline)
    if (*sub) return run();
  cli::KilndClient kilnd(cli::ResolveEndpoint(global.endpoint, global.data_dir),
                         cli::ResolveToken(global.token, global.data_dir));
  Context ctx{kilnd, global.as_json ? cli::Output::kJson : cli::Output::kTable};
  for (auto& [sub, run] : dispatch.online)
    if (*sub) return run(ctx);
  return 0;
}

}  // namespace kiln
