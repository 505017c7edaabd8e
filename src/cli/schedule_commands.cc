// kiln schedules create|list|describe|delete.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/spec_file.h"

namespace kiln::cli {

using nlohmann::json;

int CreateSchedule(Context& ctx, const CreateScheduleOptions& o) {
  auto spec = LoadSpecFile(o.spec_path);
  if (!spec.ok()) {
    fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  spec->erase("name");  // each run is named <schedule>-<slot time>
  json body = {{"name", o.name}, {"cron", o.cron}, {"overlap", o.overlap}, {"job", *spec}};
  if (o.prewarm_seconds > 0) body["prewarm"] = {{"seconds", o.prewarm_seconds}, {"preload", o.preload}};
  auto r = ctx.kilnd.Call("POST", "/v1/schedules", body.dump());
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << r->value("name", "") << ": next run " << r->value("next_slot", "") << "\n";
  return 0;
}

int ListSchedules(Context& ctx) {
  auto r = ctx.kilnd.Call("GET", "/v1/schedules");
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("NAME", 24) << Pad("TEAM", 12) << Pad("CRON", 18) << Pad("OVERLAP", 9) << Pad("NEXT", 26)
            << "LAST RUN\n";
  for (const auto& s : (*r)["schedules"]) {
    std::string last = "-";
    if (s["last_run"].is_object())
      last = s["last_run"].value("outcome", "") + " " + s["last_run"].value("job_name", "");
    std::cout << Pad(s.value("name", ""), 24) << Pad(s.value("team", ""), 12) << Pad(s.value("cron", ""), 18)
              << Pad(s.value("overlap", ""), 9)
              << Pad(s["next_slot"].is_string() ? s["next_slot"].get<std::string>() : "(waiting)", 26) << last << "\n";
  }
  return 0;
}

int DescribeSchedule(Context& ctx, const std::string& name) {
  auto r = ctx.kilnd.Call("GET", "/v1/schedules/" + UrlEscape(name));
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  const json& s = *r;
  std::cout << Pad("Name", 12) << s.value("name", "") << "\n"
            << Pad("Team", 12) << s.value("team", "") << "\n"
            << Pad("Cron", 12) << s.value("cron", "") << " (UTC)\n"
            << Pad("Overlap", 12) << s.value("overlap", "") << "\n"
            << Pad("Prewarm", 12)
            << (s.contains("prewarm") ? std::to_string(s["prewarm"].value("seconds", 0)) + " s before each run" : "no")
            << "\n"
            << Pad("Next", 12) << (s["next_slot"].is_string() ? s["next_slot"].get<std::string>() : "(waiting)")
            << "\nRuns:\n";
  for (const auto& h : s["history"])
    std::cout << "  " << Pad(h.value("slot", ""), 26) << Pad(h.value("outcome", ""), 10)
              << Pad(h.value("job_name", ""), 40) << h.value("message", "") << "\n";
  return 0;
}

int DeleteSchedule(Context& ctx, const std::string& name) {
  if (!ctx.kilnd.Call("DELETE", "/v1/schedules/" + UrlEscape(name))) return 2;
  std::cout << "deleted " << name << "\n";
  return 0;
}

}  // namespace kiln::cli
