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

void NativeApi::RegisterTuning(httplib::Server& s) {
  tuning::TuningService* svc = opts_.tuning;
  s.Post("/v1/tuning-jobs", [this, svc](const httplib::Request& req, httplib::Response& res) {
    auto body = ParseUntrustedJson(req.body);
    if (!body.ok()) return SendApiError(res, body.status());
    auto spec = tuning::ParseTuningSpec(*body, &catalog_);
    if (!spec.ok()) return SendApiError(res, spec.status());
    auto job = svc->Create(*spec);
    if (!job.ok()) return SendApiError(res, job.status());
    auto trials = svc->Trials(*job);
    res.status = 201;
    res.set_content(TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{}).dump(), "application/json");
  });
  s.Get("/v1/tuning-jobs", [this, svc](const httplib::Request& req, httplib::Response& res) {
    int limit = req.has_param("limit") ? std::clamp(atoi(req.get_param_value("limit").c_str()), 1, 1000) : 100;
    auto recs = store_.ListTuningJobs(req.get_param_value("name_contains"), req.get_param_value("status"), limit, 0);
    if (!recs.ok()) return SendApiError(res, recs.status());
    json out = json::array();
    for (const auto& r : *recs) {
      auto job = tuning::LoadTuningJob(r);
      if (!job.ok()) continue;
      auto trials = svc->Trials(*job);
      json d = TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{});
      d.erase("trials");
      d.erase("spec");
      out.push_back(d);
    }
    res.set_content(json{{"tuning_jobs", out}}.dump(), "application/json");
  });
  s.Get(R"(/v1/tuning-jobs/([A-Za-z0-9-]+))", [svc](const httplib::Request& req, httplib::Response& res) {
    auto job = svc->Get(req.matches[1]);
    if (!job.ok()) return SendApiError(res, job.status());
    auto trials = svc->Trials(*job);
    if (!trials.ok()) return SendApiError(res, trials.status());
    res.set_content(TuningJobDoc(*job, *trials).dump(), "application/json");
  });
  // Stop takes no body: the ContentReader overload is dispatched before httplib reads
  // one, so a POST without Content-Length is answered at once (see the job stop route
  // in native_api.cc).
  s.Post(R"(/v1/tuning-jobs/([A-Za-z0-9-]+)/stop)",
         [svc](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
           const std::string name = req.matches[1].str();
           Status st = svc->Stop(name);
           auto job = st.ok() ? svc->Get(name) : Result<TuningJob>(st);
           if (!job.ok()) return SendApiError(res, job.status());
           auto trials = svc->Trials(*job);
           SendJson(res, 202, TuningJobDoc(*job, trials.ok() ? *trials : std::vector<TrialView>{}));
         });
}

}  // namespace kiln
