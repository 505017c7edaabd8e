#include "compute/local/transfer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/fd.h"

namespace kiln::transfer {
namespace {

Status IoError(const std::string& what, int err) {
  if (err == ENOSPC || err == EDQUOT) return Status(Code::kResourceExhausted, what + ": " + strerror(err));
  return Internal(what + ": " + strerror(err));
}

// Copies the bytes of `in` to `out`: copy_file_range (a reflink where the
// filesystem can), else read/write.
Status CopyBytes(int in, int out, const std::string& name, Totals* t) {
  for (;;) {
    ssize_t n = copy_file_range(in, nullptr, out, nullptr, size_t{1} << 30, 0);
    if (n == 0) return Status::Ok();
    if (n > 0) {
      t->bytes += static_cast<uint64_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return IoError(name, errno);
    break;
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(in, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError(name, errno);
    if (n == 0) return Status::Ok();
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf.data() + off, static_cast<size_t>(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return IoError(name, errno);
      off += w;
    }
    t->bytes += static_cast<uint64_t>(n);
  }
}

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

bool Newer(const timespec& a, const timespec& b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

Status CopyFile(int src, int dst, const char* name, Totals* t) {
  // O_NONBLOCK: a FIFO swapped in since the listing must not block us.
  UniqueFd in(openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  struct stat st {};
  if (in.get() < 0 || fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    ++t->skipped;
    return Status::Ok();
  }
  // Unchanged since the last copy (same size and modification time, which a
  // copy carries over): checkpoints seeded and published again cost nothing.
  // And the newer file wins: a file seeded at the start and left alone never
  // overwrites what another instance (or attempt) wrote there since.
  struct stat old {};
  if (fstatat(dst, name, &old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(old.st_mode) &&
      ((old.st_size == st.st_size && SameTime(old.st_mtim, st.st_mtim)) || Newer(old.st_mtim, st.st_mtim))) {
    ++t->unchanged;
    return Status::Ok();
  }
  UniqueFd out(
      openat(dst, name, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, st.st_mode & 0755));
  if (out.get() < 0) {
    if (errno == ELOOP || errno == ENXIO || errno == EISDIR) {  // a symlink, FIFO or directory of that name
      ++t->skipped;
      return Status::Ok();
    }
    return IoError(std::string("create ") + name, errno);
  }
  struct stat ost {};
  if (fstat(out.get(), &ost) != 0 || !S_ISREG(ost.st_mode)) {
    ++t->skipped;
    return Status::Ok();
  }
  KILN_RETURN_IF_ERROR(CopyBytes(in.get(), out.get(), name, t));
  const timespec times[2] = {st.st_atim, st.st_mtim};
  if (futimens(out.get(), times) != 0) return IoError(std::string("set times of ") + name, errno);
  ++t->files;
  return Status::Ok();
}

Status Copy(int src, int dst, int depth, const Limits& limits, Totals* t, uint64_t* entries) {
  if (depth > limits.max_depth)
    return Status(Code::kFailedPrecondition, "deeper than " + std::to_string(limits.max_depth) + " directories");
  // A descriptor of our own to list (src may be O_PATH, and closedir closes it).
  int listing = openat(src, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (listing < 0) return IoError("open directory", errno);
  DIR* d = fdopendir(listing);
  if (!d) {
    close(listing);
    return IoError("list directory", errno);
  }
  Status result = Status::Ok();
  while (result.ok()) {
    errno = 0;
    dirent* e = readdir(d);
    if (!e) {
      if (errno != 0) result = IoError("list directory", errno);
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (++*entries > limits.max_entries) {
      result = Status(Code::kFailedPrecondition, "more than " + std::to_string(limits.max_entries) + " entries");
      break;
    }
    struct stat st {};
    if (fstatat(src, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ++t->skipped;  // gone since the listing
      continue;
    }
    if (S_ISREG(st.st_mode)) {
      result = CopyFile(src, dst, e->d_name, t);
    } else if (S_ISDIR(st.st_mode)) {
      if (mkdirat(dst, e->d_name, 0755) != 0 && errno != EEXIST) {
        result = IoError(std::string("mkdir ") + e->d_name, errno);
        break;
      }
      UniqueFd from(openat(src, e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd to(openat(dst, e->d_name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (from.get() < 0 || to.get() < 0) {  // swapped for a symlink, or the destination holds one
        ++t->skipped;
        continue;
      }
      result = Copy(from.get(), to.get(), depth + 1, limits, t, entries);
    } else {
      ++t->skipped;  // symlinks, FIFOs, sockets, devices
    }
  }
  closedir(d);
  return result;
}

}  // namespace

Status CopyTree(int src, int dst, const Limits& limits, Totals* totals) {
  uint64_t entries = 0;
  return Copy(src, dst, 0, limits, totals, &entries);
}

}  // namespace kiln::transfer
