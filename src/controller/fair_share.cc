#include "controller/fair_share.h"

#include <cstdio>

namespace kiln {

using nlohmann::json;

Usage& Usage::operator+=(const Usage& o) {
  instances += o.instances;
  vcpus += o.vcpus;
  memory_mib += o.memory_mib;
  gpus += o.gpus;
  trials += o.trials;
  notebooks += o.notebooks;
  return *this;
}

Usage& Usage::operator-=(const Usage& o) {
  instances -= o.instances;
  vcpus -= o.vcpus;
  memory_mib -= o.memory_mib;
  gpus -= o.gpus;
  trials -= o.trials;
  notebooks -= o.notebooks;
  return *this;
}

const TeamQuota& QuotaConfig::For(const std::string& team) const {
  auto it = teams.find(team);
  return it == teams.end() ? defaults : it->second;
}

namespace {

// One quota mapping onto `q` (fields absent keep q's values).
Status DecodeQuota(const json& j, const std::string& where, TeamQuota& q) {
  if (!j.is_object()) return InvalidArgument(where, where + " must be a mapping");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string f = where + "." + it.key();
    const json& v = it.value();
    auto count = [&](int64_t hi, int64_t& out) -> Status {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > hi)
        return InvalidArgument(f, f + " must be an integer 0.." + std::to_string(hi));
      out = v.get<int64_t>();
      return Status::Ok();
    };
    int64_t n = 0;
    if (it.key() == "instances" || it.key() == "gpus" || it.key() == "tuning_trials" || it.key() == "notebooks") {
      KILN_RETURN_IF_ERROR(count(1000000, n));
      (it.key() == "instances"       ? q.instances
       : it.key() == "gpus"          ? q.gpus
       : it.key() == "tuning_trials" ? q.trials
                                     : q.notebooks) = static_cast<int>(n);
    } else if (it.key() == "memory_gib") {
      KILN_RETURN_IF_ERROR(count(1 << 30, n));
      q.memory_mib = n * 1024;
    } else if (it.key() == "vcpus" || it.key() == "weight") {
      if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1e9 ||
          (it.key() == "weight" && v.get<double>() <= 0))
        return InvalidArgument(f, f + (it.key() == "weight" ? " must be a number > 0" : " must be a number >= 0"));
      (it.key() == "vcpus" ? q.vcpus : q.weight) = v.get<double>();
    } else {
      return InvalidArgument(
          f, "unknown quota " + f + " (instances, vcpus, memory_gib, gpus, tuning_trials, notebooks, weight)");
    }
  }
  return Status::Ok();
}

std::string Limit(const std::string& team, const char* what, double used, double need, double limit, const char* key) {
  char buf[320];
  snprintf(buf, sizeof(buf), "team quota: team %s uses %g of its %g %s and this needs %g more (quotas.teams.%s.%s)",
           team.c_str(), used, limit, what, need, team.c_str(), key);
  return buf;
}

}  // namespace

Result<QuotaConfig> QuotaConfigFromJson(const json& j) {
  QuotaConfig c;
  if (j.is_null()) return c;
  if (!j.is_object()) return InvalidArgument("quotas", "quotas must be a mapping of default and teams");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "default" && it.key() != "teams")
      return InvalidArgument("quotas." + it.key(), "unknown key quotas." + it.key() + " (default, teams)");
  if (j.contains("default")) KILN_RETURN_IF_ERROR(DecodeQuota(j["default"], "quotas.default", c.defaults));
  if (j.contains("teams")) {
    if (!j["teams"].is_object()) return InvalidArgument("quotas.teams", "quotas.teams must be a mapping of teams");
    for (auto it = j["teams"].begin(); it != j["teams"].end(); ++it) {
      TeamQuota q = c.defaults;
      KILN_RETURN_IF_ERROR(DecodeQuota(it.value(), "quotas.teams." + it.key(), q));
      c.teams[it.key()] = q;
    }
  }
  return c;
}

std::string FairShare::OverQuota(const Waiter& w) const {
  const TeamQuota& q = cfg_.For(w.team);
  const Usage u = UsageOf(w.team);
  const Usage& n = w.need;
  if (q.instances >= 0 && u.instances + n.instances > q.instances)
    return Limit(w.team, "instances", u.instances, n.instances, q.instances, "instances");
  if (q.vcpus >= 0 && u.vcpus + n.vcpus > q.vcpus + 1e-9)
    return Limit(w.team, "vCPUs", u.vcpus, n.vcpus, q.vcpus, "vcpus");
  if (q.memory_mib >= 0 && u.memory_mib + n.memory_mib > q.memory_mib)
    return Limit(w.team, "GiB of memory", u.memory_mib / 1024.0, n.memory_mib / 1024.0, q.memory_mib / 1024.0,
                 "memory_gib");
  if (q.gpus >= 0 && u.gpus + n.gpus > q.gpus) return Limit(w.team, "GPUs", u.gpus, n.gpus, q.gpus, "gpus");
  if (q.trials >= 0 && u.trials + n.trials > q.trials)
    return Limit(w.team, "running tuning trials", u.trials, n.trials, q.trials, "tuning_trials");
  if (q.notebooks >= 0 && u.notebooks + n.notebooks > q.notebooks)
    return Limit(w.team, "running notebooks", u.notebooks, n.notebooks, q.notebooks, "notebooks");
  return "";
}

void FairShare::Charge(const std::string& instance_id, const std::string& team, const Usage& u) {
  if (!charged_.emplace(instance_id, std::make_pair(team, u)).second) return;
  usage_[team] += u;
}

void FairShare::Release(const std::string& instance_id) {
  auto it = charged_.find(instance_id);
  if (it == charged_.end()) return;
  auto t = usage_.find(it->second.first);
  t->second -= it->second.second;
  if (t->second.instances <= 0 && t->second.trials <= 0 && t->second.notebooks <= 0) usage_.erase(t);
  charged_.erase(it);
}

Usage FairShare::UsageOf(const std::string& team) const {
  auto it = usage_.find(team);
  return it == usage_.end() ? Usage{} : it->second;
}

void FairShare::Add(Waiter w) {
  Remove(w.instance_id);
  queues_[w.team].insert(KeyOf(w));
  const std::string id = w.instance_id;
  waiting_.emplace(id, std::move(w));
}

bool FairShare::Remove(const std::string& instance_id) {
  auto it = waiting_.find(instance_id);
  if (it == waiting_.end()) return false;
  auto q = queues_.find(it->second.team);
  q->second.erase(KeyOf(it->second));
  if (q->second.empty()) queues_.erase(q);
  waiting_.erase(it);
  return true;
}

std::optional<Waiter> FairShare::Next() const {
  const Waiter* best = nullptr;
  double best_share = 0;
  uint64_t best_served = 0;
  for (const auto& [team, keys] : queues_) {
    const Waiter& first = waiting_.at(std::get<2>(*keys.begin()));
    if (!OverQuota(first).empty()) continue;
    const double share = UsageOf(team).vcpus / cfg_.For(team).weight;
    auto s = served_.find(team);
    const uint64_t served = s == served_.end() ? 0 : s->second;
    // Teams are visited in name order, so a full tie keeps the first by name.
    if (best == nullptr || share < best_share - 1e-12 || (share <= best_share + 1e-12 && served < best_served)) {
      best = &first;
      best_share = share;
      best_served = served;
    }
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

std::optional<Waiter> FairShare::PopNext() {
  auto w = Next();
  if (w) Remove(w->instance_id);
  return w;
}

}  // namespace kiln
