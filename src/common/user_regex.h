#pragma once
// Regular expressions that callers supply (MetricDefinitions, tuning objective
// metrics), run by kilnd and the entrypoint over every log line. RE2: matching
// takes time linear in the text whatever the pattern, where std::regex
// backtracks (`(a+)+$` over a long line stalled every tuning call for minutes).
// RE2 has no backreferences or lookaround; such a pattern is refused when it is
// submitted, with RE2's reason.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace re2 {
class RE2;
}

namespace kiln {

class UserRegex {
 public:
  // kInvalidArgument (field `field`) with the reason when `pattern` does not
  // compile, or has no capture group when `needs_group`.
  static Result<UserRegex> Compile(std::string_view pattern, const std::string& field = "regex",
                                   bool needs_group = true);
  // The first capture group of the first match in `text`, or nullopt.
  std::optional<std::string> FirstGroup(std::string_view text) const;
  int groups() const;

  UserRegex(UserRegex&&) noexcept;
  UserRegex& operator=(UserRegex&&) noexcept;
  ~UserRegex();

 private:
  explicit UserRegex(std::unique_ptr<re2::RE2> re);
  std::unique_ptr<re2::RE2> re_;
};

}  // namespace kiln
