#include "metrics/statsd.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace kiln {

const char* ToString(StatsdError e) {
  switch (e) {
    case StatsdError::kOk:
      return "ok";
    case StatsdError::kEmpty:
      return "empty";
    case StatsdError::kNoValue:
      return "no_value";
    case StatsdError::kNoType:
      return "no_type";
    case StatsdError::kBadType:
      return "bad_type";
    case StatsdError::kBadValue:
      return "bad_value";
    case StatsdError::kBadSampleRate:
      return "bad_sample_rate";
    case StatsdError::kBadName:
      return "bad_name";
    case StatsdError::kNotUtf8:
      return "not_utf8";
    case StatsdError::kTooLong:
      return "too_long";
  }
  return "unknown";
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

namespace {

bool ParseDouble(std::string_view v, double* out) {
  if (v.empty() || v.size() > 64) return false;
  // from_chars for double is in libstdc++ 11+.
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), *out);
  return ec == std::errc() && p == v.data() + v.size() && std::isfinite(*out);
}

bool ValidName(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n)
    if (c == '|' || c == '@' || c == '#' || c == '\n' || static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}

}  // namespace

StatsdError ParseStatsdLine(std::string_view line, StatsdSample* out) {
  if (line.empty()) return StatsdError::kEmpty;
  if (line.size() > kMaxStatsdLine) return StatsdError::kTooLong;
  if (!IsValidUtf8(line)) return StatsdError::kNotUtf8;
  // The value starts after the last ':' before the type, so names may hold
  // colons (SageMaker metric names such as "validation:accuracy").
  size_t bar = line.find('|');
  size_t colon = bar == std::string_view::npos ? line.find(':') : line.rfind(':', bar);
  if (colon == std::string_view::npos || (bar != std::string_view::npos && colon > bar)) return StatsdError::kNoValue;
  if (bar == std::string_view::npos) return StatsdError::kNoType;
  std::string_view name = line.substr(0, colon);
  if (!ValidName(name)) return StatsdError::kBadName;
  std::string_view value = line.substr(colon + 1, bar - colon - 1);
  std::string_view rest = line.substr(bar + 1);
  size_t next = rest.find('|');
  std::string_view type = rest.substr(0, next);
  rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);

  out->name.assign(name);
  out->tags.clear();
  out->member.clear();
  out->sample_rate = 1.0;
  out->relative = false;
  if (type == "c")
    out->kind = MetricKind::kCounter;
  else if (type == "g")
    out->kind = MetricKind::kGauge;
  else if (type == "ms")
    out->kind = MetricKind::kTimer;
  else if (type == "h" || type == "d")
    out->kind = MetricKind::kHistogram;
  else if (type == "s")
    out->kind = MetricKind::kSet;
  else
    return StatsdError::kBadType;

  if (out->kind == MetricKind::kSet) {
    if (value.empty()) return StatsdError::kBadValue;
    out->member.assign(value);
    out->value = 1;
  } else {
    if (out->kind == MetricKind::kGauge && !value.empty() && (value[0] == '+' || value[0] == '-')) out->relative = true;
    std::string_view num = value;
    if (!num.empty() && num[0] == '+') num.remove_prefix(1);
    if (!ParseDouble(num, &out->value)) return StatsdError::kBadValue;
  }

  while (!rest.empty()) {
    next = rest.find('|');
    std::string_view section = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
    if (section.empty()) continue;
    if (section[0] == '@') {
      double rate;
      if (!ParseDouble(section.substr(1), &rate) || rate <= 0 || rate > 1) return StatsdError::kBadSampleRate;
      out->sample_rate = rate;
    } else if (section[0] == '#') {
      std::string_view tags = section.substr(1);
      while (!tags.empty()) {
        size_t comma = tags.find(',');
        std::string_view tag = tags.substr(0, comma);
        tags = comma == std::string_view::npos ? std::string_view() : tags.substr(comma + 1);
        if (tag.empty()) continue;
        size_t tc = tag.find(':');
        if (tc == std::string_view::npos)
          out->tags.emplace_back(std::string(tag), std::string());
        else
          out->tags.emplace_back(std::string(tag.substr(0, tc)), std::string(tag.substr(tc + 1)));
      }
    }
    // c:<container id>, T<timestamp> and unknown extensions are accepted and ignored.
  }
  return StatsdError::kOk;
}

}  // namespace kiln
