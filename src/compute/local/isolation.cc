#include "compute/local/isolation.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/btrfs.h>
#include <linux/mount.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/fd.h"
#include "common/process.h"

namespace kiln::isolation {
namespace {

Status Errno(const std::string& what) {
  return Internal(what + ": " + strerror(errno));
}

// Runs `ip` with `args`; its output goes to the supervisor's log.
Status Ip(std::vector<std::string> args) {
  const char* ip = FindProgram({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
  if (!ip) return Status(Code::kFailedPrecondition, "ip (iproute2) not found; apt install iproute2");
  args.insert(args.begin(), ip);
  return RunProgram(std::move(args));
}

bool Exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

// A datagram socket for the interface ioctls.
UniqueFd IoctlSocket() {
  return UniqueFd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
}

Status SetUp(int sock, const char* name) {
  ifreq ifr{};
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) return Errno(std::string("SIOCGIFFLAGS ") + name);
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) return Errno(std::string("SIOCSIFFLAGS ") + name);
  return Status::Ok();
}

}  // namespace

Result<int> DefaultSeccompFilter() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return Internal("seccomp_init failed");
  const uint32_t deny = SCMP_ACT_ERRNO(EPERM);
  // Denied outright: nothing a training or processing job needs, each a way out of
  // the sandbox or into the kernel's attack surface.
  static const char* const kDenied[] = {"mount",
                                        "umount",
                                        "umount2",
                                        "pivot_root",
                                        "chroot",
                                        "fsopen",
                                        "fsconfig",
                                        "fsmount",
                                        "fspick",
                                        "move_mount",
                                        "open_tree",
                                        "mount_setattr",
                                        "setns",
                                        "unshare",
                                        "init_module",
                                        "finit_module",
                                        "delete_module",
                                        "create_module",
                                        "query_module",
                                        "get_kernel_syms",
                                        "kexec_load",
                                        "kexec_file_load",
                                        "add_key",
                                        "request_key",
                                        "keyctl",
                                        "bpf",
                                        "perf_event_open",
                                        "userfaultfd",
                                        "io_uring_setup",
                                        "io_uring_enter",
                                        "io_uring_register",
                                        "swapon",
                                        "swapoff",
                                        "reboot",
                                        "acct",
                                        "quotactl",
                                        "quotactl_fd",
                                        "settimeofday",
                                        "clock_settime",
                                        "clock_adjtime",
                                        "adjtimex",
                                        "stime",
                                        "syslog",
                                        "lookup_dcookie",
                                        "open_by_handle_at",
                                        "name_to_handle_at",
                                        "nfsservctl",
                                        "uselib",
                                        "ustat",
                                        "sysfs",
                                        "_sysctl",
                                        "vhangup",
                                        "iopl",
                                        "ioperm",
                                        "kcmp"};
  auto fail = [&](const std::string& what) {
    seccomp_release(ctx);
    return Internal("seccomp: " + what);
  };
  for (const char* name : kDenied) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if (seccomp_rule_add(ctx, deny, nr, 0) != 0) return fail(std::string("rule for ") + name);
  }
  // clone with any namespace flag (a new user namespace above all) is denied, one
  // rule per flag. clone3 passes its flags in memory the filter cannot read: it
  // answers ENOSYS, and libc falls back to clone, which these rules check.
  for (uint64_t flag :
       {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP}) {
    if (seccomp_rule_add(ctx, deny, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)) != 0)
      return fail("rule for clone");
  }
  if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) != 0) return fail("rule for clone3");
  // New btrfs subvolumes (which an unprivileged user may create where it can
  // write): each has a qgroup of its own, outside the instance's disk quota.
  // The kernel reads the request as 32 bits; the rule ignores the upper ones.
  for (unsigned long request : {BTRFS_IOC_SUBVOL_CREATE, BTRFS_IOC_SUBVOL_CREATE_V2, BTRFS_IOC_SNAP_CREATE,
                                BTRFS_IOC_SNAP_CREATE_V2, BTRFS_IOC_SNAP_DESTROY, BTRFS_IOC_SNAP_DESTROY_V2}) {
    if (seccomp_rule_add(ctx, deny, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, request)) != 0)
      return fail("rule for ioctl");
  }
  // Raw and packet sockets need CAP_NET_RAW, which a job never has; AF_NETLINK
  // stays open for getifaddrs.
  int fd = memfd_create("kiln-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return fail(std::string("memfd_create: ") + strerror(errno));
  if (seccomp_export_bpf(ctx, fd) != 0) {
    close(fd);
    return fail("export");
  }
  seccomp_release(ctx);
  if (lseek(fd, 0, SEEK_SET) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK) != 0) {
    close(fd);
    return Errno("seal seccomp filter");
  }
  return fd;
}

Status BringLoopbackUp() {
  UniqueFd s = IoctlSocket();
  if (s.get() < 0) return Errno("socket");
  return SetUp(s.get(), "lo");
}

// No IPv6 on a job link: link-local fe80:: addresses would put the host (its
// services listening on [::]) within the instances' reach.
void DisableIpv6(const std::string& ifname) {
  const std::string path = "/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;  // no IPv6 in this kernel: nothing to disable
  ssize_t n = write(fd, "1", 1);
  (void)n;
  close(fd);
}

// Serializes the instances of one job (their supervisors) around its bridge, so
// one never deletes it while another is joining it. Held until destroyed.
class BridgeLock {
 public:
  explicit BridgeLock(const std::string& bridge) {
    mkdir(kDir, 0700);  // root's; exists after the first
    path_ = std::string(kDir) + "/" + bridge + ".lock";
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd_ >= 0) {
      while (flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  ~BridgeLock() {
    if (fd_ >= 0) close(fd_);  // releases the lock
  }
  // Unlinks the lock file (while holding it). A supervisor that opened it just
  // before locks a file nobody else will: it can only be creating the bridge,
  // which tolerates a concurrent creator.
  void Remove() { unlink(path_.c_str()); }
  BridgeLock(const BridgeLock&) = delete;
  BridgeLock& operator=(const BridgeLock&) = delete;

 private:
  static constexpr const char* kDir = "/run/kiln-bridges";
  std::string path_;
  int fd_ = -1;
};

Status CreateJobLink(const supervisor::JobLink& link, pid_t child) {
  if (!link.gateway.empty()) {  // kilnd's egress bridge: isolated ports, the host as the only peer
    if (!Exists("/sys/class/net/" + link.bridge))
      return Status(Code::kFailedPrecondition, "the egress bridge " + link.bridge + " is missing (restart kilnd)");
    KILN_RETURN_IF_ERROR(Ip({"link", "add", link.host_veth, "type", "veth", "peer", "name", link.host_veth + "c",
                             "netns", std::to_string(child)}));
    DisableIpv6(link.host_veth);
    KILN_RETURN_IF_ERROR(Ip({"link", "set", link.host_veth, "master", link.bridge}));
    KILN_RETURN_IF_ERROR(Ip({"link", "set", "dev", link.host_veth, "type", "bridge_slave", "isolated", "on"}));
    return Ip({"link", "set", link.host_veth, "up"});
  }
  BridgeLock lock(link.bridge);
  if (!Exists("/sys/class/net/" + link.bridge)) {
    Status made = Ip({"link", "add", link.bridge, "type", "bridge"});
    // Another instance of the job may have created it meanwhile.
    if (!made.ok() && !Exists("/sys/class/net/" + link.bridge)) return made;
  }
  DisableIpv6(link.bridge);
  KILN_RETURN_IF_ERROR(Ip({"link", "set", link.bridge, "up"}));
  KILN_RETURN_IF_ERROR(Ip({"link", "add", link.host_veth, "type", "veth", "peer", "name", link.host_veth + "c", "netns",
                           std::to_string(child)}));
  DisableIpv6(link.host_veth);
  return Ip({"link", "set", link.host_veth, "master", link.bridge, "up"});
}

Status ConfigureJobInterface(const supervisor::JobLink& link, const char* name) {
  UniqueFd s = IoctlSocket();
  if (s.get() < 0) return Errno("socket");
  ifreq ifr{};
  const std::string peer = link.host_veth + "c";
  strncpy(ifr.ifr_name, peer.c_str(), IFNAMSIZ - 1);
  strncpy(ifr.ifr_newname, name, IFNAMSIZ - 1);
  if (ioctl(s.get(), SIOCSIFNAME, &ifr) != 0) return Errno("rename " + peer);
  DisableIpv6(name);
  ifreq addr{};
  strncpy(addr.ifr_name, name, IFNAMSIZ - 1);
  auto* sin = reinterpret_cast<sockaddr_in*>(&addr.ifr_addr);
  sin->sin_family = AF_INET;
  if (inet_pton(AF_INET, link.address.c_str(), &sin->sin_addr) != 1)
    return InvalidArgument("link.address", "not an IPv4 address: " + link.address);
  if (ioctl(s.get(), SIOCSIFADDR, &addr) != 0) return Errno("SIOCSIFADDR");
  ifreq mask{};
  strncpy(mask.ifr_name, name, IFNAMSIZ - 1);
  auto* msin = reinterpret_cast<sockaddr_in*>(&mask.ifr_netmask);
  msin->sin_family = AF_INET;
  msin->sin_addr.s_addr = htonl(~uint32_t{0} << (32 - link.prefix_len));
  if (ioctl(s.get(), SIOCSIFNETMASK, &mask) != 0) return Errno("SIOCSIFNETMASK");
  KILN_RETURN_IF_ERROR(SetUp(s.get(), name));
  if (link.gateway.empty()) return Status::Ok();
  // The default route, through kilnd's NAT.
  rtentry route{};
  auto* dst = reinterpret_cast<sockaddr_in*>(&route.rt_dst);
  auto* gw = reinterpret_cast<sockaddr_in*>(&route.rt_gateway);
  auto* genmask = reinterpret_cast<sockaddr_in*>(&route.rt_genmask);
  dst->sin_family = gw->sin_family = genmask->sin_family = AF_INET;
  if (inet_pton(AF_INET, link.gateway.c_str(), &gw->sin_addr) != 1)
    return InvalidArgument("egress.gateway", "not an IPv4 address: " + link.gateway);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  std::string dev = name;
  route.rt_dev = dev.data();
  if (ioctl(s.get(), SIOCADDRT, &route) != 0) return Errno("default route via " + link.gateway);
  return Status::Ok();
}

Status PrepareEgress(const EgressNetwork& n) {
  const std::string sys = "/sys/class/net/" + n.bridge;
  if (!Exists(sys)) {
    Status made = Ip({"link", "add", n.bridge, "type", "bridge"});
    if (!made.ok() && !Exists(sys)) return made;
  }
  DisableIpv6(n.bridge);
  KILN_RETURN_IF_ERROR(Ip({"addr", "replace", n.gateway + "/" + std::to_string(n.prefix_len), "dev", n.bridge}));
  KILN_RETURN_IF_ERROR(Ip({"link", "set", n.bridge, "up"}));
  // Routing between the bridge and the host's other interfaces (host-wide).
  int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "1", 1) != 1) {
    if (fd >= 0) close(fd);
    return Errno("enable net.ipv4.ip_forward");
  }
  close(fd);
  const char* nft = FindProgram({"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"});
  if (!nft) return Status(Code::kFailedPrecondition, "nft not found (apt install nftables)");
  // Instances reach other networks, masqueraded as the host; nothing of the host
  // itself (input), no link-local address (a cloud's metadata service), no other
  // instance (the bridge's ports are isolated too), and nothing starts a
  // connection to them.
  const std::string b = "\"" + n.bridge + "\"";
  const std::string rules = "table ip " + std::string(kEgressTable) +
                            " {\n"
                            "  chain input { type filter hook input priority -10; policy accept; iifname " +
                            b +
                            " drop; }\n"
                            "  chain forward { type filter hook forward priority -10; policy accept;\n"
                            "    iifname " +
                            b +
                            " ip daddr 169.254.0.0/16 drop\n"
                            "    iifname " +
                            b + " oifname " + b +
                            " drop\n"
                            "    iifname " +
                            b + " ip saddr != " + n.subnet +
                            " drop\n"
                            "    iifname " +
                            b +
                            " accept\n"
                            "    oifname " +
                            b +
                            " ct state established,related accept\n"
                            "    oifname " +
                            b +
                            " drop\n  }\n"
                            "  chain postrouting { type nat hook postrouting priority 100; policy accept;\n"
                            "    ip saddr " +
                            n.subnet + " oifname != " + b +
                            " masquerade\n  }\n"
                            "}\n";
  // Replaced whole: delete (if there) and add in one transaction.
  const std::string script =
      "table ip " + std::string(kEgressTable) + " {}\ndelete table ip " + std::string(kEgressTable) + "\n" + rules;
  return RunProgram({nft, "-f", "-"}, script);
}

void RemoveJobLink(const supervisor::JobLink& link) {
  if (Exists("/sys/class/net/" + link.host_veth)) Ip({"link", "del", link.host_veth}).IgnoreError();  // gone meanwhile
  if (!link.gateway.empty()) return;  // kilnd's egress bridge stays
  const std::string& bridge = link.bridge;
  BridgeLock lock(bridge);
  const std::string ports = "/sys/class/net/" + bridge + "/brif";
  if (!Exists(ports)) {
    lock.Remove();
    return;
  }
  bool empty = true;
  if (DIR* d = opendir(ports.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') empty = false;
    closedir(d);
  }
  if (!empty) return;
  Ip({"link", "del", bridge}).IgnoreError();
  lock.Remove();  // the job is done with its bridge: no lock file left behind
}

Status DropPrivileges(uint32_t uid, uint32_t gid) {
  if (setgroups(0, nullptr) != 0) return Errno("setgroups");
  if (setresgid(gid, gid, gid) != 0) return Errno("setresgid");
  if (setresuid(uid, uid, uid) != 0) return Errno("setresuid");
  return Status::Ok();
}

Result<int> CloneTree(int path_fd, bool writable) {
  int tree = static_cast<int>(
      syscall(SYS_open_tree, path_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
  if (tree < 0) return Errno("open_tree");
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (writable ? 0 : MOUNT_ATTR_RDONLY);
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) != 0) {
    Status st = Errno("mount_setattr");
    close(tree);
    return st;
  }
  return tree;
}

namespace {

// In the sandbox's mount namespace: opens `dest` (O_PATH), creating what is
// missing, never through a symlink. Returns -1 with `why` set.
int OpenMountPoint(const std::string& dest, bool directory, std::string& why) {
  int cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  size_t pos = 1;
  while (cur >= 0 && pos < dest.size()) {
    size_t slash = dest.find('/', pos);
    if (slash == std::string::npos) slash = dest.size();
    const std::string name = dest.substr(pos, slash - pos);
    pos = slash + 1;
    if (name.empty() || name == ".") continue;
    const bool last = pos >= dest.size();
    if (last && !directory) {
      int f = openat(cur, name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (f >= 0) close(f);
    } else {
      mkdirat(cur, name.c_str(), 0755);  // exists already, or read-only: the open below says
    }
    int next = openat(cur, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && !directory ? 0 : O_DIRECTORY));
    if (next < 0) why = "mount point " + dest + ": " + strerror(errno) + " (a symlink or not a directory?)";
    close(cur);
    cur = next;
  }
  return why.empty() ? cur : (cur >= 0 ? (close(cur), -1) : -1);
}

}  // namespace

Status InjectMounts(pid_t pid, const std::vector<LateMount>& mounts, uint32_t uid, uint32_t gid) {
  if (mounts.empty()) return Status::Ok();
  const std::string ns_path = "/proc/" + std::to_string(pid) + "/ns/mnt";
  int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return Errno("open " + ns_path);
  int err[2];
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(ns);
    return Errno("pipe");
  }
  pid_t child = fork();
  if (child == 0) {
    close(err[0]);
    std::string why;
    if (setns(ns, CLONE_NEWNS) != 0) why = std::string("setns: ") + strerror(errno);
    // Mount points are made as the job's user: it owns them, and the sandbox's
    // own tmpfs (in its user namespace) takes no inode of an unmapped uid.
    setgroups(0, nullptr);
    setfsgid(gid);
    setfsuid(uid);
    for (size_t i = 0; why.empty() && i < mounts.size(); ++i) {
      int at = OpenMountPoint(mounts[i].dest, mounts[i].directory, why);
      if (at < 0) break;
      if (syscall(SYS_move_mount, mounts[i].tree, "", at, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
        why = "mount " + mounts[i].dest + ": " + strerror(errno);
      close(at);
    }
    if (!why.empty()) {
      ssize_t n = write(err[1], why.data(), why.size());
      (void)n;
      _exit(1);
    }
    _exit(0);
  }
  close(ns);
  close(err[1]);
  if (child < 0) {
    close(err[0]);
    return Errno("fork");
  }
  std::string why;
  char buf[512];
  ssize_t n;
  while ((n = read(err[0], buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    why.append(buf, static_cast<size_t>(n));
  }
  close(err[0]);
  int st = 0;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  if (!why.empty()) return Internal(why);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return Internal("the mount helper failed");
  return Status::Ok();
}

}  // namespace kiln::isolation
