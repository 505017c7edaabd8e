// kiln_statsd_load: the load side of the metrics gateway benchmark.
//
//   kiln_statsd_load send PORT RATE SECONDS     sends RATE packets/s for SECONDS to
//                                               127.0.0.1:PORT with sendmmsg; prints
//                                               the number sent
//   kiln_statsd_load gateway PORTFILE           runs Kiln's MetricsGateway (the code
//                                               kilnd runs) with one instance port,
//                                               writes the port to PORTFILE, and on
//                                               each line "count" on stdin prints the
//                                               packets it has received
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "metrics/gateway.h"

namespace {

int Send(int port, long rate, double seconds) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  constexpr int kBatch = 32;
  std::vector<std::string> payloads;
  for (int i = 0; i < 1000; ++i) {
    // A realistic mix: counters, timers with sample rates, gauges, DogStatsD tags.
    switch (i % 4) {
      case 0:
        payloads.push_back("train.steps." + std::to_string(i % 50) + ":1|c");
        break;
      case 1:
        payloads.push_back("train.batch_ms:" + std::to_string(i % 97) + "|ms|@0.5");
        break;
      case 2:
        payloads.push_back("train.loss:0." + std::to_string(i) + "|g");
        break;
      default:
        payloads.push_back("serve.latency:" + std::to_string(i % 31) + "|h|#route:/predict,code:200");
        break;
    }
  }
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  long sent = 0, next = 0;
  const long total = static_cast<long>(rate * seconds);
  const int64_t start = kiln::MonotonicNs();
  while (sent < total) {
    // Pace: the i-th packet is due at start + i/rate.
    int64_t due = start + static_cast<int64_t>(1e9 * static_cast<double>(sent) / static_cast<double>(rate));
    int64_t now = kiln::MonotonicNs();
    if (due > now) {
      if (due - now > 200000) usleep(static_cast<useconds_t>((due - now) / 1000 - 100));
      continue;
    }
    int n = static_cast<int>(std::min<long>(kBatch, total - sent));
    for (int k = 0; k < n; ++k) {
      const std::string& p = payloads[static_cast<size_t>(next++ % 1000)];
      iov[k] = {const_cast<char*>(p.data()), p.size()};
      msgs[k] = {};
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(fd, msgs, static_cast<unsigned>(n), 0);
    if (r > 0) sent += r;
  }
  double took = static_cast<double>(kiln::MonotonicNs() - start) / 1e9;
  printf("%ld %.3f\n", sent, took);
  return 0;
}

int Gateway(const std::string& portfile) {
  kiln::GatewayOptions o;
  o.flush_interval_ms = 10000;
  kiln::MetricsGateway gw(o, kiln::RealClock::Get(), [](const std::vector<kiln::MetricPoint>&) {});
  if (!gw.Start().ok()) return 1;
  auto port = gw.OpenInstance("bench.1.0", "bench", "bench");
  if (!port.ok()) return 1;
  std::ofstream(portfile) << *port << "\n";
  std::string line;
  while (std::getline(std::cin, line)) {
    auto c = gw.counters();
    printf("%llu\n", static_cast<unsigned long long>(c.packets));
    fflush(stdout);
  }
  gw.Shutdown();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && !strcmp(argv[1], "send")) return Send(atoi(argv[2]), atol(argv[3]), atof(argv[4]));
  if (argc == 3 && !strcmp(argv[1], "gateway")) return Gateway(argv[2]);
  fprintf(stderr, "usage: kiln_statsd_load send PORT RATE SECONDS | gateway PORTFILE\n");
  return 2;
}
