// The scratch pool on a real btrfs: kilnd's loop-mounted image, real subvolumes
// and qgroup limits. Needs root and loop devices, as kilnd does.
#include "compute/local/scratch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::scratch {
namespace {

class ScratchPool : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (loop devices, mount), as kilnd does";
    char tmpl[] = "/var/tmp/kiln-scratch-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    opts_ = {root_ + "/scratch", root_ + "/scratch.img", 1, 0};
    Status st = PreparePool(opts_);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  void TearDown() override {
    if (root_.empty()) return;
    umount2(opts_.dir.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  // Writes `bytes` to `path`; the errno of the first failed write, 0 if none.
  static int Fill(const std::string& path, size_t bytes) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    std::vector<char> chunk(1 << 20, 'x');
    int err = 0;
    for (size_t done = 0; done < bytes && err == 0; done += chunk.size())
      if (write(fd, chunk.data(), chunk.size()) < 0) err = errno;
    if (err == 0 && fsync(fd) != 0) err = errno;
    close(fd);
    return err;
  }

  std::string root_;
  PoolOptions opts_;
};

TEST_F(ScratchPool, IsAMountedBtrfsWithQuotasAndPreparingAgainReusesIt) {
  EXPECT_TRUE(IsBtrfs(opts_.dir));
  struct stat st {};
  ASSERT_EQ(stat(opts_.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0710u);
  EXPECT_TRUE(PreparePool(opts_).ok());  // kilnd restarted: the same mount
  EXPECT_TRUE(IsBtrfs(opts_.dir));
}

TEST_F(ScratchPool, AVolumeHoldsItsSizeAndNotMore) {
  const uint64_t limit = 8 << 20;
  ASSERT_TRUE(Create(opts_.dir, "i-1", limit, DirOwner{4242, 4343}).ok());
  const std::string vol = opts_.dir + "/i-1";
  struct stat st {};
  ASSERT_EQ(stat(vol.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4242u);
  EXPECT_EQ(st.st_gid, 4343u);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(Fill(vol + "/small", 4 << 20), 0);
  EXPECT_EQ(Fill(vol + "/big", 16 << 20), EDQUOT);
  auto use = UsageOf(vol);
  ASSERT_TRUE(use.ok()) << use.status().ToString();
  EXPECT_EQ(use->limit_bytes, limit);
  EXPECT_GE(use->used_bytes + (1 << 20), limit);
  // Creating it again (a relaunch) keeps it and its limit.
  ASSERT_TRUE(Create(opts_.dir, "i-1", limit, DirOwner{4242, 4343}).ok());
  EXPECT_EQ(UsageOf(vol)->limit_bytes, limit);
  // Another volume has its own quota.
  ASSERT_TRUE(Create(opts_.dir, "i-2", limit, DirOwner{}).ok());
  EXPECT_EQ(Fill(opts_.dir + "/i-2/small", 4 << 20), 0);
}

TEST_F(ScratchPool, RemoveDeletesTheVolumeAndItsContents) {
  ASSERT_TRUE(Create(opts_.dir, "i-1", 8 << 20, DirOwner{}).ok());
  ASSERT_EQ(Fill(opts_.dir + "/i-1/f", 1 << 20), 0);
  ASSERT_TRUE(std::filesystem::create_directories(opts_.dir + "/i-1/a/b"));
  ASSERT_TRUE(Remove(opts_.dir, "i-1").ok());
  EXPECT_FALSE(std::filesystem::exists(opts_.dir + "/i-1"));
  EXPECT_TRUE(Remove(opts_.dir, "i-1").ok());  // absent: nothing to do
}

TEST_F(ScratchPool, RefusesNamesOutsideThePoolAndPlainDirectories) {
  EXPECT_EQ(Create(opts_.dir, "../escape", 1 << 20, DirOwner{}).code(), Code::kInvalidArgument);
  EXPECT_EQ(Create(opts_.dir, "", 1 << 20, DirOwner{}).code(), Code::kInvalidArgument);
  EXPECT_EQ(Remove(opts_.dir, "..").code(), Code::kInvalidArgument);
  ASSERT_TRUE(std::filesystem::create_directory(opts_.dir + "/plain"));
  EXPECT_EQ(Create(opts_.dir, "plain", 1 << 20, DirOwner{}).code(), Code::kFailedPrecondition);
  // A symlink planted at a volume's name is not followed.
  std::filesystem::create_directory_symlink("/etc", opts_.dir + "/link");
  EXPECT_FALSE(Create(opts_.dir, "link", 1 << 20, DirOwner{}).ok());
  EXPECT_FALSE(Remove(opts_.dir, "link").ok());
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd"));
}

TEST_F(ScratchPool, UsageOfAPlainDirectoryIsNotFound) {
  EXPECT_EQ(UsageOf(root_).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace kiln::scratch
