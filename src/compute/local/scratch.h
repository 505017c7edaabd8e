#pragma once
// Per-instance disk quotas: each instance's /opt/ml is a btrfs subvolume of a
// "scratch pool" with a qgroup limit of the instance's volume size, so a job
// that writes more than it asked for gets EDQUOT, and the pool (a filesystem of
// its own) keeps a full job from filling the disk of kilnd and the other jobs.
//
// The pool is a btrfs filesystem mounted at <data>/scratch: one the operator
// mounted there, or kilnd's own image (<data>/scratch.img, sparse) that
// PrepareScratchPool formats and loop-mounts. This kernel has no CONFIG_QUOTA,
// so ext4 and XFS project quotas are out; btrfs qgroups need neither.
#include <cstdint>
#include <string>

#include "common/fsutil.h"
#include "common/status.h"

namespace kiln::scratch {

struct PoolOptions {
  std::string dir;        // the mount point: <data>/scratch
  std::string image;      // <data>/scratch.img: formatted and mounted when dir is not btrfs yet
  int64_t image_gib = 0;  // the image's (sparse) size, for a new image
  uint32_t gid = 0;       // the pool root is root:<gid> 0710, like the data dir
};

// Makes `o.dir` a btrfs filesystem with quotas on: uses it if it already is one
// (kilnd restarted, or the operator's), else mounts o.image (formatting a new
// one first). kFailedPrecondition saying what is missing (btrfs-progs, loop
// devices, the btrfs module) when it cannot.
Status PreparePool(const PoolOptions& o);

// True if `path` is on a btrfs filesystem.
bool IsBtrfs(const std::string& path);

// Creates the subvolume `name` in `pool` (idempotent), limits it to `bytes`
// (its qgroup's referenced bytes) and gives it to `owner`, mode 0700.
Status Create(const std::string& pool, const std::string& name, uint64_t bytes, const DirOwner& owner);

// Deletes the subvolume `name` and everything in it (and then its qgroup, best
// effort: the kernel frees the space in the background). Absent is fine.
Status Remove(const std::string& pool, const std::string& name);

struct Usage {
  uint64_t used_bytes = 0;
  uint64_t limit_bytes = 0;  // 0: no limit
};
// What the subvolume at `path` uses of its limit, after committing what was
// written (the counts are updated at commit). kNotFound when `path` is not a
// subvolume with a qgroup.
Result<Usage> UsageOf(const std::string& path);

}  // namespace kiln::scratch
