#include <gtest/gtest.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/ids.h"
#include "common/status.h"

namespace kiln {
TEST(Status, CarriesFieldAndCode) {
  Status s = InvalidArgument("instance.count", "must be >= 1");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "InvalidArgument (instance.count): must be >= 1");
}
TEST(Result, HoldsValueOrStatus) {
  Result<int> r = 5;
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(*r, 5);
  Result<int> e = NotFound("x");
  EXPECT_EQ(e.status().code(), Code::kNotFound);
}
TEST(Clock, FormatsRfc3339Millis) {
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTime(1700000000123), "2023-11-14T22:13:20.123Z");
}
TEST(Ids, AreUniqueAndPrefixed) {
  auto a = NewId("j"), b = NewId("j");
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("j-", 0), 0u);
  EXPECT_EQ(NewToken().size(), 64u);
  const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
  EXPECT_EQ(HexEncode(bytes, 4), "000fa5ff");
}
TEST(FsUtil, SanitizeUtf8) {
  EXPECT_EQ(SanitizeUtf8("ok \xc3\xa9"), "ok \xc3\xa9");
  EXPECT_EQ(SanitizeUtf8("x\xff"), "x\xef\xbf\xbd");
  EXPECT_EQ(SanitizeUtf8("cut \xc3"), "cut \xef\xbf\xbd");
}
TEST(FsUtil, TruncateUtf8KeepsWholeCharacters) {
  EXPECT_EQ(TruncateUtf8("ab\xc3\xa9", 3), "ab");
  EXPECT_EQ(TruncateUtf8("ab\xc3\xa9", 4), "ab\xc3\xa9");
  EXPECT_EQ(TruncateUtf8("abc", 2), "ab");
}
TEST(FsUtil, FileUri) {
  EXPECT_EQ(*FileUriToPath("file:///a/b"), "/a/b");
  EXPECT_EQ(*FileUriToPath("/a/b"), "/a/b");
  EXPECT_FALSE(FileUriToPath("s3://b/k").ok());
}
}  // namespace kiln
