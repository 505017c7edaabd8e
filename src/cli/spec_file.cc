#include "cli/spec_file.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>

#include "common/fsutil.h"

namespace kiln {
namespace {
using nlohmann::json;
namespace fs = std::filesystem;

json Convert(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json j = json::object();
      for (auto it : n) j[it.first.as<std::string>()] = Convert(it.second);
      return j;
    }
    case YAML::NodeType::Sequence: {
      json j = json::array();
      for (auto it : n) j.push_back(Convert(it));
      return j;
    }
    case YAML::NodeType::Scalar: {
      std::string s = n.as<std::string>();
      if (n.Tag() == "!") return s;  // quoted
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      if (s == "null" || s == "~") return nullptr;
      json parsed = json::parse(s, nullptr, false);
      if (!parsed.is_discarded() && parsed.is_number()) return parsed;
      return s;
    }
    default:
      return nullptr;
  }
}

std::string Resolve(const std::string& v, const fs::path& base) {
  std::string p = v.rfind("file://", 0) == 0 ? v.substr(7) : v;
  if (p.find("://") != std::string::npos || (!p.empty() && p[0] == '/')) return v;
  std::string out = (base / p).lexically_normal().string();
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}
}  // namespace

Result<json> ParseYamlOrJson(const std::string& text) {
  try {
    return Convert(YAML::Load(text));
  } catch (const YAML::Exception& e) {
    return InvalidArgument("", std::string("not valid YAML/JSON: ") + e.what());
  }
}

Result<json> LoadSpecFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto j = ParseYamlOrJson(*text);
  if (!j.ok()) return j.status();
  if (!j->is_object()) return InvalidArgument("", path + ": a job spec must be a mapping");
  fs::path base = fs::absolute(path).parent_path();
  // Relative paths are relative to the file, for a job spec and for a tuning
  // spec's trial template alike.
  for (json* s : {&*j, j->contains("trial") && (*j)["trial"].is_object() ? &(*j)["trial"] : nullptr}) {
    if (!s) continue;
    if (s->contains("code_dir") && (*s)["code_dir"].is_string()) (*s)["code_dir"] = Resolve((*s)["code_dir"], base);
    if (s->contains("output") && (*s)["output"].is_string()) (*s)["output"] = Resolve((*s)["output"], base);
    if (s->contains("inputs") && (*s)["inputs"].is_object())
      for (auto& [k, v] : (*s)["inputs"].items())
        if (v.is_string()) v = Resolve(v, base);
  }
  return j;
}

}  // namespace kiln
