#pragma once
// Parsing JSON that a caller sent: nlohmann's parser, its recursive dump and
// destructor, and every walk over the value recurse once per level, so an
// unbounded depth is a stack overflow (a request nested 75,000 levels deep
// crashed kilnd). The depth is checked on the text first, in one pass.
#include <nlohmann/json.hpp>
#include <string_view>

#include "common/status.h"

namespace kiln {

// Far above any spec, tuning spec or SageMaker request (hyperparameters are
// flat there), far below what overflows a thread's stack.
inline constexpr int kMaxJsonDepth = 64;

// The nesting depth of arrays and objects in `text` (strings skipped), counted
// up to `stop_at` (a deeper text returns stop_at).
int JsonDepth(std::string_view text, int stop_at);

// Parses untrusted JSON: kInvalidArgument ("nested deeper than 64 levels") for
// a deeper text, and for one that is not JSON (`what` names it: "request body").
Result<nlohmann::json> ParseUntrustedJson(std::string_view text, const char* what = "request body",
                                          int max_depth = kMaxJsonDepth);

}  // namespace kiln
