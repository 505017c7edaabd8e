#pragma once
// A minimal HTTP/1.1 client for kiln-entrypoint's calls to kilnd (loopback or
// cluster network, plain HTTP, one request per connection).
//
// Why not cpp-httplib here as elsewhere: Debian's libcpp-httplib pulls in
// libssl, libcrypto, brotli and zlib, and loading them costs ~2.5 ms at every
// instance start (measured: an exec-only program linked against it starts 2.5 ms
// later than one that is not; see bench/RESULTS.md) — half the entrypoint's budget.
#include <map>
#include <string>

#include "common/status.h"

namespace kiln {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// `host` "unix:<path>" connects to a Unix socket (port ignored).
// kUnavailable on connection failures and timeouts (retry); kInternal on a
// malformed response.
Result<HttpResponse> HttpCall(const std::string& host, int port, const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers, const std::string& body,
                              int timeout_ms);

}  // namespace kiln
