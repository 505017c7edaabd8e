// Arbitrary bytes through the CLI's YAML/JSON spec reader and on into validation.
#include "cli/spec_file.h"
#include "jobs/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const kiln::Catalog catalog = kiln::Catalog::Defaults();
  auto j = kiln::ParseYamlOrJson(std::string(reinterpret_cast<const char*>(data), size));
  if (j.ok()) kiln::ParseSpec(*j, catalog).IgnoreError();  // crashes are the finding
  return 0;
}
