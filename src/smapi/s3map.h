#pragma once
// S3 URIs to local paths: Kiln's artifact store for SageMaker requests.
// By default bucket B maps to <root>/B; a bucket can be mapped to any directory.
// Keys are checked for traversal: no "." or ".." segments, no NUL.
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace kiln::smapi {

class S3Map {
 public:
  S3Map() = default;
  S3Map(std::string root, std::map<std::string, std::string> buckets)
      : root_(std::move(root)), buckets_(std::move(buckets)) {}
  // {"root": dir, "buckets": {name: dir}} from kilnd's config ("s3" section).
  static Result<S3Map> FromConfig(const nlohmann::json& s3, const std::string& default_root);

  // s3://bucket/key -> local path. `field` names the request member in errors.
  Result<std::string> ToPath(const std::string& uri, const std::string& field) const;
  const std::string& root() const { return root_; }
  // Buckets mapped to a directory of their own (config), by name.
  const std::map<std::string, std::string>& buckets() const { return buckets_; }

 private:
  std::string root_;
  std::map<std::string, std::string> buckets_;
};

}  // namespace kiln::smapi
