#pragma once
// kilnd's REST API as the `kiln` client sees it: where kilnd is, requests whose
// errors are printed for the user, streamed GETs, and the framing of kilnd's
// Server-Sent Events streams (GET /v1/events, GET /v1/jobs/{id}/events).
#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace kiln::cli {

struct Endpoint {
  std::string host;
  int port = 8470;
};

// `endpoint` if set, else $KILN_ENDPOINT, else the address kilnd wrote to
// DATA_DIR/kilnd.addr or ./kiln-data/kilnd.addr, else 127.0.0.1:8470. Accepts
// HOST:PORT with an optional http:// prefix and path.
Endpoint ResolveEndpoint(std::string endpoint, const std::string& data_dir);

// The API token to send: `token` if set, else $KILN_API_TOKEN, else the one
// `kiln login` saved (TokenFile()), else the bootstrap admin token kilnd wrote to
// DATA_DIR/admin.token or ./kiln-data/admin.token (readable by root only, so on
// kilnd's own host the quick start needs no login). "" if none.
std::string ResolveToken(std::string token, const std::string& data_dir);
// Where `kiln login` keeps the token: $XDG_CONFIG_HOME/kiln/token, else
// ~/.config/kiln/token (0600, in a 0700 directory).
std::string TokenFile();

// Percent-encodes `s` for a path segment or a query value.
std::string UrlEscape(const std::string& s);

// What a failed call does with its error.
enum class OnError {
  kPrint,  // print it to stderr, for the user
  kQuiet,  // say nothing; the caller has a fallback
};

// A connection to kilnd. Call uses one kept-alive connection and is not
// thread-safe; Stream opens a connection of its own per call and may run on any
// thread at the same time as Call.
class KilndClient {
 public:
  KilndClient(Endpoint e, std::string token);
  // Sends `token` from now on (kiln login checks a new one).
  void SetToken(const std::string& token);

  // Sends a request (POST bodies as JSON, PUT bodies as octet-stream) and returns
  // the parsed body (a discarded json when it is not JSON). If kilnd cannot be
  // reached or answers with a status >= 400, returns nullopt, having printed the
  // error (kilnd's code, field and message) unless `on_error` is kQuiet.
  std::optional<nlohmann::json> Call(const std::string& method, const std::string& path, const std::string& body = "",
                                     OnError on_error = OnError::kPrint);

  // Streams a GET, handing each chunk of the body to `on_data`, until kilnd ends
  // the response, `on_data` returns false, or nothing arrives for `read_timeout`.
  // Returns true only if kilnd ended the response; prints nothing.
  bool Stream(const std::string& path, const httplib::Headers& headers,
              const std::function<bool(const char*, size_t)>& on_data,
              std::chrono::milliseconds read_timeout = std::chrono::hours(1));

 private:
  Endpoint ep_;
  std::string token_;
  httplib::Client cli_;
};

// One Server-Sent Event whose data is JSON.
struct SseEvent {
  std::string id;    // the `id:` field: what Last-Event-ID resumes after
  std::string type;  // the `event:` field
  nlohmann::json data;
};

// Splits an SSE byte stream into events. Frames without data (the keep-alive
// comments) and data that is not JSON are skipped. Single-threaded.
class SseParser {
 public:
  // Returns false to stop reading the stream.
  using Handler = std::function<bool(const SseEvent&)>;
  // A frame longer than this ends the stream (printed), rather than growing the buffer without bound.
  static constexpr size_t kMaxFrameBytes = 16 << 20;

  explicit SseParser(Handler on_event) : on_event_(std::move(on_event)) {}

  // Feeds the next chunk of the stream; returns false once the handler asked to
  // stop or a frame was over kMaxFrameBytes. Suits KilndClient::Stream's on_data.
  bool Feed(const char* data, size_t n);

 private:
  std::string buf_;
  Handler on_event_;
};

}  // namespace kiln::cli
