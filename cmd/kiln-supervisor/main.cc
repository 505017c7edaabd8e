// kiln-supervisor --dir INSTANCE_DIR [--ready-fd N]: see src/compute/local/supervisor.h.
#include <cstdlib>
#include <cstring>
#include <string>

#include "compute/local/supervisor.h"

int main(int argc, char** argv) {
  std::string dir;
  int ready = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--dir"))
      dir = argv[i + 1];
    else if (!strcmp(argv[i], "--ready-fd"))
      ready = atoi(argv[i + 1]);
  }
  if (dir.empty()) return 2;
  return kiln::RunSupervisor(dir, ready);
}
