#include "hpo/space.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace kiln::hpo {

namespace {
Scaling Effective(const Parameter& p) {
  if (p.scaling != Scaling::kAuto) return p.scaling;
  // Auto: logarithmic when the range spans orders of magnitude of positive values.
  if (p.type != ParamType::kCategorical && p.min > 0 && p.max / p.min >= 100) return Scaling::kLogarithmic;
  return Scaling::kLinear;
}
}  // namespace

Result<SearchSpace> SearchSpace::Create(std::vector<Parameter> params) {
  std::set<std::string> names;
  int counts[3] = {0, 0, 0};
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    std::string f = "ranges[" + std::to_string(i) + "]";
    if (p.name.empty()) return InvalidArgument(f + ".name", "required");
    if (!names.insert(p.name).second) return InvalidArgument(f + ".name", "duplicate parameter '" + p.name + "'");
    if (++counts[static_cast<int>(p.type)] > 30) return InvalidArgument(f, "at most 30 ranges of each type");
    if (p.type == ParamType::kCategorical) {
      if (p.categories.empty()) return InvalidArgument(f + ".values", "at least one value");
      if (std::set<std::string>(p.categories.begin(), p.categories.end()).size() != p.categories.size())
        return InvalidArgument(f + ".values", "values must be unique");
      continue;
    }
    if (!(p.min < p.max)) return InvalidArgument(f + ".min", "min must be less than max");
    if (p.type == ParamType::kInteger && (p.min != std::floor(p.min) || p.max != std::floor(p.max)))
      return InvalidArgument(f + ".min", "integer ranges need whole-number bounds");
    Scaling s = Effective(p);
    if (s == Scaling::kLogarithmic && p.min <= 0)
      return InvalidArgument(f + ".scaling", "Logarithmic scaling needs min > 0");
    if (s == Scaling::kReverseLogarithmic && (p.max >= 1 || p.min < 0))
      return InvalidArgument(f + ".scaling", "ReverseLogarithmic scaling needs 0 <= min and max < 1");
  }
  SearchSpace sp;
  sp.params_ = std::move(params);
  return sp;
}

Value SearchSpace::Decode(size_t i, double u) const {
  const Parameter& p = params_[i];
  u = std::clamp(u, 0.0, std::nextafter(1.0, 0.0));
  if (p.type == ParamType::kCategorical)
    return p.categories[std::min(p.categories.size() - 1, static_cast<size_t>(u * p.categories.size()))];
  double lo = p.min, hi = p.max;
  if (p.type == ParamType::kInteger) {
    lo -= 0.5;  // every integer gets an equal slice of the (scaled) interval
    hi += 0.5;
  }
  double x;
  switch (Effective(p)) {
    case Scaling::kLogarithmic: {
      double a = std::log(lo), b = std::log(hi);  // integer log ranges have min >= 1, so lo >= 0.5
      x = std::exp(a + u * (b - a));
      break;
    }
    case Scaling::kReverseLogarithmic: {
      double a = std::log(1 - hi), b = std::log(1 - lo);
      x = 1 - std::exp(b + u * (a - b));
      break;
    }
    default:
      x = lo + u * (hi - lo);
  }
  if (p.type == ParamType::kInteger) return std::clamp(std::round(x), p.min, p.max);
  return std::clamp(x, p.min, p.max);
}

double SearchSpace::Encode(size_t i, const Value& v) const {
  const Parameter& p = params_[i];
  if (p.type == ParamType::kCategorical) {
    const std::string* s = std::get_if<std::string>(&v);
    auto it = s ? std::find(p.categories.begin(), p.categories.end(), *s) : p.categories.end();
    size_t k = it == p.categories.end() ? 0 : static_cast<size_t>(it - p.categories.begin());
    return (static_cast<double>(k) + 0.5) / static_cast<double>(p.categories.size());
  }
  double x = std::holds_alternative<double>(v) ? std::get<double>(v) : p.min;
  double lo = p.min, hi = p.max;
  if (p.type == ParamType::kInteger) {
    lo -= 0.5;
    hi += 0.5;
  }
  double u;
  switch (Effective(p)) {
    case Scaling::kLogarithmic: {
      double a = std::log(lo);
      u = (std::log(x) - a) / (std::log(hi) - a);
      break;
    }
    case Scaling::kReverseLogarithmic: {
      double a = std::log(1 - hi), b = std::log(1 - lo);
      u = (std::log(1 - x) - b) / (a - b);
      break;
    }
    default:
      u = (x - lo) / (hi - lo);
  }
  return std::clamp(u, 0.0, std::nextafter(1.0, 0.0));
}

Config SearchSpace::DecodeAll(const std::vector<double>& u) const {
  Config c;
  for (size_t i = 0; i < params_.size(); ++i) c[params_[i].name] = Decode(i, u[i]);
  return c;
}

std::vector<double> SearchSpace::EncodeAll(const Config& c) const {
  std::vector<double> u(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto it = c.find(params_[i].name);
    u[i] = it == c.end() ? 0.5 : Encode(i, it->second);
  }
  return u;
}

std::string ToString(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  double d = std::get<double>(v);
  char buf[64];
  if (d == std::floor(d) && std::fabs(d) < 1e15)
    snprintf(buf, sizeof(buf), "%.0f", d);
  else
    snprintf(buf, sizeof(buf), "%.10g", d);
  return buf;
}

}  // namespace kiln::hpo
