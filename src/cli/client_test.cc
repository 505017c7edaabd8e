#include "cli/client.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::cli {
namespace {

TEST(SseParser, SplitsFramesAcrossChunksAndSkipsKeepAlives) {
  std::vector<SseEvent> seen;
  SseParser parser([&](const SseEvent& e) {
    seen.push_back(e);
    return true;
  });
  std::string stream =
      "id: 7\nevent: JobCreated\ndata: {\"seq\":7}\n\n"
      ": keep-alive\n\n"
      "id: 8\nevent: Bad\ndata: not json\n\n"
      "id: 9\nevent: InstanceExited\ndata: {\"seq\":9,\"job_id\":\"j-1\"}\n\n";
  for (char c : stream) ASSERT_TRUE(parser.Feed(&c, 1));  // one byte at a time
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].id, "7");
  EXPECT_EQ(seen[0].type, "JobCreated");
  EXPECT_EQ(seen[0].data["seq"], 7);
  EXPECT_EQ(seen[1].id, "9");
  EXPECT_EQ(seen[1].data["job_id"], "j-1");
}

TEST(SseParser, StopsWhenTheHandlerSaysSo) {
  int calls = 0;
  SseParser parser([&](const SseEvent&) { return ++calls < 2; });
  std::string two = "data: {}\n\ndata: {}\n\ndata: {}\n\n";
  EXPECT_FALSE(parser.Feed(two.data(), two.size()));
  EXPECT_EQ(calls, 2);
}

TEST(SseParser, RefusesAnUnboundedFrame) {
  SseParser parser([](const SseEvent&) { return true; });
  std::string chunk(1 << 20, 'x');
  bool ok = true;
  for (size_t sent = 0; ok && sent <= SseParser::kMaxFrameBytes; sent += chunk.size())
    ok = parser.Feed(chunk.data(), chunk.size());
  EXPECT_FALSE(ok);
}

TEST(ResolveEndpoint, StripsSchemePathAndSpace) {
  Endpoint e = ResolveEndpoint("http://10.0.0.5:9000/v1\n", "");
  EXPECT_EQ(e.host, "10.0.0.5");
  EXPECT_EQ(e.port, 9000);
}

}  // namespace
}  // namespace kiln::cli
