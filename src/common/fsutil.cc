#include "common/fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kiln {

Status WriteFileAtomic(const std::string& path, const std::string& data, int mode, Sync sync) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  // The directory may be one a job writes to (its /opt/ml): never write through a
  // file or symlink someone planted at the temporary name. unlink removes a planted
  // name itself, and O_EXCL | O_NOFOLLOW refuses one planted again in between.
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return Internal("open " + tmp + ": " + strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return Internal("write " + tmp + ": " + strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  if (sync == Sync::kFsync) fsync(fd);
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return Internal("rename " + path + ": " + strerror(e));
  }
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Internal("mkdir " + path + ": " + ec.message());
  return Status::Ok();
}

std::string SanitizeUtf8(const std::string& s) {
  std::string dumped = nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(dumped).get<std::string>();
}

std::string TruncateUtf8(const std::string& s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // s[n] starts the cut-off part
  return s.substr(0, n);
}

Result<std::string> FileUriToPath(const std::string& uri) {
  if (uri.rfind("file://", 0) == 0) return uri.substr(7);
  if (uri.find("://") != std::string::npos) return Status(Code::kInvalidArgument, "unsupported URI scheme in " + uri);
  return uri;
}

}  // namespace kiln

namespace kiln {

std::optional<std::string> RelativeBeneath(const std::string& root, const std::string& path) {
  if (root.empty()) return std::nullopt;
  std::string r = std::filesystem::path(root).lexically_normal().string();
  std::string p = std::filesystem::path(path).lexically_normal().string();
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  if (p == r) return std::string();
  if (r == "/") return p.size() > 1 && p[0] == '/' ? std::optional<std::string>(p.substr(1)) : std::nullopt;
  if (p.size() > r.size() && p.compare(0, r.size(), r) == 0 && p[r.size()] == '/') return p.substr(r.size() + 1);
  return std::nullopt;
}

Result<int> OpenPathBeneath(const std::string& root, const std::string& relative) {
  int dir = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return NotFound(root + ": " + strerror(errno));
  if (relative.empty()) return dir;
  struct open_how how {};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(syscall(SYS_openat2, dir, relative.c_str(), &how, sizeof(how)));
  int err = errno;
  close(dir);
  if (fd >= 0) {
    struct stat st {};
    // O_PATH without O_NOFOLLOW would return a final symlink itself; refuse it.
    if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
      close(fd);
      return Status(Code::kFailedPrecondition, root + "/" + relative + " is a symlink");
    }
    return fd;
  }
  if (err == ENOENT) return NotFound(root + "/" + relative + ": no such file or directory");
  return Status(Code::kFailedPrecondition, root + "/" + relative + ": refused (" + strerror(err) +
                                               "; symlinks and paths leaving the root are not followed)");
}

Status MakeDirsBeneath(const std::string& root, const std::string& relative, const DirOwner& owner, OwnLeaf leaf) {
  int dir = open(root.c_str(), O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return NotFound(root + ": " + strerror(errno));
  std::string walked = root;
  size_t pos = 0;
  Status result = Status::Ok();
  while (pos <= relative.size()) {
    size_t slash = relative.find('/', pos);
    if (slash == std::string::npos) slash = relative.size();
    std::string comp = relative.substr(pos, slash - pos);
    pos = slash + 1;
    if (comp.empty() || comp == ".") {
      if (slash == relative.size()) break;
      continue;
    }
    walked += "/" + comp;
    if (comp == "..") {
      result = InvalidArgument("path", walked + ": '..' is not allowed");
      break;
    }
    const bool last = slash >= relative.size();
    bool created = mkdirat(dir, comp.c_str(), 0755) == 0;
    if (!created && errno != EEXIST) {
      result = Internal("mkdir " + walked + ": " + strerror(errno));
      break;
    }
    int next = openat(dir, comp.c_str(), O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      result = Status(Code::kFailedPrecondition,
                      walked + " is not a directory (" + strerror(errno) + "; symlinks are not followed)");
      break;
    }
    close(dir);
    dir = next;
    if ((created || leaf == OwnLeaf::kWholePath || (last && leaf == OwnLeaf::kAlways)) &&
        fchown(dir, owner.uid, owner.gid) != 0) {
      result = Internal("chown " + walked + ": " + strerror(errno));
      break;
    }
  }
  close(dir);
  return result;
}

Result<std::string> ReadFileBeneath(const std::string& root, const std::string& relative, size_t max) {
  int dir = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return NotFound(root + ": " + strerror(errno));
  struct open_how how {};
  how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  int fd = static_cast<int>(syscall(SYS_openat2, dir, relative.c_str(), &how, sizeof(how)));
  int err = errno;
  close(dir);
  if (fd < 0) {
    if (err == ENOENT) return NotFound(root + "/" + relative + " does not exist");
    return Status(Code::kFailedPrecondition,
                  root + "/" + relative + " refused (" + strerror(err) + "): it is not a plain file beneath " + root);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status(Code::kFailedPrecondition, root + "/" + relative + " is not a regular file");
  }
  std::string out(max, '\0');
  size_t got = 0;
  while (got < max) {
    ssize_t n = read(fd, out.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  out.resize(got);
  return out;
}

namespace {

// Empties the directory `fd` (which it closes), at most `depth` levels deep.
Status EmptyDirectory(int fd, int depth) {
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return Status(Code::kInternal, std::string("fdopendir: ") + strerror(errno));
  }
  Status first;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (unlinkat(dirfd(d), name.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR && errno != EPERM) {
      if (first.ok()) first = Status(Code::kInternal, "unlink " + name + ": " + strerror(errno));
      continue;
    }
    if (depth <= 0) {
      if (first.ok()) first = Status(Code::kFailedPrecondition, "directory tree too deep at " + name);
      continue;
    }
    const int sub = openat(dirfd(d), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      if (errno != ENOENT && first.ok()) first = Status(Code::kInternal, "open " + name + ": " + strerror(errno));
      continue;
    }
    Status st = EmptyDirectory(sub, depth - 1);
    if (!st.ok() && first.ok()) first = st;
    if (unlinkat(dirfd(d), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT && first.ok())
      first = Status(Code::kInternal, "rmdir " + name + ": " + strerror(errno));
  }
  closedir(d);
  return first;
}

}  // namespace

Status RemoveTreeNoFollow(const std::string& path, int max_depth) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();
    if (errno == ENOTDIR || errno == ELOOP)  // a file or a symlink: remove the entry itself
      return unlink(path.c_str()) == 0 || errno == ENOENT
                 ? Status::Ok()
                 : Status(Code::kInternal, "unlink " + path + ": " + strerror(errno));
    return Status(Code::kInternal, "open " + path + ": " + strerror(errno));
  }
  KILN_RETURN_IF_ERROR(EmptyDirectory(fd, max_depth));
  if (rmdir(path.c_str()) != 0 && errno != ENOENT)
    return Status(Code::kInternal, "rmdir " + path + ": " + strerror(errno));
  return Status::Ok();
}

}  // namespace kiln
