#pragma once
// Where routes are registered: the asynchronous server (AsyncServer) or, for the
// per-instance runtime socket, cpp-httplib (HttplibRoutes). Requests and
// responses are cpp-httplib's value types in both, so handlers do not depend on
// the transport.
#include <httplib.h>

#include <functional>
#include <memory>
#include <string>

#include "http/stream.h"

namespace kiln::http {

// A handler fills in `res`; a streaming one also returns the stream's source
// (then `res` holds the status and headers, and the body is the source's).
using Handler = std::function<std::shared_ptr<StreamSource>(const httplib::Request&, httplib::Response&)>;

enum class ReadBody {
  kYes,
  kNo,  // answered without reading a body (a bodyless `curl -X POST` works)
};

class RouteTable {
 public:
  virtual ~RouteTable() = default;
  // `pattern` is a regular expression matched against the whole decoded path;
  // its groups are in req.matches.
  virtual void Handle(const std::string& method, const std::string& pattern, ReadBody body, Handler h) = 0;
};

// Routes on a cpp-httplib server. A stream is served by blocking the
// connection's thread between steps (so use it only where streams are rare).
class HttplibRoutes : public RouteTable {
 public:
  explicit HttplibRoutes(httplib::Server& server) : server_(server) {}
  void Handle(const std::string& method, const std::string& pattern, ReadBody body, Handler h) override;

 private:
  httplib::Server& server_;
};

}  // namespace kiln::http
