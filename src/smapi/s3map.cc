#include "smapi/s3map.h"

namespace kiln::smapi {

Result<S3Map> S3Map::FromConfig(const nlohmann::json& s3, const std::string& default_root) {
  std::string root = default_root;
  std::map<std::string, std::string> buckets;
  if (s3.is_null()) return S3Map(root, buckets);
  if (!s3.is_object()) return InvalidArgument("s3", "must be {root, buckets}");
  if (s3.contains("root")) {
    if (!s3["root"].is_string() || s3["root"].get<std::string>().empty() || s3["root"].get<std::string>()[0] != '/')
      return InvalidArgument("s3.root", "must be an absolute directory");
    root = s3["root"];
  }
  if (s3.contains("buckets")) {
    if (!s3["buckets"].is_object()) return InvalidArgument("s3.buckets", "must map bucket names to directories");
    for (auto it = s3["buckets"].begin(); it != s3["buckets"].end(); ++it) {
      if (!it.value().is_string() || it.value().get<std::string>().empty() || it.value().get<std::string>()[0] != '/')
        return InvalidArgument("s3.buckets." + it.key(), "must be an absolute directory");
      buckets[it.key()] = it.value();
    }
  }
  return S3Map(root, buckets);
}

Result<std::string> S3Map::ToPath(const std::string& uri, const std::string& field) const {
  const std::string kScheme = "s3://";
  if (uri.compare(0, kScheme.size(), kScheme) != 0)
    return InvalidArgument(field, field + ": '" + uri + "' is not an s3:// URI");
  std::string rest = uri.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string bucket = rest.substr(0, slash);
  std::string key = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (bucket.size() < 3 || bucket.size() > 63)
    return InvalidArgument(field, field + ": bucket name '" + bucket + "' must be 3-63 characters");
  for (char c : bucket)
    if (!(islower(static_cast<unsigned char>(c)) || isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.'))
      return InvalidArgument(field, StrCat(field, ": bucket name '", bucket, "' may hold only a-z, 0-9, '-' and '.'"));
  if (bucket.find("..") != std::string::npos)
    return InvalidArgument(field, field + ": bucket name '" + bucket + "' must not contain '..'");
  if (key.find('\0') != std::string::npos) return InvalidArgument(field, field + ": key contains NUL");
  for (size_t i = 0; i <= key.size();) {
    size_t e = key.find('/', i);
    if (e == std::string::npos) e = key.size();
    std::string seg = key.substr(i, e - i);
    if (seg == "." || seg == "..")
      return InvalidArgument(field, StrCat(field, ": key '", key, "' must not contain '.' or '..' segments"));
    i = e + 1;
  }
  while (!key.empty() && key.back() == '/') key.pop_back();
  auto it = buckets_.find(bucket);
  std::string base = it != buckets_.end() ? it->second : root_ + "/" + bucket;
  return key.empty() ? base : base + "/" + key;
}

}  // namespace kiln::smapi
