#include "cli/tuning_view.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>

namespace kiln::cli {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

void RenderTrialRow(const json& t, std::ostream& out) {
  std::string hps;
  for (auto& [k, v] : t.at("hyperparameters").items()) hps += k + "=" + v.get<std::string>() + " ";
  std::string obj = t.at("objective").is_null()
                        ? (t.at("last_value").is_null() ? "-" : "(" + t.at("last_value").dump() + ")")
                        : t.at("objective").dump();
  out << Pad(t.at("name").get<std::string>(), 26)
      << Pad(t.at("status").get<std::string>() + (t.at("early_stopped").get<bool>() ? "*" : ""), 12) << Pad(obj, 14)
      << Pad(std::to_string(t.at("steps").get<int>()), 7) << hps << "\n";
}

// Re-reads one tuning job and prints it when it differs from the last print.
class TuningDrawer {
 public:
  TuningDrawer(Context& ctx, std::string name) : ctx_(ctx), name_(std::move(name)) {}

  // Returns the tuning job's status, or nullopt if it could not be read (printed).
  std::optional<std::string> Redraw() {
    last_read_ = SteadyClock::now();
    auto doc = ctx_.kilnd.Call("GET", "/v1/tuning-jobs/" + UrlEscape(name_));
    if (!doc) return std::nullopt;
    std::string status = (*doc)["status"];
    std::string text = RenderTuning(*doc, name_, ctx_.output);
    if (text != last_) {
      std::cout << text << (ctx_.output == Output::kTable ? "\n" : "") << std::flush;
      last_ = std::move(text);
    }
    return status;
  }
  SteadyClock::duration SinceLastRead() const { return SteadyClock::now() - last_read_; }

 private:
  Context& ctx_;
  const std::string name_;
  std::string last_;
  SteadyClock::time_point last_read_;
};

// Tells whether an event's job is a trial of one tuning job. Events name jobs by
// id; each id's name is looked up once.
class TrialFilter {
 public:
  TrialFilter(KilndClient& kilnd, std::string tuning) : kilnd_(kilnd), tuning_(std::move(tuning)) {}

  bool Concerns(const json& event) {
    if (!event.contains("job_id") || !event["job_id"].is_string()) return false;
    const std::string& id = event["job_id"].get_ref<const std::string&>();
    if (auto it = is_trial_.find(id); it != is_trial_.end()) return it->second;
    auto job = kilnd_.Call("GET", "/v1/jobs/" + UrlEscape(id), "", OnError::kQuiet);
    if (!job) return true;                                      // unknown: re-reading the tuning job is the safe side
    if (is_trial_.size() >= kMaxRemembered) is_trial_.clear();  // a lookup again costs only time
    bool trial = IsTrialName(tuning_, job->value("name", ""));
    is_trial_.emplace(id, trial);
    return trial;
  }

 private:
  static constexpr size_t kMaxRemembered = 10000;
  KilndClient& kilnd_;
  const std::string tuning_;
  std::unordered_map<std::string, bool> is_trial_;
};

// A point to resume GET /v1/events from that skips its history: the global seq of
// the newest job's latest event. An event appended after this call has a higher
// seq (one already appended to an older job but applied later may be passed over;
// the periodic re-read covers it). 0, the whole history, if there is no job.
int64_t RecentEventSeq(KilndClient& kilnd) {
  auto page = kilnd.Call("GET", "/v1/jobs?limit=1", "", OnError::kQuiet);
  if (!page || !(*page)["jobs"].is_array() || (*page)["jobs"].empty()) return 0;
  int64_t seq = 0;
  SseParser parser([&](const SseEvent& e) {
    seq = std::max(seq, e.data.value("seq", int64_t{0}));
    return true;
  });
  // Any seq read is a valid resume point, so a broken stream needs no handling.
  kilnd.Stream("/v1/jobs/" + UrlEscape((*page)["jobs"][0].value("id", "")) + "/events?follow=false", {},
               [&](const char* d, size_t n) { return parser.Feed(d, n); });
  return seq;
}

// The seq in an SSE id of /v1/events, or `fallback` if it is not a number.
int64_t SeqOf(const SseEvent& e, int64_t fallback) {
  int64_t seq = 0;
  auto [end, ec] = std::from_chars(e.id.data(), e.id.data() + e.id.size(), seq);
  return ec == std::errc() && end == e.id.data() + e.id.size() ? seq : fallback;
}

}  // namespace

// A field missing from kilnd's document throws: the client and kilnd disagree.
std::string RenderTuning(const json& doc, const std::string& name, Output output) {
  std::ostringstream out;
  if (output == Output::kJson) {
    out << doc.dump(2) << "\n";
    return out.str();
  }
  const json& best = doc.at("best");
  out << name << "  " << doc.at("status").get<std::string>() << "  " << doc.at("strategy").get<std::string>() << "  "
      << doc.at("objective").at("type").get<std::string>() << " " << doc.at("objective").at("metric").get<std::string>()
      << "  best: "
      << (best.is_null() ? std::string("-") : best.at("name").get<std::string>() + " = " + best.at("objective").dump())
      << (doc.at("reason").get<std::string>().empty() ? "" : "  (" + doc.at("reason").get<std::string>() + ")") << "\n"
      << Pad("TRIAL", 26) << Pad("STATUS", 12) << Pad("OBJECTIVE", 14) << Pad("STEPS", 7) << "HYPERPARAMETERS\n";
  for (const auto& t : doc.at("trials")) RenderTrialRow(t, out);
  return out.str();
}

bool IsTrialName(const std::string& tuning, const std::string& job_name) {
  if (job_name.size() <= tuning.size() + 1 || job_name.compare(0, tuning.size(), tuning) != 0 ||
      job_name[tuning.size()] != '-')
    return false;
  const std::string rest = job_name.substr(tuning.size() + 1);  // "<index>-<8 hex>"
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos || rest.size() - dash - 1 != 8) return false;
  auto is_digit = [](char c) { return isdigit(static_cast<unsigned char>(c)) != 0; };
  auto is_hex = [](char c) { return isxdigit(static_cast<unsigned char>(c)) != 0; };
  return std::all_of(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(dash), is_digit) &&
         std::all_of(rest.begin() + static_cast<std::ptrdiff_t>(dash) + 1, rest.end(), is_hex);
}

bool IsFinalTuningStatus(const std::string& status) {
  return status == "Completed" || status == "Failed" || status == "Stopped";
}

int FollowTuning(Context& ctx, const std::string& name, const FollowTuningOptions& options) {
  int64_t cursor = RecentEventSeq(ctx.kilnd);  // taken before the first read, so no later change is missed
  TuningDrawer drawer(ctx, name);
  TrialFilter trials(ctx.kilnd, name);
  std::optional<std::string> status = drawer.Redraw();
  auto following = [&] { return status && !IsFinalTuningStatus(*status); };
  while (following()) {
    const auto connected = SteadyClock::now();
    SseParser parser([&](const SseEvent& e) {
      cursor = SeqOf(e, cursor);
      if (!trials.Concerns(e.data) && drawer.SinceLastRead() < options.redraw_every) return true;
      status = drawer.Redraw();
      return following();
    });
    httplib::Headers headers;
    if (cursor > 0) headers.emplace("Last-Event-ID", std::to_string(cursor));
    // Ends when the handler above stops it, when no event came for redraw_every
    // (kilnd's keep-alives are rarer), or when kilnd went away or refused; in every
    // case the tuning job is re-read below, and that read reports kilnd's errors.
    ctx.kilnd.Stream(
        "/v1/events", headers, [&](const char* d, size_t n) { return parser.Feed(d, n); }, options.redraw_every);
    if (!following()) break;
    std::this_thread::sleep_until(connected + options.min_reconnect);
    status = drawer.Redraw();
  }
  if (!status) return 2;
  return *status == "Completed" ? 0 : 1;
}

}  // namespace kiln::cli
