#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace kiln {
// Converts YAML to JSON: unquoted scalars that read as numbers or booleans become
// numbers or booleans; quoted ones stay strings.
Result<nlohmann::json> ParseYamlOrJson(const std::string& text);
// Loads a job spec file and makes code_dir, inputs and output absolute, relative to
// the file's directory.
Result<nlohmann::json> LoadSpecFile(const std::string& path);
}  // namespace kiln
