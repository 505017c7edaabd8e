#include "http/async_server.h"

#include <strings.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <optional>

namespace kiln::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

// What a connection does now; a stream's states come after kStreamStepping.
enum class Phase {
  kReading,         // waiting for (the rest of) a request
  kHandling,        // a worker runs the handler
  kWriting,         // writing a whole response
  kStreamStepping,  // a worker runs the stream's Step
  kStreamWriting,   // writing what a Step produced
  kStreamParked,    // waiting for a wake, a poll or a keep-alive
  kClosing,         // an error answered; draining what the client still sends
  kClosed,
};

// Header values come from handlers; a CR or LF would split the response.
std::string HeaderSafe(const std::string& v) {
  std::string out = v;
  for (char& c : out)
    if (c == '\r' || c == '\n') c = ' ';
  return out;
}

std::string ReasonOf(int status) {
  const beast::string_view r = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  return std::string(r.data(), r.size());
}

constexpr size_t kMaxPathBytes = 2048;

std::string Chunk(const std::string& data) {
  char len[24];
  snprintf(len, sizeof(len), "%zx\r\n", data.size());
  return std::string(len) + data + "\r\n";
}

}  // namespace

class Session;

struct AsyncServer::Impl {
  explicit Impl(AsyncServer& s) : server(s), acceptor(ioc), workers(static_cast<size_t>(s.opts_.workers)) {}

  void Accept();
  void OnAccept(tcp::socket sock);
  void Register(const std::string& key, const std::shared_ptr<Session>& s);
  void Unregister(const std::string& key, Session* s);
  void Dispatch(const std::shared_ptr<Session>& s, std::shared_ptr<httplib::Request> req);
  void ErrorResponse(int status, const std::string& message, httplib::Response& res) const;
  const ServerOptions& opts() const { return server.opts_; }
  std::atomic<int>& connections() { return server.connections_; }

  AsyncServer& server;
  // Declared before the io_context, so that sessions destroyed with it (their
  // pending handlers) still find them.
  mutable std::mutex mu;
  std::map<std::string, int> per_address;
  std::unordered_map<Session*, std::weak_ptr<Session>> live;
  std::unordered_map<std::string, std::unordered_map<Session*, std::weak_ptr<Session>>> streams;

  asio::io_context ioc;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry{ioc};
  asio::thread_pool workers;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(AsyncServer::Impl& impl, tcp::socket sock, std::string addr, uint16_t port, bool counted)
      : impl_(impl),
        opts_(impl.opts()),
        sock_(std::move(sock)),
        timer_(sock_.get_executor()),
        addr_(std::move(addr)),
        port_(port),
        counted_(counted) {}

  ~Session() {
    std::lock_guard<std::mutex> l(impl_.mu);
    impl_.live.erase(this);
    if (!counted_) return;
    auto it = impl_.per_address.find(addr_);
    if (it != impl_.per_address.end() && --it->second <= 0) impl_.per_address.erase(it);
    impl_.connections().fetch_sub(1);
  }

  void Begin() { WaitForRequest(); }

  // Refuses the connection with a status (too many connections) and closes it.
  void Refuse(int status, const std::string& message) { SendError(status, message); }

  // From any thread: the stream has something new to look at.
  void Poke() {
    if (woken_.exchange(true)) return;  // already poked and not yet stepped
    asio::post(sock_.get_executor(), [self = shared_from_this()] {
      if (self->phase_ == Phase::kStreamParked) self->StreamStep();
    });
  }

  // On the I/O thread, after the io_context stopped (Stop).
  void ForceClose() {
    error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_both, ignored);
    sock_.close(ignored);
  }
  // At Stop, with no thread left to run the connection: its stream goes now,
  // while what it refers to (the API's stream slots) still exists; the session
  // itself may live on in the io_context's handlers until the server is gone.
  void DropStream() { src_.reset(); }

  // After the handler ran (on a worker): back to the connection's strand.
  void Respond(std::shared_ptr<httplib::Response> res, std::shared_ptr<StreamSource> src) {
    asio::post(sock_.get_executor(), [self = shared_from_this(), res = std::move(res), src = std::move(src)] {
      if (self->phase_ == Phase::kClosed) return;
      self->WriteHead(*res, src);
    });
  }

 private:
  // Deadlines: one timer, and a generation so that a stale expiry does nothing.
  void Arm(int ms, std::function<void()> on_expiry) {
    const uint64_t gen = ++timer_gen_;
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait([self = shared_from_this(), gen, f = std::move(on_expiry)](error_code ec) {
      if (!ec && gen == self->timer_gen_) f();
    });
  }
  void Disarm() {
    ++timer_gen_;
    timer_.cancel();
  }
  void CancelIo() {
    error_code ignored;
    sock_.cancel(ignored);
  }

  // Idle keep-alive: wait (idle_timeout_ms) for the first byte of the next request.
  void WaitForRequest() {
    phase_ = Phase::kReading;
    if (buf_.size() > 0) return ReadRequest();  // pipelined: already here
    Arm(opts_.idle_timeout_ms, [this] {
      timed_out_ = true;
      CancelIo();
    });
    sock_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
      self->Disarm();
      if (ec || self->timed_out_) return self->Close();
      self->ReadRequest();
    });
  }

  // The whole request within read_timeout_ms of its first byte.
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(opts_.header_limit));
    parser_->body_limit(opts_.body_limit);
    timed_out_ = false;
    Arm(opts_.read_timeout_ms, [this] {
      timed_out_ = true;
      CancelIo();
    });
    bhttp::async_read_header(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->OnRead(ec);
      if (self->parser_->is_done()) return self->OnRead(ec);
      const auto expect = self->parser_->get()[bhttp::field::expect];
      if (beast::iequals(expect, "100-continue")) {
        // curl and others wait for this before they send a larger body.
        self->interim_ = "HTTP/1.1 100 Continue\r\n\r\n";
        return asio::async_write(self->sock_, asio::buffer(self->interim_), [self](error_code wec, size_t) {
          if (wec) return self->Close();
          self->ReadBody();
        });
      }
      self->ReadBody();
    });
  }

  void ReadBody() {
    bhttp::async_read(sock_, buf_, *parser_, [self = shared_from_this()](error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(error_code ec) {
    Disarm();
    if (timed_out_)
      return SendError(408, "the request did not arrive within " + std::to_string(opts_.read_timeout_ms) + " ms");
    if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset)
      return Close();
    if (ec == bhttp::error::header_limit)
      return SendError(431, "the request line and headers exceed " + std::to_string(opts_.header_limit) + " bytes");
    if (ec == bhttp::error::body_limit)
      return SendError(413, "the request body exceeds " + std::to_string(opts_.body_limit) + " bytes");
    if (ec) return SendError(400, "malformed request: " + ec.message());
    bhttp::request<bhttp::string_body> msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    auto req = std::make_shared<httplib::Request>();
    req->method = std::string(msg.method_string());
    req->target = std::string(msg.target());
    req->version = msg.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
    const size_t q = req->target.find('?');
    // Routes are matched by regular expression (std::regex backtracks, one stack
    // frame per character): a path longer than any route's is refused first.
    if (std::min(q, req->target.size()) > kMaxPathBytes)
      return SendError(414, "the path exceeds " + std::to_string(kMaxPathBytes) + " bytes");
    req->path = httplib::detail::decode_url(req->target.substr(0, q), false);
    if (q != std::string::npos) httplib::detail::parse_query_text(req->target.substr(q + 1), req->params);
    for (const auto& f : msg) req->headers.emplace(std::string(f.name_string()), std::string(f.value()));
    req->body = std::move(msg.body());
    req->remote_addr = addr_;
    req->remote_port = port_;
    phase_ = Phase::kHandling;
    impl_.Dispatch(shared_from_this(), std::move(req));
  }

  void SendError(int status, const std::string& message) {
    keep_alive_ = false;
    httplib::Response res;
    res.status = status;
    impl_.ErrorResponse(status, message, res);
    WriteHead(res, nullptr);
  }

  void WriteHead(const httplib::Response& res, std::shared_ptr<StreamSource> src) {
    const int status = res.status < 0 ? 200 : res.status;
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " + ReasonOf(status) + "\r\n";
    for (const auto& [k, v] : res.headers) {
      if (strcasecmp(k.c_str(), "Content-Length") == 0 || strcasecmp(k.c_str(), "Transfer-Encoding") == 0 ||
          strcasecmp(k.c_str(), "Connection") == 0)
        continue;
      head += HeaderSafe(k) + ": " + HeaderSafe(v) + "\r\n";
    }
    // A stream's connection closes when it ends (its hang-up watch holds the read side).
    if (src) keep_alive_ = false;
    // 204 and 304 carry no body and no Content-Length (RFC 9110 §8.6).
    if (src) {
      head += "Transfer-Encoding: chunked\r\n";
    } else if (status != 204 && status != 304) {
      head += "Content-Length: " + std::to_string(res.body.size()) + "\r\n";
    }
    if (!keep_alive_) head += "Connection: close\r\n";
    head += "\r\n";
    if (src) {
      src_ = std::move(src);
      out_ = std::move(head);
      impl_.Register(src_->wake_key(), shared_from_this());
      WatchForHangUp();
      return Write(Phase::kStreamWriting, [this] { StreamStep(); });
    }
    out_ = std::move(head);
    if (status != 204 && status != 304) out_ += res.body;
    Write(Phase::kWriting, [this, status] {
      if (keep_alive_) return WaitForRequest();
      if (status >= 400) return Drain();
      Close();
    });
  }

  // Writes out_, within write_timeout_ms; then `next`.
  void Write(Phase phase, std::function<void()> next) {
    phase_ = phase;
    Arm(opts_.write_timeout_ms, [this] { CancelIo(); });
    asio::async_write(sock_, asio::buffer(out_),
                      [self = shared_from_this(), next = std::move(next)](error_code ec, size_t) {
                        self->Disarm();
                        if (self->phase_ == Phase::kClosed) return;
                        if (ec) return self->Close();
                        self->out_.clear();
                        self->last_write_ = SteadyClock::now();
                        next();
                      });
  }

  // While a stream is open nothing more is read; a read that completes means the
  // client hung up (or broke the protocol): the stream ends.
  void WatchForHangUp() {
    sock_.async_read_some(asio::buffer(probe_), [self = shared_from_this()](error_code ec, size_t) {
      if (ec == asio::error::operation_aborted && self->phase_ != Phase::kClosed) return self->WatchForHangUp();
      self->Close();
    });
  }

  void StreamStep() {
    phase_ = Phase::kStreamStepping;
    woken_.store(false);
    // The worker holds its own reference: a hang-up may close the connection
    // (and drop src_) while the step runs.
    asio::post(impl_.workers, [self = shared_from_this(), src = src_] {
      std::string out;
      kiln::http::StreamStep step = kiln::http::StreamStep::kDone;
      try {
        step = src->Step(out);
      } catch (const std::exception& e) {
        fprintf(stderr, "kilnd: stream: %s\n", e.what());
      }
      asio::post(self->sock_.get_executor(), [self, step, out = std::move(out)] {
        if (self->phase_ == Phase::kClosed) return;
        self->OnStep(step, out);
      });
    });
  }

  void OnStep(kiln::http::StreamStep step, const std::string& out) {
    if (!out.empty()) out_ = Chunk(out);
    if (step == kiln::http::StreamStep::kDone) {
      out_ += "0\r\n\r\n";
      return Write(Phase::kStreamWriting, [this] { EndStream(); });
    }
    auto after = [this, step] {
      if (step == kiln::http::StreamStep::kMore) return StreamStep();
      Park();
    };
    if (out_.empty()) return after();
    Write(Phase::kStreamWriting, after);
  }

  void Park() {
    if (woken_.load()) return StreamStep();  // a wake came while it stepped
    phase_ = Phase::kStreamParked;
    const int poll = src_->poll_ms(), keep = src_->keep_alive_ms();
    int wait = 0;
    if (keep > 0) {
      const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - last_write_);
      wait = std::max<int>(1, keep - static_cast<int>(idle.count()));
    }
    if (poll > 0) wait = wait > 0 ? std::min(wait, poll) : poll;
    if (wait == 0) return;
    Arm(wait, [this, keep] {
      if (phase_ != Phase::kStreamParked) return;
      const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - last_write_);
      if (keep > 0 && idle.count() >= keep) {
        out_ = Chunk(src_->keep_alive());
        return Write(Phase::kStreamWriting, [this] { Park(); });
      }
      StreamStep();
    });
  }

  void EndStream() {
    impl_.Unregister(src_->wake_key(), this);
    src_.reset();
    // The hang-up watch holds a read: the connection cannot be read again.
    Close();
  }

  // After an error answer: stop sending, read and drop what the client still
  // sends (for a second at most), so that it reads the answer before the close.
  void Drain() {
    phase_ = Phase::kClosing;
    error_code ignored;
    sock_.shutdown(tcp::socket::shutdown_send, ignored);
    Arm(1000, [this] { Close(); });
    DrainSome();
  }
  void DrainSome() {
    sock_.async_read_some(asio::buffer(drain_), [self = shared_from_this()](error_code ec, size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > (size_t{1} << 20)) return self->Close();
      self->DrainSome();
    });
  }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    Disarm();
    if (src_) impl_.Unregister(src_->wake_key(), this);
    src_.reset();
    ForceClose();
  }

  AsyncServer::Impl& impl_;
  const ServerOptions& opts_;
  tcp::socket sock_;
  asio::steady_timer timer_;
  uint64_t timer_gen_ = 0;
  beast::flat_buffer buf_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  const std::string addr_;
  const uint16_t port_;
  const bool counted_;
  Phase phase_ = Phase::kReading;
  bool timed_out_ = false;
  bool keep_alive_ = false;
  std::string out_;
  std::string interim_;
  std::shared_ptr<StreamSource> src_;
  std::atomic<bool> woken_{false};
  SteadyClock::time_point last_write_ = SteadyClock::now();
  char probe_[1] = {0};
  char drain_[4096] = {0};
  size_t drained_ = 0;
};

void AsyncServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](error_code ec, tcp::socket sock) {
    if (!acceptor.is_open()) return;
    if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
      // Out of file descriptors: wait for some to be closed instead of spinning.
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code) { Accept(); });
      return;
    }
    if (!ec) OnAccept(std::move(sock));
    Accept();
  });
}

void AsyncServer::Impl::OnAccept(tcp::socket sock) {
  error_code ec;
  const tcp::endpoint peer = sock.remote_endpoint(ec);
  if (ec) return;
  sock.set_option(tcp::no_delay(true), ec);
  const std::string addr = peer.address().to_string();
  const ServerOptions& o = opts();
  std::string refusal;
  {
    std::lock_guard<std::mutex> l(mu);
    int& mine = per_address[addr];
    if (connections().load() >= o.max_connections) {
      refusal = "kilnd has " + std::to_string(o.max_connections) + " connections open, its limit; retry later";
    } else if (mine >= o.max_connections_per_address) {
      refusal = addr + " has " + std::to_string(mine) + " connections open, the limit per address; retry later";
    } else {
      ++mine;
      connections().fetch_add(1);
    }
    if (mine == 0) per_address.erase(addr);
  }
  auto s = std::make_shared<Session>(*this, std::move(sock), addr, peer.port(), refusal.empty());
  {
    std::lock_guard<std::mutex> l(mu);
    live[s.get()] = s;
  }
  if (!refusal.empty()) return s->Refuse(503, refusal);
  s->Begin();
}

void AsyncServer::Impl::Register(const std::string& key, const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> l(mu);
  streams[key][s.get()] = s;
}

void AsyncServer::Impl::Unregister(const std::string& key, Session* s) {
  std::lock_guard<std::mutex> l(mu);
  auto it = streams.find(key);
  if (it == streams.end()) return;
  it->second.erase(s);
  if (it->second.empty()) streams.erase(it);
}

void AsyncServer::Impl::ErrorResponse(int status, const std::string& message, httplib::Response& res) const {
  if (opts().error_body) return opts().error_body(status, message, res);
  res.set_content(message + "\n", "text/plain; charset=utf-8");
}

void AsyncServer::Impl::Dispatch(const std::shared_ptr<Session>& s, std::shared_ptr<httplib::Request> req) {
  asio::post(workers, [this, s, req = std::move(req)] {
    auto res = std::make_shared<httplib::Response>();
    std::shared_ptr<StreamSource> src;
    const Route* route = nullptr;
    bool path_known = false;
    for (const auto& r : server.routes_) {
      if (!std::regex_match(req->path, req->matches, r.re)) continue;
      path_known = true;
      if (r.method == req->method) {
        route = &r;
        break;
      }
    }
    if (route == nullptr) {
      res->status = path_known ? 405 : 404;
      ErrorResponse(res->status, path_known ? req->method + " is not allowed on " + req->path : "no such route", *res);
    } else {
      try {
        src = route->handler(*req, *res);
      } catch (const std::exception& e) {
        fprintf(stderr, "kilnd: %s %s: %s\n", req->method.c_str(), req->path.c_str(), e.what());
        *res = httplib::Response();
        res->status = 500;
        ErrorResponse(500, "internal error", *res);
        src.reset();
      }
    }
    s->Respond(std::move(res), std::move(src));
  });
}

AsyncServer::AsyncServer(ServerOptions opts) : opts_(std::move(opts)) {
  impl_ = std::make_unique<Impl>(*this);
}

AsyncServer::~AsyncServer() {
  Stop();
  impl_.reset();  // its connections, destroyed with it, still count themselves out
}

void AsyncServer::Handle(const std::string& method, const std::string& pattern, ReadBody body, Handler h) {
  // Beast reads a body only if the request declares one: a POST without
  // Content-Length has none, so ReadBody::kNo needs nothing more here.
  routes_.push_back({method, std::regex(pattern), body, std::move(h)});
}

Result<std::string> AsyncServer::Bind(const std::string& listen) {
  std::string host = listen, port = "0";
  if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto results = resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) return Unavailable("cannot listen on " + listen + ": " + ec.message());
  const tcp::endpoint ep = *results.begin();
  tcp::acceptor& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Unavailable("cannot listen on " + listen + ": " + ec.message());
  return host + ":" + std::to_string(a.local_endpoint().port());
}

void AsyncServer::Start() {
  impl_->Accept();
  for (int i = 0; i < std::max(1, opts_.io_threads); ++i) threads_.emplace_back([this] { impl_->ioc.run(); });
}

void AsyncServer::Stop() {
  if (stopped_.exchange(true)) return;
  impl_->ioc.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  impl_->workers.join();  // handlers and steps in flight finish
  error_code ignored;
  impl_->acceptor.close(ignored);
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    for (auto& [p, w] : impl_->live)
      if (auto s = w.lock()) open.push_back(s);
  }
  for (auto& s : open) {  // no thread runs the io_context now
    s->ForceClose();
    s->DropStream();
  }
}

void AsyncServer::Wake(const std::string& key) {
  std::vector<std::shared_ptr<Session>> woken;
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    auto collect = [&woken](const std::unordered_map<Session*, std::weak_ptr<Session>>& of) {
      for (const auto& [p, w] : of)
        if (auto s = w.lock()) woken.push_back(std::move(s));
    };
    if (key == "*") {
      for (const auto& [k, of] : impl_->streams) collect(of);
    } else {
      for (const std::string& k : {key, std::string("*")})
        if (auto it = impl_->streams.find(k); it != impl_->streams.end()) collect(it->second);
    }
  }
  for (auto& s : woken) s->Poke();
}

int AsyncServer::open_streams() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  int n = 0;
  for (const auto& [k, m] : impl_->streams) n += static_cast<int>(m.size());
  return n;
}

}  // namespace kiln::http
