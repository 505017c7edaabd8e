#pragma once
// StatsD / DogStatsD line protocol, parsed without I/O or allocation beyond the
// output sample.
//   <name>:<value>|<type>[|@<sample rate>][|#<tag>[:<value>],...][|c:<container>][|T<timestamp>]
// type: c (counter), g (gauge; "+n"/"-n" are relative), ms (timer), h
// (histogram), d (distribution, treated as a histogram), s (set; value is a member).
// A packet holds one or more lines separated by '\n'.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln {

enum class MetricKind { kCounter, kGauge, kTimer, kHistogram, kSet };

enum class StatsdError {
  kOk = 0,
  kEmpty,          // blank line (not counted as bad)
  kNoValue,        // no ':' before the value
  kNoType,         // no '|' type section
  kBadType,        // unknown type
  kBadValue,       // value not a finite number (sets excepted)
  kBadSampleRate,  // not in (0, 1]
  kBadName,        // empty name or forbidden characters
  kNotUtf8,        // invalid UTF-8
  kTooLong,        // line longer than kMaxStatsdLine
};
inline constexpr size_t kMaxStatsdLine = 8192;
inline constexpr size_t kMaxStatsdPacket = 65536;
const char* ToString(StatsdError e);

struct StatsdSample {
  std::string name;
  MetricKind kind = MetricKind::kCounter;
  double value = 0;
  bool relative = false;  // gauge "+n" / "-n"
  std::string member;     // sets
  double sample_rate = 1.0;
  std::vector<std::pair<std::string, std::string>> tags;  // in arrival order
};

StatsdError ParseStatsdLine(std::string_view line, StatsdSample* out);

// Calls `on_sample` for every good line and `on_error` for every bad one.
template <typename OnSample, typename OnError>
void ParseStatsdPacket(std::string_view packet, OnSample&& on_sample, OnError&& on_error) {
  thread_local StatsdSample s;  // reused: its strings keep their capacity
  while (!packet.empty()) {
    size_t nl = packet.find('\n');
    std::string_view line = packet.substr(0, nl);
    packet = nl == std::string_view::npos ? std::string_view() : packet.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    StatsdError e = ParseStatsdLine(line, &s);
    if (e == StatsdError::kOk)
      on_sample(s);
    else if (e != StatsdError::kEmpty)
      on_error(e);
  }
}

bool IsValidUtf8(std::string_view s);

}  // namespace kiln
