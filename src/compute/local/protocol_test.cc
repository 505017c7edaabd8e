// The supervisor protocol's codecs: round trips, files written by the previous
// build (no "version"), newer versions refused, malformed files named.
#include "compute/local/protocol.h"

#include <gtest/gtest.h>

namespace kiln::supervisor {
namespace {

TEST(Protocol, LaunchFileRoundTrips) {
  LaunchFile f;
  f.instance_id = "j-1.1.0";
  f.argv = {"/usr/bin/bwrap", "--", "/opt/ml/.kiln/bin/kiln-entrypoint"};
  f.env = {"A=1", "B=two"};
  f.memory_bytes = 512 << 20;
  f.cpus = 1.5;
  f.grace_ms = 3000;
  f.log = "/data/instances/j-1.1.0/output.log";
  auto back = DecodeLaunchFile(Encode(f));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->instance_id, f.instance_id);
  EXPECT_EQ(back->argv, f.argv);
  EXPECT_EQ(back->env, f.env);
  EXPECT_EQ(back->memory_bytes, f.memory_bytes);
  EXPECT_DOUBLE_EQ(back->cpus, f.cpus);
  EXPECT_EQ(back->grace_ms, f.grace_ms);
  EXPECT_EQ(back->log, f.log);
  EXPECT_EQ(back->cwd, "/");
  EXPECT_EQ(back->version, kProtocolVersion);
  EXPECT_EQ(back->network, NetworkMode::kHost);  // version 1's meaning when unset
  EXPECT_EQ(back->uid, 0U);
  EXPECT_FALSE(back->seccomp);
}

TEST(Protocol, IsolationRoundTrips) {
  LaunchFile f;
  f.instance_id = "j-1.1.0";
  f.argv = {"/usr/bin/bwrap", "--bind-fd", "{fd:0}", "/opt/ml"};
  f.log = "/l";
  f.uid = 2000000000;
  f.gid = 2000000000;
  f.network = NetworkMode::kPrivate;
  f.link = JobLink{"kb0123abcd", "kv0123abcdef", "10.1.2.3", 24};
  f.seccomp = true;
  f.pids_max = 512;
  f.log_max_bytes = 1 << 20;
  f.fd_binds = {{"/data/instances/j-1.1.0", "ml"}, {"/usr/lib/kiln", ""}};
  f.egress = JobLink{"kegress", "kx0123abcdef", "172.30.0.7", 16, "172.30.0.1"};
  f.scratch = "/data/scratch/j-1.1.0";
  f.volume_bytes = int64_t{30} << 30;
  auto back = DecodeLaunchFile(Encode(f));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->uid, f.uid);
  EXPECT_EQ(back->gid, f.gid);
  EXPECT_EQ(back->network, NetworkMode::kPrivate);
  ASSERT_TRUE(back->link.has_value());
  EXPECT_EQ(back->link->bridge, "kb0123abcd");
  EXPECT_EQ(back->link->host_veth, "kv0123abcdef");
  EXPECT_EQ(back->link->address, "10.1.2.3");
  EXPECT_TRUE(back->seccomp);
  EXPECT_EQ(back->pids_max, 512);
  EXPECT_EQ(back->log_max_bytes, 1 << 20);
  ASSERT_EQ(back->fd_binds.size(), 2U);
  EXPECT_EQ(back->fd_binds[0].root, "/data/instances/j-1.1.0");
  EXPECT_EQ(back->fd_binds[0].relative, "ml");
  ASSERT_TRUE(back->egress.has_value());
  EXPECT_EQ(back->egress->gateway, "172.30.0.1");
  EXPECT_EQ(back->egress->prefix_len, 16);
  EXPECT_TRUE(back->link->gateway.empty());
  EXPECT_EQ(back->scratch, f.scratch);
  EXPECT_EQ(back->volume_bytes, f.volume_bytes);
}

TEST(Protocol, MalformedIsolationNamesTheField) {
  const std::string head = R"({"instance_id":"i","argv":["/x"],"log":"/l",)";
  EXPECT_EQ(DecodeLaunchFile(head + R"("network":"bridge"})").status().field(), "network");
  EXPECT_EQ(DecodeLaunchFile(head + R"("uid":-1})").status().field(), "uid");
  EXPECT_EQ(DecodeLaunchFile(head + R"("fd_binds":[{"root":"rel"}]})").status().field(), "fd_binds");
  EXPECT_EQ(DecodeLaunchFile(head + R"("scratch":"relative/ml"})").status().field(), "scratch");
  EXPECT_EQ(DecodeLaunchFile(head + R"("egress":{"bridge":"kegress","host_veth":"kx1","address":"172.30.0.2"}})")
                .status()
                .field(),
            "egress.gateway");
  EXPECT_EQ(DecodeLaunchFile(head + R"("link":{"bridge":"a-name-that-is-too-long","host_veth":"v","address":"x"}})")
                .status()
                .field(),
            "link");
}

// launch.json and status.json exactly as the build before versioning wrote them.
TEST(Protocol, FilesOfThePreviousBuildDecode) {
  auto launch = DecodeLaunchFile(
      R"({"instance_id":"j-1.1.0","argv":["/usr/bin/bwrap","x"],"env":["A=1"],"memory_bytes":1073741824,)"
      R"("cpus":2.0,"grace_ms":120000,"log":"/d/output.log","cwd":"/"})");
  ASSERT_TRUE(launch.ok()) << launch.status().ToString();
  EXPECT_EQ(launch->version, 1);
  EXPECT_EQ(launch->memory_bytes, int64_t{1} << 30);
  auto status = DecodeStatusFile(
      R"({"exit_code":137,"signal":9,"oom":true,"failure":"boom","started_ms":10,"limits_warning":"",)"
      R"("peak_memory_bytes":2048,"message":"bye","ended_ms":20,"stopped":false,"model_artifact":"/o/model.tar.gz"})");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->exit.exit_code, 137);
  EXPECT_EQ(status->exit.signal, 9);
  EXPECT_TRUE(status->exit.oom);
  EXPECT_EQ(status->exit.failure, "boom");
  EXPECT_EQ(status->exit.message, "bye");
  EXPECT_EQ(status->exit.model_artifact, "/o/model.tar.gz");
  EXPECT_EQ(status->exit.peak_memory_bytes, 2048);
  EXPECT_EQ(status->started_ms, 10);
  EXPECT_EQ(status->ended_ms, 20);
  auto handle = DecodeHandle(R"({"pid":123,"start":456789,"dir":"/d","job_id":"j-1"})");
  ASSERT_TRUE(handle.ok());
  EXPECT_EQ(handle->pid, 123);
  EXPECT_EQ(handle->start, 456789ULL);
  auto pid = DecodePidFile("123 456789\n");
  ASSERT_TRUE(pid.ok());
  EXPECT_EQ(pid->pid, 123);
  EXPECT_EQ(pid->start, 456789ULL);
}

TEST(Protocol, StatusFileRoundTrips) {
  StatusFile f;
  f.exit.instance_id = "ignored: the directory names it";
  f.exit.exit_code = 3;
  f.exit.failure = "AlgorithmError: x";
  f.started_ms = 5;
  f.ended_ms = 9;
  f.stopped = true;
  auto back = DecodeStatusFile(Encode(f));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->exit.exit_code, 3);
  EXPECT_EQ(back->exit.failure, f.exit.failure);
  EXPECT_EQ(back->exit.instance_id, "");
  EXPECT_FALSE(back->exit.peak_memory_bytes.has_value());
  EXPECT_TRUE(back->stopped);
  EXPECT_EQ(back->ended_ms, 9);
}

TEST(Protocol, NewerVersionsAreRefusedNotMisread) {
  auto s = DecodeStatusFile(R"({"version":99,"exit_code":0})");
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  auto l = DecodeLaunchFile(R"({"version":3,"instance_id":"i","argv":["/x"],"log":"/l"})");
  EXPECT_EQ(l.status().code(), Code::kFailedPrecondition);
}

TEST(Protocol, MalformedFilesNameTheField) {
  EXPECT_EQ(DecodeLaunchFile("not json").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(DecodeLaunchFile(R"({"instance_id":"i","log":"/l"})").status().field(), "argv");
  EXPECT_EQ(DecodeLaunchFile(R"({"instance_id":"i","argv":[],"log":"/l"})").status().field(), "argv");
  EXPECT_EQ(DecodeLaunchFile(R"({"instance_id":"i","argv":["rel"],"log":"/l"})").status().field(), "argv");
  EXPECT_EQ(DecodeLaunchFile(R"({"instance_id":"i","argv":["/x"],"log":"/l","cpus":"2"})").status().field(), "cpus");
  EXPECT_EQ(DecodeStatusFile(R"({"exit_code":"0"})").status().field(), "exit_code");
  EXPECT_FALSE(DecodePidFile("").ok());
  EXPECT_FALSE(DecodePidFile("-3 1").ok());
  EXPECT_EQ(DecodeHandle(R"({"start":1})").status().field(), "pid");
}

TEST(Protocol, ReadyAnswers) {
  EXPECT_EQ(DecodeReady(Encode(ReadyAnswer{ReadyKind::kOk, ""})).kind, ReadyKind::kOk);
  EXPECT_EQ(DecodeReady("busy\n").kind, ReadyKind::kBusy);
  auto err = DecodeReady(Encode(ReadyAnswer{ReadyKind::kError, "cannot read launch.json"}));
  EXPECT_EQ(err.kind, ReadyKind::kError);
  EXPECT_EQ(err.error, "cannot read launch.json");
  EXPECT_EQ(DecodeReady("").error, "no answer");
  EXPECT_EQ(DecodeReady("okay").kind, ReadyKind::kError);
}

}  // namespace
}  // namespace kiln::supervisor
