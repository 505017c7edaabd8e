#include "smapi/service_model.h"

#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>

namespace kiln::smapi {

extern const char* const kSageMakerModelJson;  // generated from sagemaker-model.json

namespace {

using nlohmann::json;

size_t CodePoints(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Quote(const json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

Status Violation(const std::string& path, const json& v, const std::string& constraint) {
  return InvalidArgument(path, "1 validation error detected: Value '" + Quote(v) + "' at '" + path +
                                   "' failed to satisfy constraint: " + constraint);
}

Status WrongType(const std::string& path, const char* type) {
  return InvalidArgument(path, "1 validation error detected: Value at '" + path + "' must be of type " + type);
}

// Patterns that accept any string (or any non-empty one, which min covers) are
// skipped; the others are compiled once. A pattern std::regex cannot compile
// (lookbehind, \p{...}) is not enforced here; the translators check those
// fields themselves.
const std::regex* Pattern(const std::string& p) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::regex>> cache;
  static const std::set<std::string> kAny = {".*", ".+", "[\\S\\s]*", "[\\s\\S]+", "[\\s\\S]*", "[\\S\\s]+"};
  // \p{...} (Unicode classes) and \u escapes mean something else to std::regex.
  if (kAny.count(p) || p.find("\\u") != std::string::npos || p.find("\\p{") != std::string::npos) return nullptr;
  std::lock_guard<std::mutex> l(mu);
  auto it = cache.find(p);
  if (it != cache.end()) return it->second.get();
  std::unique_ptr<std::regex> re;
  try {
    re = std::make_unique<std::regex>(p, std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error&) {
  }
  return (cache[p] = std::move(re)).get();
}

}  // namespace

const ServiceModel& ServiceModel::SageMaker() {
  static const ServiceModel* m = new ServiceModel(json::parse(kSageMakerModelJson));
  return *m;
}

ServiceModel::ServiceModel(json model) : model_(std::move(model)) {}

bool ServiceModel::HasOperation(const std::string& op) const {
  return model_["operations"].contains(op);
}

std::string ServiceModel::OutputShape(const std::string& op) const {
  const auto& o = model_["operations"][op];
  return o.contains("output") ? o["output"].get<std::string>() : "";
}

Status ServiceModel::ValidateInput(const std::string& op, const json& body) const {
  if (!HasOperation(op)) return InvalidArgument("X-Amz-Target", "unknown operation " + op);
  const auto& o = model_["operations"][op];
  if (!o.contains("input")) return Status::Ok();
  return Check(o["input"], body, "", 0);
}

Status ServiceModel::ValidateShape(const std::string& shape, const json& value) const {
  return Check(shape, value, "", 0);
}

Status ServiceModel::Check(const std::string& name, const json& v, const std::string& path, int depth) const {
  if (depth > 32) return InvalidArgument(path, "nesting too deep");
  const json& s = model_["shapes"][name];
  const std::string type = s.value("type", "");
  const std::string at = path.empty() ? name : path;
  if (type == "structure") {
    if (!v.is_object()) return WrongType(at, "structure");
    const json& members = s["members"];
    for (auto it = v.begin(); it != v.end(); ++it)
      if (!members.contains(it.key())) {
        std::string p = path.empty() ? it.key() : path + "." + it.key();
        return InvalidArgument(p, "1 validation error detected: Unknown parameter '" + p + "'" +
                                      (path.empty() ? "" : " in " + path) + " (not in the SageMaker API model)");
      }
    for (const auto& r : s.value("required", json::array()))
      if (!v.contains(r.get<std::string>()) || v[r.get<std::string>()].is_null()) {
        std::string p = path.empty() ? r.get<std::string>() : path + "." + r.get<std::string>();
        return InvalidArgument(p, "1 validation error detected: Value null at '" + p +
                                      "' failed to satisfy constraint: Member must not be null");
      }
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (it.value().is_null()) continue;
      KILN_RETURN_IF_ERROR(
          Check(members[it.key()]["shape"], it.value(), path.empty() ? it.key() : path + "." + it.key(), depth + 1));
    }
    return Status::Ok();
  }
  if (type == "list") {
    if (!v.is_array()) return WrongType(at, "list");
    if (s.contains("min") && v.size() < s["min"].get<size_t>())
      return Violation(at, v, "Member must have length greater than or equal to " + s["min"].dump());
    if (s.contains("max") && v.size() > s["max"].get<size_t>())
      return Violation(at, v, "Member must have length less than or equal to " + s["max"].dump());
    for (size_t i = 0; i < v.size(); ++i)
      KILN_RETURN_IF_ERROR(Check(s["member"]["shape"], v[i], at + "[" + std::to_string(i) + "]", depth + 1));
    return Status::Ok();
  }
  if (type == "map") {
    if (!v.is_object()) return WrongType(at, "map");
    if (s.contains("min") && v.size() < s["min"].get<size_t>())
      return Violation(at, v, "Map must have at least " + s["min"].dump() + " entries");
    if (s.contains("max") && v.size() > s["max"].get<size_t>())
      return Violation(at, v, "Map must have at most " + s["max"].dump() + " entries");
    for (auto it = v.begin(); it != v.end(); ++it) {
      KILN_RETURN_IF_ERROR(Check(s["key"]["shape"], it.key(), at + ".key(" + it.key() + ")", depth + 1));
      KILN_RETURN_IF_ERROR(Check(s["value"]["shape"], it.value(), at + "." + it.key(), depth + 1));
    }
    return Status::Ok();
  }
  if (type == "string") {
    if (!v.is_string()) return WrongType(at, "string");
    const std::string& str = v.get_ref<const std::string&>();
    size_t n = CodePoints(str);
    if (s.contains("min") && n < s["min"].get<size_t>())
      return Violation(at, v, "Member must have length greater than or equal to " + s["min"].dump());
    if (s.contains("max") && n > s["max"].get<size_t>())
      return Violation(at, v, "Member must have length less than or equal to " + s["max"].dump());
    // Instance types are Kiln's catalog's business (it has local.* types too).
    if (s.contains("enum") && name != "TrainingInstanceType" && name != "ProcessingInstanceType") {
      bool found = false;
      for (const auto& e : s["enum"]) found = found || e == v;
      if (!found) return Violation(at, v, "Member must satisfy enum value set: " + s["enum"].dump());
    }
    if (s.contains("pattern"))
      if (const std::regex* re = Pattern(s["pattern"]); re && !std::regex_match(str, *re))
        return Violation(at, v, "Member must satisfy regular expression pattern: " + s["pattern"].get<std::string>());
    return Status::Ok();
  }
  if (type == "integer" || type == "long") {
    if (!v.is_number_integer()) return WrongType(at, type.c_str());
    int64_t x = v.get<int64_t>();
    if (s.contains("min") && x < s["min"].get<int64_t>())
      return Violation(at, v, "Member must have value greater than or equal to " + s["min"].dump());
    if (s.contains("max") && x > s["max"].get<int64_t>())
      return Violation(at, v, "Member must have value less than or equal to " + s["max"].dump());
    return Status::Ok();
  }
  if (type == "float" || type == "double") {
    if (!v.is_number()) return WrongType(at, type.c_str());
    return Status::Ok();
  }
  if (type == "boolean") return v.is_boolean() ? Status::Ok() : WrongType(at, "boolean");
  if (type == "timestamp") return v.is_number() ? Status::Ok() : WrongType(at, "timestamp (epoch seconds)");
  return Internal("shape " + name + " has unsupported type " + type);
}

}  // namespace kiln::smapi
