// kiln-entrypoint [--] command...: see src/entrypoint.
#include "entrypoint/entrypoint.h"

int main(int argc, char** argv) {
  return kiln::RunEntrypoint(argc, argv);
}
