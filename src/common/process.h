#pragma once
// Running the host's helper programs (ip, nft, mount, mkfs.btrfs) and waiting
// for them: no shell, an absolute path, our environment.
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kiln {

// The first of `candidates` (absolute paths) that is executable, or nullptr.
const char* FindProgram(std::initializer_list<const char*> candidates);

enum class ProgramOutput {
  kInherit,  // its stdout goes where ours does (a log)
  kDiscard,  // /dev/null (chatty tools); its stderr still goes where ours does
};

// Runs argv (argv[0] an absolute path) and waits for it; `input`, when not
// empty, is written to its stdin. kInternal naming the command line when it
// cannot start or exits with anything but 0.
Status RunProgram(std::vector<std::string> argv, std::string_view input = {},
                  ProgramOutput output = ProgramOutput::kInherit);

}  // namespace kiln
