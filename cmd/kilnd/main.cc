// kilnd: the Kiln manager service. Wiring only; see src/daemon.
#include <malloc.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>

#include "daemon/daemon.h"

int main(int argc, char** argv) {
  kiln::KilndOptions o;
  CLI::App app{"kilnd: the Kiln manager service"};
  app.add_option("--data-dir", o.data_dir, "state, logs and artifacts live here")->capture_default_str();
  app.add_option("--listen", o.listen, "HOST:PORT; port 0 picks a free one (written to DATA_DIR/kilnd.addr)")
      ->capture_default_str();
  app.add_option("--config", o.config_path, "YAML config: instance_types, images");
  app.add_option("--backend", o.backend, "compute backend")->capture_default_str();
  app.add_flag("--fsync", o.durable_fsync, "fsync every commit (synchronous=FULL)");
  app.add_option("--resync-seconds", o.resync_seconds, "safety-net resync period")->capture_default_str();
  app.add_option("--master-key", o.master_key_path, "secrets master key file (created 0600 if missing)");
  app.add_option("--statsd-flush-ms", o.statsd_flush_ms, "metrics gateway flush interval")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // Many short-lived HTTP worker threads would otherwise each grow a malloc arena.
  mallopt(M_ARENA_MAX, 2);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  self[n > 0 ? n : 0] = '\0';
  o.bin_dir = std::filesystem::path(self).parent_path().string();
  return kiln::RunKilnd(o);
}
