#include "entrypoint/http_client.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>

namespace kiln {
TEST(HttpClient, TalksToAnHttplibServer) {
  httplib::Server srv;
  srv.Get("/small", [](const httplib::Request& req, httplib::Response& res) {
    res.set_content("{\"auth\":\"" + req.get_header_value("Authorization") + "\"}", "application/json");
  });
  srv.Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(5 << 20, 'x'), "text/plain");
  });
  srv.Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider("text/plain", [](size_t off, httplib::DataSink& sink) {
      sink.write("hello ", 6);
      sink.write("world", 5);
      sink.done();
      return true;
    });
  });
  srv.Post("/echo", [](const httplib::Request& req, httplib::Response& res) {
    res.status = 201;
    res.set_content(req.body, "text/plain");
  });
  int port = srv.bind_to_any_port("127.0.0.1");
  std::thread t([&] { srv.listen_after_bind(); });
  for (int i = 0; i < 200 && !srv.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto r = HttpCall("127.0.0.1", port, "GET", "/small", {{"Authorization", "Bearer x"}}, "", 5000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"auth\":\"Bearer x\"}");
  auto big = HttpCall("127.0.0.1", port, "GET", "/big", {}, "", 5000);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->body.size(), size_t{5} << 20);
  auto ch = HttpCall("127.0.0.1", port, "GET", "/chunked", {}, "", 5000);
  ASSERT_TRUE(ch.ok());
  EXPECT_EQ(ch->body, "hello world");
  auto post = HttpCall("127.0.0.1", port, "POST", "/echo", {}, "payload", 5000);
  ASSERT_TRUE(post.ok());
  EXPECT_EQ(post->status, 201);
  EXPECT_EQ(post->body, "payload");
  auto missing = HttpCall("127.0.0.1", port, "GET", "/nope", {}, "", 5000);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
  srv.stop();
  t.join();
  // Nobody listening: a retryable error.
  auto down = HttpCall("127.0.0.1", port, "GET", "/small", {}, "", 500);
  EXPECT_EQ(down.status().code(), Code::kUnavailable);
}
}  // namespace kiln
