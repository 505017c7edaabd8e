#pragma once
// Instance types and images that kilnd offers. Loaded from kilnd's config with
// shipped defaults. Immutable after start: safe to read from any thread.
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

struct InstanceType {
  std::string name;
  double vcpus = 1;
  int64_t memory_mib = 1024;
  int gpus = 0;
};

enum class ImageKind { kHost, kRootfs, kCommandPrefix };

// Where an image URI runs locally: the host's root, a rootfs directory, or the
// host with a command prefix (e.g. a virtualenv's interpreter wrapper).
struct ImageEnv {
  std::string uri;
  ImageKind kind = ImageKind::kHost;
  std::string rootfs;               // kRootfs
  std::vector<std::string> prefix;  // kCommandPrefix
  // Set for SageMaker framework images (scikit-learn, PyTorch): the interpreter
  // that runs a script-mode `train` (sagemaker_program in the hyperparameters).
  std::string python;
};

class Catalog {
 public:
  static Catalog Defaults();
  // Overlays `config` ({"instance_types":[...], "images":{uri:{...}}}) on the defaults.
  static Result<Catalog> FromJson(const nlohmann::json& config);

  const InstanceType* FindType(const std::string& name) const;
  // Matches "repo:tag" exactly, then "repo" without its tag or digest, then the
  // repository's last path component (so any registry prefix matches).
  const ImageEnv* FindImage(const std::string& uri) const;
  const std::map<std::string, InstanceType>& types() const { return types_; }
  const std::map<std::string, ImageEnv>& images() const { return images_; }

 private:
  std::map<std::string, InstanceType> types_;
  std::map<std::string, ImageEnv> images_;
};

}  // namespace kiln
