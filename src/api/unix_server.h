#pragma once
// An httplib::Server that listens on a Unix stream socket instead of TCP: kilnd's
// runtime API for instances that have a network of their own (the socket is
// bound into each sandbox). The socket file is replaced if stale and made
// connectable by any uid (the job's user); who reaches the file is decided by
// the directory it lies in, and what a caller may do by its instance token.
#include <httplib.h>

#include <string>
#include <thread>

#include "common/status.h"

namespace kiln {

class UnixHttpServer : public httplib::Server {
 public:
  ~UnixHttpServer() override;
  // Binds `path` and starts serving on a thread of its own.
  Status Start(const std::string& path);
  // Stops serving and removes the socket file. Idempotent.
  void Shutdown();

 private:
  std::string path_;
  std::thread thread_;
};

}  // namespace kiln
