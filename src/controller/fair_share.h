#pragma once
// Per-team quotas and the weighted fair-share order of what waits to launch.
//
// Every launch of an instance waits here until its team's quota admits it and it
// is its turn. Turns go across teams by weighted fair share: the team whose
// running share (vCPUs charged / weight) is lowest goes first; among equal
// shares, the team served least recently (round robin), then by name. Within a team, the highest priority goes first,
// then the oldest job, then the lowest instance id, so the order is the same after a restart. A team whose first waiter
// is over its quota is skipped (its lower-priority waiters do not jump ahead of it).
//
// Pure and single-threaded: the controller holds it under its lock. A decision
// is O(teams + log waiters).
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "common/clock.h"
#include "common/status.h"

namespace kiln {

// What instances hold while they run (or what one needs to start).
struct Usage {
  int instances = 0;
  double vcpus = 0;
  int64_t memory_mib = 0;
  int gpus = 0;
  int trials = 0;     // running tuning trials (charged on a trial's first instance)
  int notebooks = 0;  // running notebooks (charged on a notebook's instance)

  Usage& operator+=(const Usage& o);
  Usage& operator-=(const Usage& o);
};

// A team's limits; a negative limit is none.
struct TeamQuota {
  int instances = -1;
  double vcpus = -1;
  int64_t memory_mib = -1;
  int gpus = -1;
  int trials = -1;
  int notebooks = -1;
  double weight = 1;  // fair-share weight, > 0
};

struct QuotaConfig {
  TeamQuota defaults;  // for a team not listed
  std::map<std::string, TeamQuota> teams;
  const TeamQuota& For(const std::string& team) const;
};

// The config's "quotas" section: {default: {...}, teams: {<team>: {...}}}, each
// {instances, vcpus, memory_gib, gpus, tuning_trials, notebooks, weight}; a team's
// entry overrides the default field by field. Errors name the field.
Result<QuotaConfig> QuotaConfigFromJson(const nlohmann::json& j);

struct Waiter {
  std::string instance_id;
  std::string job_id;
  std::string team;
  int priority = 0;
  TimeMs created_ms = 0;  // the job's
  Usage need;
};

class FairShare {
 public:
  explicit FairShare(QuotaConfig cfg = {}) : cfg_(std::move(cfg)) {}

  // Why `w` cannot start under its team's quota now ("team quota: ..."), or "".
  std::string OverQuota(const Waiter& w) const;

  // Running instances. Charge is idempotent per instance; Release of an
  // instance not charged does nothing.
  void Charge(const std::string& instance_id, const std::string& team, const Usage& u);
  void Release(const std::string& instance_id);
  // A launch of `team`'s has started: it had its turn in the round robin.
  void Served(const std::string& team) { served_[team] = ++turns_; }
  bool Charged(const std::string& instance_id) const { return charged_.count(instance_id) > 0; }
  Usage UsageOf(const std::string& team) const;

  // Waiting launches. Add replaces a waiter of the same instance.
  void Add(Waiter w);
  bool Remove(const std::string& instance_id);
  bool Waiting(const std::string& instance_id) const { return waiting_.count(instance_id) > 0; }
  size_t waiting() const { return waiting_.size(); }

  // The waiter whose turn it is and whose quota admits it; nullopt if none.
  std::optional<Waiter> Next() const;
  // Next(), removed from the queue.
  std::optional<Waiter> PopNext();

 private:
  // Within a team: priority (highest first), job age, instance id.
  using Key = std::tuple<int, TimeMs, std::string>;
  static Key KeyOf(const Waiter& w) { return {-w.priority, w.created_ms, w.instance_id}; }

  QuotaConfig cfg_;
  std::map<std::string, std::pair<std::string, Usage>> charged_;  // instance -> team, usage
  std::map<std::string, uint64_t> served_;                        // team -> its last turn
  uint64_t turns_ = 0;
  std::map<std::string, Usage> usage_;           // team -> sum of its charges
  std::map<std::string, Waiter> waiting_;        // instance -> waiter
  std::map<std::string, std::set<Key>> queues_;  // team -> its waiters in order
};

}  // namespace kiln
