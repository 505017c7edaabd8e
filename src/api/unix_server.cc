#include "api/unix_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln {

UnixHttpServer::~UnixHttpServer() {
  Shutdown();
}

Status UnixHttpServer::Start(const std::string& path) {
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(ua.sun_path))
    return InvalidArgument("runtime_socket",
                           "socket path must be 1.." + std::to_string(sizeof(ua.sun_path) - 1) + " bytes: " + path);
  memcpy(ua.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Unavailable(std::string("socket: ") + strerror(errno));
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());  // a previous kilnd's
  if (bind(fd, reinterpret_cast<sockaddr*>(&ua), sizeof(ua)) != 0 || chmod(path.c_str(), 0666) != 0 ||
      ::listen(fd, 128) != 0) {
    Status s = Unavailable("cannot listen on " + path + ": " + strerror(errno));
    close(fd);
    return s;
  }
  path_ = path;
  svr_sock_ = fd;
  thread_ = std::thread([this] { listen_after_bind(); });
  return Status::Ok();
}

void UnixHttpServer::Shutdown() {
  if (!thread_.joinable()) return;
  // stop() does nothing until the loop runs; it starts at once, so this is short.
  for (int i = 0; i < 1000 && !is_running(); ++i) usleep(1000);
  stop();
  thread_.join();
  unlink(path_.c_str());
}

}  // namespace kiln
