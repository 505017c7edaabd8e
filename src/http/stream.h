#pragma once
// A response that is written over time: an event stream or a followed log. The
// server asks its source for what is ready, writes it, and, when nothing is,
// parks the connection without a thread until the source's key is woken, a
// poll interval passes, or a keep-alive is due. Thousands of idle streams thus
// cost a socket and a few hundred bytes each, not a thread.
#include <memory>
#include <string>

namespace kiln::http {

enum class StreamStep {
  kMore,  // more is ready: call Step again as soon as `out` is written
  kWait,  // nothing more now: call Step again when woken or after poll_ms()
  kDone,  // the stream ends (after `out` is written)
};

class StreamSource {
 public:
  virtual ~StreamSource() = default;
  // Appends what is ready now to `out`, without waiting for more, and bounded
  // (a source never hands over more than it can hold in memory at once). Runs on
  // one of the server's worker threads, never twice at once for one stream.
  virtual StreamStep Step(std::string& out) = 0;
  // Which wakes reach a waiting stream: AsyncServer::Wake(k) wakes the streams
  // whose key is k and every stream whose key is "*"; Wake("*") wakes all.
  virtual std::string wake_key() const = 0;
  // Call Step again after this long waiting even if not woken (0: only when woken).
  virtual int poll_ms() const { return 0; }
  // After this long waiting with nothing to write, keep_alive() is written: it
  // keeps proxies from closing an idle stream and finds clients that are gone.
  virtual int keep_alive_ms() const { return 0; }
  virtual std::string keep_alive() const { return ""; }
};

}  // namespace kiln::http
