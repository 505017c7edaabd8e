// kiln-supervisor --dir INSTANCE_DIR [--ready-fd N]: runs an instance (see
// src/compute/local/supervisor.h).
// kiln-supervisor --slurm-prefix PREFIX: the same, as a Slurm task, for the
//   instance directory PREFIX<SLURM_PROCID> (the Slurm backend's batch script).
// kiln-supervisor --stop (--dir INSTANCE_DIR | --slurm-prefix PREFIX): asks the
//   running supervisor of that instance to stop it (SIGTERM to that process
//   only, after kilnd wrote the grace period to its `stop` file).
#include <cstdlib>
#include <cstring>
#include <string>

#include "compute/local/supervisor.h"

int main(int argc, char** argv) {
  std::string dir, prefix;
  int ready = -1;
  bool stop = false;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--stop")) {
      stop = true;
    } else if (i + 1 < argc && !strcmp(argv[i], "--dir")) {
      dir = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--slurm-prefix")) {
      prefix = argv[++i];
    } else if (i + 1 < argc && !strcmp(argv[i], "--ready-fd")) {
      ready = atoi(argv[++i]);
    } else {
      return 2;
    }
  }
  if (!prefix.empty()) {
    const char* task = getenv("SLURM_PROCID");
    if (task == nullptr || *task == 0 || strspn(task, "0123456789") != strlen(task) || strlen(task) > 6) return 2;
    dir = prefix + task;
  }
  if (dir.empty()) return 2;
  if (stop) return kiln::RequestStop(dir);
  return kiln::RunSupervisor(dir, ready);
}
