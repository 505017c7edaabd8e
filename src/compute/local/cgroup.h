#pragma once
// CPU, memory and process-count limits for one instance, on cgroup v2 or the v1
// memory, cpu and pids hierarchies (hybrid hosts). Not thread-safe; one per instance.
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln {

class InstanceCgroup {
 public:
  // Creates the groups under "kiln/<name>". kUnavailable if no usable hierarchy.
  // `pids_max` 0 sets no process limit.
  static Result<InstanceCgroup> Create(const std::string& name, int64_t memory_bytes, double cpus,
                                       int64_t pids_max = 0);
  // The groups of an instance whose supervisor died without removing them (kill -9):
  // kills what is left in them and removes them. Returns how many groups it removed.
  static int RemoveLeftover(const std::string& name);
  // Moves the calling process into the groups (call in the child before exec).
  Status JoinSelf() const;
  bool OomKilled() const;
  int64_t PeakMemoryBytes() const;
  // Kills anything left and removes the groups.
  void Destroy() const;
  const std::vector<std::string>& dirs() const { return dirs_; }
  // The pids limit was asked for and could not be set (no pids controller).
  bool pids_missing() const { return pids_missing_; }

 private:
  std::vector<std::string> dirs_;
  std::string memory_dir_;
  bool v2_ = false;
  bool pids_missing_ = false;
};

}  // namespace kiln
