#pragma once
// ListJobs page tokens, shared by every Store implementation. Opaque to clients.
// Keyset orders (newest or oldest first) page by "<created_ms>:<id>" of the last job
// returned; the other orders page by "o:<offset>".
#include <cstdint>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "store/store.h"

namespace kiln {

struct PageCursor {
  bool keyset = false;    // the query's order pages by (created_ms, id)
  bool present = false;   // the query carried a token
  TimeMs created_ms = 0;  // keyset: the last job returned
  std::string id;
  int64_t offset = 0;  // other orders: rows to skip
};

// kInvalidArgument (field "page_token") for a token this order cannot have produced.
Result<PageCursor> ParsePageToken(const ListQuery& q);
std::string KeysetPageToken(TimeMs created_ms, const std::string& id);
std::string OffsetPageToken(int64_t offset);

}  // namespace kiln
