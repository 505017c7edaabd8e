#include "store/page_token.h"

#include <cerrno>
#include <cstdlib>
#include <optional>

namespace kiln {
namespace {

std::optional<int64_t> ParseInt64(const std::string& s) {
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(begin, &end, 10);
  if (end == begin || errno == ERANGE) return std::nullopt;
  return static_cast<int64_t>(v);
}

}  // namespace

Result<PageCursor> ParsePageToken(const ListQuery& q) {
  PageCursor c;
  c.keyset = q.order == ListOrder::kNewestFirst || q.order == ListOrder::kOldestFirst;
  if (q.page_token.empty()) return c;
  const Status malformed = InvalidArgument("page_token", "malformed page token");
  auto colon = q.page_token.find(':');
  const std::string head = q.page_token.substr(0, colon);
  if (colon == std::string::npos || (!c.keyset && head != "o")) return malformed;
  auto n = ParseInt64(c.keyset ? head : q.page_token.substr(colon + 1));
  if (!n) return malformed;
  c.present = true;
  if (c.keyset) {
    c.created_ms = *n;
    c.id = q.page_token.substr(colon + 1);
  } else {
    if (*n < 0) return malformed;
    c.offset = *n;
  }
  return c;
}

std::string KeysetPageToken(TimeMs created_ms, const std::string& id) {
  return std::to_string(created_ms) + ":" + id;
}

std::string OffsetPageToken(int64_t offset) {
  return "o:" + std::to_string(offset);
}

}  // namespace kiln
