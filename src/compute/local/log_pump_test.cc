#include "compute/local/log_pump.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/fsutil.h"

namespace kiln {
namespace {

class LogPumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char d[] = "/tmp/kiln-logpump-XXXXXX";
    ASSERT_NE(mkdtemp(d), nullptr);
    dir_ = d;
    ASSERT_EQ(pipe(p_), 0);
  }
  void TearDown() override {
    if (p_[1] >= 0) close(p_[1]);
    std::filesystem::remove_all(dir_);
  }
  LogPump Make(int64_t cap) {
    return LogPump(UniqueFd(p_[0]), UniqueFd(open((dir_ + "/log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600)), cap);
  }
  void Send(const std::string& s) { ASSERT_EQ(write(p_[1], s.data(), s.size()), static_cast<ssize_t>(s.size())); }
  std::string Log() { return *ReadFile(dir_ + "/log"); }
  std::string dir_;
  int p_[2] = {-1, -1};
};

TEST_F(LogPumpTest, CopiesEverythingWithoutACap) {
  LogPump pump = Make(0);
  Send("line 1\nline 2\n");
  EXPECT_TRUE(pump.Pump());  // still open
  EXPECT_EQ(Log(), "line 1\nline 2\n");
  close(p_[1]);
  p_[1] = -1;
  EXPECT_FALSE(pump.Pump());  // end of file
}

TEST_F(LogPumpTest, StopsAtTheCapWithALineThatSaysSoAndKeepsDraining) {
  LogPump pump = Make(10);
  Send("0123456789abcdef");
  ASSERT_TRUE(pump.Pump());
  EXPECT_EQ(Log(), "0123456789" + LogPump::CapMessage(10));
  EXPECT_TRUE(pump.capped());
  EXPECT_EQ(pump.dropped(), 6);
  for (int i = 0; i < 50; ++i) {  // 1.6 MB, far more than a pipe holds: read and dropped
    Send(std::string(32768, 'x'));
    ASSERT_TRUE(pump.Pump());
  }
  close(p_[1]);
  p_[1] = -1;
  pump.Drain(1000);
  EXPECT_EQ(Log(), "0123456789" + LogPump::CapMessage(10));
  EXPECT_EQ(pump.dropped(), 6 + 50 * 32768);
}

TEST_F(LogPumpTest, ALogThatAlreadyHoldsBytesCountsThem) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/log", "12345678", 0600).ok());
  LogPump pump = Make(10);
  Send("abcdef");
  ASSERT_TRUE(pump.Pump());
  EXPECT_EQ(Log(), "12345678ab" + LogPump::CapMessage(10));
}

}  // namespace
}  // namespace kiln
