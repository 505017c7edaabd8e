// Warm runtimes: a script run in a preloaded interpreter must observe what it
// observes when started fresh. Each case runs the same script both ways (a real
// /usr/bin/python3) and compares exit status, stdout and stderr.
#include "entrypoint/warm.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kiln::warm {
namespace {

namespace fs = std::filesystem;
constexpr const char* kPython = "/usr/bin/python3";

struct Observed {
  int wait_status = 0;
  std::string out, err;
};

// Reads both pipes to their end, then reaps `pid`.
Observed Collect(pid_t pid, int out, int err) {
  Observed o;
  pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    if (poll(fds, 2, 20000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        continue;
      }
      (i == 0 ? o.out : o.err).append(buf, static_cast<size_t>(n));
    }
  }
  waitpid(pid, &o.wait_status, 0);
  return o;
}

class WarmRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kPython, X_OK) != 0) GTEST_SKIP() << "no " << kPython;
    dir_ = fs::temp_directory_path() / ("kiln-warm-" + std::to_string(getpid()));
    fs::create_directories(dir_ / "code" / "lib");
    std::ofstream(dir_ / "code" / "lib" / "helper.py") << "VALUE = 'from PYTHONPATH'\n";
    sigemptyset(&mask_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<std::string> Env() const {
    return {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "JOB_VAR=job value", "PYTHONUNBUFFERED=1",
            "PYTHONPATH=" + (dir_ / "code" / "lib").string()};
  }
  void Write(const std::string& script) { std::ofstream(dir_ / "code" / "train.py") << script; }
  std::vector<std::string> Command() const { return {"python3", "train.py", "--epochs", "3"}; }

  Observed Cold() {
    int out[2], err[2];
    EXPECT_EQ(pipe(out), 0);
    EXPECT_EQ(pipe(err), 0);
    std::vector<std::string> cmd = Command(), env = Env();
    std::vector<char*> av, ev;
    for (auto& c : cmd) av.push_back(c.data());
    av.push_back(nullptr);
    for (auto& e : env) ev.push_back(e.data());
    ev.push_back(nullptr);
    const std::string cwd = (dir_ / "code").string();
    pid_t pid = fork();
    if (pid == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      if (chdir(cwd.c_str()) != 0) _exit(126);
      execve(kPython, av.data(), ev.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    return Collect(pid, out[0], err[0]);
  }

  Observed Warm(const std::string& preload = "json") {
    int out[2], err[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
    setenv("KILN_ONLY_IN_THE_RUNTIME", "leaked", 1);  // the slot's environment, not the job's
    Runtime rt;
    Status st = rt.Start(kPython, preload, mask_, out[1], err[1]);
    unsetenv("KILN_ONLY_IN_THE_RUNTIME");
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto pid = rt.Run(Command(), Env(), (dir_ / "code").string());
    close(out[1]);
    close(err[1]);
    if (!pid.ok()) {
      ADD_FAILURE() << pid.status().ToString();
      close(out[0]);
      close(err[0]);
      return {};
    }
    return Collect(*pid, out[0], err[0]);
  }

  void ExpectSame(const std::string& script) {
    Write(script);
    Observed cold = Cold(), warm = Warm();
    EXPECT_EQ(cold.wait_status, warm.wait_status) << script;
    EXPECT_EQ(cold.out, warm.out) << script;
    EXPECT_EQ(cold.err, warm.err) << script;
  }

  fs::path dir_;
  sigset_t mask_;
};

TEST_F(WarmRuntimeTest, ArgvEnvironmentCwdMainAndPathMatchAColdStart) {
  ExpectSame(R"(import os, sys, signal, pickle
import __main__
import helper
print(sys.argv)
print(__name__, __file__, __main__.__file__ == __file__, type(__loader__).__name__)
print(sys.path[0], os.getcwd())
print(sorted(k for k in os.environ if k not in ('LC_CTYPE',)))
print(os.environ['JOB_VAR'], helper.VALUE)
print([signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD)])
def f(): pass
print(pickle.loads(pickle.dumps(f)) is f)
print(sys.stdout.write_through, sys.dont_write_bytecode)
print('to stderr', file=sys.stderr)
)");
}

TEST_F(WarmRuntimeTest, UncaughtExceptionTracebackAndExitCodeMatch) {
  ExpectSame("def train():\n    raise ValueError('bad learning rate')\nprint('before')\ntrain()\n");
}

TEST_F(WarmRuntimeTest, SysExitCodesAndMessagesMatch) {
  ExpectSame("import sys\nprint('x')\nsys.exit(7)\n");
  ExpectSame("import sys\nsys.exit('fatal: no data')\n");
}

TEST_F(WarmRuntimeTest, DeathBySignalAndKeyboardInterruptMatch) {
  ExpectSame("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n");
  ExpectSame("raise KeyboardInterrupt\n");
}

TEST_F(WarmRuntimeTest, SyntaxErrorMatches) {
  ExpectSame("print('unclosed'\n");
}

TEST_F(WarmRuntimeTest, PreloadedModulesAreAlreadyImported) {
  Write("import sys\nprint('json' in sys.modules, 'decimal' in sys.modules)\n");
  Observed warm = Warm("json,decimal");
  EXPECT_EQ(warm.out, "True True\n");
  EXPECT_EQ(WEXITSTATUS(warm.wait_status), 0);
}

TEST_F(WarmRuntimeTest, AFailedPreloadIsReportedAndRunsNothing) {
  Write("print('ran')\n");
  int out[2], err[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  Runtime rt;
  ASSERT_TRUE(rt.Start(kPython, "no_such_module_kiln", mask_, out[1], err[1]).ok());
  auto pid = rt.Run(Command(), Env(), (dir_ / "code").string());
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), Code::kUnavailable);
  EXPECT_NE(pid.status().message().find("no_such_module_kiln"), std::string::npos) << pid.status().message();
  for (int fd : {out[0], out[1], err[0], err[1]}) close(fd);
}

TEST(WarmAssignment, RoundTripsAndRefusesMalformedLines) {
  Assignment a{{"python3", "train.py"}, {"A=1", "B=x=y"}};
  std::string line = Encode(a);
  ASSERT_EQ(line.back(), '\n');
  auto back = DecodeAssignment(line.substr(0, line.size() - 1));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->command, a.command);
  EXPECT_EQ(back->env, a.env);
  for (const char* bad :
       {"", "[]", R"({"command": []})", R"({"command": [], "env": []})", R"({"command": ["x"], "env": ["NOEQUALS"]})",
        R"({"command": ["x"], "env": [1]})", R"({"command": ["x"], "env": ["=x"]})"}) {
    auto d = DecodeAssignment(bad);
    EXPECT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(DecodeAssignment(std::string(kMaxAssignmentBytes + 1, ' ')).status().code(), Code::kInvalidArgument);
}

TEST(WarmEligibility, OnlyTheRuntimesInterpreterWithAScriptAndNoStartupOnlySettings) {
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "PYTHONUNBUFFERED=1"};
  EXPECT_EQ(Ineligible({"python3", "train.py"}, env, kPython), "");
  EXPECT_EQ(Ineligible({"/usr/bin/python3", "train.py", "--lr", "0.1"}, env, kPython), "");
  EXPECT_NE(Ineligible({"python3"}, env, kPython), "");
  EXPECT_NE(Ineligible({"python3", "-m", "pkg"}, env, kPython), "");
  EXPECT_NE(Ineligible({"/bin/sh", "train.sh"}, env, kPython), "");
  EXPECT_NE(Ineligible({"python3", "train.py"}, {"PATH=/nonexistent"}, kPython), "");
  EXPECT_NE(Ineligible({"python3", "train.py"}, {"PATH=/usr/bin", "PYTHONHASHSEED=0"}, kPython).find("PYTHONHASHSEED"),
            std::string::npos);
}

}  // namespace
}  // namespace kiln::warm
