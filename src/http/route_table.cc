#include "http/route_table.h"

#include <chrono>
#include <thread>

namespace kiln::http {
namespace {

// Serves a stream on the connection's own thread: steps, writes, and sleeps
// for its poll interval (at most 250 ms) while it waits.
bool ServeBlocking(const std::shared_ptr<StreamSource>& src, httplib::DataSink& sink) {
  for (;;) {
    std::string out;
    const StreamStep step = src->Step(out);
    if (!out.empty() && !sink.write(out.data(), out.size())) return false;
    if (step == StreamStep::kDone) {
      sink.done();
      return true;
    }
    if (step == StreamStep::kWait) {
      const int ms = src->poll_ms() > 0 ? std::min(src->poll_ms(), 250) : 250;
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }
}

}  // namespace

void HttplibRoutes::Handle(const std::string& method, const std::string& pattern, ReadBody body, Handler h) {
  auto run = [h](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<StreamSource> src = h(req, res);
    if (!src) return;
    const std::string type = res.get_header_value("Content-Type");
    res.headers.erase("Content-Type");
    res.set_chunked_content_provider(type.empty() ? "application/octet-stream" : type,
                                     [src](size_t, httplib::DataSink& sink) { return ServeBlocking(src, sink); });
  };
  if (method == "GET") {
    server_.Get(pattern, run);
  } else if (method == "PUT") {
    server_.Put(pattern, run);
  } else if (method == "DELETE") {
    server_.Delete(pattern, run);
  } else if (body == ReadBody::kNo) {
    server_.Post(pattern, [run](const httplib::Request& req, httplib::Response& res, const httplib::ContentReader&) {
      run(req, res);
    });
  } else {
    server_.Post(pattern, run);
  }
}

}  // namespace kiln::http
