// /v1/schedules: create, list, describe (with the run history), delete.
#include "api/http_helpers.h"
#include "api/native_api.h"
#include "common/json_input.h"

namespace kiln {

using api_internal::SendJson;
using nlohmann::json;

// A schedule as the native API shows it: its definition, next slot and history.
json ScheduleDoc(const ScheduleRecord& rec, bool with_history) {
  json spec = json::parse(rec.spec, nullptr, false);
  const schedules::State state = schedules::StateFromJson(json::parse(rec.state, nullptr, false));
  json doc = schedules::ToJson(state);
  doc["name"] = rec.name;
  doc["team"] = rec.team;
  doc["created_at"] = FormatTime(rec.created);
  doc["next_slot"] = state.waiting ? json(nullptr) : json(FormatTime(state.next_slot));
  for (const char* k : {"cron", "overlap", "job", "owner", "prewarm"})
    if (spec.is_object() && spec.contains(k)) doc[k] = spec[k];
  if (!with_history) {
    const json last = doc["history"].empty() ? json(nullptr) : doc["history"].back();
    doc.erase("history");
    doc["last_run"] = last;
  }
  return doc;
}

void NativeApi::RegisterSchedules(Router& r) {
  schedules::Scheduler* sched = opts_.schedules;
  // Another team's schedule is answered as one that does not exist.
  auto visible = [this](const std::string& name, const Principal& who) -> Result<ScheduleRecord> {
    auto rec = store_.GetSchedule(name);
    if (rec.ok() && !who.Sees(rec->team)) return NotFound("schedule '" + name + "' not found");
    return rec;
  };
  r.Post("/v1/schedules", Access::kMember, Body::kJson,
         [sched](const httplib::Request& req, httplib::Response& res, const Principal& who) {
           auto body = ParseUntrustedJson(req.body);
           if (!body.ok()) return SendApiError(res, body.status());
           auto rec = sched->Create(*body, who);
           if (!rec.ok()) return SendApiError(res, rec.status());
           SendJson(res, 201, ScheduleDoc(*rec, true));
         });
  r.Get("/v1/schedules", Access::kViewer,
        [this](const httplib::Request&, httplib::Response& res, const Principal& who) {
          auto all = store_.ListSchedules(who.role == Role::kAdmin ? "" : who.team);
          if (!all.ok()) return SendApiError(res, all.status());
          json out = json::array();
          for (const auto& rec : *all) out.push_back(ScheduleDoc(rec, false));
          SendJson(res, 200, {{"schedules", out}});
        });
  r.Get(R"(/v1/schedules/([A-Za-z0-9-]+))", Access::kViewer,
        [visible](const httplib::Request& req, httplib::Response& res, const Principal& who) {
          auto rec = visible(req.matches[1], who);
          if (!rec.ok()) return SendApiError(res, rec.status());
          SendJson(res, 200, ScheduleDoc(*rec, true));
        });
  // Runs already started go on; no new slot runs.
  r.Delete(R"(/v1/schedules/([A-Za-z0-9-]+))", Access::kMember,
           [sched, visible](const httplib::Request& req, httplib::Response& res, const Principal& who) {
             auto rec = visible(req.matches[1], who);
             if (!rec.ok()) return SendApiError(res, rec.status());
             if (!who.May(Role::kMember, rec->team))
               return SendApiError(res, Status(Code::kPermissionDenied,
                                               who.name + " may not delete schedules of team " + rec->team, "name"));
             Status st = sched->Delete(rec->name);
             if (!st.ok()) return SendApiError(res, st);
             SendJson(res, 200, {{"deleted", rec->name}});
           });
}

}  // namespace kiln
