#include "jobs/catalog.h"

namespace kiln {

Catalog Catalog::Defaults() {
  Catalog c;
  auto add = [&](const std::string& n, double cpu, int64_t mem, int gpus) {
    c.types_[n] = InstanceType{n, cpu, mem, gpus};
  };
  add("local.small", 1, 512, 0);
  add("local.medium", 1, 2048, 0);
  add("ml.t3.medium", 2, 4096, 0);
  add("ml.m5.large", 2, 8192, 0);
  add("ml.m5.xlarge", 4, 16384, 0);
  add("ml.m5.2xlarge", 8, 32768, 0);
  add("ml.c5.xlarge", 4, 8192, 0);
  add("ml.c5.2xlarge", 8, 16384, 0);
  add("ml.g4dn.xlarge", 4, 16384, 1);
  add("ml.g5.xlarge", 4, 16384, 1);
  add("ml.p3.2xlarge", 8, 62464, 1);
  c.images_["host"] = ImageEnv{"host", ImageKind::kHost, {}, {}, ""};
  // SageMaker's framework images, by repository name (any registry, any tag):
  // script mode runs on the host's Debian Python with its scikit-learn / torch.
  for (const char* repo : {"sagemaker-scikit-learn", "pytorch-training"})
    c.images_[repo] = ImageEnv{repo, ImageKind::kHost, {}, {}, "/usr/bin/python3"};
  return c;
}

Result<Catalog> Catalog::FromJson(const nlohmann::json& config) {
  Catalog c = Defaults();
  if (config.contains("instance_types")) {
    const auto& arr = config["instance_types"];
    if (!arr.is_array()) return InvalidArgument("instance_types", "must be a list");
    for (size_t i = 0; i < arr.size(); ++i) {
      const auto& t = arr[i];
      std::string f = "instance_types[" + std::to_string(i) + "]";
      if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
        return InvalidArgument(f + ".name", "required string");
      InstanceType it;
      it.name = t["name"];
      it.vcpus = t.value("vcpus", 1.0);
      it.memory_mib = t.value("memory_mib", int64_t{1024});
      it.gpus = t.value("gpus", 0);
      if (it.vcpus <= 0) return InvalidArgument(f + ".vcpus", "must be > 0");
      if (it.memory_mib < 16) return InvalidArgument(f + ".memory_mib", "must be >= 16");
      c.types_[it.name] = it;
    }
  }
  if (config.contains("images")) {
    const auto& imgs = config["images"];
    if (!imgs.is_object()) return InvalidArgument("images", "must be a map of uri to image");
    for (auto it = imgs.begin(); it != imgs.end(); ++it) {
      ImageEnv e;
      e.uri = it.key();
      const auto& v = it.value();
      std::string kind = v.value("kind", "host");
      if (kind == "host") {
        e.kind = ImageKind::kHost;
      } else if (kind == "rootfs") {
        e.kind = ImageKind::kRootfs;
        e.rootfs = v.value("path", "");
        if (e.rootfs.empty()) return InvalidArgument("images." + e.uri + ".path", "required for rootfs");
      } else if (kind == "prefix") {
        e.kind = ImageKind::kCommandPrefix;
        e.prefix = v.value("prefix", std::vector<std::string>{});
      } else {
        return InvalidArgument("images." + e.uri + ".kind", "must be host, rootfs or prefix");
      }
      if (v.contains("python")) {
        if (!v["python"].is_string() || v["python"].get<std::string>().empty() ||
            v["python"].get<std::string>()[0] != '/')
          return InvalidArgument("images." + e.uri + ".python", "must be an absolute path to an interpreter");
        e.python = v["python"];
      }
      c.images_[e.uri] = e;
    }
  }
  return c;
}

const InstanceType* Catalog::FindType(const std::string& name) const {
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : &it->second;
}

const ImageEnv* Catalog::FindImage(const std::string& uri) const {
  auto it = images_.find(uri);
  if (it != images_.end()) return &it->second;
  std::string repo = uri.substr(0, uri.find('@'));  // drop a digest
  auto colon = repo.rfind(':');
  auto slash = repo.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) repo = repo.substr(0, colon);
  it = images_.find(repo);
  if (it != images_.end()) return &it->second;
  // Then the repository name alone, whatever the registry ("<account>.dkr.ecr.<region>.amazonaws.com/name").
  if (slash != std::string::npos) {
    it = images_.find(repo.substr(repo.rfind('/') + 1));
    if (it != images_.end()) return &it->second;
  }
  return nullptr;
}

}  // namespace kiln
