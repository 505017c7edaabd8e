#pragma once
// The pieces of an instance's isolation that kiln-supervisor sets up as root
// before it drops to the job's user and execs bubblewrap: the seccomp filter, the
// instance's network namespace (loopback; for multi-instance jobs one veth on the
// job's bridge; with outbound access one veth on kilnd's egress bridge), kilnd's
// egress network, and the privilege drop. See README.md for the whole model.
#include <sys/types.h>

#include <string>

#include "common/status.h"
#include "compute/local/protocol.h"

namespace kiln::isolation {

// The names the instance's ends of its links get inside its namespace: the
// job's link (multi-instance jobs) and the outbound one.
inline constexpr char kJobInterface[] = "eth0";
inline constexpr char kEgressInterface[] = "eth1";

// The nftables table kilnd keeps for outbound access.
inline constexpr char kEgressTable[] = "kiln_egress";

// kilnd's outbound network: a bridge with the gateway's address, NAT to the
// host's other networks, and filters (see PrepareEgress).
struct EgressNetwork {
  std::string bridge = "kegress";
  std::string gateway;  // e.g. 172.30.0.1
  int prefix_len = 16;
  std::string subnet;  // e.g. 172.30.0.0/16
};

// On the host, when kilnd starts: creates the bridge (if missing) with the
// gateway's address, turns on net.ipv4.ip_forward, and (re)loads the
// kEgressTable: instances on the bridge reach other networks masqueraded as
// the host, and not the host itself, link-local addresses (cloud metadata) or
// each other; nothing outside starts a connection to them.
Status PrepareEgress(const EgressNetwork& n);

// A compiled seccomp-bpf program (Docker's default profile in spirit: no mount,
// no kernel modules, keyrings, kexec, bpf, perf, userfaultfd, io_uring, clock or
// swap changes, no new namespaces) in a sealed memfd positioned at 0, ready for
// bwrap's --seccomp. Syscalls it denies fail with EPERM.
Result<int> DefaultSeccompFilter();

// Inside a fresh network namespace: brings "lo" up.
Status BringLoopbackUp();

// On the host, for a child that already unshared its network namespace: creates
// the job's bridge if missing, a veth pair whose host end joins the bridge and
// whose other end (named link.host_veth + "c") moves into the child's namespace.
// An egress link (gateway set) joins kilnd's bridge as an isolated port.
Status CreateJobLink(const supervisor::JobLink& link, pid_t child);

// Inside the child's namespace: renames link.host_veth + "c" to `name`, gives
// it link.address/prefix_len, brings it up, and with link.gateway routes the
// default through it.
Status ConfigureJobInterface(const supervisor::JobLink& link, const char* name);

// When an instance has ended: deletes its veth pair (the kernel would, but only
// once its network namespace is torn down, later), then the job's bridge if no
// port is left on it (never kilnd's egress bridge).
void RemoveJobLink(const supervisor::JobLink& link);

// Turns IPv6 off on an interface of the current network namespace (no-op without IPv6).
void DisableIpv6(const std::string& ifname);

// setgroups({}), setresgid, setresuid: irreversibly the job's user.
Status DropPrivileges(uint32_t uid, uint32_t gid);

// Warm sandboxes: binds added to a sandbox that is already running.
//
// A detached copy of the tree `path_fd` (an O_PATH descriptor) names
// (open_tree(OPEN_TREE_CLONE)), nosuid and nodev, read-only unless `writable`.
Result<int> CloneTree(int path_fd, bool writable);
struct LateMount {
  int tree = -1;     // from CloneTree
  std::string dest;  // absolute, in the sandbox
  bool directory = true;
};
// In a child that joins the mount namespace of `pid` (the sandbox's init):
// creates each mount point (a directory, or an empty file for a file) as
// uid/gid (the fsuid: a tmpfs of the sandbox's user namespace takes no other),
// component by component without following a symlink, and moves each tree onto
// it, in order.
Status InjectMounts(pid_t pid, const std::vector<LateMount>& mounts, uint32_t uid, uint32_t gid);

}  // namespace kiln::isolation
