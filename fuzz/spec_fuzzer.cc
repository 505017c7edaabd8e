// Feeds arbitrary bytes through the POST /v1/jobs path: JSON parse, then spec
// validation, then the stored round trip (DecodeStoredSpec, no re-validation). Any crash, sanitizer report or a spec
// that validates but does not survive its own round trip is a bug.
#include <cstdlib>

#include "jobs/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const kiln::Catalog catalog = kiln::Catalog::Defaults();
  auto j = nlohmann::json::parse(data, data + size, nullptr, false);
  if (j.is_discarded()) return 0;
  auto spec = kiln::ParseSpec(j, catalog);
  if (!spec.ok()) {
    if (spec.status().message().empty()) abort();
    return 0;
  }
  // Validated once on the way in; what is stored decodes to the same spec and still
  // passes the rules.
  auto stored = kiln::DecodeStoredSpec(spec->ToJson());
  if (!stored.ok() || !(*stored == *spec)) abort();
  if (!kiln::ValidateSpec(*stored, &catalog).ok()) abort();
  return 0;
}
