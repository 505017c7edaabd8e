#pragma once
namespace kiln {
// argv: kiln-entrypoint [--] command [args...]. Returns the process exit code:
// the user command's, 128+signal if it was killed, 127 if it could not be found.
int RunEntrypoint(int argc, char** argv);
}  // namespace kiln
