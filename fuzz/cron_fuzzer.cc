// Feeds arbitrary text to the schedules' cron parser. A parsed expression's
// Next() must move forward and be the first slot after the time before it: any
// crash, sanitizer report or a slot that breaks that is a bug.
#include <cstdlib>
#include <string>

#include "schedules/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto cron = kiln::schedules::Cron::Parse(std::string(reinterpret_cast<const char*>(data), size));
  if (!cron.ok()) {
    if (cron.status().field() != "cron" || cron.status().message().empty()) abort();
    return 0;
  }
  for (kiln::TimeMs t : {kiln::TimeMs{0}, kiln::TimeMs{1796638050000}, kiln::TimeMs{4102444799000}}) {
    const kiln::TimeMs n = cron->Next(t);
    if (n == 0) continue;
    if (n <= t || cron->Next(n - 1) != n) abort();
  }
  return 0;
}
