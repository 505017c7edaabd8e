#include "compute/local/cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln {
namespace {

bool Exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

Status WriteValue(const std::string& path, const std::string& value) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return Internal("open " + path + ": " + strerror(errno));
  bool ok = fputs(value.c_str(), f) >= 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok) return Internal("write " + path + ": " + strerror(errno));
  return Status::Ok();
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int64_t KeyValue(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  int64_t v;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

Status MkdirP(const std::string& p) {
  if (mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return Internal("mkdir " + p + ": " + strerror(errno));
  return Status::Ok();
}

}  // namespace

Result<InstanceCgroup> InstanceCgroup::Create(const std::string& name, int64_t memory_bytes, double cpus,
                                              int64_t pids_max) {
  InstanceCgroup g;
  const int64_t period = 100000;
  const int64_t quota = static_cast<int64_t>(cpus * period);
  if (Exists("/sys/fs/cgroup/cgroup.controllers")) {
    g.v2_ = true;
    std::string parent = "/sys/fs/cgroup/kiln";
    KILN_RETURN_IF_ERROR(MkdirP(parent));
    // Best effort: already enabled on most hosts; if not, the limit writes below fail.
    WriteValue("/sys/fs/cgroup/cgroup.subtree_control", "+memory +cpu +pids").IgnoreError();
    WriteValue(parent + "/cgroup.subtree_control", "+memory +cpu +pids").IgnoreError();
    std::string d = parent + "/" + name;
    KILN_RETURN_IF_ERROR(MkdirP(d));
    g.dirs_.push_back(d);
    g.memory_dir_ = d;
    KILN_RETURN_IF_ERROR(WriteValue(d + "/memory.max", std::to_string(memory_bytes)));
    WriteValue(d + "/memory.swap.max", "0").IgnoreError();  // absent without swap accounting
    KILN_RETURN_IF_ERROR(WriteValue(d + "/cpu.max", std::to_string(quota) + " " + std::to_string(period)));
    // Without the pids controller (not delegated here) the limit is missing, not
    // every limit: the supervisor records the warning.
    if (pids_max > 0 && !WriteValue(d + "/pids.max", std::to_string(pids_max)).ok()) g.pids_missing_ = true;
    return g;
  }
  if (!Exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    return Status(Code::kUnavailable, "no cgroup memory controller found under /sys/fs/cgroup");
  std::string mem = "/sys/fs/cgroup/memory/kiln";
  KILN_RETURN_IF_ERROR(MkdirP(mem));
  mem += "/" + name;
  KILN_RETURN_IF_ERROR(MkdirP(mem));
  g.dirs_.push_back(mem);
  g.memory_dir_ = mem;
  KILN_RETURN_IF_ERROR(WriteValue(mem + "/memory.limit_in_bytes", std::to_string(memory_bytes)));
  // No swap escape, where the kernel has swap accounting (absent without it).
  WriteValue(mem + "/memory.memsw.limit_in_bytes", std::to_string(memory_bytes)).IgnoreError();
  WriteValue(mem + "/memory.swappiness", "0").IgnoreError();
  if (Exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")) {
    std::string cpu = "/sys/fs/cgroup/cpu/kiln";
    KILN_RETURN_IF_ERROR(MkdirP(cpu));
    cpu += "/" + name;
    KILN_RETURN_IF_ERROR(MkdirP(cpu));
    g.dirs_.push_back(cpu);
    KILN_RETURN_IF_ERROR(WriteValue(cpu + "/cpu.cfs_period_us", std::to_string(period)));
    KILN_RETURN_IF_ERROR(WriteValue(cpu + "/cpu.cfs_quota_us", std::to_string(quota)));
  }
  if (pids_max > 0 && Exists("/sys/fs/cgroup/pids/cgroup.procs")) {
    std::string pids = "/sys/fs/cgroup/pids/kiln";
    KILN_RETURN_IF_ERROR(MkdirP(pids));
    pids += "/" + name;
    KILN_RETURN_IF_ERROR(MkdirP(pids));
    g.dirs_.push_back(pids);
    if (!WriteValue(pids + "/pids.max", std::to_string(pids_max)).ok()) g.pids_missing_ = true;
  } else if (pids_max > 0) {
    g.pids_missing_ = true;
  }
  return g;
}

Status InstanceCgroup::JoinSelf() const {
  for (const auto& d : dirs_) KILN_RETURN_IF_ERROR(WriteValue(d + "/cgroup.procs", "0"));
  return Status::Ok();
}

bool InstanceCgroup::OomKilled() const {
  if (v2_) return KeyValue(ReadAll(memory_dir_ + "/memory.events"), "oom_kill") > 0;
  return KeyValue(ReadAll(memory_dir_ + "/memory.oom_control"), "oom_kill") > 0;
}

int64_t InstanceCgroup::PeakMemoryBytes() const {
  std::string v = ReadAll(memory_dir_ + (v2_ ? "/memory.peak" : "/memory.max_usage_in_bytes"));
  return v.empty() ? 0 : atoll(v.c_str());
}

int InstanceCgroup::RemoveLeftover(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') return 0;
  InstanceCgroup g;
  for (const char* parent : {"/sys/fs/cgroup/kiln/", "/sys/fs/cgroup/memory/kiln/", "/sys/fs/cgroup/cpu/kiln/",
                             "/sys/fs/cgroup/pids/kiln/"}) {
    std::string d = parent + name;
    if (Exists(d)) g.dirs_.push_back(d);
  }
  g.Destroy();
  int removed = 0;
  for (const auto& d : g.dirs_) removed += Exists(d) ? 0 : 1;
  return removed;
}

void InstanceCgroup::Destroy() const {
  for (const auto& d : dirs_) {
    // cgroup.kill (v2, Linux 5.14+) kills the whole group at once, forks in flight
    // included; else each process listed.
    if (WriteValue(d + "/cgroup.kill", "1").ok()) continue;
    std::istringstream procs(ReadAll(d + "/cgroup.procs"));
    int pid;
    while (procs >> pid) kill(pid, SIGKILL);
  }
  for (const auto& d : dirs_) {
    for (int i = 0; i < 50 && rmdir(d.c_str()) != 0 && errno == EBUSY; ++i) usleep(2000);
  }
}

}  // namespace kiln
