// The SageMaker front's parsers: the SigV4 Authorization header and request
// verification, and JSON bodies through model validation into the translators.
// A body the model accepts must translate without crashing, and a translated
// spec must survive the native round trip. Any crash or sanitizer report is a bug.
#include <cstdlib>

#include "auth/sigv4.h"
#include "smapi/service_model.h"
#include "smapi/translate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string in(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    (void)kiln::ParseAuthorization(in);
    kiln::SigV4Request r;
    r.method = "POST";
    r.path = "/";
    r.headers = {{"Host", "127.0.0.1"}, {"X-Amz-Date", "20150830T123600Z"}, {"Authorization", in}};
    r.body = in;
    auto res = kiln::VerifySigV4(
        r,
        [](const std::string&, std::string* s) {
          *s = "secret";
          return true;
        },
        kiln::ParseAmzDate("20150830T123600Z"));
    if (res.ok) abort();  // a random header cannot carry a valid signature
    return 0;
  }
  static const kiln::Catalog catalog = kiln::Catalog::Defaults();
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return 0;
  const auto& model = kiln::smapi::ServiceModel::SageMaker();
  kiln::smapi::Context c;
  c.s3 = kiln::smapi::S3Map("/s3", {});
  c.catalog = &catalog;
  for (const char* op : {"CreateTrainingJob", "CreateProcessingJob"}) {
    if (!model.ValidateInput(op, j).ok()) continue;
    auto spec = std::string(op) == "CreateTrainingJob" ? kiln::smapi::TrainingSpec(j, c, "t")
                                                       : kiln::smapi::ProcessingSpec(j, c, "t");
    if (!spec.ok()) continue;
    auto stored = kiln::DecodeStoredSpec(spec->ToJson());
    if (!stored.ok() || !(*stored == *spec) || !kiln::ValidateSpec(*stored, nullptr).ok()) abort();
  }
  model.ValidateInput("ListTrainingJobs", j).IgnoreError();  // crashes are the finding
  return 0;
}
