#pragma once
// Folds StatsD samples into per-series values and emits them every flush. Not
// thread-safe: the gateway serializes access.
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "metrics/statsd.h"

namespace kiln {

// One value of one series at one flush: a counter's sum, a gauge's value, a
// timer's p99, a set's unique count...
struct MetricPoint {
  std::string job_id;
  std::string name;
  std::string tags;  // canonical "k:v,k2:v2", sorted; includes job_id and team
  std::string stat;  // count | value | sum | min | max | mean | p50 | p90 | p99 | unique
  TimeMs time = 0;
  double value = 0;
};

// "k:v,k2:v2", sorted by key.
std::string CanonicalTags(std::vector<std::pair<std::string, std::string>> tags);

class Aggregator {
 public:
  // `attribution` tags (job_id, team) are added to the sample's own tags.
  bool Add(const std::string& job_id, const std::vector<std::pair<std::string, std::string>>& attribution,
           const StatsdSample& s);
  // Same, with the attribution already in canonical form (CanonicalTags): the hot
  // path for untagged samples builds no tag strings.
  // Returns false when the sample would start a series past the job's cap
  // (set_max_series_per_job): it is dropped.
  bool AddCanonical(const std::string& job_id, const std::vector<std::pair<std::string, std::string>>& attribution,
                    const std::string& attribution_canonical, const StatsdSample& s);
  // At most this many series per job (a program that puts a request id in a tag
  // must not grow kilnd without bound); 0: no cap.
  void set_max_series_per_job(size_t n) { max_per_job_ = n; }
  // Emits every series updated since the last flush (a gauge that was not set
  // emits nothing but keeps its value), then resets counters, timers and sets.
  std::vector<MetricPoint> Flush(TimeMs now);
  size_t series() const { return series_.size(); }
  // Forgets every series of a job (after its last flush).
  void DropJob(const std::string& job_id);

 private:
  struct Series {
    std::string job_id, name, tags;
    MetricKind kind;
    bool touched = false;
    double sum = 0;    // counters, timers
    double count = 0;  // timers (sample-rate weighted)
    double gauge = 0;
    std::vector<double> samples;
    std::unordered_set<std::string> members;
  };
  std::unordered_map<std::string, Series> series_;
  std::unordered_map<std::string, size_t> per_job_;  // series per job
  size_t max_per_job_ = 0;
  std::string key_;  // scratch
};

}  // namespace kiln
