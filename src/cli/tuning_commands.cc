// kiln tune, kiln tuning list|describe|stop.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/spec_file.h"
#include "cli/tuning_view.h"

namespace kiln::cli {

using nlohmann::json;

int Tune(Context& ctx, const TuneOptions& o) {
  auto spec = LoadSpecFile(o.spec_path);
  if (!spec.ok()) {
    fprintf(stderr, "kiln: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto created = ctx.kilnd.Call("POST", "/v1/tuning-jobs", spec->dump());
  if (!created) return 2;
  std::string name = (*created)["name"];
  if (o.follow) return FollowTuning(ctx, name);
  if (ctx.output == Output::kJson)
    std::cout << created->dump(2) << "\n";
  else
    std::cout << name << "\n";
  return 0;
}

int DescribeTuning(Context& ctx, const DescribeTuningOptions& o) {
  if (o.follow) return FollowTuning(ctx, o.name);
  auto doc = ctx.kilnd.Call("GET", "/v1/tuning-jobs/" + UrlEscape(o.name));
  if (!doc) return 2;
  std::cout << RenderTuning(*doc, o.name, ctx.output) << std::flush;
  return 0;
}

int ListTuningJobs(Context& ctx) {
  auto r = ctx.kilnd.Call("GET", "/v1/tuning-jobs");
  if (!r) return 2;
  if (ctx.output == Output::kJson) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::cout << Pad("NAME", 34) << Pad("STATUS", 12) << Pad("STRATEGY", 11) << "BEST\n";
  for (const auto& t : (*r)["tuning_jobs"])
    std::cout << Pad(t["name"].get<std::string>(), 34) << Pad(t["status"].get<std::string>(), 12)
              << Pad(t["strategy"].get<std::string>(), 11)
              << (t["best"].is_null() ? std::string("-") : t["best"]["objective"].dump()) << "\n";
  return 0;
}

int StopTuning(Context& ctx, const std::string& name) {
  auto r = ctx.kilnd.Call("POST", "/v1/tuning-jobs/" + UrlEscape(name) + "/stop");
  if (!r) return 2;
  std::cout << name << " " << (*r)["status"].get<std::string>() << "\n";
  return 0;
}

}  // namespace kiln::cli
