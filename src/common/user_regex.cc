#include "common/user_regex.h"

#include <re2/re2.h>

namespace kiln {

UserRegex::UserRegex(std::unique_ptr<re2::RE2> re) : re_(std::move(re)) {}
UserRegex::UserRegex(UserRegex&&) noexcept = default;
UserRegex& UserRegex::operator=(UserRegex&&) noexcept = default;
UserRegex::~UserRegex() = default;

Result<UserRegex> UserRegex::Compile(std::string_view pattern, const std::string& field, bool needs_group) {
  re2::RE2::Options options;
  options.set_log_errors(false);  // the reason goes to the caller, not kilnd's stderr
  options.set_max_mem(8 << 20);   // what one compiled pattern may take
  auto re = std::make_unique<re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok())
    return InvalidArgument(
        field, "not a valid regular expression (RE2 syntax: no backreferences or lookaround): " + re->error());
  if (needs_group && re->NumberOfCapturingGroups() < 1)
    return InvalidArgument(field, "needs a capture group around the value");
  return UserRegex(std::move(re));
}

std::optional<std::string> UserRegex::FirstGroup(std::string_view text) const {
  if (re_->NumberOfCapturingGroups() < 1) return std::nullopt;
  re2::StringPiece groups[2];  // the whole match, then group 1
  if (!re_->Match(re2::StringPiece(text.data(), text.size()), 0, text.size(), re2::RE2::UNANCHORED, groups, 2))
    return std::nullopt;
  return std::string(groups[1].data(), groups[1].size());
}

int UserRegex::groups() const {
  return re_->NumberOfCapturingGroups();
}

}  // namespace kiln
