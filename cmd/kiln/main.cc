// kiln: the command-line client. See src/cli.
#include "cli/cli.h"

int main(int argc, char** argv) {
  return kiln::RunCli(argc, argv);
}
