#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/ids.h"
#include "common/json_input.h"
#include "common/status.h"
#include "common/user_regex.h"

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

class HostileDir : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("kiln-hostile-" + std::to_string(getpid()));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "ml" / "output");
    std::ofstream(root_ / "secret") << "TOPSECRET";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string ml() const { return (root_ / "ml").string(); }
  std::filesystem::path root_;
};

// A tree a job wrote, with links to what it must not reach: the tree goes,
// what the links point at stays.
TEST_F(HostileDir, RemoveTreeNoFollowRemovesLinksNotTheirTargets) {
  const std::string outside = (root_ / "outside").string(), tree = (root_ / "tree").string();
  std::filesystem::create_directories(outside + "/keep");
  std::ofstream(outside + "/keep/file") << "precious";
  std::filesystem::create_directories(tree + "/a/b/c");
  std::ofstream(tree + "/a/b/c/f") << "x";
  std::filesystem::create_directory_symlink(outside, tree + "/a/link-to-dir");
  std::filesystem::create_symlink(outside + "/keep/file", tree + "/a/b/link-to-file");
  ASSERT_TRUE(RemoveTreeNoFollow(tree).ok());
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(tree)));
  std::ifstream in(outside + "/keep/file");
  std::string got;
  in >> got;
  EXPECT_EQ(got, "precious");
  EXPECT_TRUE(RemoveTreeNoFollow(tree).ok());  // absent: fine
  // The path itself a link: the link goes, not its target.
  std::filesystem::create_directory_symlink(outside, tree);
  ASSERT_TRUE(RemoveTreeNoFollow(tree).ok());
  EXPECT_TRUE(std::filesystem::exists(outside + "/keep/file"));
  // Too deep: refused beyond the bound (what it reached is gone).
  std::filesystem::create_directories(tree + "/1/2/3");
  EXPECT_EQ(RemoveTreeNoFollow(tree, 1).code(), Code::kFailedPrecondition);
}

TEST_F(HostileDir, ReadFileBeneathReadsPlainFilesBounded) {
  std::ofstream(root_ / "ml" / "output" / "failure") << "boom: 0123456789";
  auto r = ReadFileBeneath(ml(), "output/failure", 4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "boom");
  EXPECT_EQ(ReadFileBeneath(ml(), "output/absent", 10).status().code(), Code::kNotFound);
}

TEST_F(HostileDir, ReadFileBeneathRefusesSymlinksEscapesAndFifos) {
  std::filesystem::create_symlink(root_ / "secret", root_ / "ml" / "output" / "failure");
  auto link = ReadFileBeneath(ml(), "output/failure", 100);
  EXPECT_EQ(link.status().code(), Code::kFailedPrecondition);
  std::filesystem::create_symlink("../../ml/output/x", root_ / "ml" / "output" / "inner");
  EXPECT_FALSE(ReadFileBeneath(ml(), "output/inner", 100).ok());  // even a link that stays inside
  EXPECT_EQ(ReadFileBeneath(ml(), "../secret", 100).status().code(), Code::kFailedPrecondition);
  std::filesystem::create_symlink(root_, root_ / "ml" / "dirlink");
  EXPECT_FALSE(ReadFileBeneath(ml(), "dirlink/secret", 100).ok());
  ASSERT_EQ(mkfifo((root_ / "ml" / "output" / "message").c_str(), 0644), 0);
  EXPECT_EQ(ReadFileBeneath(ml(), "output/message", 100).status().code(), Code::kFailedPrecondition);
}

TEST_F(HostileDir, WriteFileAtomicDoesNotWriteThroughAPlantedTempName) {
  const std::string target = (root_ / "ml" / "port").string();
  std::filesystem::create_symlink(root_ / "secret", target + ".tmp." + std::to_string(getpid()));
  ASSERT_TRUE(WriteFileAtomic(target, "8125", 0644, Sync::kNoSync).ok());
  std::ifstream secret(root_ / "secret");
  std::string content((std::istreambuf_iterator<char>(secret)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "TOPSECRET");
  auto written = ReadFileBeneath(ml(), "port", 100);
  ASSERT_TRUE(written.ok());
  EXPECT_EQ(*written, "8125");
}

TEST_F(HostileDir, OpenPathBeneathRefusesSymlinksAndEscapes) {
  auto plain = OpenPathBeneath(root_.string(), "ml/output");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  close(*plain);
  auto self = OpenPathBeneath(ml(), "");
  ASSERT_TRUE(self.ok());
  close(*self);
  std::filesystem::create_symlink(root_ / "secret", root_ / "ml" / "link");
  EXPECT_EQ(OpenPathBeneath(ml(), "link").status().code(), Code::kFailedPrecondition);
  std::filesystem::create_symlink("/etc", root_ / "ml" / "etc");
  EXPECT_EQ(OpenPathBeneath(ml(), "etc/passwd").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(OpenPathBeneath(ml(), "../secret").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(OpenPathBeneath(ml(), "absent").status().code(), Code::kNotFound);
}

TEST_F(HostileDir, MakeDirsBeneathNeverFollowsALink) {
  std::filesystem::create_directories(root_ / "elsewhere");
  std::filesystem::create_symlink(root_ / "elsewhere", root_ / "ml" / "ckpt");
  Status s = MakeDirsBeneath(ml(), "ckpt/job/output", DirOwner{}, OwnLeaf::kCreatedOnly);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_FALSE(std::filesystem::exists(root_ / "elsewhere" / "job"));
  EXPECT_EQ(MakeDirsBeneath(ml(), "a/../../x", DirOwner{}, OwnLeaf::kCreatedOnly).code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(root_ / "x"));
}

TEST_F(HostileDir, MakeDirsBeneathGivesWhatItCreatesToTheOwner) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  std::filesystem::create_directories(root_ / "ml" / "existing");
  const DirOwner owner{12345, 23456};
  ASSERT_TRUE(MakeDirsBeneath(ml(), "existing/new/leaf", owner, OwnLeaf::kCreatedOnly).ok());
  struct stat st {};
  ASSERT_EQ(stat((root_ / "ml" / "existing").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0U);  // there before: keeps its owner
  ASSERT_EQ(stat((root_ / "ml" / "existing" / "new" / "leaf").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 12345U);
  EXPECT_EQ(st.st_gid, 23456U);
  ASSERT_TRUE(MakeDirsBeneath(ml(), "existing", owner, OwnLeaf::kAlways).ok());
  ASSERT_EQ(stat((root_ / "ml" / "existing").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 12345U);  // kAlways: the leaf too
}

TEST_F(HostileDir, MakeDirsBeneathWholePathRepairsAnInterruptedTree) {
  if (geteuid() != 0) GTEST_SKIP() << "chown needs root";
  // What a kilnd killed between mkdir and chown leaves: root's directories.
  std::filesystem::create_directories(root_ / "ml" / "input" / "config");
  const DirOwner owner{12345, 23456};
  ASSERT_TRUE(MakeDirsBeneath(ml(), "input/config", owner, OwnLeaf::kWholePath).ok());
  for (const char* p : {"input", "input/config"}) {
    struct stat st {};
    ASSERT_EQ(stat((root_ / "ml" / p).c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 12345U) << p;
    EXPECT_EQ(st.st_gid, 23456U) << p;
  }
  // Never through a link: a planted one is refused, its target untouched.
  std::filesystem::create_directories(root_ / "victim");
  std::filesystem::create_directory_symlink(root_ / "victim", root_ / "ml" / "link");
  EXPECT_FALSE(MakeDirsBeneath(ml(), "link/x", owner, OwnLeaf::kWholePath).ok());
  struct stat st {};
  ASSERT_EQ(stat((root_ / "victim").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0U);
}

TEST(JsonInput, DepthCountsNestingOutsideStrings) {
  EXPECT_EQ(JsonDepth("1", 10), 0);
  EXPECT_EQ(JsonDepth(R"({"a": [1, {"b": []}]})", 10), 4);
  EXPECT_EQ(JsonDepth(R"({"a": "[[[[{{{{\"[[["})", 10), 1);  // brackets in strings, an escaped quote
  EXPECT_EQ(JsonDepth(std::string(100000, '['), 65), 65);    // stops early
}

TEST(JsonInput, ADeepRequestIsRefusedNotParsed) {
  const int n = 75000;  // crashed kilnd (stack overflow) before the check
  const std::string deep = R"({"hyperparameters": {"a": )" + std::string(n, '[') + std::string(n, ']') + "}}";
  auto r = ParseUntrustedJson(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nested deeper than 64 levels"), std::string::npos) << r.status().ToString();
  std::string at_limit = std::string(64, '[') + std::string(64, ']');
  EXPECT_TRUE(ParseUntrustedJson(at_limit).ok());
  EXPECT_FALSE(ParseUntrustedJson("[" + at_limit + "]").ok());
  EXPECT_EQ(ParseUntrustedJson("{nope").status().message(), "request body is not valid JSON");
}
TEST(UserRegex, ExtractsTheFirstGroup) {
  auto re = UserRegex::Compile(R"(val_loss=([0-9.]+))");
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  EXPECT_EQ(re->FirstGroup("epoch 3 val_loss=0.125 acc=0.9"), "0.125");
  EXPECT_EQ(re->FirstGroup("nothing here"), std::nullopt);
}

TEST(UserRegex, ABacktrackingPatternRunsInLinearTime) {
  // std::regex backtracks exponentially here; RE2 answers at once.
  auto re = UserRegex::Compile("(a+)+$");
  ASSERT_TRUE(re.ok());
  const std::string line = std::string(100000, 'a') + "b";
  EXPECT_EQ(re->FirstGroup(line), std::nullopt);
  EXPECT_EQ(re->FirstGroup(std::string(50, 'a')), std::string(50, 'a'));
}

TEST(UserRegex, RefusesWhatRe2CannotRunAndPatternsWithoutAGroup) {
  auto look = UserRegex::Compile(R"((?=x)(\d+))", "metric_definitions[0].regex");
  ASSERT_FALSE(look.ok());
  EXPECT_EQ(look.status().field(), "metric_definitions[0].regex");
  EXPECT_NE(look.status().message().find("RE2"), std::string::npos) << look.status().message();
  EXPECT_NE(UserRegex::Compile(R"((a)\1)").status().message().find("RE2"), std::string::npos);  // a backreference
  EXPECT_EQ(UserRegex::Compile("acc=[0-9.]+").status().message(), "needs a capture group around the value");
  EXPECT_TRUE(UserRegex::Compile("acc=[0-9.]+", "regex", false).ok());
}

}  // namespace kiln
