// /v1/tuning-jobs: create, list, describe (with trials), stop.
#include "api/http_helpers.h"
#include "api/native_api.h"
#include "common/json_input.h"

namespace kiln {

using api_internal::SendJson;
using nlohmann::json;
using tuning::TrialView;
using tuning::TuningJob;

json TuningJobDoc(const TuningJob& job, const std::vector<TrialView>& trials) {
  const auto& s = job.spec;
  json counts = {{"InProgress", 0}, {"Completed", 0}, {"Failed", 0}, {"Stopped", 0}, {"Stopping", 0}};
  json list = json::array();
  for (const auto& t : trials) {
    counts[ToString(t.status)] = counts[ToString(t.status)].get<int>() + 1;
    json tuned = json::object();
    for (const auto& p : s.ranges)
      if (t.hyperparameters.contains(p.name)) tuned[p.name] = t.hyperparameters[p.name];
    auto obj = tuning::Objective(t);
    list.push_back({{"index", t.index},
                    {"name", t.name},
                    {"status", ToString(t.status)},
                    {"hyperparameters", tuned},
                    {"objective", obj ? json(*obj) : json(nullptr)},
                    {"last_value", t.curve.empty() ? json(nullptr) : json(t.curve.back())},
                    {"steps", t.curve.size()},
                    {"early_stopped", t.early_stopped}});
  }
  int best = tuning::BestTrial(s, trials);
  json doc = {
      {"name", s.name},
      {"status", tuning::ToString(job.state.status)},
      {"reason", job.state.reason},
      {"created_ms", job.state.created},
      {"ended_ms", job.state.ended},
      {"strategy", tuning::ToString(s.strategy)},
      {"objective",
       {{"metric", s.objective_metric}, {"type", s.direction == hpo::Direction::kMaximize ? "Maximize" : "Minimize"}}},
      {"max_trials", s.max_trials},
      {"max_parallel", s.max_parallel},
      {"trial_counts", counts},
      {"best", best < 0 ? json(nullptr) : list[static_cast<size_t>(best)]},
      {"trials", list},
      {"spec", s.ToJson()}};
  return doc;
}

void NativeApi::RegisterTuning(Router& r) {
  tuning::TuningService* svc = opts_.tuning;
  // A tuning job of another team is answered as one that does not exist.
  auto visible = [svc](const std::string& name, const Principal& who) -> Result<TuningJob> {
    auto job = svc->Get(name);
    if (job.ok() && !who.Sees(job->spec.team)) return NotFound("tuning job '" + name + "' not found");
    return job;
  };
  r.Post("/v1/tuning-jobs", Access::kMember, Body::kJson,
         [this, svc](const httplib::Request& req, httplib::Response& res, const Principal& who) {
           auto body = ParseUntrustedJson(req.body);
           if (!body.ok()) return SendApiError(res, body.status());
           if (body->is_object() && !body->contains("team")) (*body)["team"] = who.team;
           auto spec = tuning::ParseTuningSpec(*body, &catalog_);
           if (!spec.ok()) return SendApiError(res, spec.status());
           if (!who.May(Role::kMember, spec->team))
             return SendApiError(res, Status(Code::kPermissionDenied,
                                             who.name + " may not start tuning jobs for team " + spec->team, "team"));
           auto job = svc->Create(*spec);
           if (!job.ok()) return SendApiError(res, job.status());
           auto trials = svc->Trials(*job);
           res.status = 201;
           res.set_content(TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{}).dump(),
                           "application/json");
         });
  r.Get("/v1/tuning-jobs", Access::kViewer,
        [this, svc](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          int limit = req.has_param("limit") ? std::clamp(atoi(req.get_param_value("limit").c_str()), 1, 1000) : 100;
          json out = json::array();
          // Pages through the store until `limit` visible ones (another team's are skipped).
          for (int offset = 0; static_cast<int>(out.size()) < limit; offset += limit) {
            auto recs = store_.ListTuningJobs(req.get_param_value("name_contains"), req.get_param_value("status"),
                                              limit, offset);
            if (!recs.ok()) return SendApiError(res, recs.status());
            for (const auto& rec : *recs) {
              auto job = tuning::LoadTuningJob(rec);
              if (!job.ok() || !who.Sees(job->spec.team) || static_cast<int>(out.size()) >= limit) continue;
              auto trials = svc->Trials(*job);
              json d = TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{});
              d.erase("trials");
              d.erase("spec");
              out.push_back(d);
            }
            if (static_cast<int>(recs->size()) < limit) break;
          }
          res.set_content(json{{"tuning_jobs", out}}.dump(), "application/json");
        });
  r.Get(R"(/v1/tuning-jobs/([A-Za-z0-9-]+))", Access::kViewer,
        [svc, visible](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto job = visible(req.matches[1], who);
          if (!job.ok()) return SendApiError(res, job.status());
          auto trials = svc->Trials(*job);
          if (!trials.ok()) return SendApiError(res, trials.status());
          res.set_content(TuningJobDoc(*job, *trials).dump(), "application/json");
        });
  // Stop takes no body (see the job stop route in native_api.cc).
  r.PostWithoutBody(R"(/v1/tuning-jobs/([A-Za-z0-9-]+)/stop)", Access::kMember,
                    [svc, visible](const httplib::Request& req, httplib::Response& res, const Principal& who) {
                      const std::string name = req.matches[1].str();
                      auto found = visible(name, who);
                      if (!found.ok()) return SendApiError(res, found.status());
                      Status st = svc->Stop(name);
                      auto job = st.ok() ? svc->Get(name) : Result<TuningJob>(st);
                      if (!job.ok()) return SendApiError(res, job.status());
                      auto trials = svc->Trials(*job);
                      SendJson(res, 202, TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{}));
                    });
}

}  // namespace kiln
