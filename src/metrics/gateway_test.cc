// The gateway over real sockets: UDP per instance, the Unix datagram socket with
// cgroup attribution is covered end to end in tests/e2e.
#include "metrics/gateway.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <utility>

namespace kiln {
namespace {

void SendUdp(int port, const std::string& payload) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  close(fd);
}

// Keeps what the gateway hands its sink (the store in kilnd).
struct Recorder {
  std::mutex mu;
  std::vector<MetricPoint> points;
  MetricsGateway::Sink Sink() {
    return [this](const std::vector<MetricPoint>& p) {
      std::lock_guard<std::mutex> l(mu);
      points.insert(points.end(), p.begin(), p.end());
    };
  }
  // What was handed over since the last call.
  std::vector<MetricPoint> Take() {
    std::lock_guard<std::mutex> l(mu);
    return std::exchange(points, {});
  }
};

// Flushes only when a test asks.
GatewayOptions NoTimedFlush() {
  GatewayOptions o;
  o.flush_interval_ms = 3600 * 1000;
  return o;
}

TEST(Gateway, AttributesByPortAndCountsBadPackets) {
  Recorder rec;
  MetricsGateway gw(NoTimedFlush(), RealClock::Get(), rec.Sink());
  ASSERT_TRUE(gw.Start().ok());
  auto p1 = gw.OpenInstance("j-a.1.0", "j-a", "risk");
  auto p2 = gw.OpenInstance("j-b.1.0", "j-b", "");
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_NE(*p1, *p2);
  EXPECT_EQ(*gw.OpenInstance("j-a.1.0", "j-a", "risk"), *p1);  // idempotent
  SendUdp(*p1, "loss:0.5|g\nsteps:1|c\nsteps:1|c");
  SendUdp(*p1, "garbage\nsteps:1|c");
  SendUdp(*p2, "steps:7|c");
  SendUdp(*p2, std::string("bad\xff:1|c"));
  for (int i = 0; i < 200 && gw.counters().packets < 4; ++i) usleep(5000);
  gw.FlushNow();
  auto c = gw.counters();
  EXPECT_EQ(c.packets, 4u);
  EXPECT_EQ(c.lines, 5u);
  EXPECT_EQ(c.bad_lines["no_value"], 1u);
  EXPECT_EQ(c.bad_lines["not_utf8"], 1u);
  std::map<std::string, double> got;
  for (auto& p : rec.Take()) got[p.job_id + "/" + p.name + "/" + p.stat] = p.value;
  EXPECT_EQ(got["j-a/steps/count"], 3);
  EXPECT_EQ(got["j-a/loss/value"], 0.5);
  EXPECT_EQ(got["j-b/steps/count"], 7);
  std::string prom = gw.PrometheusText();
  EXPECT_NE(prom.find("kiln_statsd_steps{stat=\"count\",job_id=\"j-a\",team=\"risk\"} 3"), std::string::npos) << prom;
  EXPECT_NE(prom.find("kiln_statsd_bad_lines_total{reason=\"not_utf8\"} 1"), std::string::npos) << prom;
  gw.CloseInstance("j-a.1.0");
  gw.FlushNow();
  EXPECT_EQ(gw.PortOf("j-a.1.0"), 0);
  // The released job's series are gone from memory and from /metrics; j-b's stay.
  prom = gw.PrometheusText();
  EXPECT_EQ(prom.find("job_id=\"j-a\""), std::string::npos) << prom;
  EXPECT_NE(prom.find("job_id=\"j-b\""), std::string::npos) << prom;
  rec.Take();
  gw.FlushNow();
  for (auto& p : rec.Take()) EXPECT_NE(p.job_id, "j-a") << "gauge of a released job flushed again";
  gw.Shutdown();
}

// An instance with a network of its own gets its Unix socket only: no host UDP
// port that any host process could write into its series through.
TEST(Gateway, AnInstanceWithoutAHostPortIsReachedOnlyThroughItsSocket) {
  Recorder rec;
  MetricsGateway gw(NoTimedFlush(), RealClock::Get(), rec.Sink());
  ASSERT_TRUE(gw.Start().ok());
  const std::string path = "/tmp/kiln-gw-test-" + std::to_string(getpid()) + ".sock";
  EXPECT_EQ(gw.OpenInstance("j-x.1.0", "j-x", "", "", 8125, HostUdpPort::kNone).status().code(),
            Code::kInvalidArgument);
  auto port = gw.OpenInstance("j-a.1.0", "j-a", "", path, 8125, HostUdpPort::kNone);
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  EXPECT_EQ(*port, 8125);  // the relay's port inside the instance, not one on the host
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  const std::string payload = "steps:2|c";
  ASSERT_EQ(sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)),
            static_cast<ssize_t>(payload.size()));
  close(fd);
  gw.DrainInstance("j-a.1.0");
  auto got = rec.Take();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].job_id, "j-a");
  EXPECT_EQ(got[0].value, 2);
  gw.Shutdown();
  unlink(path.c_str());
}

TEST(Gateway, DrainInstanceStoresWhatWasSentBeforeItReturns) {
  // What a job sent before it exited is stored before its exit is recorded (the
  // controller calls DrainInstance first), long before the next flush interval.
  Recorder rec;
  MetricsGateway gw(NoTimedFlush(), RealClock::Get(), rec.Sink());
  ASSERT_TRUE(gw.Start().ok());
  auto port = gw.OpenInstance("j-a.1.0", "j-a", "");
  ASSERT_TRUE(port.ok());
  for (int step = 0; step < 50; ++step)
    SendUdp(*port, "val_loss:" + std::to_string(100 - step) + "|g|#step:" + std::to_string(step));
  gw.DrainInstance("j-a.1.0");
  gw.DrainInstance("j-unknown.1.0");  // nothing open: nothing to do
  std::map<std::string, double> got;
  for (auto& p : rec.Take()) got[p.tags] = p.value;
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got["job_id:j-a,step:49"], 51);
  // Stored once: an unchanged gauge is not flushed again.
  gw.FlushNow();
  EXPECT_TRUE(rec.Take().empty());
  gw.Shutdown();
}

}  // namespace
}  // namespace kiln
