#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace kiln {
enum class Sync {
  kFsync,   // survives power loss (fsync before rename)
  kNoSync,  // survives process crashes only; for files whose owner dies with the machine
};
// Writes a file so that readers see the old or the new content, never a mix:
// write to a temp file, optionally fsync, rename. `mode` applies to the new file.
Status WriteFileAtomic(const std::string& path, const std::string& data, int mode = 0644, Sync sync = Sync::kFsync);
Result<std::string> ReadFile(const std::string& path);
Status MakeDirs(const std::string& path);
// Reads at most `max` bytes of the regular file `relative` under the directory
// `root`, for files a job may have planted: the path is resolved beneath `root`
// and never through a symlink or a magic link (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), and anything but a regular file is
// refused. kNotFound if absent; kFailedPrecondition for a symlink, an escape or a
// non-regular file (a FIFO would block a reader that trusted it).
Result<std::string> ReadFileBeneath(const std::string& root, const std::string& relative, size_t max);
// Opens `relative` beneath `root` (O_PATH, for a bind or an fchown) the same way:
// no symlink, no magic link, no escape. "" opens root itself. The caller closes
// the descriptor. kNotFound if absent; kFailedPrecondition for a symlink or escape.
Result<int> OpenPathBeneath(const std::string& root, const std::string& relative);
// Who owns the directories MakeDirsBeneath creates.
struct DirOwner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};
enum class OwnLeaf {
  kCreatedOnly,  // chown only the directories this call created
  kAlways,       // also chown the last directory if it already existed
  kWholePath,    // chown every directory on the path, existing or not: for a tree
                 // that is wholly the owner's (an instance's /opt/ml), so a launch
                 // interrupted between mkdir and chown is repaired by the next one
};
// Creates `relative` beneath `root` one component at a time, never following a
// symlink (a component that is one is kFailedPrecondition), and gives the
// directories it creates (and the leaf, with kAlways) to `owner`. Mode 0755.
Status MakeDirsBeneath(const std::string& root, const std::string& relative, const DirOwner& owner, OwnLeaf leaf);
// Deletes `path` and everything beneath it, for trees a job wrote: every level
// is opened with O_NOFOLLOW | O_DIRECTORY relative to its parent's descriptor,
// so a symlink (even one swapped in meanwhile) is removed, never followed.
// Absent is Ok; deeper than `max_depth` levels is kFailedPrecondition (what was
// reached is still deleted).
Status RemoveTreeNoFollow(const std::string& path, int max_depth = 256);
// `path` relative to `root` if it lies beneath it, compared lexically after
// normalization ("" for root itself); nullopt if not, or if root is empty.
std::optional<std::string> RelativeBeneath(const std::string& root, const std::string& path);
// Strips "file://" from a URI; plain paths pass through. Other schemes fail.
Result<std::string> FileUriToPath(const std::string& uri);
// Replaces invalid UTF-8 sequences with U+FFFD, so text from programs (stderr
// tails, failure files cut at 1024 bytes) can travel in JSON.
std::string SanitizeUtf8(const std::string& s);
// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string TruncateUtf8(const std::string& s, size_t max);
}  // namespace kiln
