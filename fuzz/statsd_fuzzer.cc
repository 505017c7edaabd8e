// Arbitrary datagrams through the StatsD/DogStatsD parser and the aggregator.
#include "metrics/aggregator.h"
#include "metrics/statsd.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kiln::Aggregator agg;
  static int n = 0;
  kiln::ParseStatsdPacket(
      std::string_view(reinterpret_cast<const char*>(data), size),
      [](const kiln::StatsdSample& s) {
        agg.Add("j-fuzz", {{"job_id", "j-fuzz"}}, s);
      },
      [](kiln::StatsdError) {});
  if (++n % 1000 == 0) (void)agg.Flush(n);
  return 0;
}
