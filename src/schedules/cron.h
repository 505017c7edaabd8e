#pragma once
// Cron expressions for schedules: when a schedule's slots fall, in UTC.
//
// Accepted (and nothing else; a bad expression is kInvalidArgument naming the
// part and why):
//  - five fields "minute hour day-of-month month day-of-week", each `*`, `a`,
//    `a-b`, `*/n`, `a-b/n` or a comma list of those (at most 64 items); months
//    and weekdays also by their English three-letter names (jan, mon); weekday
//    0 and 7 are Sunday. When both day fields are restricted, a day matches
//    either (as in Vixie cron).
//  - @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually);
//  - "@every <n><s|m|h>", n >= 1, at most 31 days: slots every n units from
//    the Unix epoch (so a restart keeps the same slots).
// The text is at most 256 bytes.
#include <array>
#include <bitset>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace kiln::schedules {

class Cron {
 public:
  static Result<Cron> Parse(const std::string& text);
  // The first slot strictly after `after` (ms since the epoch, UTC); 0 when the
  // expression names no time in the next 5 years (e.g. "0 0 31 2 *").
  TimeMs Next(TimeMs after) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  TimeMs every_ms_ = 0;  // @every; the fields are unused then
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0..6, Sunday 0
  bool days_restricted_ = false, weekdays_restricted_ = false;
};

}  // namespace kiln::schedules
