#pragma once
// kilnd's HTTP/1.1 server: Boost.Beast on Asio. A few I/O threads own every
// connection; handlers run on a pool of worker threads (they may block on the
// store); streams wait parked, without a thread (see stream.h). So thousands of
// idle event streams leave health checks, submits and the runtime API as fast
// as without them.
//
// Bounded everything, each with a clear status and the connection closed:
//   - a request line and headers of at most `header_limit` bytes (431);
//   - a body of at most `body_limit` bytes (413);
//   - a whole request within `read_timeout_ms` of its first byte, and an idle
//     keep-alive connection closed after `idle_timeout_ms` (408 for a request
//     begun and not finished: a client that trickles bytes is cut off too);
//   - at most `max_connections` connections, `max_connections_per_address` from
//     one source address (503 and closed).
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "http/route_table.h"

namespace kiln::http {

struct ServerOptions {
  int io_threads = 1;
  int workers = 32;  // handler threads
  size_t header_limit = 16 * 1024;
  size_t body_limit = 8 * 1024 * 1024;
  int read_timeout_ms = 5000;
  int idle_timeout_ms = 60000;
  int write_timeout_ms = 30000;  // a client that stops reading a response is closed
  int max_connections = 16384;
  int max_connections_per_address = 4096;
  // Writes the body of an error the server answers itself (no route, too large,
  // too slow, too many connections); by default plain text.
  std::function<void(int status, const std::string& message, httplib::Response&)> error_body;
};

class AsyncServer : public RouteTable {
 public:
  explicit AsyncServer(ServerOptions opts);
  ~AsyncServer() override;
  AsyncServer(const AsyncServer&) = delete;
  AsyncServer& operator=(const AsyncServer&) = delete;

  // Before Start only.
  void Handle(const std::string& method, const std::string& pattern, ReadBody body, Handler h) override;

  // Binds "host:port" (port 0: any free one); returns the bound "host:port".
  Result<std::string> Bind(const std::string& listen);
  // Starts the I/O and worker threads; returns at once.
  void Start();
  // Stops accepting, closes every connection (open streams end), and joins the
  // threads. Idempotent; safe from any thread but a server thread.
  void Stop();

  // Wakes the waiting streams whose key is `key` and those whose key is "*";
  // Wake("*") wakes every stream.
  // Cheap when none waits; safe from any thread.
  void Wake(const std::string& key);

  // For tests and metrics.
  int connections() const { return connections_.load(); }
  int open_streams() const;

  struct Impl;  // the connections' side (async_server.cc)

 private:
  struct Route {
    std::string method;
    std::regex re;
    ReadBody body;
    Handler handler;
  };
  friend struct Impl;
  std::unique_ptr<Impl> impl_;
  ServerOptions opts_;
  std::vector<Route> routes_;
  std::atomic<int> connections_{0};
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
};

}  // namespace kiln::http
