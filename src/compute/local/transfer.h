#pragma once
// Copies a directory tree between an instance's volume and the host, for files a
// job wrote (or may have planted): kiln-supervisor publishes the outputs,
// uploads and checkpoints that a job staged on its quota-limited volume, and
// seeds the volume with the job's checkpoints before it starts.
//
// Hostile input on both sides: no symlink is followed (a symlink, FIFO, socket
// or device is skipped and counted), depth and entry count are bounded, and the
// caller runs it as the job's user (fsuid), so it writes nothing the job could
// not have written itself.
#include <cstdint>
#include <string>

#include "common/status.h"

namespace kiln::transfer {

struct Limits {
  int max_depth = 64;
  uint64_t max_entries = 1000000;
};

struct Totals {
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t unchanged = 0;  // already there, as new or newer
  uint64_t skipped = 0;    // symlinks, special files, entries the destination holds as a symlink
};

// Copies what is under the directory `src` into the directory `dst` (both
// descriptors; O_PATH is fine), creating directories and replacing regular
// files of the same name, unless the one there is as new or newer: the same
// size and modification time (a copy carries it over), or a later one. kResourceExhausted when the destination is out
// of space or quota; kFailedPrecondition past a limit; kInternal for I/O errors.
Status CopyTree(int src, int dst, const Limits& limits, Totals* totals);

}  // namespace kiln::transfer
