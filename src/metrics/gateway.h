#pragma once
// The metrics gateway: kilnd's StatsD/DogStatsD endpoint, no sidecar.
//
// Attribution: each instance gets its own sockets, a UDP port on 127.0.0.1 and
// (optionally) a Unix datagram socket at a path inside its /opt/ml, so a packet's
// job is known from the socket it arrived on, even if the sender has already
// exited. Bad lines are counted by reason and dropped; the rest of the packet
// still counts. A released instance's sockets are drained, flushed and closed;
// when a job's last instance goes, its series are forgotten.
//
// Threading: one receive thread (epoll over all sockets), one flush thread.
// Public methods are thread-safe.
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "common/status.h"
#include "metrics/aggregator.h"

namespace kiln {

struct GatewayOptions {
  int flush_interval_ms = 10000;
  int receive_buffer_bytes = 32 << 20;
  // Series per job; a sample that would start one more is dropped and counted as
  // kiln_statsd_bad_lines_total{reason="series_cap"}. 0: no cap.
  size_t max_series_per_job = 1000;
};

struct GatewayCounters {
  uint64_t packets = 0;
  uint64_t lines = 0;
  uint64_t unattributed_packets = 0;
  std::map<std::string, uint64_t> bad_lines;  // by reason
};

// Whether an instance gets a UDP port on the host's loopback.
enum class HostUdpPort {
  kOpen,  // instances on the host network send there
  kNone,  // instances with a network of their own cannot reach it, and any host
          // process could write into their series through it: Unix socket only
};

class MetricsGateway {
 public:
  using Sink = std::function<void(const std::vector<MetricPoint>&)>;
  MetricsGateway(GatewayOptions opts, Clock& clock, Sink sink);
  ~MetricsGateway();
  Status Start();
  void Shutdown();

  // Opens (or returns the already open) UDP port for an instance, and a Unix
  // datagram socket at `unix_socket_path` unless empty. Idempotent.
  // `port` > 0 asks for that UDP port (re-adopting an instance after a restart:
  // it keeps sending where it was told to). With HostUdpPort::kNone no UDP port
  // is opened (`unix_socket_path` must be given) and `port` is returned as is:
  // the port the instance's own relay listens on inside its namespace.
  Result<int> OpenInstance(const std::string& instance_id, const std::string& job_id, const std::string& team,
                           const std::string& unix_socket_path = "", int port = 0,
                           HostUdpPort udp = HostUdpPort::kOpen);
  // Stops receiving for an instance after one more flush.
  void CloseInstance(const std::string& instance_id);

  // Reads what an instance has sent and is still queued on its sockets, then
  // flushes: called before the instance's exit is recorded, so everything a job
  // sent is stored before the job is seen ending (a tuning objective's last value).
  void DrainInstance(const std::string& instance_id);
  // Flushes now (also runs every flush interval).
  void FlushNow();
  GatewayCounters counters() const;
  // Latest flushed value of every series, in Prometheus text format.
  // Only the series of jobs `show_job` accepts (all when it is empty); called under
  // the gateway's lock, so it must not call back into the gateway.
  std::string PrometheusText(const std::function<bool(const std::string& job_id)>& show_job = {}) const;
  // The jobs that have series in PrometheusText.
  std::set<std::string> ExposedJobs() const;

  // For benchmarks and tests: the UDP port of an instance, 0 if none.
  int PortOf(const std::string& instance_id) const;

 private:
  struct Source {
    std::string instance_id, job_id, team;
    std::vector<std::pair<std::string, std::string>> attribution;  // job_id, team
    std::string attribution_canonical;
    int udp_fd = -1;
    int unix_fd = -1;
    std::string unix_path;
    int port = 0;
    bool closing = false;
  };
  void ReceiveLoop();
  void FlushLoop();
  // Reads everything queued on a source's sockets. Caller holds mu_.
  void DrainQueued(const Source& src);
  void Ingest(const Source& src, const char* data, size_t len);
  void Watch(int fd);

  GatewayOptions opts_;
  Clock& clock_;
  Sink sink_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread recv_thread_, flush_thread_;

  // Taken before mu_: held by the receive thread from taking a batch off a socket
  // until it is aggregated, so DrainInstance sees every packet received so far.
  std::mutex recv_mu_;
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable flush_cv_;
  std::unordered_map<std::string, Source> sources_;  // by instance id
  std::unordered_map<int, std::string> owner_;       // socket fd -> instance id
  Aggregator agg_;
  GatewayCounters counters_;
  struct Latest {
    std::string job_id;
    double value;
  };
  std::map<std::string, Latest> latest_;  // prometheus series (without value) -> value
};

}  // namespace kiln
