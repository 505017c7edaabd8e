// The asynchronous server over real sockets on loopback: routing, the bounds
// (headers, body, slow and trickling clients, idle connections, connections per
// address), streams that wait without threads, wake-ups, polls, keep-alives,
// hang-ups, and thousands of idle streams beside ordinary requests.
#include "http/async_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::http {
namespace {

using namespace std::chrono_literals;

// A stream that emits "<n>\n" on each step after a wake, and ends after `last`.
class CountingSource : public StreamSource {
 public:
  CountingSource(std::string key, int last, int poll_ms = 0, int keep_alive_ms = 0)
      : key_(std::move(key)), last_(last), poll_(poll_ms), keep_(keep_alive_ms) {}
  StreamStep Step(std::string& out) override {
    if (!started_) {  // the first step: nothing yet
      started_ = true;
      return StreamStep::kWait;
    }
    ++n_;
    out += std::to_string(n_) + "\n";
    return n_ >= last_ ? StreamStep::kDone : StreamStep::kWait;
  }
  std::string wake_key() const override { return key_; }
  int poll_ms() const override { return poll_; }
  int keep_alive_ms() const override { return keep_; }
  std::string keep_alive() const override { return ":\n"; }

 private:
  std::string key_;
  int last_, poll_, keep_;
  bool started_ = false;
  int n_ = 0;
};

// A raw client socket, for what an HTTP library would not send.
class Raw {
 public:
  explicit Raw(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~Raw() {
    if (fd_ >= 0) close(fd_);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;
  bool ok() const { return ok_; }
  bool Send(const std::string& s) {
    return send(fd_, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }
  // Everything until the server closes (or `until` is seen, or 10 s pass).
  std::string ReadAll(const std::string& until = "") {
    std::string got;
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
      if (!until.empty() && got.find(until) != std::string::npos) break;
    }
    return got;
  }
  void Close() {
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

class AsyncServerTest : public ::testing::Test {
 protected:
  void Start(ServerOptions o = {}) {
    o.workers = 4;
    o.error_body = [](int status, const std::string& msg, httplib::Response& res) {
      res.set_content("error " + std::to_string(status) + ": " + msg, "text/plain");
    };
    server_ = std::make_unique<AsyncServer>(o);
    server_->Handle("GET", "/echo/([^/]+)", ReadBody::kYes,
                    [](const httplib::Request& req, httplib::Response& res) -> std::shared_ptr<StreamSource> {
                      res.set_content(std::string(req.matches[1]) + "|" + req.get_param_value("q") + "|" +
                                          req.get_header_value("X-Test") + "|" + req.remote_addr,
                                      "text/plain");
                      return nullptr;
                    });
    server_->Handle("POST", "/body", ReadBody::kYes,
                    [](const httplib::Request& req, httplib::Response& res) -> std::shared_ptr<StreamSource> {
                      res.status = 201;
                      res.set_content(std::to_string(req.body.size()), "text/plain");
                      return nullptr;
                    });
    server_->Handle("GET", "/stream/([^/]+)", ReadBody::kYes,
                    [this](const httplib::Request& req, httplib::Response& res) -> std::shared_ptr<StreamSource> {
                      res.set_header("Content-Type", "text/plain");
                      const int poll = req.has_param("poll") ? std::stoi(req.get_param_value("poll")) : 0;
                      const int keep = req.has_param("keep") ? std::stoi(req.get_param_value("keep")) : 0;
                      ++streams_started_;
                      return std::make_shared<CountingSource>(req.matches[1], 3, poll, keep);
                    });
    auto bound = server_->Bind("127.0.0.1:0");
    ASSERT_TRUE(bound.ok()) << bound.status().ToString();
    port_ = std::stoi(bound->substr(bound->rfind(':') + 1));
    server_->Start();
  }

  // Waits (at most 10 s) until `cond` holds.
  static bool Eventually(const std::function<bool()>& cond) {
    for (int i = 0; i < 1000; ++i) {
      if (cond()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return cond();
  }

  std::unique_ptr<AsyncServer> server_;
  int port_ = 0;
  std::atomic<int> streams_started_{0};
};

TEST_F(AsyncServerTest, RoutesWithGroupsDecodedParametersHeadersAndTheClientAddress) {
  Start();
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Get("/echo/job%2D1?q=a%20b", {{"X-Test", "yes"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "job-1|a b|yes|127.0.0.1");
  // Keep-alive: the same connection serves the next request.
  auto again = c.Get("/echo/x");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "x|||127.0.0.1");
}

TEST_F(AsyncServerTest, UnknownPathIs404AndWrongMethodIs405InTheConfiguredErrorShape) {
  Start();
  httplib::Client c("127.0.0.1", port_);
  auto none = c.Get("/nope");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 404);
  EXPECT_EQ(none->body, "error 404: no such route");
  auto wrong = c.Delete("/echo/x");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->body, "error 405: DELETE is not allowed on /echo/x");
}

TEST_F(AsyncServerTest, BodiesAreReadUpToTheLimitAndLargerOnesAre413) {
  ServerOptions o;
  o.body_limit = 1024;
  Start(o);
  httplib::Client c("127.0.0.1", port_);
  auto ok = c.Post("/body", std::string(1024, 'a'), "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201);
  EXPECT_EQ(ok->body, "1024");
  Raw raw(port_);
  ASSERT_TRUE(raw.ok());
  raw.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b'));
  std::string got = raw.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 413 ", 0), 0u) << got;
  EXPECT_NE(got.find("the request body exceeds 1024 bytes"), std::string::npos) << got;
}

TEST_F(AsyncServerTest, AChunkedBodyAndExpectContinueAreServed) {
  Start();
  Raw raw(port_);
  ASSERT_TRUE(raw.ok());
  raw.Send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(raw.ReadAll("\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  raw.Send("abc");
  std::string got = raw.ReadAll("\r\n\r\n3");
  EXPECT_EQ(got.substr(got.size() - 1), "3");
  EXPECT_EQ(got.rfind("HTTP/1.1 201 ", 0), 0u) << got;
  Raw chunked(port_);
  chunked.Send(
      "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: "
      "close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
  got = chunked.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 201 ", 0), 0u) << got;
  EXPECT_EQ(got.substr(got.size() - 1), "4");
}

TEST_F(AsyncServerTest, HugeHeadersAre431) {
  Start();
  Raw raw(port_);
  ASSERT_TRUE(raw.ok());
  raw.Send("GET /echo/x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n");
  std::string got = raw.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 431 ", 0), 0u) << got.substr(0, 200);
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
}

TEST_F(AsyncServerTest, APathLongerThan2KiBIs414BeforeAnyRouteIsMatched) {
  Start();
  Raw raw(port_);
  ASSERT_TRUE(raw.ok());
  raw.Send("GET /echo/" + std::string(12000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got = raw.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 414 ", 0), 0u) << got.substr(0, 200);
  EXPECT_NE(got.find("the path exceeds 2048 bytes"), std::string::npos);
  httplib::Client c("127.0.0.1", port_);
  auto ok = c.Get("/echo/" + std::string(2000, 'b'));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(AsyncServerTest, AStalledOrTricklingRequestIs408AtTheReadTimeoutAndClosed) {
  ServerOptions o;
  o.read_timeout_ms = 300;
  Start(o);
  Raw stalled(port_);
  stalled.Send("GET /echo/x HTTP/1.1\r\nHost: x\r\n");
  std::string got = stalled.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 408 ", 0), 0u) << got;
  EXPECT_NE(got.find("the request did not arrive within 300 ms"), std::string::npos) << got;
  // One byte every 50 ms never finishes within 300 ms: cut off all the same.
  Raw trickle(port_);
  std::atomic<bool> stop{false};
  std::thread t([&] {
    const std::string req = "GET /echo/x HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'a');
    for (char ch : req) {
      if (stop || !trickle.Send(std::string(1, ch))) return;
      std::this_thread::sleep_for(50ms);
    }
  });
  got = trickle.ReadAll("\r\n\r\n");
  stop = true;
  t.join();
  EXPECT_EQ(got.rfind("HTTP/1.1 408 ", 0), 0u) << got;
}

TEST_F(AsyncServerTest, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
  ServerOptions o;
  o.idle_timeout_ms = 200;
  Start(o);
  Raw idle(port_);
  ASSERT_TRUE(idle.ok());
  EXPECT_TRUE(Eventually([&] { return server_->connections() == 1; }));
  EXPECT_EQ(idle.ReadAll(), "");  // closed without a word: it never asked anything
  EXPECT_TRUE(Eventually([&] { return server_->connections() == 0; }));
}

TEST_F(AsyncServerTest, ConnectionsPerAddressAreLimitedWith503AndFreedOnClose) {
  ServerOptions o;
  o.max_connections_per_address = 3;
  Start(o);
  std::vector<std::unique_ptr<Raw>> held;
  for (int i = 0; i < 3; ++i) held.push_back(std::make_unique<Raw>(port_));
  ASSERT_TRUE(Eventually([&] { return server_->connections() == 3; }));
  Raw fourth(port_);
  std::string got = fourth.ReadAll();
  EXPECT_EQ(got.rfind("HTTP/1.1 503 ", 0), 0u) << got;
  EXPECT_NE(got.find("127.0.0.1 has 3 connections open, the limit per address"), std::string::npos) << got;
  held.clear();
  ASSERT_TRUE(Eventually([&] { return server_->connections() == 0; }));
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Get("/echo/back");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(AsyncServerTest, AStreamWaitsForWakesOfItsKeyAndEnds) {
  Start();
  std::string body;
  std::mutex mu;
  auto size = [&] {
    std::lock_guard<std::mutex> l(mu);
    return body.size();
  };
  std::thread waker([&] {
    ASSERT_TRUE(Eventually([&] { return server_->open_streams() == 1; }));
    server_->Wake("other");  // not this stream's key: nothing
    std::this_thread::sleep_for(100ms);
    for (int i = 0; i < 3; ++i) {
      // Each wake is seen: wait for the previous line before the next wake.
      ASSERT_TRUE(Eventually([&] { return size() == static_cast<size_t>(2 * i); }));
      server_->Wake(i == 1 ? "*" : "job-7");
    }
  });
  httplib::Client c("127.0.0.1", port_);
  auto r = c.Get("/stream/job-7", [&](const char* d, size_t n) {
    std::lock_guard<std::mutex> l(mu);
    body.append(d, n);
    return true;
  });
  waker.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body, "1\n2\n3\n");
  EXPECT_TRUE(Eventually([&] { return server_->open_streams() == 0; }));
}

TEST_F(AsyncServerTest, AStreamWithAPollIntervalProgressesWithoutWakesAndKeepAlivesAreWritten) {
  Start();
  httplib::Client c("127.0.0.1", port_);
  auto polled = c.Get("/stream/p?poll=20");
  ASSERT_TRUE(polled);
  EXPECT_EQ(polled->body, "1\n2\n3\n");
  // A keep-alive every 30 ms while waiting; two wakes 200 ms apart end it.
  std::thread waker([&] {
    for (int i = 0; i < 3; ++i) {
      std::this_thread::sleep_for(200ms);
      server_->Wake("k");
    }
  });
  auto kept = c.Get("/stream/k?keep=30");
  waker.join();
  ASSERT_TRUE(kept);
  EXPECT_NE(kept->body.find(":\n"), std::string::npos) << kept->body;
  std::string lines;
  for (size_t i = 0; i < kept->body.size(); ++i)
    if (kept->body.compare(i, 2, ":\n") == 0) {
      ++i;
    } else {
      lines += kept->body[i];
    }
  EXPECT_EQ(lines, "1\n2\n3\n");
}

TEST_F(AsyncServerTest, ThousandsOfIdleStreamsHoldNoThreadAndLeaveRequestsServed) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  constexpr int kStreams = 2000;  // 4 fds each (client and server side) within the test's limit
  ASSERT_GT(rl.rlim_cur, static_cast<rlim_t>(kStreams * 2 + 100)) << "raise the open-file limit";
  Start();  // 4 worker threads only
  std::vector<std::unique_ptr<Raw>> streams;
  for (int i = 0; i < kStreams; ++i) {
    streams.push_back(std::make_unique<Raw>(port_));
    ASSERT_TRUE(streams.back()->Send("GET /stream/idle" + std::to_string(i % 10) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  ASSERT_TRUE(Eventually([&] { return server_->open_streams() == kStreams; })) << server_->open_streams();
  for (int i = 0; i < 20; ++i) {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/echo/busy");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  // One key wakes its 200 streams only; each prints its first line.
  server_->Wake("idle3");
  std::string got = streams[3]->ReadAll("1\n\r\n");
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos) << got;
  EXPECT_NE(got.find("\r\n2\r\n1\n\r\n"), std::string::npos) << got;
  // Clients that hang up are noticed without a write: their streams end.
  streams.clear();
  EXPECT_TRUE(Eventually([&] { return server_->open_streams() == 0 && server_->connections() == 0; }))
      << server_->open_streams() << " streams, " << server_->connections() << " connections";
}

TEST_F(AsyncServerTest, StopEndsOpenStreams) {
  Start();
  Raw s(port_);
  s.Send("GET /stream/forever HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(Eventually([&] { return server_->open_streams() == 1; }));
  server_->Stop();
  std::string got = s.ReadAll();  // returns: the server closed the connection
  EXPECT_EQ(got.rfind("HTTP/1.1 200 ", 0), 0u) << got;
}

}  // namespace
}  // namespace kiln::http
