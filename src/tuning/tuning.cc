#include "tuning/tuning.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <set>

#include "hpo/scheduler.h"

namespace kiln::tuning {
namespace {

using nlohmann::json;

uint64_t Fnv(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

const char* TypeName(hpo::ParamType t) {
  return t == hpo::ParamType::kInteger ? "Integer" : t == hpo::ParamType::kContinuous ? "Continuous" : "Categorical";
}
const char* ScalingName(hpo::Scaling s) {
  switch (s) {
    case hpo::Scaling::kLinear:
      return "Linear";
    case hpo::Scaling::kLogarithmic:
      return "Logarithmic";
    case hpo::Scaling::kReverseLogarithmic:
      return "ReverseLogarithmic";
    default:
      return "Auto";
  }
}

Status Positive(const json& j, const char* field, int64_t lo, int64_t hi, int64_t* out) {
  if (!j.contains(field)) return Status::Ok();
  if (!j[field].is_number_integer() || j[field].get<int64_t>() < lo || j[field].get<int64_t>() > hi)
    return InvalidArgument(field,
                           StrCat(field, ": must be an integer from ", std::to_string(lo), " to ", std::to_string(hi)));
  *out = j[field];
  return Status::Ok();
}

bool Improves(const TuningSpec& s, double v, double best) {
  return s.direction == hpo::Direction::kMaximize ? v > best : v < best;
}

// >= 1% better than `best` (SageMaker's rule for "improving").
bool ImprovesEnough(const TuningSpec& s, double v, double best) {
  double margin = std::max(std::fabs(best) * 0.01, 1e-12);
  return s.direction == hpo::Direction::kMaximize ? v >= best + margin : v <= best - margin;
}

hpo::Config ConfigOf(const hpo::SearchSpace& space, const json& hps) {
  hpo::Config c;
  for (const auto& p : space.params()) {
    if (!hps.contains(p.name)) continue;
    std::string v = hps[p.name].is_string() ? hps[p.name].get<std::string>() : hps[p.name].dump();
    if (p.type == hpo::ParamType::kCategorical) {
      c[p.name] = v;
    } else {
      char* end = nullptr;
      double d = strtod(v.c_str(), &end);
      if (end != v.c_str()) c[p.name] = d;
    }
  }
  return c;
}

}  // namespace

const char* ToString(Strategy s) {
  switch (s) {
    case Strategy::kRandom:
      return "Random";
    case Strategy::kGrid:
      return "Grid";
    case Strategy::kHyperband:
      return "Hyperband";
    default:
      return "Bayesian";
  }
}

const char* ToString(TuningStatus s) {
  switch (s) {
    case TuningStatus::kCompleted:
      return "Completed";
    case TuningStatus::kFailed:
      return "Failed";
    case TuningStatus::kStopping:
      return "Stopping";
    case TuningStatus::kStopped:
      return "Stopped";
    default:
      return "InProgress";
  }
}

const char* ToString(WarmStartType w) {
  switch (w) {
    case WarmStartType::kIdenticalDataAndAlgorithm:
      return "IdenticalDataAndAlgorithm";
    case WarmStartType::kTransferLearning:
      return "TransferLearning";
    default:
      return "None";
  }
}

const char* ToString(BayesianAlgorithm a) {
  switch (a) {
    case BayesianAlgorithm::kTpe:
      return "TPE";
    case BayesianAlgorithm::kGp:
      return "GP";
    default:
      return "Auto";
  }
}

std::optional<TuningStatus> ParseTuningStatus(const std::string& s) {
  for (auto t : {TuningStatus::kInProgress, TuningStatus::kCompleted, TuningStatus::kFailed, TuningStatus::kStopping,
                 TuningStatus::kStopped})
    if (s == ToString(t)) return t;
  return std::nullopt;
}

json TuningSpec::ToJson() const {
  json params = json::object();
  for (const auto& p : ranges) {
    json r = {{"type", TypeName(p.type)}};
    if (p.type == hpo::ParamType::kCategorical) {
      r["values"] = p.categories;
    } else {
      r["min"] = p.min;
      r["max"] = p.max;
      r["scaling"] = ScalingName(p.scaling);
    }
    params[p.name] = r;
  }
  json t = trial.ToJson();
  t.erase("name");
  json j = {{"name", name},
            {"strategy", tuning::ToString(strategy)},
            {"algorithm", ToString(algorithm)},
            {"objective",
             {{"metric", objective_metric},
              {"type", direction == hpo::Direction::kMaximize ? "Maximize" : "Minimize"},
              {"source", objective_source == ObjectiveSource::kStatsd ? "StatsD" : "Log"}}},
            {"max_trials", max_trials},
            {"max_parallel", max_parallel},
            {"max_runtime_seconds", max_runtime_seconds},
            {"early_stopping", early_stopping == EarlyStopping::kAuto ? "Auto" : "Off"},
            {"max_not_improving", max_not_improving},
            {"hyperband", {{"min_resource", min_resource}, {"max_resource", max_resource}}},
            {"parameters", params},
            {"trial", t},
            {"team", team},
            {"tags", tags}};
  if (target) j["target"] = *target;
  if (warm_start != WarmStartType::kNone)
    j["warm_start"] = {{"type", tuning::ToString(warm_start)}, {"parents", parents}};
  if (!sagemaker.is_null()) j["sagemaker"] = sagemaker;
  return j;
}

namespace {

// The sections of a native tuning spec, one parser each, in the order
// ParseTuningSpec checks them (the first error found is the one reported).

Status CheckFields(const json& j, const Catalog* catalog) {
  static const std::set<std::string> kKnown = {
      "name",           "strategy", "objective",         "max_trials", "max_parallel", "max_runtime_seconds",
      "early_stopping", "target",   "max_not_improving", "hyperband",  "parameters",   "warm_start",
      "trial",          "team",     "algorithm",         "tags"};
  if (!j.is_object()) return InvalidArgument("", "tuning spec must be an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnown.count(it.key()) && !(catalog == nullptr && it.key() == "sagemaker"))
      return InvalidArgument(it.key(), it.key() + ": unknown field");
  return Status::Ok();
}

Status ParseName(const json& j, TuningSpec* s) {
  if (!j.contains("name") || !j["name"].is_string()) return InvalidArgument("name", "name: required string");
  s->name = j["name"];
  if (s->name.size() > kMaxTuningNameLength || !IsValidJobName(s->name))
    return InvalidArgument("name", "name: 1-32 letters, digits or hyphens, starting and ending with a letter or digit");
  return Status::Ok();
}

// strategy, and algorithm (which refines the Bayesian strategy).
Status ParseStrategy(const json& j, TuningSpec* s) {
  std::string strategy = j.value("strategy", "Bayesian");
  bool found = false;
  for (auto st : {Strategy::kRandom, Strategy::kGrid, Strategy::kBayesian, Strategy::kHyperband})
    if (strategy == ToString(st)) {
      s->strategy = st;
      found = true;
    }
  if (!found) return InvalidArgument("strategy", "strategy: must be Random, Grid, Bayesian or Hyperband");
  if (j.contains("algorithm")) {
    const json& a = j["algorithm"];
    std::optional<BayesianAlgorithm> algorithm;
    for (auto al : {BayesianAlgorithm::kAuto, BayesianAlgorithm::kTpe, BayesianAlgorithm::kGp})
      if (a.is_string() && a == ToString(al)) algorithm = al;
    if (!algorithm) return InvalidArgument("algorithm", "algorithm: must be Auto, TPE or GP");
    if (*algorithm == BayesianAlgorithm::kGp && s->strategy != Strategy::kBayesian)
      return InvalidArgument("algorithm", "algorithm: GP applies to the Bayesian strategy only");
    s->algorithm = *algorithm;
  }
  return Status::Ok();
}

Status ParseObjective(const json& j, TuningSpec* s) {
  if (!j.contains("objective") || !j["objective"].is_object() || !j["objective"].contains("metric") ||
      !j["objective"]["metric"].is_string() || j["objective"]["metric"].get<std::string>().empty())
    return InvalidArgument("objective.metric",
                           "objective.metric: required, the name of a metric definition or a StatsD gauge");
  const json& o = j["objective"];
  s->objective_metric = o["metric"];
  std::string type = o.value("type", "Minimize");
  if (type != "Minimize" && type != "Maximize")
    return InvalidArgument("objective.type", "objective.type: must be Minimize or Maximize");
  s->direction = type == "Maximize" ? hpo::Direction::kMaximize : hpo::Direction::kMinimize;
  if (o.contains("source")) {
    const json& src = o["source"];
    if (!src.is_string() || (src != "Log" && src != "StatsD"))
      return InvalidArgument("objective.source", "objective.source: must be Log or StatsD");
    s->objective_source = src == "StatsD" ? ObjectiveSource::kStatsd : ObjectiveSource::kLog;
  }
  for (const auto& [key, value] : o.items())
    if (key != "metric" && key != "type" && key != "source")
      return InvalidArgument("objective." + key, "objective." + key + ": unknown field");
  return Status::Ok();
}

// max_trials, max_parallel and max_runtime_seconds (0: no limit).
Status ParseLimits(const json& j, TuningSpec* s) {
  int64_t v = s->max_trials;
  KILN_RETURN_IF_ERROR(Positive(j, "max_trials", 1, kMaxTrials, &v));
  s->max_trials = static_cast<int>(v);
  v = s->max_parallel;
  KILN_RETURN_IF_ERROR(Positive(j, "max_parallel", 1, kMaxParallel, &v));
  s->max_parallel = static_cast<int>(v);
  if (j.contains("max_runtime_seconds") &&
      !(j["max_runtime_seconds"].is_number_integer() && j["max_runtime_seconds"] == 0))
    KILN_RETURN_IF_ERROR(Positive(j, "max_runtime_seconds", 120, 15768000, &s->max_runtime_seconds));
  return Status::Ok();
}

// early_stopping and the completion criteria: target and max_not_improving (0: off).
Status ParseStopping(const json& j, TuningSpec* s) {
  std::string es = j.value("early_stopping", "Off");
  if (es != "Off" && es != "Auto") return InvalidArgument("early_stopping", "early_stopping: must be Off or Auto");
  s->early_stopping = es == "Auto" ? EarlyStopping::kAuto : EarlyStopping::kOff;
  if (s->strategy == Strategy::kHyperband && s->early_stopping == EarlyStopping::kAuto)
    return InvalidArgument("early_stopping", "early_stopping: Hyperband stops trials itself; set Off");
  if (j.contains("target")) {
    if (!j["target"].is_number()) return InvalidArgument("target", "target: must be a number");
    s->target = j["target"].get<double>();
  }
  if (j.contains("max_not_improving") && j["max_not_improving"] != 0) {
    int64_t n = 0;
    KILN_RETURN_IF_ERROR(Positive(j, "max_not_improving", 3, kMaxTrials, &n));
    s->max_not_improving = static_cast<int>(n);
  }
  return Status::Ok();
}

// hyperband: {min_resource, max_resource}; the Hyperband strategy needs max_resource.
Status ParseHyperband(const json& j, TuningSpec* s) {
  if (j.contains("hyperband")) {
    const json& h = j["hyperband"];
    if (!h.is_object()) return InvalidArgument("hyperband", "hyperband: must be {min_resource, max_resource}");
    KILN_RETURN_IF_ERROR(Positive(h, "min_resource", 1, 20000, &s->min_resource));
    if (h.contains("max_resource") && h["max_resource"] != 0)
      KILN_RETURN_IF_ERROR(Positive(h, "max_resource", 1, 20000, &s->max_resource));
  }
  if (s->strategy == Strategy::kHyperband) {
    if (s->max_resource == 0) return InvalidArgument("hyperband.max_resource", "hyperband.max_resource: required");
    if (s->min_resource >= s->max_resource)
      return InvalidArgument("hyperband.min_resource", "hyperband.min_resource: must be less than max_resource");
  }
  return Status::Ok();
}

// The numeric part of an Integer or Continuous range `r` at `f` ("parameters.<name>").
Status ParseNumericRange(const json& r, const std::string& f, const std::string& type, hpo::Parameter* p) {
  p->type = type == "Integer" ? hpo::ParamType::kInteger : hpo::ParamType::kContinuous;
  if (!r.contains("min") || !r["min"].is_number() || !r.contains("max") || !r["max"].is_number())
    return InvalidArgument(f + ".min", f + ": min and max are required numbers");
  p->min = r["min"];
  p->max = r["max"];
  std::string sc = r.value("scaling", "Auto");
  if (sc == "Auto") {
    p->scaling = hpo::Scaling::kAuto;
  } else if (sc == "Linear") {
    p->scaling = hpo::Scaling::kLinear;
  } else if (sc == "Logarithmic") {
    p->scaling = hpo::Scaling::kLogarithmic;
  } else if (sc == "ReverseLogarithmic" && type == "Continuous") {
    p->scaling = hpo::Scaling::kReverseLogarithmic;
  } else {
    return InvalidArgument(f + ".scaling",
                           f + ".scaling: Auto, Linear, Logarithmic or (Continuous) ReverseLogarithmic");
  }
  return Status::Ok();
}

// One entry of parameters: {type, min, max, scaling} or {type: Categorical, values}.
Result<hpo::Parameter> ParseRange(const std::string& name, const json& r) {
  const std::string f = "parameters." + name;
  if (!r.is_object()) return InvalidArgument(f, f + ": must be {type, min, max, scaling} or {type, values}");
  hpo::Parameter p;
  p.name = name;
  std::string t = r.value("type", "");
  if (t == "Categorical") {
    p.type = hpo::ParamType::kCategorical;
    if (!r.contains("values") || !r["values"].is_array() || r["values"].size() > 30)
      return InvalidArgument(f + ".values", f + ".values: a list of 1-30 values");
    for (const auto& c : r["values"]) p.categories.push_back(c.is_string() ? c.get<std::string>() : c.dump());
  } else if (t == "Integer" || t == "Continuous") {
    KILN_RETURN_IF_ERROR(ParseNumericRange(r, f, t, &p));
  } else {
    return InvalidArgument(f + ".type", f + ".type: must be Integer, Continuous or Categorical");
  }
  return p;
}

// parameters, then the search space they make (its errors name the parameter).
Status ParseRanges(const json& j, TuningSpec* s) {
  if (!j.contains("parameters") || !j["parameters"].is_object() || j["parameters"].empty())
    return InvalidArgument("parameters", "parameters: at least one range");
  for (auto it = j["parameters"].begin(); it != j["parameters"].end(); ++it) {
    auto p = ParseRange(it.key(), it.value());
    if (!p.ok()) return p.status();
    s->ranges.push_back(*p);
  }
  auto space = hpo::SearchSpace::Create(s->ranges);
  if (!space.ok()) {
    std::string field = space.status().field();
    auto lb = field.find('['), rb = field.find(']');
    if (lb != std::string::npos && rb != std::string::npos) {
      size_t i = std::stoul(field.substr(lb + 1, rb - lb - 1));
      field = "parameters." + s->ranges[i].name + field.substr(rb + 1);
    }
    return InvalidArgument(field, field + ": " + space.status().message());
  }
  return Status::Ok();
}

Status ParseWarmStart(const json& j, TuningSpec* s) {
  if (!j.contains("warm_start")) return Status::Ok();
  const json& w = j["warm_start"];
  if (!w.is_object()) return InvalidArgument("warm_start", "warm_start: must be {type, parents}");
  std::string wt = w.value("type", "IdenticalDataAndAlgorithm");
  if (wt == "IdenticalDataAndAlgorithm") {
    s->warm_start = WarmStartType::kIdenticalDataAndAlgorithm;
  } else if (wt == "TransferLearning") {
    s->warm_start = WarmStartType::kTransferLearning;
  } else {
    return InvalidArgument("warm_start.type", "warm_start.type: IdenticalDataAndAlgorithm or TransferLearning");
  }
  if (!w.contains("parents") || !w["parents"].is_array() || w["parents"].empty() || w["parents"].size() > 5)
    return InvalidArgument("warm_start.parents", "warm_start.parents: 1 to 5 tuning job names");
  for (const auto& p : w["parents"]) {
    if (!p.is_string()) return InvalidArgument("warm_start.parents", "warm_start.parents: names are strings");
    s->parents.push_back(p);
  }
  return Status::Ok();
}

// team, and the tuning job's own tags (no aws: prefix).
Status ParseTeamAndTags(const json& j, TuningSpec* s) {
  if (j.contains("team")) {
    if (!j["team"].is_string() || !IsValidJobName(j["team"]))
      return InvalidArgument("team", "team: 1-63 letters, digits or hyphens");
    s->team = j["team"];
  }
  if (j.contains("tags")) {
    Status st = ParseTags(j["tags"], "tags", &s->tags);
    if (!st.ok()) return InvalidArgument(st.field(), StrCat(st.field(), ": ", st.message()));
    for (const auto& [k, v] : s->tags)
      if (k.rfind("aws:", 0) == 0)
        return InvalidArgument(StrCat("tags.", k), StrCat("tags.", k, ": the aws: prefix is reserved"));
  }
  return Status::Ok();
}

// The trial template, a job spec without name, validated as a trial's would be.
Status ParseTrial(const json& j, const Catalog* catalog, TuningSpec* s) {
  if (!j.contains("trial") || !j["trial"].is_object())
    return InvalidArgument("trial", "trial: required, a job spec without name");
  json t = j["trial"];
  if (t.contains("name")) return InvalidArgument("trial.name", "trial.name: trials are named by the tuning job");
  t["name"] = s->name + "-000-00000000";
  if (!t.contains("team")) t["team"] = s->team;
  auto trial = ParseSpec(t, catalog);
  if (!trial.ok()) {
    std::string field = "trial." + trial.status().field();
    return InvalidArgument(field, field + ": " + trial.status().message());
  }
  s->trial = *trial;
  s->trial.name.clear();
  return Status::Ok();
}

// What the tuning spec asks of its trial template: the objective's metric
// definition, and no range that is also a static hyperparameter.
Status CheckTrialFitsSpec(const TuningSpec& s) {
  if (s.objective_source == ObjectiveSource::kLog) {
    bool has_metric = false;
    for (const auto& [n, re] : s.trial.metric_definitions) has_metric = has_metric || n == s.objective_metric;
    if (!has_metric)
      return InvalidArgument("objective.metric", "objective.metric: '" + s.objective_metric +
                                                     "' is not one of the trial's metric_definitions (or set "
                                                     "objective.source: StatsD to read the trial's StatsD gauge)");
  }
  for (const auto& p : s.ranges)
    if (s.trial.hyperparameters.contains(p.name))
      return InvalidArgument("parameters." + p.name,
                             "parameters." + p.name + ": also a static hyperparameter of the trial");
  return Status::Ok();
}

}  // namespace

Result<TuningSpec> ParseTuningSpec(const json& j, const Catalog* catalog) {
  KILN_RETURN_IF_ERROR(CheckFields(j, catalog));
  TuningSpec s;
  KILN_RETURN_IF_ERROR(ParseName(j, &s));
  KILN_RETURN_IF_ERROR(ParseStrategy(j, &s));
  KILN_RETURN_IF_ERROR(ParseObjective(j, &s));
  KILN_RETURN_IF_ERROR(ParseLimits(j, &s));
  KILN_RETURN_IF_ERROR(ParseStopping(j, &s));
  KILN_RETURN_IF_ERROR(ParseHyperband(j, &s));
  KILN_RETURN_IF_ERROR(ParseRanges(j, &s));
  KILN_RETURN_IF_ERROR(ParseWarmStart(j, &s));
  KILN_RETURN_IF_ERROR(ParseTeamAndTags(j, &s));
  KILN_RETURN_IF_ERROR(ParseTrial(j, catalog, &s));
  KILN_RETURN_IF_ERROR(CheckTrialFitsSpec(s));
  if (catalog == nullptr && j.contains("sagemaker")) s.sagemaker = j["sagemaker"];
  return s;
}

json TuningState::ToJson() const {
  return {{"status", tuning::ToString(status)},
          {"created_ms", created},
          {"ended_ms", ended},
          {"reason", reason},
          {"stop_requested", stop_requested},
          {"early_stopped", early_stopped},
          {"trial_salt", trial_salt}};
}

TuningState TuningState::FromJson(const json& j) {
  TuningState s;
  s.status = ParseTuningStatus(j.value("status", "InProgress")).value_or(TuningStatus::kInProgress);
  s.created = j.value("created_ms", int64_t{0});
  s.ended = j.value("ended_ms", int64_t{0});
  s.reason = j.value("reason", "");
  s.stop_requested = j.value("stop_requested", false);
  s.early_stopped = j.value("early_stopped", std::vector<std::string>{});
  s.trial_salt = j.value("trial_salt", "");
  return s;
}

std::string TrialName(const std::string& tuning, int index, const std::string& salt) {
  const std::string key =
      salt.empty() ? tuning + "/" + std::to_string(index) : salt + "/" + tuning + "/" + std::to_string(index);
  char buf[32];
  snprintf(buf, sizeof buf, "-%03d-%08llx", index, static_cast<unsigned long long>(Fnv(key) & 0xffffffffull));
  return tuning + buf;
}

// By shape: "<tuning>-<index>-<8 hex>". Which jobs are trials is the job's
// tuning_job field (set by kilnd only); the name gives the index.
int TrialIndex(const std::string& tuning, const std::string& name) {
  if (name.size() < tuning.size() + 12 || name.compare(0, tuning.size(), tuning) != 0 || name[tuning.size()] != '-')
    return 0;
  const std::string rest = name.substr(tuning.size() + 1);
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos || dash > 9 || rest.size() - dash - 1 != 8) return 0;
  for (size_t i = 0; i < rest.size(); ++i)
    if (i != dash && !(i < dash ? std::isdigit(static_cast<unsigned char>(rest[i]))
                                : std::isxdigit(static_cast<unsigned char>(rest[i]))))
      return 0;
  return atoi(rest.c_str());
}

std::optional<double> Objective(const TrialView& t) {
  if (t.curve.empty()) return std::nullopt;
  if (t.status == JobStatus::kCompleted || (t.status == JobStatus::kStopped && t.early_stopped)) return t.curve.back();
  return std::nullopt;
}

int BestTrial(const TuningSpec& spec, const std::vector<TrialView>& trials) {
  int best = -1;
  for (size_t i = 0; i < trials.size(); ++i) {
    auto o = Objective(trials[i]);
    if (!o) continue;
    if (best < 0 || Improves(spec, *o, *Objective(trials[best]))) best = static_cast<int>(i);
  }
  return best;
}

namespace {

bool WasEarlyStopped(const TuningState& state, const std::string& trial) {
  return std::find(state.early_stopped.begin(), state.early_stopped.end(), trial) != state.early_stopped.end();
}

std::vector<const TrialView*> ByIndex(const std::vector<TrialView>& trials) {
  std::vector<const TrialView*> ordered;
  ordered.reserve(trials.size());
  for (const auto& t : trials) ordered.push_back(&t);
  std::sort(ordered.begin(), ordered.end(), [](auto* a, auto* b) { return a->index < b->index; });
  return ordered;
}

// early_stopping Auto: running trials whose curve falls below the median of the
// earlier trials' curves at the same step.
std::vector<std::string> MedianRuleStops(const TuningSpec& s, const TuningState& state,
                                         const std::vector<TrialView>& trials) {
  std::vector<std::string> stops;
  std::vector<hpo::Curve> curves(trials.size());
  for (size_t i = 0; i < trials.size(); ++i)
    for (size_t k = 0; k < trials[i].curve.size(); ++k)
      curves[i].points.emplace_back(static_cast<int64_t>(k + 1), trials[i].curve[k]);
  for (size_t i = 0; i < trials.size(); ++i) {
    if (IsTerminal(trials[i].status) || curves[i].points.empty()) continue;
    std::vector<const hpo::Curve*> others;
    for (size_t k = 0; k < trials.size(); ++k)
      if (k != i && trials[k].index < trials[i].index) others.push_back(&curves[k]);
    if (!WasEarlyStopped(state, trials[i].name) &&
        hpo::MedianRule(curves[i], others, s.direction) == hpo::Decision::kStop)
      stops.push_back(trials[i].name);
  }
  return stops;
}

// The Hyperband strategy: running trials that did not pass a rung, replayed in
// index order through the brackets.
std::vector<std::string> HyperbandStops(const TuningSpec& s, const TuningState& state,
                                        const std::vector<TrialView>& trials) {
  std::vector<std::string> stops;
  hpo::Hyperband hb(s.min_resource, s.max_resource, 3);
  for (const auto* t : ByIndex(trials)) {
    bool stop = false;  // a rung the trial did not pass
    for (size_t k = 0; k < t->curve.size() && static_cast<int64_t>(k) < s.max_resource && !stop; ++k)
      stop = hb.Report(t->index, static_cast<int64_t>(k + 1), t->curve[k], s.direction) == hpo::Decision::kStop;
    // A trial that reaches max_resource runs to its own end.
    if (!IsTerminal(t->status) && stop && !WasEarlyStopped(state, t->name)) stops.push_back(t->name);
  }
  return stops;
}

// How many trials, in the order they ended, have finished since the best
// objective last improved by at least 1%.
int TrialsSinceImprovement(const TuningSpec& s, const std::vector<TrialView>& trials) {
  std::vector<const TrialView*> done;
  for (const auto& t : trials)
    if (Objective(t)) done.push_back(&t);
  std::sort(done.begin(), done.end(),
            [](auto* a, auto* b) { return a->ended != b->ended ? a->ended < b->ended : a->index < b->index; });
  std::optional<double> best_so_far;
  int since = 0;
  for (const auto* t : done) {
    double o = *Objective(*t);
    if (!best_so_far || ImprovesEnough(s, o, *best_so_far)) {
      best_so_far = o;
      since = 0;
    } else {
      if (Improves(s, o, *best_so_far)) best_so_far = o;
      ++since;
    }
  }
  return since;
}

// Why the tuning job is complete before its trial budget is spent (target
// reached, no improvement, out of time), or nullopt. `best` is BestTrial's.
std::optional<std::string> CompletionReason(const TuningJob& job, const std::vector<TrialView>& trials, int best,
                                            TimeMs now) {
  const TuningSpec& s = job.spec;
  if (best >= 0 && s.target) {
    double b = *Objective(trials[best]);
    if (s.direction == hpo::Direction::kMaximize ? b >= *s.target : b <= *s.target)
      return "TargetObjectiveMetricValue reached by " + trials[best].name;
  }
  if (s.max_not_improving > 0) {
    int since = TrialsSinceImprovement(s, trials);
    if (since >= s.max_not_improving)
      return "MaxNumberOfTrainingJobsNotImproving: " + std::to_string(since) + " trials without a 1% gain";
  }
  if (s.max_runtime_seconds > 0 && now - job.state.created >= s.max_runtime_seconds * 1000)
    return "MaxRuntimeInSeconds reached";
  return std::nullopt;
}

std::unique_ptr<hpo::Sampler> MakeSampler(const TuningSpec& s) {
  switch (s.strategy) {
    case Strategy::kRandom:
      return hpo::MakeRandomSampler();
    case Strategy::kGrid:
      return hpo::MakeGridSampler();
    case Strategy::kBayesian:
      switch (s.algorithm) {
        case BayesianAlgorithm::kAuto:
          return hpo::MakeBayesianSampler();
        case BayesianAlgorithm::kTpe:
          return hpo::MakeTpeSampler();
        case BayesianAlgorithm::kGp:
          return hpo::MakeGpSampler();
      }
      return nullptr;
    case Strategy::kHyperband:
      return hpo::MakeTpeSampler();  // its brackets' new trials come from TPE
  }
  return nullptr;
}

// A trial as the sampler sees it; nullopt when its hyperparameters do not
// encode in `space`.
std::optional<hpo::Trial> SamplerTrial(const hpo::SearchSpace& space, const TrialView& t) {
  hpo::Trial h;
  h.u = space.EncodeAll(ConfigOf(space, t.hyperparameters));
  if (h.u.size() != space.size()) return std::nullopt;
  auto o = Objective(t);
  h.state = !IsTerminal(t.status) ? hpo::TrialState::kRunning
            : o ? (t.status == JobStatus::kCompleted ? hpo::TrialState::kCompleted : hpo::TrialState::kStopped)
                : hpo::TrialState::kFailed;
  h.objective = o.value_or(0);
  return h;
}

// What the sampler learns from: the warm-start parents' trials, then this job's
// in index order.
std::vector<hpo::Trial> SamplerHistory(const TuningSpec& s, const hpo::SearchSpace& space,
                                       const std::vector<TrialView>& trials, const std::vector<TrialView>& warm) {
  std::vector<hpo::Trial> history;
  auto add = [&](const TrialView& t) {
    if (auto h = SamplerTrial(space, t)) history.push_back(*h);
  };
  // Warm start seeds the model-based samplers; a grid walks its own points.
  if (s.strategy != Strategy::kGrid)
    for (const auto& t : warm) add(t);
  for (const auto* t : ByIndex(trials)) add(*t);
  return history;
}

// New trials while fewer than `limit` have been launched and fewer than
// max_parallel are `live`. Each proposal draws from a generator seeded by the
// tuning job's name and the trial's index, so a restart proposes the same.
std::vector<TrialLaunch> ProposeTrials(const TuningSpec& s, const std::string& salt, const hpo::SearchSpace& space,
                                       hpo::Sampler& sampler, std::vector<hpo::Trial> history,
                                       const std::vector<TrialView>& trials, int limit, int live) {
  std::vector<TrialLaunch> launches;
  int next = 0;
  for (const auto& t : trials) next = std::max(next, t.index);
  for (int n = static_cast<int>(trials.size()); n < limit && live < s.max_parallel; ++n, ++live) {
    TrialLaunch l;
    l.index = ++next;
    l.name = TrialName(s.name, l.index, salt);
    std::mt19937_64 rng(Fnv(s.name) ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(l.index)));
    std::vector<double> u = sampler.Suggest(space, history, s.direction, rng);
    hpo::Config c = space.DecodeAll(u);
    l.tuned = json::object();
    for (const auto& [k, v] : c) l.tuned[k] = hpo::ToString(v);
    hpo::Trial pending;
    pending.u = u;
    history.push_back(pending);  // taken, so the next suggestion differs
    launches.push_back(l);
  }
  return launches;
}

}  // namespace

Decision Decide(const TuningJob& job, const std::vector<TrialView>& trials, const std::vector<TrialView>& warm,
                TimeMs now) {
  const TuningSpec& s = job.spec;
  Decision d;
  if (IsTerminal(job.state.status)) return d;
  std::vector<const TrialView*> running;
  for (const auto& t : trials)
    if (!IsTerminal(t.status)) running.push_back(&t);
  auto finish = [&](TuningStatus st, const std::string& why) {
    for (const auto* t : running) d.stop.push_back(t->name);
    if (running.empty()) {
      d.status = st;
    } else if (job.state.status != TuningStatus::kStopping) {
      d.status = TuningStatus::kStopping;
    }
    d.reason = why;
    return d;
  };
  if (job.state.status == TuningStatus::kStopping) {
    // Ending: wait for the stopped trials, then settle on the final status.
    TuningStatus final_status = job.state.stop_requested ? TuningStatus::kStopped : TuningStatus::kCompleted;
    if (!job.state.stop_requested && BestTrial(s, trials) < 0) final_status = TuningStatus::kFailed;
    return finish(final_status, job.state.reason);
  }
  if (job.state.stop_requested) return finish(TuningStatus::kStopped, "Stopped by request");

  // A trial the tuner already stopped early but that still runs (the stop was
  // lost in a crash): stop it again. It holds its slot until it has ended.
  for (const auto* t : running)
    if (WasEarlyStopped(job.state, t->name)) d.stop.push_back(t->name);

  if (s.early_stopping == EarlyStopping::kAuto) {
    d.early_stop = MedianRuleStops(s, job.state, trials);
  } else if (s.strategy == Strategy::kHyperband) {
    d.early_stop = HyperbandStops(s, job.state, trials);
  }

  int best = BestTrial(s, trials);
  if (auto why = CompletionReason(job, trials, best, now)) return finish(TuningStatus::kCompleted, *why);

  auto space = hpo::SearchSpace::Create(s.ranges);
  const int launched = static_cast<int>(trials.size());
  std::unique_ptr<hpo::Sampler> sampler = MakeSampler(s);
  int limit = s.max_trials;
  if (s.strategy == Strategy::kGrid && space.ok())
    if (size_t cap = sampler->Capacity(*space); cap > 0) limit = std::min<int>(limit, static_cast<int>(cap));
  if (launched >= limit && running.empty()) {
    if (best < 0) return finish(TuningStatus::kFailed, "all " + std::to_string(launched) + " training jobs failed");
    return finish(TuningStatus::kCompleted, "MaxNumberOfTrainingJobs reached");
  }
  if (!space.ok()) return d;
  // Trials being stopped keep their slot until they have ended.
  const int live = static_cast<int>(running.size());
  d.launch = ProposeTrials(s, job.state.trial_salt, *space, *sampler, SamplerHistory(s, *space, trials, warm), trials,
                           limit, live);
  return d;
}

JobSpec TrialSpec(const TuningSpec& spec, const TrialLaunch& t) {
  JobSpec j = spec.trial;
  j.name = t.name;
  j.tuning_job = spec.name;
  j.team = spec.team;
  for (auto& [k, v] : t.tuned.items()) j.hyperparameters[k] = v;
  if (!j.sagemaker.is_null()) {
    j.sagemaker["TrainingJobName"] = t.name;
    for (auto& [k, v] : t.tuned.items()) j.sagemaker["HyperParameters"][k] = v;
  }
  return j;
}

}  // namespace kiln::tuning
