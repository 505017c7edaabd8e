#include "compute/local/scratch.h"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/fd.h"
#include "common/process.h"

namespace kiln::scratch {
namespace {

Status Errno(const std::string& what) {
  return Internal(what + ": " + strerror(errno));
}

Status EnableQuota(const std::string& dir) {
  UniqueFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return Errno("open " + dir);
  btrfs_ioctl_quota_ctl_args args{};
  args.cmd = BTRFS_QUOTA_CTL_ENABLE;
  if (ioctl(fd.get(), BTRFS_IOC_QUOTA_CTL, &args) != 0) return Errno("enable btrfs quotas on " + dir);
  return Status::Ok();
}

// The subvolume's id (its qgroup is 0/<id>) and its filesystem's uuid.
Status Identify(int fd, uint64_t* subvol, std::string* fsid) {
  btrfs_ioctl_ino_lookup_args lookup{};
  lookup.objectid = BTRFS_FIRST_FREE_OBJECTID;
  if (ioctl(fd, BTRFS_IOC_INO_LOOKUP, &lookup) != 0) return Errno("BTRFS_IOC_INO_LOOKUP");
  *subvol = lookup.treeid;
  btrfs_ioctl_fs_info_args info{};
  if (ioctl(fd, BTRFS_IOC_FS_INFO, &info) != 0) return Errno("BTRFS_IOC_FS_INFO");
  char uuid[37];
  const unsigned char* u = info.fsid;
  snprintf(uuid, sizeof(uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
           u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  *fsid = uuid;
  return Status::Ok();
}

Result<uint64_t> ReadCount(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = strtoull(text->c_str(), &end, 10);
  if (errno != 0 || end == text->c_str()) return Status(Code::kDataLoss, path + ": not a number");
  return static_cast<uint64_t>(v);
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= BTRFS_PATH_NAME_MAX && name != "." && name != ".." &&
         name.find('/') == std::string::npos;
}

}  // namespace

bool IsBtrfs(const std::string& path) {
  struct statfs fs {};
  return statfs(path.c_str(), &fs) == 0 && static_cast<uint64_t>(fs.f_type) == BTRFS_SUPER_MAGIC;
}

Status PreparePool(const PoolOptions& o) {
  KILN_RETURN_IF_ERROR(MakeDirs(o.dir));
  struct stat st {};
  if (lstat(o.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status(Code::kFailedPrecondition, o.dir + " is not a directory");
  if (!IsBtrfs(o.dir)) {
    if (!IsBtrfs("/sys/fs/btrfs") && access("/sys/fs/btrfs", F_OK) != 0)
      return Status(Code::kFailedPrecondition, "this kernel has no btrfs (modprobe btrfs)");
    const char* mount = FindProgram({"/usr/bin/mount", "/bin/mount"});
    if (!mount) return Status(Code::kFailedPrecondition, "mount not found (apt install mount)");
    if (access(o.image.c_str(), F_OK) != 0) {
      const char* mkfs =
          FindProgram({"/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/bin/mkfs.btrfs", "/bin/mkfs.btrfs"});
      if (!mkfs) return Status(Code::kFailedPrecondition, "mkfs.btrfs not found (apt install btrfs-progs)");
      // Formatted under a temporary name: an image that exists is a formatted one.
      const std::string tmp = o.image + ".new";
      unlink(tmp.c_str());
      UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (fd.get() < 0) return Errno("create " + tmp);
      if (ftruncate(fd.get(), o.image_gib << 30) != 0) return Errno("size " + tmp);
      KILN_RETURN_IF_ERROR(
          RunProgram({mkfs, "-q", "-m", "single", "-L", "kiln-scratch", tmp}, {}, ProgramOutput::kDiscard));
      if (rename(tmp.c_str(), o.image.c_str()) != 0) return Errno("rename " + tmp);
    }
    // nosuid, nodev: nothing a job leaves here gains privileges or reaches a device.
    Status mounted = RunProgram({mount, "-t", "btrfs", "-o", "loop,nosuid,nodev", o.image, o.dir});
    if (!mounted.ok())
      return Status(Code::kFailedPrecondition,
                    mounted.message() + " (needs loop devices: /dev/loop-control, and the btrfs module)");
    if (!IsBtrfs(o.dir)) return Status(Code::kFailedPrecondition, o.dir + " is not btrfs after mounting " + o.image);
  }
  if (chown(o.dir.c_str(), 0, o.gid) != 0 || chmod(o.dir.c_str(), 0710) != 0) return Errno("chmod " + o.dir);
  return EnableQuota(o.dir);
}

Status Create(const std::string& pool, const std::string& name, uint64_t bytes, const DirOwner& owner) {
  if (!ValidName(name)) return InvalidArgument("instance", "not a subvolume name: " + name);
  UniqueFd parent(open(pool.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (parent.get() < 0) return Errno("open " + pool);
  btrfs_ioctl_vol_args args{};
  memcpy(args.name, name.data(), name.size());
  if (ioctl(parent.get(), BTRFS_IOC_SUBVOL_CREATE, &args) != 0 && errno != EEXIST)
    return Errno("create subvolume " + pool + "/" + name);
  UniqueFd sub(openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (sub.get() < 0) return Errno("open " + pool + "/" + name);
  uint64_t id = 0;
  std::string fsid;
  KILN_RETURN_IF_ERROR(Identify(sub.get(), &id, &fsid));
  if (id == BTRFS_FS_TREE_OBJECTID)  // a plain directory of that name, not a subvolume
    return Status(Code::kFailedPrecondition, pool + "/" + name + " is not a subvolume");
  btrfs_ioctl_qgroup_limit_args limit{};
  limit.qgroupid = 0;  // the subvolume of `sub`
  limit.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
  limit.lim.max_rfer = bytes;
  if (ioctl(sub.get(), BTRFS_IOC_QGROUP_LIMIT, &limit) != 0) return Errno("limit " + pool + "/" + name);
  if (fchown(sub.get(), owner.uid, owner.gid) != 0 || fchmod(sub.get(), 0700) != 0)
    return Errno("chown " + pool + "/" + name);
  return Status::Ok();
}

Status Remove(const std::string& pool, const std::string& name) {
  if (!ValidName(name)) return InvalidArgument("instance", "not a subvolume name: " + name);
  UniqueFd parent(open(pool.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (parent.get() < 0) return Errno("open " + pool);
  uint64_t id = 0;
  std::string fsid;
  {
    UniqueFd sub(openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (sub.get() < 0) return errno == ENOENT ? Status::Ok() : Errno("open " + pool + "/" + name);
    KILN_RETURN_IF_ERROR(Identify(sub.get(), &id, &fsid));
  }
  btrfs_ioctl_vol_args args{};
  memcpy(args.name, name.data(), name.size());
  if (ioctl(parent.get(), BTRFS_IOC_SNAP_DESTROY, &args) != 0 && errno != ENOENT)
    return Errno("delete subvolume " + pool + "/" + name);
  // Its qgroup: newer kernels drop it with the subvolume; older ones refuse while
  // the cleaner still frees its extents. Either way only a few bytes are left.
  btrfs_ioctl_qgroup_create_args drop{};
  drop.create = 0;
  drop.qgroupid = id;
  (void)ioctl(parent.get(), BTRFS_IOC_QGROUP_CREATE, &drop);
  return Status::Ok();
}

Result<Usage> UsageOf(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) return Status(Code::kNotFound, path + ": " + strerror(errno));
  if (!IsBtrfs(path)) return Status(Code::kNotFound, path + " is not on btrfs");
  uint64_t id = 0;
  std::string fsid;
  KILN_RETURN_IF_ERROR(Identify(fd.get(), &id, &fsid));
  // The counts in sysfs are those of the last commit.
  if (syncfs(fd.get()) != 0) return Errno("syncfs " + path);
  const std::string q = "/sys/fs/btrfs/" + fsid + "/qgroups/0_" + std::to_string(id) + "/";
  auto used = ReadCount(q + "referenced");
  if (!used.ok()) return Status(Code::kNotFound, "no qgroup for " + path + " (" + used.status().message() + ")");
  auto limit = ReadCount(q + "max_referenced");
  Usage u;
  u.used_bytes = *used;
  u.limit_bytes = limit.ok() ? *limit : 0;
  return u;
}

}  // namespace kiln::scratch
