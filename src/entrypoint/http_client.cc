#include "entrypoint/http_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/fd.h"

namespace kiln {
namespace {

bool WaitFor(int fd, short events, int64_t deadline_ns) {
  int64_t left_ms = (deadline_ns - MonotonicNs()) / 1000000;
  if (left_ms <= 0) return false;
  pollfd p{fd, events, 0};
  int r;
  do {
    r = poll(&p, 1, static_cast<int>(left_ms));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s;
}

// Decodes a chunked body in place; false if malformed.
bool Dechunk(const std::string& in, std::string* out) {
  size_t pos = 0;
  out->clear();
  for (;;) {
    size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos) return false;
    size_t n = strtoul(in.substr(pos, eol - pos).c_str(), nullptr, 16);
    pos = eol + 2;
    if (n == 0) return true;
    if (pos + n > in.size()) return false;
    out->append(in, pos, n);
    pos += n + 2;
  }
}

}  // namespace

Result<HttpResponse> HttpCall(const std::string& host, int port, const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers, const std::string& body,
                              int timeout_ms) {
  const int64_t deadline = MonotonicNs() + int64_t{timeout_ms} * 1000000;
  // "unix:<path>": kilnd's runtime socket, bound into the instance (its own
  // network namespace reaches nothing else of the host).
  const bool unix_socket = host.rfind("unix:", 0) == 0;
  int rc = -1;
  UniqueFd fd;
  if (unix_socket) {
    sockaddr_un ua{};
    ua.sun_family = AF_UNIX;
    const std::string path = host.substr(5);
    if (path.empty() || path.size() >= sizeof(ua.sun_path)) return Unavailable("bad socket path " + path);
    memcpy(ua.sun_path, path.data(), path.size());
    fd = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    rc = fd.get() < 0 ? -1 : connect(fd.get(), reinterpret_cast<sockaddr*>(&ua), sizeof(ua));
    if (fd.get() < 0) return Unavailable(std::string("socket: ") + strerror(errno));
    if (rc != 0 && errno != EINPROGRESS && errno != EAGAIN)
      return Unavailable("connect " + path + ": " + strerror(errno));
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* ai = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &ai) != 0 || !ai)
      return Unavailable("cannot resolve " + host);
    fd = UniqueFd(socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    rc = fd.get() < 0 ? -1 : connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (fd.get() < 0) return Unavailable(std::string("socket: ") + strerror(errno));
    if (rc != 0 && errno != EINPROGRESS) return Unavailable(std::string("connect: ") + strerror(errno));
  }
  if (rc != 0) {
    if (!WaitFor(fd.get(), POLLOUT, deadline)) return Unavailable("connect timed out");
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return Unavailable(std::string("connect: ") + strerror(err));
  }
  int one = 1;
  if (!unix_socket) setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + (unix_socket ? std::string("localhost") : host) +
                    "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req.append(k).append(": ").append(v).append("\r\n");
  if (!body.empty() || method == "POST" || method == "PUT")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n";
  req += body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!WaitFor(fd.get(), POLLOUT, deadline)) return Unavailable("send timed out");
    } else {
      return Unavailable(std::string("send: ") + strerror(errno));
    }
  }

  std::string in;
  size_t header_end = std::string::npos;
  long long content_length = -1;
  HttpResponse res;
  char buf[65536];
  for (;;) {
    if (header_end != std::string::npos && content_length >= 0 &&
        in.size() >= header_end + 4 + static_cast<size_t>(content_length))
      break;
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;  // server closed: the body ends here
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!WaitFor(fd.get(), POLLIN, deadline)) return Unavailable("response timed out");
      continue;
    } else {
      return Unavailable(std::string("recv: ") + strerror(errno));
    }
    if (header_end == std::string::npos && (header_end = in.find("\r\n\r\n")) != std::string::npos) {
      std::string head = in.substr(0, header_end);
      size_t line_end = head.find("\r\n");
      std::string status_line = head.substr(0, line_end);
      if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) return Internal("malformed status line");
      res.status = atoi(status_line.c_str() + 9);
      size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
      while (pos < head.size()) {
        size_t e = head.find("\r\n", pos);
        if (e == std::string::npos) e = head.size();
        std::string line = head.substr(pos, e - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          std::string v = line.substr(colon + 1);
          while (!v.empty() && v[0] == ' ') v.erase(0, 1);
          res.headers[Lower(line.substr(0, colon))] = v;
        }
        pos = e + 2;
      }
      if (res.headers.count("content-length")) content_length = atoll(res.headers["content-length"].c_str());
    }
  }
  if (header_end == std::string::npos) return Internal("response ended before its headers");
  std::string raw = in.substr(header_end + 4);
  if (Lower(res.headers["transfer-encoding"]) == "chunked") {
    if (!Dechunk(raw, &res.body)) return Internal("malformed chunked body");
  } else {
    if (content_length >= 0 && raw.size() < static_cast<size_t>(content_length)) return Unavailable("truncated body");
    if (content_length >= 0) raw.resize(static_cast<size_t>(content_length));
    res.body = std::move(raw);
  }
  return res;
}

}  // namespace kiln
