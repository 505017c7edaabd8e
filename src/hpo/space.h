#pragma once
// A search space and the mapping between parameter values and the unit cube the
// samplers work in.
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"

namespace kiln::hpo {

enum class ParamType { kInteger, kContinuous, kCategorical };
enum class Scaling { kAuto, kLinear, kLogarithmic, kReverseLogarithmic };

struct Parameter {
  std::string name;
  ParamType type = ParamType::kContinuous;
  double min = 0, max = 1;              // Integer, Continuous (inclusive)
  std::vector<std::string> categories;  // Categorical
  Scaling scaling = Scaling::kAuto;
};

// A value: a number (Integer values are whole numbers) or a category.
using Value = std::variant<double, std::string>;
using Config = std::map<std::string, Value>;

class SearchSpace {
 public:
  // Validates SageMaker's rules: names unique and non-empty, min < max, at most 30
  // ranges of each type, Logarithmic needs min > 0, ReverseLogarithmic needs
  // max < 1, categories non-empty and unique.
  static Result<SearchSpace> Create(std::vector<Parameter> params);

  const std::vector<Parameter>& params() const { return params_; }
  size_t size() const { return params_.size(); }

  // Unit-cube coordinate u in [0, 1) of dimension i -> value, and back.
  Value Decode(size_t i, double u) const;
  double Encode(size_t i, const Value& v) const;
  Config DecodeAll(const std::vector<double>& u) const;
  std::vector<double> EncodeAll(const Config& c) const;

 private:
  std::vector<Parameter> params_;
};

std::string ToString(const Value& v);

}  // namespace kiln::hpo
