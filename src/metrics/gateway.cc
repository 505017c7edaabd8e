#include "metrics/gateway.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace kiln {

// A large buffer rides out the moments the receive thread is descheduled. As
// root, SO_RCVBUFFORCE goes past net.core.rmem_max.
static void SetReceiveBuffer(int fd, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}

MetricsGateway::MetricsGateway(GatewayOptions opts, Clock& clock, Sink sink)
    : opts_(opts), clock_(clock), sink_(std::move(sink)) {
  agg_.set_max_series_per_job(opts_.max_series_per_job);
}

MetricsGateway::~MetricsGateway() {
  Shutdown();
}

Status MetricsGateway::Start() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  recv_thread_ = std::thread([this] { ReceiveLoop(); });
  flush_thread_ = std::thread([this] { FlushLoop(); });
  return Status::Ok();
}

void MetricsGateway::Shutdown() {
  if (stop_.exchange(true)) return;
  uint64_t one = 1;
  if (wake_fd_ >= 0) {
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    (void)n;
  }
  {
    // Taken once so the flush thread is either before its stop_ check or waiting:
    // without it, a notify between the two was lost and Shutdown waited a whole
    // flush interval (a test hung on it in CI).
    std::lock_guard<std::mutex> g(mu_);
  }
  flush_cv_.notify_all();
  if (recv_thread_.joinable()) recv_thread_.join();
  if (flush_thread_.joinable()) flush_thread_.join();
  FlushNow();
  for (auto& [id, src] : sources_) {
    if (src.udp_fd >= 0) close(src.udp_fd);
    if (src.unix_fd >= 0) {
      close(src.unix_fd);
      unlink(src.unix_path.c_str());
    }
  }
  if (epfd_ >= 0) close(epfd_);
  if (wake_fd_ >= 0) close(wake_fd_);
}

void MetricsGateway::Watch(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

Result<int> MetricsGateway::OpenInstance(const std::string& instance_id, const std::string& job_id,
                                         const std::string& team, const std::string& unix_socket_path, int port,
                                         HostUdpPort udp) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = sources_.find(instance_id); it != sources_.end()) return it->second.port;
  Source s;
  s.instance_id = instance_id;
  s.job_id = job_id;
  s.team = team;
  s.attribution = {{"job_id", job_id}};
  if (!team.empty()) s.attribution.emplace_back("team", team);
  s.attribution_canonical = CanonicalTags(s.attribution);
  if (udp == HostUdpPort::kNone) {
    if (unix_socket_path.empty())
      return InvalidArgument("unix_socket_path", "an instance without a UDP port needs a socket");
    s.port = port;
  } else {
    s.udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s.udp_fd < 0) return Unavailable(std::string("socket: ") + strerror(errno));
    SetReceiveBuffer(s.udp_fd, opts_.receive_buffer_bytes);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    socklen_t len = sizeof(addr);
    if (bind(s.udp_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(s.udp_fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      close(s.udp_fd);
      return Unavailable(std::string("bind statsd port: ") + strerror(errno));
    }
    s.port = ntohs(addr.sin_port);
  }
  if (!unix_socket_path.empty()) {
    sockaddr_un ua{};
    ua.sun_family = AF_UNIX;
    if (unix_socket_path.size() < sizeof(ua.sun_path)) {
      strncpy(ua.sun_path, unix_socket_path.c_str(), sizeof(ua.sun_path) - 1);
      unlink(unix_socket_path.c_str());
      int ufd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (ufd >= 0 && bind(ufd, reinterpret_cast<sockaddr*>(&ua), sizeof(ua)) == 0) {
        SetReceiveBuffer(ufd, opts_.receive_buffer_bytes);
        // The instance's unprivileged user sends to it; the directory it lies in
        // is reachable only through that instance's sandbox.
        chmod(unix_socket_path.c_str(), 0666);
        s.unix_fd = ufd;
        s.unix_path = unix_socket_path;
      } else if (ufd >= 0) {
        close(ufd);  // UDP still works; the entrypoint only exports the socket if it exists
      }
    }
  }
  if (s.udp_fd < 0 && s.unix_fd < 0)
    return Unavailable("cannot bind the StatsD socket " + unix_socket_path + ": " + strerror(errno));
  if (s.udp_fd >= 0) {
    owner_[s.udp_fd] = instance_id;
    Watch(s.udp_fd);
  }
  if (s.unix_fd >= 0) {
    owner_[s.unix_fd] = instance_id;
    Watch(s.unix_fd);
  }
  int bound = s.port;
  sources_[instance_id] = std::move(s);
  return bound;
}

void MetricsGateway::CloseInstance(const std::string& instance_id) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = sources_.find(instance_id); it != sources_.end()) it->second.closing = true;
}

void MetricsGateway::DrainQueued(const Source& src) {
  std::vector<char> buf(kMaxStatsdPacket + 1);
  for (int fd : {src.udp_fd, src.unix_fd}) {
    if (fd < 0) continue;
    ssize_t n;
    while ((n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT)) >= 0) Ingest(src, buf.data(), static_cast<size_t>(n));
  }
}

void MetricsGateway::DrainInstance(const std::string& instance_id) {
  {
    // No batch the receive thread has taken off a socket is still on its way.
    std::lock_guard<std::mutex> receiving(recv_mu_);
    std::lock_guard<std::mutex> l(mu_);
    auto it = sources_.find(instance_id);
    if (it == sources_.end()) return;
    DrainQueued(it->second);
  }
  FlushNow();
}

int MetricsGateway::PortOf(const std::string& instance_id) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = sources_.find(instance_id);
  return it == sources_.end() ? 0 : it->second.port;
}

void MetricsGateway::Ingest(const Source& src, const char* data, size_t len) {
  // Caller holds mu_.
  counters_.packets++;
  if (len > kMaxStatsdPacket) {
    counters_.bad_lines[ToString(StatsdError::kTooLong)]++;
    return;
  }
  ParseStatsdPacket(
      std::string_view(data, len),
      [&](const StatsdSample& s) {
        counters_.lines++;
        if (!agg_.AddCanonical(src.job_id, src.attribution, src.attribution_canonical, s))
          counters_.bad_lines["series_cap"]++;
      },
      [&](StatsdError e) { counters_.bad_lines[ToString(e)]++; });
}

void MetricsGateway::ReceiveLoop() {
  constexpr int kBatch = 64;
  constexpr size_t kBuf = kMaxStatsdPacket + 1;
  std::vector<char> bufs(kBatch * kBuf);
  mmsghdr msgs[kBatch];
  iovec iovs[kBatch];
  epoll_event evs[64];
  while (!stop_) {
    int n = epoll_wait(epfd_, evs, 64, -1);
    if (n < 0) continue;
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == wake_fd_) continue;
      // Held while a batch is between the socket and the aggregator (DrainInstance).
      std::lock_guard<std::mutex> receiving(recv_mu_);
      for (;;) {
        for (int k = 0; k < kBatch; ++k) {
          iovs[k] = {bufs.data() + k * kBuf, kBuf};
          msgs[k].msg_hdr = {};
          msgs[k].msg_hdr.msg_iov = &iovs[k];
          msgs[k].msg_hdr.msg_iovlen = 1;
        }
        int got = recvmmsg(fd, msgs, kBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) break;
        std::lock_guard<std::mutex> l(mu_);
        for (int k = 0; k < got; ++k) {
          const char* data = bufs.data() + k * kBuf;
          size_t len = msgs[k].msg_len;
          if (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) len = kBuf;  // counted as too long
          const Source* src = nullptr;
          if (auto o = owner_.find(fd); o != owner_.end()) {
            auto it = sources_.find(o->second);
            if (it != sources_.end()) src = &it->second;
          }
          if (!src) {
            counters_.packets++;
            counters_.unattributed_packets++;
            continue;
          }
          Ingest(*src, data, len);
        }
      }
    }
  }
}

void MetricsGateway::FlushLoop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    flush_cv_.wait_for(l, std::chrono::milliseconds(opts_.flush_interval_ms), [this] { return stop_.load(); });
    if (stop_) break;
    l.unlock();
    FlushNow();
    l.lock();
  }
}

static std::string PromName(const std::string& n) {
  std::string out = "kiln_statsd_";
  for (char c : n) out.push_back(isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return out;
}

static std::string PromEscape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void MetricsGateway::FlushNow() {
  std::vector<MetricPoint> points;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Instances being closed: take what is still queued on their sockets first.
    for (auto& [id, src] : sources_)
      if (src.closing) DrainQueued(src);
    points = agg_.Flush(clock_.NowMs());
    for (const auto& p : points) {
      std::string labels = "stat=\"" + p.stat + "\"";
      std::stringstream tags(p.tags);
      std::string tag;
      while (std::getline(tags, tag, ',')) {
        auto c = tag.find(':');
        std::string k = tag.substr(0, c);
        for (char& ch : k)
          if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
        if (k.empty() || isdigit(static_cast<unsigned char>(k[0]))) k.insert(0, 1, '_');
        labels.append(",").append(k).append("=\"");
        labels.append(PromEscape(c == std::string::npos ? "" : tag.substr(c + 1))).append("\"");
      }
      std::string series = PromName(p.name);
      series.append("{").append(labels).append("}");
      latest_[series] = {p.job_id, p.value};
    }
    // Instances marked closing have had their last flush.
    std::set<std::string> released_jobs;
    for (auto it = sources_.begin(); it != sources_.end();) {
      Source& src = it->second;
      if (!src.closing) {
        ++it;
        continue;
      }
      for (int fd : {src.udp_fd, src.unix_fd}) {
        if (fd < 0) continue;
        epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        owner_.erase(fd);
      }
      if (!src.unix_path.empty()) unlink(src.unix_path.c_str());
      released_jobs.insert(src.job_id);
      it = sources_.erase(it);
    }
    // A job whose last instance is gone: its series were flushed above; forget them.
    for (const auto& [id, src] : sources_) released_jobs.erase(src.job_id);
    for (const auto& job : released_jobs) {
      agg_.DropJob(job);
      for (auto it = latest_.begin(); it != latest_.end();) it = it->second.job_id == job ? latest_.erase(it) : ++it;
    }
  }
  if (!points.empty() && sink_) sink_(points);
}

GatewayCounters MetricsGateway::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  return counters_;
}

std::set<std::string> MetricsGateway::ExposedJobs() const {
  std::lock_guard<std::mutex> l(mu_);
  std::set<std::string> out;
  for (const auto& [series, latest] : latest_) out.insert(latest.job_id);
  return out;
}

std::string MetricsGateway::PrometheusText(const std::function<bool(const std::string&)>& show_job) const {
  std::lock_guard<std::mutex> l(mu_);
  std::string out;
  out +=
      "# TYPE kiln_statsd_packets_total counter\nkiln_statsd_packets_total " + std::to_string(counters_.packets) + "\n";
  out += "# TYPE kiln_statsd_lines_total counter\nkiln_statsd_lines_total " + std::to_string(counters_.lines) + "\n";
  out += "# TYPE kiln_statsd_unattributed_packets_total counter\nkiln_statsd_unattributed_packets_total " +
         std::to_string(counters_.unattributed_packets) + "\n";
  out += "# TYPE kiln_statsd_bad_lines_total counter\n";
  for (const auto& [reason, n] : counters_.bad_lines)
    out += "kiln_statsd_bad_lines_total{reason=\"" + reason + "\"} " + std::to_string(n) + "\n";
  std::string last_name;
  for (const auto& [series, latest] : latest_) {
    if (show_job && !show_job(latest.job_id)) continue;
    const double v = latest.value;
    std::string name = series.substr(0, series.find('{'));
    if (name != last_name) out += "# TYPE " + name + " gauge\n";
    last_name = name;
    char buf[64];
    snprintf(buf, sizeof(buf), "%.17g", v);
    out += series + " " + buf + "\n";
  }
  return out;
}

}  // namespace kiln
