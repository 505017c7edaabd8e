#pragma once
#include <string>

namespace kiln {

struct KilndOptions {
  std::string data_dir = "./kiln-data";
  std::string listen = "127.0.0.1:8470";
  std::string config_path;  // optional YAML/JSON: instance_types, images
  std::string backend = "local";
  std::string bin_dir;  // where kiln-supervisor and kiln-entrypoint live
  bool durable_fsync = false;
  int resync_seconds = 60;
  int statsd_flush_ms = 10000;
  std::string master_key_path;  // default <data-dir>/master.key
};

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int RunKilnd(const KilndOptions& opts);

}  // namespace kiln
