#pragma once
// Internal to src/hpo: how the samplers that model the objective (TPE, GP) read
// unit-cube points: integer values snapped to their own coordinate, categories
// by index.
#include <algorithm>
#include <cmath>
#include <vector>

#include "hpo/space.h"

namespace kiln::hpo {

// An integer dimension's slices of the unit cube: every point of a slice decodes to
// the same integer, whose own coordinate (Encode of the value) stands for it.
struct IntegerSlices {
  IntegerSlices(const SearchSpace& space, size_t d) : dim(d) {
    const Parameter& p = space.params()[d];
    const double count = p.max - p.min + 1;
    if (count > 4096) return;  // Snap decodes and encodes instead
    linear = true;
    for (int i = 0; i < static_cast<int>(count); ++i) {
      const double v = p.min + i;
      own.push_back(space.Encode(d, v));
      upper.push_back(v == p.max ? 1.0 : space.Encode(d, v + 0.5));
      linear = linear && std::fabs(upper.back() - static_cast<double>(upper.size()) / count) < 1e-9;
    }
  }
  double Snap(const SearchSpace& space, double u) const {
    if (own.empty()) return space.Encode(dim, space.Decode(dim, u));
    // Linear scaling: equal slices. Otherwise the first slice whose upper end is above u.
    size_t i = linear ? static_cast<size_t>(std::max(u, 0.0) * static_cast<double>(own.size()))
                      : static_cast<size_t>(std::upper_bound(upper.begin(), upper.end(), u) - upper.begin());
    return own[std::min(i, own.size() - 1)];
  }
  size_t dim;
  bool linear = false;
  std::vector<double> own, upper;  // per integer: its coordinate and its slice's upper end
};

// Every integer dimension of a space, snapped together.
class Snapper {
 public:
  explicit Snapper(const SearchSpace& space) : space_(space) {
    for (size_t d = 0; d < space.size(); ++d)
      if (space.params()[d].type == ParamType::kInteger) integers_.emplace_back(space, d);
  }
  bool empty() const { return integers_.empty(); }
  void operator()(std::vector<double>& u) const {
    for (const auto& s : integers_) u[s.dim] = s.Snap(space_, u[s.dim]);
  }

 private:
  const SearchSpace& space_;
  std::vector<IntegerSlices> integers_;
};

// The category a coordinate stands for among m.
inline size_t CategoryOf(double u, size_t m) {
  return std::min(m - 1, static_cast<size_t>(std::max(u, 0.0) * static_cast<double>(m)));
}

// Per dimension: its category count, 0 for a numeric dimension.
inline std::vector<size_t> CategoryCounts(const SearchSpace& space) {
  std::vector<size_t> out(space.size(), 0);
  for (size_t d = 0; d < space.size(); ++d)
    if (space.params()[d].type == ParamType::kCategorical) out[d] = space.params()[d].categories.size();
  return out;
}

}  // namespace kiln::hpo
