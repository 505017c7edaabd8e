// CopyTree on hostile trees: what a job planted on its volume (symlinks, FIFOs,
// deep directories) and what a destination holds (a symlink where a file goes).
#include "compute/local/transfer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::transfer {
namespace {

namespace fs = std::filesystem;

class CopyTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-transfer-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    fs::create_directories(src());
    fs::create_directories(dst());
    fs::create_directories(root_ + "/secret");
    Write(root_ + "/secret/key", "do not copy");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string src() const { return root_ + "/src"; }
  std::string dst() const { return root_ + "/dst"; }
  static void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  static std::string Read(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }
  Status Copy(Totals* t, Limits limits = {}) {
    int from = open(src().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    int to = open(dst().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    Status st = CopyTree(from, to, limits, t);
    close(from);
    close(to);
    return st;
  }

  std::string root_;
};

TEST_F(CopyTreeTest, CopiesFilesAndDirectoriesWithTheirModes) {
  fs::create_directories(src() + "/a/b");
  Write(src() + "/top.txt", "top");
  Write(src() + "/a/b/deep.bin", std::string(3 << 20, 'x'));
  chmod((src() + "/top.txt").c_str(), 0600);
  Totals t;
  ASSERT_TRUE(Copy(&t).ok());
  EXPECT_EQ(Read(dst() + "/top.txt"), "top");
  EXPECT_EQ(fs::file_size(dst() + "/a/b/deep.bin"), 3u << 20);
  EXPECT_EQ(t.files, 2u);
  EXPECT_EQ(t.bytes, 3u + (3u << 20));
  struct stat st {};
  ASSERT_EQ(stat((dst() + "/top.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(CopyTreeTest, SkipsSymlinksAndSpecialFilesWithoutFollowingThem) {
  fs::create_symlink(root_ + "/secret/key", src() + "/link-to-file");
  fs::create_directory_symlink(root_ + "/secret", src() + "/link-to-dir");
  ASSERT_EQ(mkfifo((src() + "/fifo").c_str(), 0644), 0);
  Write(src() + "/real", "ok");
  Totals t;
  ASSERT_TRUE(Copy(&t).ok());
  EXPECT_EQ(Read(dst() + "/real"), "ok");
  EXPECT_FALSE(fs::exists(fs::symlink_status(dst() + "/link-to-file")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dst() + "/link-to-dir")));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dst() + "/fifo")));
  EXPECT_EQ(t.skipped, 3u);
}

TEST_F(CopyTreeTest, NeverWritesThroughASymlinkInTheDestination) {
  Write(src() + "/key", "overwritten");
  fs::create_directories(src() + "/sub");
  Write(src() + "/sub/file", "x");
  fs::create_symlink(root_ + "/secret/key", dst() + "/key");        // a file's name
  fs::create_directory_symlink(root_ + "/secret", dst() + "/sub");  // a directory's name
  Totals t;
  ASSERT_TRUE(Copy(&t).ok());
  EXPECT_EQ(Read(root_ + "/secret/key"), "do not copy");
  EXPECT_FALSE(fs::exists(root_ + "/secret/file"));
  EXPECT_EQ(t.skipped, 2u);
}

TEST_F(CopyTreeTest, AFifoInTheDestinationDoesNotBlock) {
  Write(src() + "/name", "x");
  ASSERT_EQ(mkfifo((dst() + "/name").c_str(), 0644), 0);
  Totals t;
  ASSERT_TRUE(Copy(&t).ok());
  EXPECT_EQ(t.skipped, 1u);
}

TEST_F(CopyTreeTest, UnchangedFilesAreNotCopiedAgain) {
  Write(src() + "/ckpt", "epoch-1");
  Totals first;
  ASSERT_TRUE(Copy(&first).ok());
  EXPECT_EQ(first.files, 1u);
  Totals second;
  ASSERT_TRUE(Copy(&second).ok());
  EXPECT_EQ(second.files, 0u);
  EXPECT_EQ(second.unchanged, 1u);
  Write(src() + "/ckpt", "epoch-22");  // changed: copied again
  Totals third;
  ASSERT_TRUE(Copy(&third).ok());
  EXPECT_EQ(third.files, 1u);
  EXPECT_EQ(Read(dst() + "/ckpt"), "epoch-22");
}

TEST_F(CopyTreeTest, ANewerFileAtTheDestinationIsKept) {
  Write(src() + "/latest.pt", "attempt-1");
  Totals seeded;
  ASSERT_TRUE(Copy(&seeded).ok());
  // Another instance publishes a newer file meanwhile; ours, only seeded, is older.
  Write(dst() + "/latest.pt", "instance-2");
  struct timespec later[2] = {{0, UTIME_OMIT}, {0, 0}};
  clock_gettime(CLOCK_REALTIME, &later[1]);
  later[1].tv_sec += 10;
  ASSERT_EQ(utimensat(AT_FDCWD, (dst() + "/latest.pt").c_str(), later, 0), 0);
  Totals t;
  ASSERT_TRUE(Copy(&t).ok());
  EXPECT_EQ(Read(dst() + "/latest.pt"), "instance-2");
  EXPECT_EQ(t.unchanged, 1u);
}

TEST_F(CopyTreeTest, DepthAndEntryCountAreBounded) {
  std::string deep = src();
  for (int i = 0; i < 10; ++i) deep += "/d";
  fs::create_directories(deep);
  Totals t;
  Limits shallow;
  shallow.max_depth = 5;
  EXPECT_EQ(Copy(&t, shallow).code(), Code::kFailedPrecondition);
  for (int i = 0; i < 20; ++i) Write(src() + "/f" + std::to_string(i), "x");
  Limits few;
  few.max_entries = 10;
  EXPECT_EQ(Copy(&t, few).code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace kiln::transfer
