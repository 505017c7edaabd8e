#include "secrets/secret_box.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fsutil.h"

namespace kiln {
TEST(SecretBox, SealsAndOpens) {
  auto box = SecretBox::FromKey(std::string(32, 'k'));
  auto sealed = box.Seal("hunter2", "risk/DB_PASSWORD");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("hunter2"), std::string::npos);
  EXPECT_EQ(*box.Open(*sealed, "risk/DB_PASSWORD"), "hunter2");
  // Same plaintext twice: different ciphertexts (random nonce).
  EXPECT_NE(*box.Seal("hunter2", "risk/DB_PASSWORD"), *sealed);
}
TEST(SecretBox, RefusesTamperingAndMovedValues) {
  auto box = SecretBox::FromKey(std::string(32, 'k'));
  std::string sealed = *box.Seal("hunter2", "risk/A");
  EXPECT_EQ(box.Open(sealed, "other/A").status().code(), Code::kInvalidArgument);
  std::string flipped = sealed;
  flipped.back() ^= 1;
  EXPECT_FALSE(box.Open(flipped, "risk/A").ok());
  EXPECT_FALSE(SecretBox::FromKey(std::string(32, 'x')).Open(sealed, "risk/A").ok());
  EXPECT_FALSE(box.Open("short", "risk/A").ok());
}
TEST(SecretBox, CreatesThePrivateKeyFileOnce) {
  std::string path = "/tmp/kiln-master-" + std::to_string(getpid());
  unlink(path.c_str());
  auto a = SecretBox::LoadOrCreate(path);
  ASSERT_TRUE(a.ok());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto b = SecretBox::LoadOrCreate(path);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b->Open(*a->Seal("v", "t/n"), "t/n"), "v");
  chmod(path.c_str(), 0644);
  EXPECT_EQ(SecretBox::LoadOrCreate(path).status().code(), Code::kFailedPrecondition);
  unlink(path.c_str());
}
}  // namespace kiln
