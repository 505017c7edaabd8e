#pragma once
// The runtime contract inside an instance (docs/runtime-contract.md §2, §3, §9) as
// a pure function: from kilnd's runtime document and what kiln-entrypoint found out
// about where it runs, the files to lay out under /opt/ml and the user command's
// argv and environment. No I/O: the caller looks up the few facts it needs
// (ContractInput), writes the plan and runs the command (entrypoint.cc).
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/sandbox_paths.h"
#include "entrypoint/context.h"
#include "jobs/runtime_doc.h"

namespace kiln {

// Whether the entrypoint writes the contract files (ContextPlan::write_contract), or
// the platform already did (SageMaker).
enum class ContractFiles { kWrite, kSkip };

// Inline hyperparameters whose JSON is larger than this are not put in the
// environment (SM_HPS, SM_HP_*): hyperparameters.json is then their only source.
inline constexpr size_t kMaxHyperparameterEnvBytes = 256 << 10;

struct ContractInput {
  RuntimeContext context = RuntimeContext::kDev;  // becomes KILN_RUNTIME
  ContractFiles files = ContractFiles::kSkip;
  std::string root = sandbox::kRoot;  // where /opt/ml is (KILN_ML_ROOT)
  std::vector<std::string> command;   // as given to kiln-entrypoint (after "--")
  // kiln-entrypoint's own environment, "NAME=value" entries (environ).
  std::vector<std::string> base_environment;
  // kilnd's runtime document; nullopt when it was not fetched (no kilnd URL, dev):
  // then the command runs with the base environment plus KILN_RUNTIME, as given.
  std::optional<RuntimeDoc> runtime;
  // The body of runtime->staged_hyperparameters->url, unparsed; "" when not staged.
  std::string staged_hyperparameters;
  // Whether runtime->statsd->socket exists (then DD_DOGSTATSD_SOCKET names it).
  bool statsd_socket_exists = false;
};

struct ContractFile {
  std::string path;  // absolute, under ContractInput::root
  std::string content;

  friend bool operator==(const ContractFile&, const ContractFile&) = default;
};

// A channel input to copy into the instance when the backend did not bind it there
// (no sandbox): copied when `destination` is absent or empty.
struct ChannelCopy {
  std::string source;       // file or directory on the host (RuntimeDoc::channels)
  std::string destination;  // <root>/input/data/<channel>; a file goes inside it

  friend bool operator==(const ChannelCopy&, const ChannelCopy&) = default;
};

struct ContractPlan {
  std::vector<std::string> directories;     // created, in order, before the files
  std::vector<ContractFile> files;          // written atomically, mode 0644
  std::vector<ChannelCopy> channel_copies;  // after the files
  std::vector<std::string> log_lines;       // for the job's log, without the "[kiln-entrypoint] " prefix
  std::vector<std::string> command;         // argv of the user command
  bool script_mode = false;                 // `command` is SageMaker script mode's `python <program> ...`
  // The command's whole environment, "NAME=value", sorted by name, one entry per
  // name: the base environment, KILN_RUNTIME, then the contract's variables in the
  // order of docs/runtime-contract.md §3, a later one replacing an earlier one.
  std::vector<std::string> environment;
};

ContractPlan PrepareContract(ContractInput in);

}  // namespace kiln
