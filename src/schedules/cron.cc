#include "schedules/cron.h"

#include <ctime>
#include <vector>

namespace kiln::schedules {
namespace {

constexpr size_t kMaxText = 256;
constexpr size_t kMaxItems = 64;
constexpr TimeMs kMinuteMs = 60 * 1000;
constexpr TimeMs kMaxEveryMs = TimeMs{31} * 24 * 3600 * 1000;

struct FieldRule {
  const char* name;
  int lo, hi;
  std::vector<std::string> names;  // names[i] is lo + i
};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

Status Bad(const std::string& what, const std::string& why) {
  return InvalidArgument("cron", what + ": " + why);
}

// A number or (for months and weekdays) a name.
Result<int> Value(const FieldRule& r, const std::string& s) {
  if (s.empty()) return Bad(r.name, "empty value");
  if (s.size() <= 4 && s.find_first_not_of("0123456789") == std::string::npos) {
    const int v = std::stoi(s);
    if (v < r.lo || v > r.hi)
      return Bad(r.name, "'" + s + "' is out of range " + std::to_string(r.lo) + "-" + std::to_string(r.hi));
    return v;
  }
  std::string lower;
  for (char c : s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (size_t i = 0; i < r.names.size(); ++i)
    if (r.names[i] == lower) return r.lo + static_cast<int>(i);
  return Bad(r.name, "'" + s.substr(0, 16) + "' is not a number" + (r.names.empty() ? "" : " or a name"));
}

// One field into `bits` (bit v for value v); `restricted` is false for "*".
template <size_t N>
Status ParseField(const FieldRule& r, const std::string& text, std::bitset<N>& bits, bool& restricted) {
  const auto items = Split(text, ',');
  if (items.size() > kMaxItems) return Bad(r.name, "more than 64 items");
  restricted = text.empty() || text[0] != '*';  // "*/2" is a star field, as in Vixie cron
  for (const auto& item : items) {
    const auto slash = Split(item, '/');
    if (slash.size() > 2) return Bad(r.name, "'" + item.substr(0, 16) + "' has more than one /");
    int step = 1;
    if (slash.size() == 2) {
      const std::string& st = slash[1];
      if (st.empty() || st.size() > 4 || st.find_first_not_of("0123456789") != std::string::npos || std::stoi(st) < 1)
        return Bad(r.name, "step '" + st.substr(0, 16) + "' must be a positive number");
      step = std::stoi(st);
    }
    int lo = r.lo, hi = r.hi;
    if (slash[0] != "*") {
      const auto range = Split(slash[0], '-');
      if (range.size() > 2) return Bad(r.name, "'" + item.substr(0, 16) + "' is not a range");
      auto a = Value(r, range[0]);
      if (!a.ok()) return a.status();
      lo = hi = *a;
      if (range.size() == 2) {
        auto b = Value(r, range[1]);
        if (!b.ok()) return b.status();
        hi = *b;
        if (hi < lo) return Bad(r.name, "range '" + item.substr(0, 16) + "' runs backwards");
      } else if (slash.size() == 2) {
        hi = r.hi;  // "a/n": from a to the end
      }
    }
    for (int v = lo; v <= hi; v += step) bits.set(static_cast<size_t>(v));
  }
  return Status::Ok();
}

Result<TimeMs> Every(const std::string& spec) {
  if (spec.size() < 2) return Bad("@every", "needs a duration such as 90s, 15m or 2h");
  const char unit = spec.back();
  const std::string num = spec.substr(0, spec.size() - 1);
  if (num.empty() || num.size() > 9 || num.find_first_not_of("0123456789") != std::string::npos)
    return Bad("@every", "'" + spec.substr(0, 16) + "' is not <number><s|m|h>");
  const TimeMs n = std::stoll(num);
  TimeMs unit_ms = 0;
  if (unit == 's') unit_ms = 1000;
  if (unit == 'm') unit_ms = kMinuteMs;
  if (unit == 'h') unit_ms = 60 * kMinuteMs;
  if (unit_ms == 0) return Bad("@every", "the unit must be s, m or h");
  if (n < 1 || n * unit_ms > kMaxEveryMs) return Bad("@every", "must be 1s..31 days");
  return n * unit_ms;
}

TimeMs ToMs(const struct tm& t) {
  struct tm copy = t;
  return static_cast<TimeMs>(timegm(&copy)) * 1000;
}

}  // namespace

Result<Cron> Cron::Parse(const std::string& input) {
  if (input.size() > kMaxText) return Bad("expression", "longer than 256 bytes");
  // Fields are separated by runs of spaces or tabs.
  std::vector<std::string> fields;
  std::string cur;
  for (char c : input + " ") {
    if (c == ' ' || c == '\t') {
      if (!cur.empty()) fields.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  Cron c;
  c.text_ = input;
  if (fields.size() == 2 && fields[0] == "@every") {
    auto every = Every(fields[1]);
    if (!every.ok()) return every.status();
    c.every_ms_ = *every;
    return c;
  }
  if (fields.size() == 1 && fields[0][0] == '@') {
    static const std::vector<std::pair<std::string, std::string>> kMacros = {
        {"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},  {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
        {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}};
    for (const auto& [name, expr] : kMacros)
      if (fields[0] == name) {
        auto parsed = Parse(expr);
        if (parsed.ok()) parsed->text_ = input;
        return parsed;
      }
    return Bad("expression", "unknown macro '" + fields[0].substr(0, 16) +
                                 "' (@hourly, @daily, @weekly, @monthly, @yearly, @every <n><s|m|h>)");
  }
  if (fields.size() != 5)
    return Bad("expression",
               "needs five fields (minute hour day-of-month month day-of-week), got " + std::to_string(fields.size()));
  static const FieldRule kMinute{"minute", 0, 59, {}}, kHour{"hour", 0, 23, {}}, kDay{"day-of-month", 1, 31, {}};
  static const FieldRule kMonth{
      "month", 1, 12, {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}};
  static const FieldRule kWeekday{"day-of-week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}};
  bool unused = false;
  KILN_RETURN_IF_ERROR(ParseField(kMinute, fields[0], c.minutes_, unused));
  KILN_RETURN_IF_ERROR(ParseField(kHour, fields[1], c.hours_, unused));
  KILN_RETURN_IF_ERROR(ParseField(kDay, fields[2], c.days_, c.days_restricted_));
  KILN_RETURN_IF_ERROR(ParseField(kMonth, fields[3], c.months_, unused));
  std::bitset<8> weekdays;
  KILN_RETURN_IF_ERROR(ParseField(kWeekday, fields[4], weekdays, c.weekdays_restricted_));
  for (size_t d = 0; d < 7; ++d) c.weekdays_[d] = weekdays[d];
  if (weekdays[7]) c.weekdays_[0] = true;  // 7 is Sunday too
  return c;
}

TimeMs Cron::Next(TimeMs after) const {
  if (every_ms_ > 0) return (after / every_ms_ + 1) * every_ms_;
  const time_t start = static_cast<time_t>(after / kMinuteMs + 1) * 60;  // the next whole minute
  struct tm t {};
  gmtime_r(&start, &t);
  const int limit_year = t.tm_year + 5;
  while (t.tm_year <= limit_year) {
    if (!months_[static_cast<size_t>(t.tm_mon) + 1]) {
      t.tm_mon += 1;
      t.tm_mday = 1;
      t.tm_hour = t.tm_min = 0;
      timegm(&t);  // normalizes (a 13th month is next January)
      continue;
    }
    const bool day = days_[static_cast<size_t>(t.tm_mday)], weekday = weekdays_[static_cast<size_t>(t.tm_wday)];
    const bool day_ok = days_restricted_ && weekdays_restricted_ ? (day || weekday) : (day && weekday);
    if (!day_ok) {
      t.tm_mday += 1;
      t.tm_hour = t.tm_min = 0;
      timegm(&t);
      continue;
    }
    if (!hours_[static_cast<size_t>(t.tm_hour)]) {
      t.tm_hour += 1;
      t.tm_min = 0;
      timegm(&t);
      continue;
    }
    if (!minutes_[static_cast<size_t>(t.tm_min)]) {
      t.tm_min += 1;
      timegm(&t);
      continue;
    }
    return ToMs(t);
  }
  return 0;
}

}  // namespace kiln::schedules
