#include "metrics/aggregator.h"

#include <algorithm>
#include <cmath>

namespace kiln {

std::string CanonicalTags(std::vector<std::pair<std::string, std::string>> tags) {
  std::sort(tags.begin(), tags.end());
  std::string out;
  for (const auto& [k, v] : tags) {
    if (!out.empty()) out += ',';
    out += k;
    if (!v.empty()) out.append(":").append(v);
  }
  return out;
}

bool Aggregator::Add(const std::string& job_id, const std::vector<std::pair<std::string, std::string>>& attribution,
                     const StatsdSample& s) {
  return AddCanonical(job_id, attribution, CanonicalTags(attribution), s);
}

bool Aggregator::AddCanonical(const std::string& job_id,
                              const std::vector<std::pair<std::string, std::string>>& attribution,
                              const std::string& attribution_canonical, const StatsdSample& s) {
  std::string canon;
  if (s.tags.empty()) {
    canon = attribution_canonical;
  } else {
    std::vector<std::pair<std::string, std::string>> tags = s.tags;
    for (const auto& a : attribution) {
      // Attribution wins over a tag the program set itself.
      tags.erase(std::remove_if(tags.begin(), tags.end(), [&](const auto& t) { return t.first == a.first; }),
                 tags.end());
      tags.push_back(a);
    }
    canon = CanonicalTags(std::move(tags));
  }
  key_.clear();
  key_.append(s.name).push_back('\x1f');
  key_.append(canon).push_back('\x1f');
  key_.push_back(static_cast<char>('0' + static_cast<int>(s.kind)));
  auto [it, fresh] = series_.try_emplace(key_);
  Series& ser = it->second;
  if (fresh && max_per_job_ > 0 && per_job_[job_id] >= max_per_job_) {
    series_.erase(it);
    return false;
  }
  if (fresh) {
    ++per_job_[job_id];
    ser.job_id = job_id;
    ser.name = s.name;
    ser.tags = std::move(canon);
    ser.kind = s.kind;
  }
  ser.touched = true;
  switch (s.kind) {
    case MetricKind::kCounter:
      ser.sum += s.value / s.sample_rate;
      break;
    case MetricKind::kGauge:
      ser.gauge = s.relative ? ser.gauge + s.value : s.value;
      break;
    case MetricKind::kTimer:
    case MetricKind::kHistogram:
      ser.samples.push_back(s.value);
      ser.count += 1.0 / s.sample_rate;
      ser.sum += s.value;
      break;
    case MetricKind::kSet:
      ser.members.insert(s.member);
      break;
  }
  return true;
}

void Aggregator::DropJob(const std::string& job_id) {
  per_job_.erase(job_id);
  for (auto it = series_.begin(); it != series_.end();) it = it->second.job_id == job_id ? series_.erase(it) : ++it;
}

std::vector<MetricPoint> Aggregator::Flush(TimeMs now) {
  std::vector<MetricPoint> out;
  for (auto& entry : series_) {
    Series& s = entry.second;  // a named reference: lambdas below capture it
    // A gauge keeps its value (a relative update starts from it) but is stored only
    // for intervals in which it was set: one point per report, not per flush.
    if (!s.touched) continue;
    auto emit = [&](const char* stat, double v) { out.push_back({s.job_id, s.name, s.tags, stat, now, v}); };
    switch (s.kind) {
      case MetricKind::kCounter:
        emit("count", s.sum);
        s.sum = 0;
        break;
      case MetricKind::kGauge:
        emit("value", s.gauge);
        break;
      case MetricKind::kTimer:
      case MetricKind::kHistogram: {
        if (s.samples.empty()) break;
        std::sort(s.samples.begin(), s.samples.end());
        auto q = [&](double p) {
          size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(s.samples.size()))) - 1;
          return s.samples[std::min(i, s.samples.size() - 1)];
        };
        emit("count", s.count);
        emit("sum", s.sum);
        emit("mean", s.sum / static_cast<double>(s.samples.size()));
        emit("min", s.samples.front());
        emit("max", s.samples.back());
        emit("p50", q(0.50));
        emit("p90", q(0.90));
        emit("p99", q(0.99));
        s.samples.clear();
        s.count = s.sum = 0;
        break;
      }
      case MetricKind::kSet:
        emit("unique", static_cast<double>(s.members.size()));
        s.members.clear();
        break;
    }
    s.touched = false;
  }
  return out;
}

}  // namespace kiln
